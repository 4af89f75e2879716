-- Outbox: webhook.event_log, one row per captured or emitted event, written
-- in the producing transaction (by the capture trigger in Rust, outbox.rs,
-- or by emit()), and the webhook.events view users query.

-- CACHE 1 on purpose: two changes to the same row are serialized by the row
-- lock, so with no per-backend caching their ids follow commit order.
CREATE SEQUENCE webhook.event_id_seq CACHE 1;

-- Partitioned by id into generations (outbox.rs, GENERATION_BITS):
-- generation k is webhook.event_log_p<k>, created by webhook.maintain()
-- (retention.sql) before the sequence reaches it and dropped whole once
-- the retention has passed and nothing in it is pending.
CREATE TABLE webhook.event_log (
    id           bigint PRIMARY KEY DEFAULT nextval('webhook.event_id_seq'),
    -- top-level transaction id (xid8 as bigint): routing is by visibility
    txid         bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    event_type   text NOT NULL,
    -- the exact body bytes every attempt sends
    body         text NOT NULL,
    ordering_key text,
    -- set by send_test(): deliver to this endpoint only
    endpoint_id  bigint,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- the W3C traceparent of the writing session (webhook.traceparent,
    -- guc.rs), sent as the traceparent header of its deliveries
    traceparent  text
) PARTITION BY RANGE (id);
ALTER SEQUENCE webhook.event_id_seq OWNED BY webhook.event_log.id;
-- Routing finds new events by transaction id. A btree, not BRIN: BRIN was
-- free to maintain but the unsummarized tail (everything since the last
-- VACUUM) is scanned in full by every route() call (see docs/bench/history.md).
CREATE INDEX event_log_txid ON webhook.event_log (txid);

COMMENT ON TABLE webhook.event_log IS
  'The outbox: one row per captured or emitted event. Query it through the view webhook.events.';

-- payload is the body as jsonb. jsonb cannot hold U+0000, which a json
-- column's value may escape as \u0000 (any role that may write a tracked
-- table can put one there): such escapes read as U+FFFD in payload, so the
-- view works for every event; body keeps the exact bytes receivers get.
CREATE VIEW webhook.events AS
SELECT id, event_type,
       CASE WHEN strpos(body, '\u0000') = 0 THEN body::jsonb
            ELSE webhook._without_nul_escapes(body)::jsonb END AS payload,
       body, ordering_key, created_at, txid
  FROM webhook.event_log;
COMMENT ON VIEW webhook.events IS
  'Every event in the outbox: its type, its body as jsonb (payload) and as sent (body), ordering key and time.';

-- Which edition this database has. The native edition is the extension
-- with its library; the portable one (extension/sql/portable/) is the same
-- SQL API in SQL and PL/pgSQL, for servers that cannot load the library.
-- native:begin (the portable edition's answers 'portable': portable/library.sql)
CREATE FUNCTION webhook.edition() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$ SELECT 'native' $$;
-- native:end
COMMENT ON FUNCTION webhook.edition() IS
  'Which edition of pg_webhook this database has: native (the extension and its library) or portable (SQL and PL/pgSQL only).';

-- Which release of pg_webhook this database has: the extension's version,
-- or the portable edition's (portable/library.sql).
-- native:begin
CREATE FUNCTION webhook.version() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_webhook'
$$;
-- native:end
COMMENT ON FUNCTION webhook.version() IS
  'Which release of pg_webhook this database has (for example 0.2.0), in either edition.';
