-- Tables for the capture benchmark: the same `orders` table four times.
DROP TABLE IF EXISTS orders_plain, orders_tracked, orders_naive, orders_stmt, naive_outbox CASCADE;
CREATE TABLE orders_plain (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL,
    status      text NOT NULL DEFAULT 'new',
    total       numeric(12, 2) NOT NULL,
    currency    text NOT NULL DEFAULT 'EUR',
    items       int NOT NULL,
    note        text,
    placed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders_tracked (LIKE orders_plain INCLUDING ALL);
CREATE TABLE orders_naive (LIKE orders_plain INCLUDING ALL);
CREATE TABLE orders_stmt (LIKE orders_plain INCLUDING ALL);

SELECT webhook.track('orders_tracked');

-- The naive outbox, as Hasura / Supabase-style triggers do it: PL/pgSQL,
-- to_jsonb(NEW) and a NOTIFY per row.
CREATE TABLE naive_outbox (id bigserial PRIMARY KEY, payload jsonb NOT NULL, created_at timestamptz DEFAULT now());
CREATE FUNCTION naive_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO naive_outbox (payload) VALUES (jsonb_build_object('op', TG_OP, 'table', TG_TABLE_NAME, 'new', to_jsonb(NEW)));
  PERFORM pg_notify('naive_outbox', '');
  RETURN NULL;
END $$;
CREATE TRIGGER naive AFTER INSERT ON orders_naive FOR EACH ROW EXECUTE FUNCTION naive_capture();

-- The statement-level design with a transition table (for bulk statements).
CREATE FUNCTION stmt_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO naive_outbox (payload)
  SELECT jsonb_build_object('op', TG_OP, 'table', TG_TABLE_NAME, 'new', to_jsonb(n)) FROM new_rows n;
  RETURN NULL;
END $$;
CREATE TRIGGER stmt AFTER INSERT ON orders_stmt REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION stmt_capture();
