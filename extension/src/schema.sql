-- pg_webhook: tables, views and SQL functions of schema `webhook`.
-- The Rust functions (sign, verify, capture triggers, ...) are created before
-- this file runs (it is pgrx's `finalize` step).

-- ---------------------------------------------------------------------------
-- The outbox
-- ---------------------------------------------------------------------------

-- CACHE 1 on purpose: two changes to the same row are serialized by the row
-- lock, so with no per-backend caching their ids follow commit order.
CREATE SEQUENCE webhook.event_id_seq CACHE 1;

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
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER SEQUENCE webhook.event_id_seq OWNED BY webhook.event_log.id;
-- Routing finds new events by transaction id. A btree, not BRIN: BRIN was
-- free to maintain but the unsummarized tail (everything since the last
-- VACUUM) is scanned in full by every route() call (see BENCHMARKS.md).
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

-- Routing progress: events of transactions visible in cur_snap but not in
-- prev_snap form the current window; their ids lie in (last_id, hi_id], and
-- last_id is how far into it we are.
CREATE TABLE webhook.router (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    prev_snap pg_snapshot NOT NULL,
    cur_snap  pg_snapshot,
    last_id   bigint NOT NULL DEFAULT 0,
    hi_id     bigint NOT NULL DEFAULT 0
);
-- Nothing before this transaction (which creates the outbox) can have events.
INSERT INTO webhook.router (prev_snap)
SELECT (x::text || ':' || x::text || ':')::pg_snapshot FROM pg_current_xact_id() AS x;

-- ---------------------------------------------------------------------------
-- Endpoints
-- ---------------------------------------------------------------------------

CREATE TABLE webhook.endpoint (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             text NOT NULL,
    event_types     text[] NOT NULL,
    description     text,
    headers         jsonb NOT NULL DEFAULT '{}',
    timeout_ms      int NOT NULL DEFAULT 15000 CHECK (timeout_ms BETWEEN 100 AND 300000),
    ordered         boolean NOT NULL DEFAULT false,
    max_in_flight   int NOT NULL DEFAULT 16 CHECK (max_in_flight BETWEEN 1 AND 10000),
    rate_limit      int CHECK (rate_limit > 0),
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook.endpoint_secret (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id bigint NOT NULL REFERENCES webhook.endpoint ON DELETE CASCADE,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- NULL: current; otherwise it keeps signing until then (rotation overlap)
    expires_at  timestamptz
);
CREATE INDEX ON webhook.endpoint_secret (endpoint_id);

-- ---------------------------------------------------------------------------
-- Deliveries and attempts
-- ---------------------------------------------------------------------------

CREATE TABLE webhook.delivery (
    -- assigned in routing order, which follows commit order
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         bigint NOT NULL,
    endpoint_id      bigint NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'dead')),
    attempts         int NOT NULL DEFAULT 0,
    -- while claimed, the end of the lease: an expired lease makes it due again
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claim_token      int NOT NULL DEFAULT 0,
    leased_by        text,
    ordering_key     text,
    last_http_status int,
    last_error       text,
    last_attempt_at  timestamptz,
    completed_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, endpoint_id)
);
-- One due queue per endpoint: a claim reads each endpoint's head, so a
-- failing or paused endpoint's backlog is never scanned past (or waited
-- behind) to reach another endpoint's deliveries.
CREATE INDEX delivery_due ON webhook.delivery (endpoint_id, next_attempt_at, id) WHERE status = 'pending';
-- A queue table: every delivery is inserted and updated twice within
-- seconds. Vacuum and analyze it far more often than the defaults, so dead
-- index entries stay few and the planner's row counts stay close.
ALTER TABLE webhook.delivery SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
                                  autovacuum_vacuum_cost_delay = 0);
CREATE INDEX delivery_key ON webhook.delivery (endpoint_id, ordering_key, id)
    WHERE status = 'pending' AND ordering_key IS NOT NULL;
CREATE INDEX delivery_dead ON webhook.delivery (endpoint_id, created_at) WHERE status = 'dead';

