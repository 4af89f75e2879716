-- Tables for the capture benchmark (B1): the same `orders` table once per
-- capture design, each with 100,000 rows to UPDATE.
DROP TABLE IF EXISTS orders_plain, orders_tracked, orders_naive, orders_notify, orders_pgq, orders_stmt,
                     naive_outbox CASCADE;
\ir orders.sql
CREATE TABLE orders_tracked (LIKE orders_plain INCLUDING ALL);
CREATE TABLE orders_naive (LIKE orders_plain INCLUDING ALL);
CREATE TABLE orders_notify (LIKE orders_plain INCLUDING ALL);
CREATE TABLE orders_pgq (LIKE orders_plain INCLUDING ALL);
CREATE TABLE orders_stmt (LIKE orders_plain INCLUDING ALL);

-- pg_webhook: inserts and updates, payload with new and old rows.
SELECT webhook.track('orders_tracked', '{insert,update}');

-- The naive outbox the Hasura / Supabase approach amounts to: a PL/pgSQL
-- row trigger inserting to_jsonb(NEW) (and OLD) into an outbox table.
CREATE TABLE naive_outbox (id bigserial PRIMARY KEY, payload jsonb NOT NULL, created_at timestamptz DEFAULT now());
CREATE FUNCTION naive_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO naive_outbox (payload)
  VALUES (jsonb_build_object('op', TG_OP, 'table', TG_TABLE_NAME, 'new', to_jsonb(NEW),
                             'old', CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END));
  RETURN NULL;
END $$;
CREATE TRIGGER naive AFTER INSERT OR UPDATE ON orders_naive FOR EACH ROW EXECUTE FUNCTION naive_capture();

-- The same plus a NOTIFY per row to wake the dispatcher.
CREATE FUNCTION naive_capture_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO naive_outbox (payload)
  VALUES (jsonb_build_object('op', TG_OP, 'table', TG_TABLE_NAME, 'new', to_jsonb(NEW),
                             'old', CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END));
  PERFORM pg_notify('naive_outbox', '');
  RETURN NULL;
END $$;
CREATE TRIGGER naive_notify AFTER INSERT OR UPDATE ON orders_notify FOR EACH ROW EXECUTE FUNCTION naive_capture_notify();

-- PgQ's C trigger (Skytools), into a PgQ queue.
CREATE EXTENSION IF NOT EXISTS pgq;
SELECT pgq.create_queue('orders');
CREATE TRIGGER pgq AFTER INSERT OR UPDATE ON orders_pgq FOR EACH ROW EXECUTE FUNCTION pgq.logutriga('orders');

-- The statement-level design with a transition table (for bulk statements).
CREATE FUNCTION stmt_capture() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO naive_outbox (payload)
  SELECT jsonb_build_object('op', TG_OP, 'table', TG_TABLE_NAME, 'new', to_jsonb(n)) FROM new_rows n;
  RETURN NULL;
END $$;
CREATE TRIGGER stmt AFTER INSERT ON orders_stmt REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION stmt_capture();