CREATE TABLE webhook.attempt_log (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id      bigint NOT NULL,
    event_id         bigint NOT NULL,
    endpoint_id      bigint NOT NULL,
    attempt          int NOT NULL,
    http_status      int,
    duration_ms      double precision,
    error            text,
    response_excerpt text,
    worker           text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON webhook.attempt_log (delivery_id);
CREATE INDEX ON webhook.attempt_log (endpoint_id, created_at);

CREATE VIEW webhook.deliveries AS
SELECT d.id AS delivery_id, d.event_id, d.endpoint_id, e.event_type, d.status, d.attempts,
       d.next_attempt_at, d.last_http_status, d.last_error, d.last_attempt_at, d.completed_at,
       d.ordering_key, d.created_at,
       (d.status = 'pending' AND d.claim_token > 0 AND d.next_attempt_at > now() AND d.leased_by IS NOT NULL) AS in_flight
  FROM webhook.delivery d
  JOIN webhook.event_log e ON e.id = d.event_id;

CREATE VIEW webhook.attempts AS
SELECT a.id, a.delivery_id, a.event_id, a.endpoint_id, a.attempt, a.created_at AS attempted_at,
       a.http_status, a.duration_ms, a.error, a.response_excerpt, a.worker
  FROM webhook.attempt_log a;

CREATE VIEW webhook.endpoint_health AS
SELECT ep.id AS endpoint_id, ep.url, ep.enabled, ep.disabled_reason,
       coalesce(p.backlog, 0) AS backlog,
       p.oldest_pending_at,
       coalesce(dd.dead, 0) AS dead,
       la.last_success_at, la.last_failure_at,
       la.last_status
  FROM webhook.endpoint ep
  LEFT JOIN LATERAL (SELECT count(*) AS backlog, min(d.created_at) AS oldest_pending_at
                       FROM webhook.delivery d WHERE d.endpoint_id = ep.id AND d.status = 'pending') p ON true
  LEFT JOIN LATERAL (SELECT count(*) AS dead
                       FROM webhook.delivery d WHERE d.endpoint_id = ep.id AND d.status = 'dead') dd ON true
  LEFT JOIN LATERAL (SELECT max(a.created_at) FILTER (WHERE a.http_status BETWEEN 200 AND 299) AS last_success_at,
                            max(a.created_at) FILTER (WHERE a.http_status IS NULL OR a.http_status NOT BETWEEN 200 AND 299) AS last_failure_at,
                            (array_agg(a.http_status ORDER BY a.id DESC))[1] AS last_status
                       FROM (SELECT * FROM webhook.attempt_log a WHERE a.endpoint_id = ep.id
                              ORDER BY a.created_at DESC LIMIT 1000) a) la ON true;

-- ---------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------

-- webhook._event_type_ok(t) is in Rust (outbox.rs): the capture trigger
-- checks its event type with the same rule.

-- webhook._matches(patterns, event_type) is in Rust (route.rs): it runs once
-- per (event, endpoint) pair when routing.

CREATE FUNCTION webhook._check_patterns(patterns text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE p text;
BEGIN
  IF patterns IS NULL OR cardinality(patterns) = 0 THEN
    RAISE EXCEPTION 'event_types must list at least one pattern'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''{*}'' for every event, ''{orders.*}'' for a prefix, or exact types like ''{orders.insert}''.';
  END IF;
  FOREACH p IN ARRAY patterns LOOP
    IF p IS NULL OR NOT (p = '*' OR webhook._event_type_ok(p)
                         OR (right(p, 2) = '.*' AND webhook._event_type_ok(left(p, -2)))) THEN
      RAISE EXCEPTION 'invalid event type pattern %', coalesce(quote_literal(p), 'NULL')
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A pattern is *, an exact type (orders.insert) or a prefix ending in .* (orders.*); * may only stand alone or last.';
    END IF;
  END LOOP;
  RETURN (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(patterns) x);
END
$$;

CREATE FUNCTION webhook._check_url(url text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE m text[];
BEGIN
  IF url IS NULL OR length(url) > 2048 OR url ~ '[[:space:][:cntrl:]]' THEN
    RAISE EXCEPTION 'invalid endpoint URL %', coalesce(quote_literal(left(url, 100)), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'An endpoint URL is an absolute https:// URL of at most 2048 characters without spaces.';
  END IF;
  m := regexp_match(url, '^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([/?][^#]*)?$');
  IF m IS NULL OR m[2] = '' THEN
    RAISE EXCEPTION 'invalid endpoint URL %', quote_literal(url)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'An endpoint URL is absolute, like https://example.com/webhooks, and has no #fragment.';
  END IF;
  IF position('@' IN m[2]) > 0 THEN
    RAISE EXCEPTION 'endpoint URL must not contain credentials'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Put credentials in a header instead: create_endpoint(..., headers => ''{"authorization": "..."}'').';
  END IF;
  IF lower(m[1]) = 'https' THEN
    RETURN url;
  ELSIF lower(m[1]) = 'http' THEN
    -- Through the library, never current_setting(): see guc.rs.
    IF webhook._allow_http() THEN
      RETURN url;
    END IF;
    RAISE EXCEPTION 'endpoint URL must use https://'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'For local development, SET webhook.allow_http = on (superuser) to allow http:// URLs.';
  END IF;
  RAISE EXCEPTION 'unsupported URL scheme %', quote_literal(m[1])
    USING ERRCODE = 'invalid_parameter_value', HINT = 'Endpoint URLs use https://.';
END
$$;

CREATE FUNCTION webhook._check_headers(headers jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE k text; v jsonb;
BEGIN
  IF headers IS NULL THEN RETURN '{}'; END IF;
  IF jsonb_typeof(headers) <> 'object' THEN
    RAISE EXCEPTION 'headers must be a JSON object'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Example: ''{"authorization": "Bearer abc"}''.';
  END IF;
  FOR k, v IN SELECT * FROM jsonb_each(headers) LOOP
    IF k !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' OR jsonb_typeof(v) <> 'string' OR (v #>> '{}') ~ '[\r\n]' THEN
      RAISE EXCEPTION 'invalid header %', quote_literal(k)
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Header names are HTTP tokens and values are strings without line breaks.';
    END IF;
    IF lower(k) IN ('host', 'content-length', 'content-type', 'user-agent', 'transfer-encoding', 'connection')
       OR lower(k) LIKE 'webhook-%' THEN
      RAISE EXCEPTION 'header % is set by pg_webhook and cannot be overridden', quote_literal(k)
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'content-type, user-agent and the webhook-* headers are part of the Standard Webhooks request; choose another name.';
    END IF;
  END LOOP;
  RETURN coalesce((SELECT jsonb_object_agg(lower(key), value) FROM jsonb_each(headers)), '{}');
END
$$;

CREATE FUNCTION webhook._endpoint(endpoint_id bigint) RETURNS webhook.endpoint
LANGUAGE plpgsql STABLE AS $$
DECLARE ep webhook.endpoint;
BEGIN
  SELECT * INTO ep FROM webhook.endpoint e WHERE e.id = endpoint_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'endpoint % does not exist', coalesce(endpoint_id::text, 'NULL')
      USING ERRCODE = 'no_data_found', HINT = 'SELECT id, url FROM webhook.endpoint lists the endpoints.';
  END IF;
  RETURN ep;
END
$$;

-- ---------------------------------------------------------------------------
-- Capture API
-- ---------------------------------------------------------------------------

-- Not executable by PUBLIC (see Privileges): a trigger using it writes
-- events of the type its arguments name, so installing one is granted
-- (webhook.grant_tracker) like emitting is. PostgreSQL checks EXECUTE when
-- the trigger is created, not when it fires: anyone who may write a
-- tracked table still produces its events.
CREATE FUNCTION webhook._capture_row() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'webhook_capture_row';

-- Tracked tables are exactly the tables carrying our triggers, so there is
-- no second copy of the configuration to go stale (DROP TABLE takes both).
-- Row triggers are named webhook_capture_<op>:<event prefix>; one table can
-- be captured under several prefixes (every review as reviews.*, low ones
-- also as support.low_rating.*).
CREATE VIEW webhook.tracked_tables AS
SELECT t.tgrelid::regclass AS relation,
       split_part(t.tgname, ':', 2) AS event_prefix,
       array_agg(split_part(substr(t.tgname, length('webhook_capture_') + 1), ':', 1) ORDER BY t.tgname) AS events,
       array_agg(pg_get_triggerdef(t.oid) ORDER BY t.tgname) AS triggers
  FROM pg_trigger t
 WHERE t.tgname LIKE 'webhook\_capture\_%:%'
 GROUP BY t.tgrelid, split_part(t.tgname, ':', 2);

-- DROP EXTENSION pg_webhook removes the capture triggers it installed on
-- user tables (they depend on the extension's trigger function, so without
-- this it would need CASCADE). ddl_command_start cannot see which extension
-- is being dropped; the statement text can.
CREATE FUNCTION webhook._on_drop_extension() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  IF current_query() !~* '\mpg_webhook\M' THEN
    RETURN;
  END IF;
  FOR r IN SELECT t.tgrelid::regclass AS rel, t.tgname
             FROM pg_trigger t
            WHERE t.tgfoid = 'webhook._capture_row'::regproc LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.rel);
  END LOOP;
END
$$;
CREATE EVENT TRIGGER webhook_drop_extension ON ddl_command_start
  WHEN TAG IN ('DROP EXTENSION') EXECUTE FUNCTION webhook._on_drop_extension();

-- The capture trigger writes the outbox without the executor (outbox.rs),
-- so it can maintain plain column indexes only: refuse an index with an
-- expression, a predicate or an exclusion constraint on webhook.event_log
-- when it is created (the insert refuses it too, should one exist anyway).
-- Runs for every role's CREATE INDEX: it reads catalogs only, by name, so
-- it needs no privilege on schema webhook.
CREATE FUNCTION webhook._guard_outbox_index() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE bad text;
BEGIN
  SELECT ic.relname INTO bad
    FROM pg_event_trigger_ddl_commands() cmd
    JOIN pg_index i ON i.indexrelid = cmd.objid OR i.indrelid = cmd.objid
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
   WHERE cmd.classid = 'pg_class'::regclass AND n.nspname = 'webhook' AND t.relname = 'event_log'
     AND (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL
          OR EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype = 'x'))
   LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'index % on webhook.event_log is not supported: it has an expression, a predicate or an exclusion constraint', quote_ident(bad)
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Captured events are written without the executor, so indexes on webhook.event_log must be plain column indexes; index a column (event_type, created_at) instead.';
  END IF;
END
$$;
CREATE EVENT TRIGGER webhook_guard_outbox_index ON ddl_command_end
  WHEN TAG IN ('CREATE INDEX', 'ALTER TABLE') EXECUTE FUNCTION webhook._guard_outbox_index();

CREATE FUNCTION webhook._base_type(t oid) RETURNS oid
LANGUAGE sql STABLE AS $$
  WITH RECURSIVE b(oid, typbasetype) AS (
    SELECT oid, typbasetype FROM pg_type WHERE oid = t
    UNION ALL
    SELECT p.oid, p.typbasetype FROM pg_type p JOIN b ON p.oid = b.typbasetype)
  SELECT oid FROM b WHERE typbasetype = 0
$$;

CREATE FUNCTION webhook.untrack(relation regclass, event_prefix text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE trig text;
BEGIN
  IF relation IS NULL THEN
    RAISE EXCEPTION 'relation must not be NULL' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  FOR trig IN SELECT tgname FROM pg_trigger
               WHERE tgrelid = relation AND tgname LIKE 'webhook\_capture\_%'
                 AND (event_prefix IS NULL OR split_part(tgname, ':', 2) = event_prefix) LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', trig, relation);
  END LOOP;
END
$$;

CREATE FUNCTION webhook.track(
    relation     regclass,
    events       text[] DEFAULT '{insert,update,delete}',
    event_prefix text DEFAULT NULL,
    condition    text DEFAULT NULL,
    columns      text[] DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  rel       record;
  op        text;
  ops       text[];
  prefix    text;
  keys      text;
  cols      text;
  col       text;
  att       record;
  changed   text;
  when_sql  text;
  msg       text;
  state     text;
BEGIN
  IF relation IS NULL THEN
    RAISE EXCEPTION 'relation must not be NULL' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  SELECT c.relkind, c.relname, n.nspname INTO rel
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = relation;
  IF rel.relkind NOT IN ('r', 'p') THEN
    RAISE EXCEPTION '% is not a table', relation
      USING ERRCODE = 'wrong_object_type',
            HINT = 'Only tables can be tracked; for a view, track the table(s) it reads from.';
  END IF;
  IF rel.nspname IN ('pg_catalog', 'information_schema', 'pg_toast') THEN
    RAISE EXCEPTION 'system catalog % cannot be tracked', relation USING ERRCODE = 'wrong_object_type';
  END IF;
  IF rel.nspname = 'webhook' THEN
    RAISE EXCEPTION 'pg_webhook''s own tables cannot be tracked' USING ERRCODE = 'wrong_object_type';
  END IF;
  IF NOT has_function_privilege('webhook._capture_row()', 'EXECUTE') THEN
    RAISE EXCEPTION 'role % may not track tables', current_user
      USING ERRCODE = 'insufficient_privilege',
            HINT = format('A superuser grants it: SELECT webhook.grant_tracker(%L);', current_user);
  END IF;

  IF events IS NULL OR cardinality(events) = 0 THEN
    RAISE EXCEPTION 'events must list at least one of insert, update, delete'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'To stop capturing, call webhook.untrack(table).';
  END IF;
  FOREACH op IN ARRAY events LOOP
    IF op IS NULL OR lower(op) NOT IN ('insert', 'update', 'delete') THEN
      RAISE EXCEPTION 'unknown event %', coalesce(quote_literal(op), 'NULL')
        USING ERRCODE = 'invalid_parameter_value', HINT = 'events is a subset of {insert,update,delete}.';
    END IF;
  END LOOP;
  ops := ARRAY(SELECT DISTINCT lower(x) FROM unnest(events) x ORDER BY 1);

  prefix := coalesce(event_prefix, rel.relname);
  IF NOT webhook._event_type_ok(prefix || '.insert') OR length(prefix) > 40 THEN
    RAISE EXCEPTION 'invalid event prefix %', quote_literal(prefix)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Event prefixes use letters, digits, _ and -, in dot-separated parts (shop.orders), at most 40 characters; pass event_prefix for tables with other characters in their names.';
  END IF;

  -- The ordering key is the primary key (NULL without one: such events
  -- carry no ordering key and are delivered unordered).
  SELECT string_agg(a::text, ',' ORDER BY k.ord) INTO keys
    FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS k(a, ord)
   WHERE i.indrelid = relation AND i.indisprimary;
  IF keys IS NULL THEN
    RAISE NOTICE 'table % has no primary key: its events carry no ordering key', relation
      USING HINT = 'Ordered endpoints deliver them without per-row ordering. Add a primary key to order them.';
  END IF;

  cols := '';
  changed := NULL;
  IF columns IS NOT NULL THEN
    IF cardinality(columns) = 0 THEN
      RAISE EXCEPTION 'columns must be NULL (all columns) or list at least one column'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH col IN ARRAY columns LOOP
      SELECT a.attnum, a.atttypid INTO att FROM pg_attribute a
       WHERE a.attrelid = relation AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
      IF NOT FOUND THEN
        RAISE EXCEPTION 'column % of % does not exist', coalesce(quote_ident(col), 'NULL'), relation
          USING ERRCODE = 'undefined_column',
                HINT = 'Columns: ' || (SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
                                         FROM pg_attribute WHERE attrelid = relation AND attnum > 0 AND NOT attisdropped);
      END IF;
      cols := cols || CASE WHEN cols = '' THEN '' ELSE ',' END || att.attnum;
      -- Types without a default btree opclass (json, point, ...) have no
      -- equality: compare their text forms.
      IF EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
                  WHERE am.amname = 'btree' AND oc.opcdefault
                    AND oc.opcintype IN (att.atttypid, webhook._base_type(att.atttypid))) THEN
        changed := concat_ws(' OR ', changed, format('OLD.%1$I IS DISTINCT FROM NEW.%1$I', col));
      ELSE
        changed := concat_ws(' OR ', changed, format('OLD.%1$I::text IS DISTINCT FROM NEW.%1$I::text', col));
      END IF;
    END LOOP;
  END IF;

  PERFORM webhook.untrack(relation, prefix);
  FOREACH op IN ARRAY ops LOOP
    when_sql := NULL;
    IF condition IS NOT NULL THEN
      when_sql := '(' || condition || ')';
    END IF;
    IF op = 'update' AND changed IS NOT NULL THEN
      when_sql := concat_ws(' AND ', when_sql, '(' || changed || ')');
    END IF;
    BEGIN
      EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s FOR EACH ROW %s EXECUTE FUNCTION webhook._capture_row(%L, %L, %L)',
                     'webhook_capture_' || op || ':' || prefix, upper(op), relation,
                     CASE WHEN when_sql IS NULL THEN '' ELSE 'WHEN (' || when_sql || ')' END,
                     prefix || '.' || op, coalesce(keys, ''), cols);
    EXCEPTION WHEN syntax_error OR undefined_column OR undefined_function OR datatype_mismatch
                   OR invalid_object_definition OR feature_not_supported OR undefined_table
                   OR ambiguous_column OR invalid_text_representation OR grouping_error THEN
      GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
      RAISE EXCEPTION 'invalid condition for % events on %: %', op, relation, msg
        USING ERRCODE = state,
              HINT = 'condition is a boolean SQL expression over NEW (insert, update) and OLD (update, delete), like a trigger''s WHEN clause; restrict events when it uses only one of them.';
    END;
  END LOOP;
END
$$;


-- Executable only by roles granted it (webhook.grant_emitter): an event is
-- signed with every subscribed endpoint's secret, so whoever may emit may
-- make receivers accept anything of any type.
CREATE FUNCTION webhook.emit(event_type text, payload jsonb, ordering_key text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE id bigint; ts timestamptz := clock_timestamp(); body text;
BEGIN
  IF NOT webhook._event_type_ok(event_type) THEN
    RAISE EXCEPTION 'invalid event type %', coalesce(quote_literal(event_type), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Event types are dot-separated parts of letters, digits, _ and - (loyalty.points_earned), at most 200 characters.';
  END IF;
  IF payload IS NULL THEN
    RAISE EXCEPTION 'payload must not be NULL'
      USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass ''{}''::jsonb for an event without data.';
  END IF;
  body := '{"type":' || to_json(event_type)::text || ',"timestamp":"' || webhook._rfc3339(ts)
          || '","data":' || payload::text || '}';
  PERFORM webhook._check_event_size(event_type, octet_length(body));
  INSERT INTO webhook.event_log (event_type, body, ordering_key, created_at)
  VALUES (event_type, body, ordering_key, ts)
  RETURNING event_log.id INTO id;
  PERFORM webhook._wrote_events();
  RETURN id;
END
$$;

-- ---------------------------------------------------------------------------
-- Endpoint API
-- ---------------------------------------------------------------------------

CREATE FUNCTION webhook.create_endpoint(
    url           text,
    event_types   text[] DEFAULT '{*}',
    secret        text DEFAULT NULL,
    description   text DEFAULT NULL,
    headers       jsonb DEFAULT '{}',
    timeout       interval DEFAULT '15 seconds',
    ordered       boolean DEFAULT false,
    max_in_flight int DEFAULT 16,
    rate_limit    int DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE id bigint; ms int;
BEGIN
  ms := (extract(epoch FROM timeout) * 1000)::int;
  IF ms IS NULL OR ms < 100 OR ms > 300000 THEN
    RAISE EXCEPTION 'timeout must be between 100 milliseconds and 5 minutes'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'The default is 15 seconds; receivers should answer quickly and work asynchronously.';
  END IF;
  IF max_in_flight IS NULL OR max_in_flight NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'max_in_flight must be between 1 and 10000'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'It bounds concurrent requests to this endpoint; the default is 16.';
  END IF;
  IF rate_limit IS NOT NULL AND rate_limit <= 0 THEN
    RAISE EXCEPTION 'rate_limit must be positive (requests per second) or NULL for none'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL for no limit.';
  END IF;
  IF secret IS NOT NULL THEN
    PERFORM webhook._check_secret(secret);
  END IF;
  INSERT INTO webhook.endpoint (url, event_types, description, headers, timeout_ms, ordered, max_in_flight, rate_limit)
  VALUES (webhook._check_url(url), webhook._check_patterns(event_types), description,
          webhook._check_headers(headers), ms, coalesce(ordered, false), max_in_flight, rate_limit)
  RETURNING endpoint.id INTO id;
  INSERT INTO webhook.endpoint_secret (endpoint_id, secret)
  VALUES (id, coalesce(secret, webhook._generate_secret()));
  RETURN id;
END
$$;

CREATE FUNCTION webhook.endpoint_secret(endpoint_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM webhook._endpoint(endpoint_id);
  RETURN (SELECT s.secret FROM webhook.endpoint_secret s
           WHERE s.endpoint_id = endpoint_secret.endpoint_id AND s.expires_at IS NULL
           ORDER BY s.id DESC LIMIT 1);
END
$$;

CREATE FUNCTION webhook.rotate_secret(endpoint_id bigint, new_secret text DEFAULT NULL,
                                      overlap interval DEFAULT '24 hours') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
  PERFORM webhook._endpoint(endpoint_id);
  IF overlap IS NULL OR overlap < interval '0' THEN
    RAISE EXCEPTION 'overlap must be a non-negative interval' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF new_secret IS NOT NULL THEN
    PERFORM webhook._check_secret(new_secret);
  END IF;
  s := coalesce(new_secret, webhook._generate_secret());
  UPDATE webhook.endpoint_secret es SET expires_at = now() + overlap
   WHERE es.endpoint_id = rotate_secret.endpoint_id AND (es.expires_at IS NULL OR es.expires_at > now() + overlap);
  DELETE FROM webhook.endpoint_secret es
   WHERE es.endpoint_id = rotate_secret.endpoint_id AND es.expires_at <= now();
  INSERT INTO webhook.endpoint_secret (endpoint_id, secret) VALUES (rotate_secret.endpoint_id, s);
  RETURN s;
END
$$;

CREATE FUNCTION webhook.disable_endpoint(id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM webhook._endpoint(id);
  UPDATE webhook.endpoint e SET enabled = false, disabled_reason = 'disabled by ' || current_user, updated_at = now()
   WHERE e.id = disable_endpoint.id;
END
$$;

CREATE FUNCTION webhook.enable_endpoint(id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM webhook._endpoint(id);
  UPDATE webhook.endpoint e SET enabled = true, disabled_reason = NULL, updated_at = now()
   WHERE e.id = enable_endpoint.id;
END
$$;

CREATE FUNCTION webhook.delete_endpoint(id bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM webhook._endpoint(id);
  DELETE FROM webhook.attempt_log a WHERE a.endpoint_id = delete_endpoint.id;
  DELETE FROM webhook.delivery d WHERE d.endpoint_id = delete_endpoint.id;
  DELETE FROM webhook.endpoint e WHERE e.id = delete_endpoint.id;
END
$$;

CREATE FUNCTION webhook.send_test(endpoint_id bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE ep webhook.endpoint; id bigint; ts timestamptz := clock_timestamp();
BEGIN
  ep := webhook._endpoint(endpoint_id);
  IF NOT ep.enabled THEN
    RAISE EXCEPTION 'endpoint % is disabled', endpoint_id
      USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'SELECT webhook.enable_endpoint(' || endpoint_id || ') first.';
  END IF;
  INSERT INTO webhook.event_log (event_type, body, endpoint_id, created_at)
  VALUES ('webhook.test',
          '{"type":"webhook.test","timestamp":"' || webhook._rfc3339(ts) || '","data":{"endpoint_id":' || endpoint_id
            || ',"message":"This is a test event from pg_webhook."}}',
          endpoint_id, ts)
  RETURNING event_log.id INTO id;
  PERFORM webhook._wrote_events();
  RETURN id;
END
$$;

-- ---------------------------------------------------------------------------
-- Dispatcher interface: route → claim (signed) → record / release
-- ---------------------------------------------------------------------------

-- The id range of a routing window: read once per window through the txid
-- index (never a sequential scan, whatever the statistics say: the outbox
-- grows far faster than ANALYZE runs).
CREATE FUNCTION webhook._window_bounds(prev pg_snapshot, cur pg_snapshot, OUT lo bigint, OUT hi bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
BEGIN
  -- OFFSET 0: no min/max rewrite into walks of the primary key from both
  -- ends (each would cross every event outside the window).
  SELECT min(w.id), max(w.id) INTO lo, hi FROM (
    SELECT e.id
      FROM webhook.event_log e
     WHERE e.txid >= pg_snapshot_xmin(prev)::text::bigint
       AND e.txid < pg_snapshot_xmax(cur)::text::bigint
       AND pg_visible_in_snapshot(e.txid::text::xid8, cur)
       AND NOT pg_visible_in_snapshot(e.txid::text::xid8, prev)
    OFFSET 0) w;
END
$$;

-- The next chunk of a window, in id order: a walk of the primary key from
-- `after`, so each chunk costs its own size (a bitmap scan + sort, the plan
-- stale statistics invite, would re-read the whole rest of the window).
CREATE FUNCTION webhook._window_chunk(prev pg_snapshot, cur pg_snapshot, after bigint, hi bigint, n int)
RETURNS TABLE (id bigint, event_type text, ordering_key text, endpoint_id bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off AS $$
BEGIN
  RETURN QUERY
  SELECT e.id, e.event_type, e.ordering_key, e.endpoint_id
    FROM webhook.event_log e
   WHERE e.id > after AND e.id <= hi
     AND e.txid >= pg_snapshot_xmin(prev)::text::bigint
     AND e.txid < pg_snapshot_xmax(cur)::text::bigint
     AND pg_visible_in_snapshot(e.txid::text::xid8, cur)
     AND NOT pg_visible_in_snapshot(e.txid::text::xid8, prev)
   ORDER BY e.id
   LIMIT n;
END
$$;

-- Fan out committed events into deliveries, in commit order. Events are taken
-- by transaction visibility between two snapshots (never by an id cursor,
-- which would skip a transaction that commits after a higher id).
--
-- With lease_max > 0 (called by claim()), up to lease_max of the new
-- deliveries are created already leased to `worker` until lease_until and
-- their ids returned: a fresh delivery is then written once here and once by
-- record(), never re-found through the due index and updated in between.
-- Only deliveries that could be claimed right now are leased: within the
-- room the claimer has for the endpoint (ep_ids/ep_room; endpoints not
-- listed get none), and for an ordered endpoint the first pending delivery
-- of its ordering key. The rest are created due now and claimed through the
-- due index.
CREATE FUNCTION webhook._route(max_events int, cur pg_snapshot, lease_until timestamptz, lease_max int,
                               ep_ids bigint[], ep_room int[], worker text,
                               OUT routed int, OUT made int, OUT leased bigint[])
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE st webhook.router; last bigint; hi bigint;
BEGIN
  -- The caller holds the router lock and took `cur` after taking it and
  -- before its transaction had an xid (see _route_begin()).
  leased := '{}';
  routed := 0;
  made := 0;
  SELECT * INTO st FROM webhook.router;
  IF st.cur_snap IS NOT NULL THEN
    cur := st.cur_snap;
    last := st.last_id;
    hi := st.hi_id;
  ELSE
    SELECT b.lo - 1, b.hi INTO last, hi FROM webhook._window_bounds(st.prev_snap, cur) AS b;
    IF hi IS NULL THEN
      -- An empty window leaves prev_snap where it is: the next window then
      -- holds exactly the events committed since, as it would after moving
      -- it, and a claim that finds nothing writes nothing (no xid, no WAL,
      -- no commit record to flush on every idle poll or wake-up).
      RETURN;
    END IF;
  END IF;
  WITH ev AS (
    SELECT * FROM webhook._window_chunk(st.prev_snap, cur, last, hi, max_events)
  ), room AS (
    SELECT u.id, u.n FROM unnest(ep_ids, ep_room) AS u(id, n) WHERE lease_max > 0 AND u.n > 0
  ), pair AS (
    SELECT ev.id AS event_id, ep.id AS endpoint_id, coalesce(room.n, 0) AS room,
           CASE WHEN ep.ordered THEN ev.ordering_key END AS ordering_key,
           room.n IS NOT NULL AS free
      FROM ev
      JOIN webhook.endpoint ep
        ON ep.enabled AND CASE WHEN ev.endpoint_id IS NULL
                               THEN webhook._matches(ep.event_types, ev.event_type)
                               ELSE ep.id = ev.endpoint_id END
      LEFT JOIN room ON room.id = ep.id
  ), ready AS (
    -- An ordered key waits for the key's earlier pending delivery.
    SELECT pair.*, pair.free AND (pair.ordering_key IS NULL OR (
             row_number() OVER (PARTITION BY pair.endpoint_id, pair.ordering_key ORDER BY pair.event_id) = 1
             AND NOT EXISTS (SELECT 1 FROM webhook.delivery p
                              WHERE p.endpoint_id = pair.endpoint_id AND p.ordering_key = pair.ordering_key
                                AND p.status = 'pending' AND p.ordering_key IS NOT NULL))) AS ok
      FROM pair
  ), capped AS (
    SELECT ready.*, ready.ok AND row_number() OVER (PARTITION BY ready.endpoint_id, ready.ok ORDER BY ready.event_id)
                                 <= ready.room AS ok2
      FROM ready
  ), ranked AS (
    SELECT capped.*, capped.ok2 AND row_number() OVER (PARTITION BY capped.ok2 ORDER BY capped.event_id, capped.endpoint_id)
                                    <= lease_max AS lease
      FROM capped
  ), ins AS (
    INSERT INTO webhook.delivery (event_id, endpoint_id, ordering_key, next_attempt_at, claim_token, leased_by)
    SELECT r.event_id, r.endpoint_id, r.ordering_key,
           CASE WHEN r.lease THEN lease_until ELSE now() END,
           CASE WHEN r.lease THEN 1 ELSE 0 END,
           CASE WHEN r.lease THEN worker END
      FROM ranked r
     ORDER BY r.event_id, r.endpoint_id
    ON CONFLICT (event_id, endpoint_id) DO NOTHING
    RETURNING webhook.delivery.id, webhook.delivery.claim_token
  )
  SELECT count(*), max(ev.id), (SELECT count(*) FROM ins),
         coalesce((SELECT array_agg(ins.id ORDER BY ins.id) FROM ins WHERE ins.claim_token = 1), '{}')
    INTO routed, last, made, leased FROM ev;
  IF routed < max_events OR last >= hi THEN
    UPDATE webhook.router SET prev_snap = cur, cur_snap = NULL, last_id = 0, hi_id = 0;
  ELSE
    UPDATE webhook.router SET cur_snap = cur, last_id = last, hi_id = hi;
  END IF;
END
$$;

-- Whether this transaction may route now: one router at a time (others
-- simply skip; several webhookd may run), and the routing snapshot must be
-- taken before the transaction has an xid, or its own later events would
-- fall into a window already closed.
CREATE FUNCTION webhook._route_begin() RETURNS pg_snapshot
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
    RAISE EXCEPTION 'webhook.route() and webhook.claim() must run before their transaction writes anything'
      USING ERRCODE = 'active_sql_transaction',
            HINT = 'Call it as the first statement of a transaction (or in autocommit mode).';
  END IF;
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'webhook.route() and webhook.claim() need READ COMMITTED isolation'
      USING ERRCODE = 'active_sql_transaction';
  END IF;
  IF NOT pg_try_advisory_xact_lock(7347627150212) THEN
    RETURN NULL;
  END IF;
  -- pg_current_snapshot() is volatile: evaluated now, after the lock.
  RETURN pg_current_snapshot();
END
$$;

CREATE FUNCTION webhook.route(max_events int DEFAULT 10000) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Queue statements are short: compiling them (the planner's cost estimates
-- on these tables are often far off) or re-planning them per call would
-- cost more than running them.
SET jit = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE snap pg_snapshot := webhook._route_begin();
BEGIN
  IF snap IS NULL THEN
    RETURN 0;
  END IF;
  RETURN (webhook._route(max_events, snap, NULL, 0, '{}', '{}', NULL)).routed;
END
$$;

-- Due deliveries (retries, expired leases, deliveries routed while their
-- endpoint was busy), oldest first, locked, at most ep_room[i] for endpoint
-- ep_ids[i] (endpoints not listed get none). Fair by construction: each
-- endpoint's own queue is read from its head (delivery_due leads with
-- endpoint_id), so one endpoint's deep backlog or pile of retries costs the
-- others nothing; a global "oldest first" scan would walk past every row of
-- an excluded endpoint on each claim and hand whole batches to whichever
-- endpoint fell behind first.
-- The planner settings pin those ordered index scans: on this busy table the
-- statistics are often stale (an empty table at the last ANALYZE, 50,000 due
-- rows now), and the bitmap scan + sort it then picks reads every due row on
-- each claim (see BENCHMARKS.md).
CREATE FUNCTION webhook._due(max_deliveries int, t_now timestamptz, ep_ids bigint[], ep_room int[]) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
SET enable_bitmapscan = off SET enable_seqscan = off AS $$
DECLARE ids bigint[];
BEGIN
  WITH due AS MATERIALIZED (
    SELECT h.id, h.next_attempt_at
      FROM unnest(ep_ids, ep_room) AS ep(id, room)
     CROSS JOIN LATERAL (
       -- An ordered key waits for its earlier pending delivery. Blocked rows
       -- are looked at only within 4 × the endpoint's room, so a hot key's
       -- backlog bounds the work per claim.
       SELECT q.id, q.next_attempt_at FROM (
         SELECT d.id, d.next_attempt_at, d.ordering_key
           FROM webhook.delivery d
          WHERE d.endpoint_id = ep.id AND d.status = 'pending' AND d.next_attempt_at <= t_now
          ORDER BY d.next_attempt_at, d.id
          LIMIT least(ep.room, max_deliveries) * 4) q
        WHERE q.ordering_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM webhook.delivery p
               WHERE p.endpoint_id = ep.id AND p.ordering_key = q.ordering_key
                 AND p.status = 'pending' AND p.ordering_key IS NOT NULL AND p.id < q.id)
        ORDER BY q.next_attempt_at, q.id
        LIMIT least(ep.room, max_deliveries)) h
     WHERE ep.room > 0
  ), picked AS (
    -- Locked by key lookups of the chosen ids: joined to `due` instead, a
    -- stale row estimate made the planner re-run `due` for every due row
    -- of the table (150–300 ms per claim under B6). "Not succeeded or dead"
    -- is "pending" (the CHECK allows nothing else) in a form that cannot
    -- match the partial indexes' predicate: with `status = 'pending'` the
    -- plan cached while the table was small walked all of delivery_due on
    -- every claim, a million entries per claim under a 1M backlog.
    SELECT d.id
      FROM webhook.delivery d
     WHERE d.id = ANY (ARRAY(SELECT due.id FROM due ORDER BY due.next_attempt_at, due.id LIMIT max_deliveries))
       AND d.status NOT IN ('succeeded', 'dead') AND d.next_attempt_at <= t_now
     FOR UPDATE OF d SKIP LOCKED
  )
  SELECT coalesce(array_agg(picked.id), '{}') INTO ids FROM picked;
  RETURN ids;
END
$$;

-- ep_room (per endpoint of ep_ids) less the deliveries in `taken`.
-- PL/pgSQL, not SQL: its plan is cached for the session, where a SQL
-- function's query would be planned again on every claim.
CREATE FUNCTION webhook._room_left(ep_ids bigint[], ep_room int[], taken bigint[]) RETURNS int[]
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT coalesce(array_agg(u.n - coalesce(t.n, 0)::int ORDER BY u.i), '{}')
            FROM unnest(ep_ids, ep_room) WITH ORDINALITY AS u(id, n, i)
            LEFT JOIN (SELECT d.endpoint_id, count(*) AS n FROM webhook.delivery d
                        WHERE d.id = ANY (taken) GROUP BY d.endpoint_id) t ON t.endpoint_id = u.id);
END
$$;

-- Claim due deliveries: lease them and return everything needed to send
-- them, signed, so the dispatcher never reads a secret. Due deliveries come
-- first (they are older), then newly committed events, routed and leased in
-- one step.
-- The request's headers are the endpoint's own (`headers`) plus the
-- Standard Webhooks ones: webhook-id is event_id, webhook-timestamp is
-- signed_at, webhook-signature is signature; content-type and user-agent
-- are the dispatcher's. Assembling the whole header object here cost a
-- claim about 20 µs per delivery, on the one session every claim goes
-- through (BENCHMARKS.md).
CREATE FUNCTION webhook.claim(
    max_deliveries    int DEFAULT 100,
    lease             interval DEFAULT '60 seconds',
    worker            text DEFAULT NULL,
    exclude_endpoints bigint[] DEFAULT '{}',
    idle_hint_ms      int DEFAULT 0,
    -- At most cap_counts[i] deliveries for endpoint cap_endpoints[i] (the
    -- room the dispatcher has left for it); others up to max_in_flight.
    cap_endpoints     bigint[] DEFAULT '{}',
    cap_counts        int[] DEFAULT '{}',
    -- Bytes of event bodies one claim returns at most (each body counted
    -- once, however many deliveries share it); the first event always goes,
    -- so an event larger than this is still delivered, alone.
    max_body_bytes    bigint DEFAULT 16777216
) RETURNS TABLE (delivery_id bigint, claim_token int, event_id bigint, endpoint_id bigint,
                 attempt int, url text, headers jsonb, signature text, signed_at bigint, body text,
                 timeout_ms int, max_in_flight int, rate_limit int)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- jit and plan cache: as for route(). Every join here is a handful of rows
-- looked up by key; stale statistics must not turn one into a merge join
-- walking the outbox, or a key lookup into a sequential scan.
SET jit = off SET enable_mergejoin = off SET enable_hashjoin = off SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan AS $$
-- claimed: everything this call leases, due deliveries first, then fresh ones.
DECLARE ts bigint; t_now timestamptz; claimed bigint[]; room int; snap pg_snapshot;
        ep_ids bigint[]; ep_room int[]; fanout numeric; want int; r record; over_cap bigint[];
BEGIN
  IF max_body_bytes IS NULL OR max_body_bytes <= 0 THEN
    RAISE EXCEPTION 'max_body_bytes must be positive'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'It bounds the event bodies one claim returns, in bytes; the default is 16 MiB.';
  END IF;
  IF cardinality(cap_endpoints) IS DISTINCT FROM cardinality(cap_counts) THEN
    RAISE EXCEPTION 'cap_endpoints has % elements but cap_counts has %',
                    cardinality(cap_endpoints), cardinality(cap_counts)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass one count per endpoint id, in the same order.';
  END IF;
  -- Say "idle" before looking, so a commit racing with an empty claim still
  -- notifies (see wake.rs); cleared again below when work was found.
  IF idle_hint_ms > 0 THEN
    PERFORM webhook._set_idle(idle_hint_ms);
  END IF;
  snap := webhook._route_begin();
  -- Once, not per scanned row (clock_timestamp() is volatile).
  t_now := clock_timestamp();
  ts := extract(epoch FROM t_now)::bigint;
  -- How many deliveries each claimable endpoint may get: its max_in_flight,
  -- or less where the dispatcher says so; none when excluded or disabled.
  SELECT coalesce(array_agg(e.id ORDER BY e.id), '{}'),
         coalesce(array_agg(least(e.max_in_flight, coalesce(
                    (SELECT min(c.n) FROM unnest(cap_endpoints, cap_counts) AS c(id, n) WHERE c.id = e.id),
                    e.max_in_flight)) ORDER BY e.id), '{}')
    INTO ep_ids, ep_room
    FROM webhook.endpoint e
   WHERE e.enabled AND e.id <> ALL (coalesce(exclude_endpoints, '{}'));
  claimed := webhook._due(max_deliveries, t_now, ep_ids, ep_room);
  IF cardinality(claimed) > 0 THEN
    UPDATE webhook.delivery d
       SET next_attempt_at = t_now + lease, claim_token = d.claim_token + 1, leased_by = worker
     WHERE d.id = ANY (claimed);
    ep_room := webhook._room_left(ep_ids, ep_room, claimed);
  END IF;
  -- Route about as many events as their deliveries fill the room: routing
  -- `room` events for three endpoints would lease a third of what it
  -- creates and leave the rest to be found and leased again through the
  -- due queue. The first guess is every endpoint with room, then what the
  -- window actually fanned out to. When every endpoint is left out
  -- (paused), one pass still routes, leasing nothing: the events become
  -- pending deliveries, visible as each endpoint's backlog while it is down.
  -- When the rest are merely busy (their room used up by what the
  -- dispatcher holds, or by this claim) or the batch is full, nothing is
  -- routed: a claim comes again as soon as a request ends and routes
  -- straight into leases. Routed now, each of those deliveries would be
  -- written three times (created pending, leased through the due queue,
  -- recorded) instead of twice, which made a drain a third slower
  -- (BENCHMARKS.md). While that lasts webhookd calls route() about once a
  -- second, so a slow endpoint's backlog still shows as pending deliveries.
  IF snap IS NOT NULL THEN
    fanout := greatest(1, (SELECT count(*) FROM unnest(ep_room) AS u(n) WHERE u.n > 0));
    FOR i IN 1..3 LOOP
      room := least(max_deliveries - cardinality(claimed),
                    (SELECT coalesce(sum(u.n), 0) FROM unnest(ep_room) AS u(n) WHERE u.n > 0));
      IF room <= 0 THEN
        IF i = 1 AND max_deliveries > 0 AND cardinality(ep_ids) = 0 THEN
          PERFORM webhook._route(max_deliveries, snap, NULL, 0, '{}', '{}', NULL);
        END IF;
        EXIT;
      END IF;
      want := ceil(room::numeric / fanout)::int;
      SELECT * INTO r FROM webhook._route(want, snap, t_now + lease, room, ep_ids, ep_room, worker);
      claimed := claimed || r.leased;
      -- Go on only when the chunk was full (the window has more) and
      -- something could be leased. A short chunk ends its window; a window
      -- behind it waits for the next claim, which comes at once (a claim
      -- that found work is followed by another): calling _route again here
      -- cost every claim at low rates a second, empty routing pass.
      EXIT WHEN r.routed < want OR cardinality(r.leased) = 0;
      fanout := greatest(1, r.made::numeric / r.routed);
      ep_room := webhook._room_left(ep_ids, ep_room, r.leased);
    END LOOP;
  END IF;
  IF cardinality(claimed) = 0 THEN
    RETURN;
  END IF;
  -- The dispatcher's memory is bounded by its settings, not by payloads:
  -- events past max_body_bytes (in the order of their first delivery) are
  -- given back, due at once, for the next claim. octet_length() of a
  -- stored body reads its size without detoasting it.
  SELECT coalesce(array_agg(c.id), '{}') INTO over_cap
    FROM (SELECT d.id, d.event_id FROM webhook.delivery d WHERE d.id = ANY (claimed)) c
    JOIN (SELECT s.event_id, s.first_id,
                 sum(s.len) OVER (ORDER BY s.first_id) AS upto,
                 min(s.first_id) OVER () AS very_first
            FROM (SELECT d.event_id, min(d.id) AS first_id, max(octet_length(ev.body)) AS len
                    FROM webhook.delivery d JOIN webhook.event_log ev ON ev.id = d.event_id
                   WHERE d.id = ANY (claimed)
                   GROUP BY d.event_id) s) e ON e.event_id = c.event_id
   WHERE e.upto > max_body_bytes AND e.first_id > e.very_first;
  IF cardinality(over_cap) > 0 THEN
    UPDATE webhook.delivery d SET next_attempt_at = t_now, leased_by = NULL WHERE d.id = ANY (over_cap);
    claimed := ARRAY(SELECT x FROM unnest(claimed) AS x WHERE x <> ALL (over_cap));
  END IF;
  -- Each body once: on the first row of its event; later rows of the same
  -- event (other endpoints) carry NULL and share it.
  RETURN QUERY
  WITH sec AS (
    -- Each endpoint's signing secrets once per claim, newest first.
    SELECT s.endpoint_id, array_agg(s.secret ORDER BY s.id DESC) AS secrets
      FROM webhook.endpoint_secret s
     WHERE s.endpoint_id IN (SELECT x.endpoint_id FROM webhook.delivery x WHERE x.id = ANY (claimed))
       AND (s.expires_at IS NULL OR s.expires_at > now())
     GROUP BY s.endpoint_id
  )
  SELECT d.id, d.claim_token, d.event_id, d.endpoint_id, d.attempts + 1, ep.url, ep.headers,
         webhook._sign_all(sec.secrets, d.event_id::text, ts, ev.body), ts,
         CASE WHEN row_number() OVER (PARTITION BY d.event_id ORDER BY d.id) = 1 THEN ev.body END,
         ep.timeout_ms, ep.max_in_flight, ep.rate_limit
    FROM webhook.delivery d
    JOIN webhook.endpoint ep ON ep.id = d.endpoint_id
    JOIN webhook.event_log ev ON ev.id = d.event_id
    LEFT JOIN sec ON sec.endpoint_id = d.endpoint_id
   WHERE d.id = ANY (claimed)
   ORDER BY d.id;
  IF FOUND AND idle_hint_ms > 0 THEN
    PERFORM webhook._set_idle(0);
  END IF;
END
$$;

-- Record outcomes of a batch of attempts (arrays of equal length).
-- retry_at NULL on a failure means: no more attempts, the delivery is dead.
CREATE FUNCTION webhook.record(
    delivery_ids      bigint[],
    claim_tokens      int[],
    http_statuses     int[],
    errors            text[],
    durations_ms      double precision[],
    response_excerpts text[],
    retry_at          timestamptz[],
    worker            text DEFAULT NULL
) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- jit and plan cache: as for route(). Every delivery is found by its key
-- (see _due() for why the status test is spelt "not succeeded or dead"):
-- a plan cached while the table was small otherwise hash-joined the batch
-- against a scan of every delivery, or of every pending one, per call.
SET jit = off SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_bitmapscan = off
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE n int;
BEGIN
  WITH o AS (
    SELECT * FROM unnest(delivery_ids, claim_tokens, http_statuses, errors, durations_ms, response_excerpts, retry_at)
        AS o(delivery_id, claim_token, http_status, error, duration_ms, excerpt, retry_at)
  ), logged AS (
    INSERT INTO webhook.attempt_log (delivery_id, event_id, endpoint_id, attempt, http_status, duration_ms, error, response_excerpt, worker)
    SELECT o.delivery_id, d.event_id, d.endpoint_id, d.attempts + 1, o.http_status, o.duration_ms, o.error, o.excerpt, record.worker
      FROM o JOIN webhook.delivery d ON d.id = o.delivery_id
     ORDER BY o.delivery_id
  ), upd AS (
    -- Only the holder of the current lease changes the delivery's state.
    UPDATE webhook.delivery d
       SET attempts = d.attempts + 1,
           last_http_status = o.http_status,
           last_error = o.error,
           last_attempt_at = now(),
           leased_by = NULL,
           status = CASE WHEN o.http_status BETWEEN 200 AND 299 THEN 'succeeded'
                         WHEN o.retry_at IS NULL THEN 'dead' ELSE 'pending' END,
           next_attempt_at = CASE WHEN o.http_status BETWEEN 200 AND 299 OR o.retry_at IS NULL
                                  THEN d.next_attempt_at ELSE o.retry_at END,
           completed_at = CASE WHEN o.http_status BETWEEN 200 AND 299 OR o.retry_at IS NULL THEN now() END
      FROM o
     WHERE d.id = o.delivery_id AND d.claim_token = o.claim_token AND d.status NOT IN ('succeeded', 'dead')
    RETURNING d.id
  )
  SELECT count(*) INTO n FROM upd;
  -- 410 Gone: the receiver asks us to stop. A statement of its own, run
  -- only then: as a part of the one above, its plan was set up per batch.
  IF 410 = ANY (http_statuses) THEN
    UPDATE webhook.endpoint ep
       SET enabled = false, disabled_reason = 'receiver answered 410 Gone at ' || now(), updated_at = now()
     WHERE ep.enabled AND ep.id IN (SELECT d.endpoint_id
                                      FROM unnest(delivery_ids, http_statuses) AS o(delivery_id, http_status)
                                      JOIN webhook.delivery d ON d.id = o.delivery_id
                                     WHERE o.http_status = 410);
  END IF;
  RETURN n;
END
$$;

-- Give back leases without an attempt (graceful shutdown).
CREATE FUNCTION webhook.release(delivery_ids bigint[], claim_tokens int[]) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Key lookups only, as in record().
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE n int;
BEGIN
  UPDATE webhook.delivery d SET next_attempt_at = now(), leased_by = NULL
    FROM unnest(delivery_ids, claim_tokens) AS r(id, token)
   WHERE d.id = r.id AND d.claim_token = r.token AND d.status NOT IN ('succeeded', 'dead');
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

-- ---------------------------------------------------------------------------
-- Repair
-- ---------------------------------------------------------------------------

CREATE FUNCTION webhook.redeliver(event_id bigint, endpoint_id bigint DEFAULT NULL) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE n int; m int;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM webhook.event_log e WHERE e.id = redeliver.event_id) THEN
    RAISE EXCEPTION 'event % does not exist', coalesce(event_id::text, 'NULL')
      USING ERRCODE = 'no_data_found', HINT = 'SELECT id, event_type FROM webhook.events lists the events.';
  END IF;
  IF endpoint_id IS NOT NULL THEN
    PERFORM webhook._endpoint(endpoint_id);
  END IF;
  UPDATE webhook.delivery d
     SET status = 'pending', attempts = 0, next_attempt_at = now(), completed_at = NULL, leased_by = NULL,
         claim_token = d.claim_token + 1
   WHERE d.event_id = redeliver.event_id
     AND (redeliver.endpoint_id IS NULL OR d.endpoint_id = redeliver.endpoint_id);
  GET DIAGNOSTICS n = ROW_COUNT;
  -- An endpoint that had no delivery of this event (created later, say).
  IF endpoint_id IS NOT NULL AND n = 0 THEN
    INSERT INTO webhook.delivery (event_id, endpoint_id, ordering_key)
    SELECT e.id, ep.id, CASE WHEN ep.ordered THEN e.ordering_key END
      FROM webhook.event_log e, webhook.endpoint ep
     WHERE e.id = redeliver.event_id AND ep.id = redeliver.endpoint_id;
    GET DIAGNOSTICS m = ROW_COUNT;
    n := n + m;
  END IF;
  RETURN n;
END
$$;

CREATE FUNCTION webhook.replay(endpoint_id bigint, since timestamptz) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE n int;
BEGIN
  PERFORM webhook._endpoint(endpoint_id);
  IF since IS NULL THEN
    RAISE EXCEPTION 'since must not be NULL' USING ERRCODE = 'null_value_not_allowed',
      HINT = 'Use ''-infinity'' to replay every dead delivery of the endpoint.';
  END IF;
  UPDATE webhook.delivery d
     SET status = 'pending', attempts = 0, next_attempt_at = now(), completed_at = NULL, leased_by = NULL,
         claim_token = d.claim_token + 1
   WHERE d.endpoint_id = replay.endpoint_id AND d.status = 'dead' AND d.created_at >= since;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

-- Delete finished events older than `retention` with their deliveries and attempts.
CREATE FUNCTION webhook.prune(retention interval DEFAULT '7 days') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE n bigint; horizon bigint;
BEGIN
  SELECT pg_snapshot_xmin(prev_snap)::text::bigint INTO horizon FROM webhook.router;
  WITH old AS (
    SELECT e.id FROM webhook.event_log e
     WHERE e.created_at < now() - retention AND e.txid < horizon
       AND NOT EXISTS (SELECT 1 FROM webhook.delivery d WHERE d.event_id = e.id AND d.status = 'pending')
  ), a AS (
    DELETE FROM webhook.attempt_log x USING old WHERE x.event_id = old.id
  ), d AS (
    DELETE FROM webhook.delivery x USING old WHERE x.event_id = old.id
  )
  DELETE FROM webhook.event_log x USING old WHERE x.id = old.id;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

-- ---------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------

REVOKE EXECUTE ON FUNCTION webhook.emit(text, jsonb, text), webhook._capture_row() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION webhook.route(int), webhook.claim(int, interval, text, bigint[], int, bigint[], int[], bigint),
  webhook._route(int, pg_snapshot, timestamptz, int, bigint[], int[], text), webhook._route_begin(),
  webhook._window_bounds(pg_snapshot, pg_snapshot), webhook._window_chunk(pg_snapshot, pg_snapshot, bigint, bigint, int),
  webhook._due(int, timestamptz, bigint[], int[]), webhook._room_left(bigint[], int[], bigint[]),
  webhook.record(bigint[], int[], int[], text[], double precision[], text[], timestamptz[], text),
  webhook.release(bigint[], int[]), webhook.prune(interval), webhook._set_idle(bigint)
  FROM PUBLIC;

-- The dispatcher's privileges: claim, record, release, route and read the
-- delivery views, but never SELECT a secret.
CREATE FUNCTION webhook.grant_dispatcher(role regrole) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA webhook TO %s', role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION webhook.route(int), webhook.claim(int, interval, text, bigint[], int, bigint[], int[], bigint), '
                 'webhook.record(bigint[], int[], int[], text[], double precision[], text[], timestamptz[], text), '
                 'webhook.release(bigint[], int[]), webhook.prune(interval), webhook._set_idle(bigint) TO %s', role);
  EXECUTE format('GRANT SELECT ON webhook.deliveries, webhook.endpoint_health, webhook.attempts TO %s', role);
END
$$;

-- Emitting custom events: webhook.emit(). Every subscribed endpoint signs
-- what is emitted, so this is granted to the roles that should speak for
-- the application, never to the dispatcher.
CREATE FUNCTION webhook.grant_emitter(role regrole) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA webhook TO %s', role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION webhook.emit(text, jsonb, text) TO %s', role);
END
$$;

-- Tracking tables: webhook.track() / untrack() on tables the role may add
-- triggers to (PostgreSQL's TRIGGER privilege, e.g. their owner).
CREATE FUNCTION webhook.grant_tracker(role regrole) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA webhook TO %s', role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION webhook._capture_row() TO %s', role);
END
$$;

-- Managing endpoints: create, change, delete, read and rotate secrets,
-- test, redeliver and replay, and read every view. Such a role can read
-- every secret, so it is as trusted as the receivers' owners.
CREATE FUNCTION webhook.grant_manager(role regrole) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA webhook TO %s', role);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON webhook.endpoint, webhook.endpoint_secret, '
                 'webhook.delivery, webhook.attempt_log TO %s', role);
  EXECUTE format('GRANT SELECT, INSERT ON webhook.event_log TO %s', role);
  EXECUTE format('GRANT USAGE ON SEQUENCE webhook.event_id_seq TO %s', role);
  EXECUTE format('GRANT SELECT ON webhook.events, webhook.deliveries, webhook.attempts, webhook.endpoint_health, '
                 'webhook.tracked_tables TO %s', role);
END
$$;

REVOKE EXECUTE ON FUNCTION webhook.grant_dispatcher(regrole), webhook.grant_emitter(regrole),
  webhook.grant_tracker(regrole), webhook.grant_manager(regrole) FROM PUBLIC;
