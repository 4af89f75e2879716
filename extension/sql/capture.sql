-- Capture: track()/untrack() install row triggers that write the outbox
-- (the trigger function is Rust, capture.rs); emit() writes custom events.

-- Not executable by PUBLIC (see Privileges): a trigger using it writes
-- events of the type its arguments name, so installing one is granted
-- (webhook.grant_tracker) like emitting is. PostgreSQL checks EXECUTE when
-- the trigger is created, not when it fires: anyone who may write a
-- tracked table still produces its events.
-- native:begin (the portable edition's is PL/pgSQL: portable/capture.sql)
CREATE FUNCTION webhook._capture_row() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'webhook_capture_row';
-- native:end

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
COMMENT ON VIEW webhook.tracked_tables IS
  'What is captured: one row per tracked table and event prefix, with its operations and the triggers that capture them.';

-- native:begin (event triggers need a superuser; the portable edition
-- is no extension to drop, and writes the outbox through the executor)
-- DROP EXTENSION pg_webhook removes the capture triggers it installed on
-- user tables (they depend on the extension's trigger function, so without
-- this it would need CASCADE). ddl_command_start cannot see which extension
-- is being dropped; the statement text can.
-- As a superuser it would also delete every endpoint, secret and
-- undelivered event without CASCADE, and it is what an ORM's reverse
-- migration of CREATE EXTENSION runs: while there are endpoints or
-- pending deliveries it is refused unless webhook.confirm_drop says it is
-- meant.
CREATE FUNCTION webhook._on_drop_extension() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; endpoints bigint; pending bigint;
BEGIN
  IF current_query() !~* '\mpg_webhook\M' THEN
    RETURN;
  END IF;
  IF lower(coalesce(current_setting('webhook.confirm_drop', true), '')) NOT IN ('on', 'true', 'yes', '1') THEN
    SELECT count(*) INTO endpoints FROM webhook.endpoint;
    SELECT count(*) INTO pending FROM webhook.delivery WHERE status = 'pending';
    IF endpoints > 0 OR pending > 0 THEN
      RAISE EXCEPTION 'DROP EXTENSION pg_webhook would delete % endpoint(s), their secrets, and % undelivered deliveries', endpoints, pending
        USING ERRCODE = 'dependent_objects_still_exist',
              DETAIL = 'Dropping the extension drops schema webhook''s tables with it, whoever runs it; nothing is kept to deliver later.',
              HINT = 'If that is meant, confirm it in the same session: SET webhook.confirm_drop = on; then DROP EXTENSION pg_webhook. (An ORM migration that creates the extension should not drop it when reversed.)';
    END IF;
  END IF;
  PERFORM set_config('webhook._changing_captures', 'on', true);
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
-- or one of its partitions when it is created (the insert refuses it too,
-- should one exist anyway).
-- Runs for every role's CREATE INDEX: it reads catalogs only, by name, so
-- it needs no privilege on schema webhook.
CREATE FUNCTION webhook._guard_outbox_index() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE bad text;
BEGIN
  SELECT ic.relname INTO bad
    FROM pg_event_trigger_ddl_commands() cmd
    JOIN pg_index i ON i.indexrelid = cmd.objid OR i.indrelid = cmd.objid
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
   WHERE cmd.classid = 'pg_class'::regclass AND n.nspname = 'webhook'
     AND (t.relname = 'event_log' OR t.relname ~ '^event_log_p[0-9]+$')
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
-- native:end

-- No DDL removes or disables a capture while its table stays: an ORM's
-- migration (Django's RemoveField is always DROP COLUMN ... CASCADE) would
-- otherwise drop the capture triggers that depend on a column of their
-- condition, with a NOTICE nobody reads, and those events would simply
-- stop. track() and untrack() change captures under the transaction-local
-- setting webhook._changing_captures; any other statement that would drop
-- a capture trigger, or a column a capture's `columns` lists, while the
-- table stays is refused and says how to change the capture instead.
-- Dropping the table itself (or its schema) takes its captures, as before;
-- detaching a partition removes the partition's cloned triggers
-- internally, which event triggers do not see (nor need to).
CREATE FUNCTION webhook._guard_captures_drop() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE hit record; cause text; ops text;
BEGIN
  IF current_setting('webhook._changing_captures', true) = 'on' THEN
    RETURN;
  END IF;
  -- A capture trigger dropped with its table still there.
  SELECT d.address_names[3] AS trigger_name, c.oid::regclass AS rel, d.original,
         split_part(d.address_names[3], ':', 2) AS prefix
    INTO hit
    FROM pg_event_trigger_dropped_objects() d
    JOIN pg_namespace n ON n.nspname = d.address_names[1]
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = d.address_names[2]
   WHERE d.object_type = 'trigger' AND d.address_names[3] LIKE 'webhook\_capture\_%:%'
   ORDER BY d.original DESC
   LIMIT 1;
  IF FOUND THEN
    IF hit.original THEN
      RAISE EXCEPTION 'trigger % captures events of %: it is not dropped by hand', to_json(hit.trigger_name::text), hit.rel
        USING ERRCODE = 'dependent_objects_still_exist',
              HINT = format('To stop capturing, call SELECT webhook.untrack(%L, %L); to change what is captured, call webhook.track() again.',
                            hit.rel::text, hit.prefix);
    END IF;
    SELECT string_agg(d.object_type || ' ' || d.object_identity, ', ' ORDER BY d.object_identity) INTO cause
      FROM pg_event_trigger_dropped_objects() d WHERE d.original;
    -- The capture's operations: its triggers dropped here and any left.
    SELECT '{' || string_agg(DISTINCT split_part(substr(x.tgname, length('webhook_capture_') + 1), ':', 1), ',') || '}'
      INTO ops
      FROM (SELECT d.address_names[3] AS tgname FROM pg_event_trigger_dropped_objects() d
             WHERE d.object_type = 'trigger' AND d.address_names[3] LIKE 'webhook\_capture\_%:' || hit.prefix
            UNION ALL
            SELECT t.tgname FROM pg_trigger t
             WHERE t.tgrelid = hit.rel AND t.tgname LIKE 'webhook\_capture\_%:' || hit.prefix) x;
    RAISE EXCEPTION '% would remove the capture % of %', tg_tag, to_json(hit.prefix), hit.rel
      USING ERRCODE = 'dependent_objects_still_exist',
            DETAIL = format('The capture trigger %2$s depends on %1$s (its WHEN clause, the capture''s condition, uses it); dropping that with CASCADE would drop the trigger, and those events would stop.',
                            coalesce(cause, 'what is dropped'), to_json(hit.trigger_name::text)),
            HINT = format('Change the capture first, in the same transaction: SELECT webhook.track(%L, %L, event_prefix => %L, condition => ...) with a condition that does not use it (or without one); then drop it. To stop capturing: SELECT webhook.untrack(%L, %L).',
                          hit.rel::text, ops, hit.prefix, hit.rel::text, hit.prefix);
  END IF;
  -- A column a capture's `columns` lists (the capture trigger has no
  -- dependency on it, so it stays, and would capture without it).
  SELECT t.tgrelid::regclass AS rel, split_part(t.tgname, ':', 2) AS prefix, d.object_identity AS col,
         '{' || (SELECT string_agg(split_part(substr(o.tgname, length('webhook_capture_') + 1), ':', 1), ',' ORDER BY o.tgname)
                   FROM pg_trigger o
                  WHERE o.tgrelid = t.tgrelid AND o.tgname LIKE 'webhook\_capture\_%:' || split_part(t.tgname, ':', 2)) || '}' AS ops
    INTO hit
    FROM pg_event_trigger_dropped_objects() d
    JOIN pg_trigger t ON t.tgrelid = d.objid AND t.tgname LIKE 'webhook\_capture\_%:%' AND t.tgparentid = 0
   WHERE d.object_type = 'table column'
     -- The trigger's third argument, its payload column numbers, read
     -- in place: the guard runs for every role's DDL, and may use nothing
     -- of schema webhook a role without grants could not.
     AND d.objsubid::text = ANY (string_to_array((string_to_array(encode(t.tgargs, 'escape'), '\000'))[3], ','))
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION '% would drop column % that the capture % of % sends', tg_tag, hit.col, to_json(hit.prefix), hit.rel
      USING ERRCODE = 'dependent_objects_still_exist',
            DETAIL = 'The capture''s columns list it: its events would change shape without a word to their receivers.',
            HINT = format('Change the capture first, in the same transaction: SELECT webhook.track(%L, %L, event_prefix => %L, columns => ...) without the column; then drop it. To stop capturing: SELECT webhook.untrack(%L, %L).',
                          hit.rel::text, hit.ops, hit.prefix, hit.rel::text, hit.prefix);
  END IF;
END
$$;

-- ALTER TABLE ... DISABLE TRIGGER (ALL, USER or a capture's name), or
-- ENABLE REPLICA (fires only under session_replication_role = replica),
-- would stop a capture without removing it: refused the same way.
CREATE FUNCTION webhook._guard_captures_disable() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE hit record;
BEGIN
  IF current_setting('webhook._changing_captures', true) = 'on' THEN
    RETURN;
  END IF;
  SELECT t.tgname, t.tgrelid::regclass AS rel, split_part(t.tgname, ':', 2) AS prefix
    INTO hit
    FROM pg_event_trigger_ddl_commands() cmd
    JOIN pg_trigger t ON t.tgrelid = cmd.objid OR t.tgrelid IN (SELECT p.relid FROM pg_partition_tree(cmd.objid) p)
   WHERE cmd.classid = 'pg_class'::regclass AND cmd.objsubid = 0
     AND t.tgname LIKE 'webhook\_capture\_%:%' AND t.tgenabled IN ('D', 'R')
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'ALTER TABLE would stop the capture % of %', to_json(hit.prefix), hit.rel
      USING ERRCODE = 'object_in_use',
            DETAIL = format('The capture trigger %s would no longer fire, and those events would stop.', to_json(hit.tgname::text)),
            HINT = format('Disable your own triggers by name, not ALL or USER, and enable this one again; to stop capturing, call SELECT webhook.untrack(%L, %L).',
                          hit.rel::text, hit.prefix);
  END IF;
END
$$;

-- Event triggers need a superuser (or, on some managed services, its
-- stand-in role). The native extension is always installed by one; the
-- portable edition installed by an ordinary owner cannot make them, and
-- says so: DDL is then not guarded (docs/capture.md, "Migrations").
DO $$
BEGIN
  CREATE EVENT TRIGGER webhook_guard_captures_drop ON sql_drop
    EXECUTE FUNCTION webhook._guard_captures_drop();
  CREATE EVENT TRIGGER webhook_guard_captures_disable ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION webhook._guard_captures_disable();
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING 'pg_webhook: % may not create event triggers, so no DDL is guarded: a migration that drops a column a capture uses (DROP COLUMN ... CASCADE) or disables its triggers stops those events silently', current_user
    USING HINT = 'Install as a superuser (or the managed service''s role that may create event triggers) to have such DDL refused; until then, change captures with webhook.track() before dropping what they use.';
END
$$;

-- Argument n (from 1) of a trigger's pg_trigger.tgargs, each argument
-- ended by a NUL byte, in the database's encoding; NULL if it has fewer.
CREATE FUNCTION webhook._trigger_argument(args bytea, n int) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  WITH ends AS (
    SELECT i, row_number() OVER (ORDER BY i) AS k
      FROM generate_series(1, length(args)) AS i WHERE get_byte(args, i - 1) = 0
  )
  SELECT convert_from(substring(args FROM coalesce(prev.i, 0) + 1 FOR this.i - coalesce(prev.i, 0) - 1),
                      getdatabaseencoding())
    FROM ends this LEFT JOIN ends prev ON prev.k = this.k - 1
   WHERE this.k = n
$$;

-- The scope of a table's ordering keys (capture.rs CaptureArgs): what its
-- captures were given by track(), NULL when it has none (or only 0.1.0's,
-- which scope by the table's name now).
-- (PL/pgSQL: the portable edition makes _capture_row after this file.)
CREATE FUNCTION webhook._capture_scope(relation regclass) RETURNS text
LANGUAGE plpgsql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT webhook._trigger_argument(t.tgargs, 4) FROM pg_trigger t
           WHERE t.tgrelid = relation AND t.tgfoid = 'webhook._capture_row'::regproc AND t.tgnargs >= 4
             AND t.tgparentid = 0
           ORDER BY t.tgname LIMIT 1);
END
$$;

CREATE FUNCTION webhook.untrack(relation regclass, event_prefix text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE trig text; guarded text := current_setting('webhook._changing_captures', true);
BEGIN
  IF relation IS NULL THEN
    RAISE EXCEPTION 'relation must not be NULL' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  PERFORM set_config('webhook._changing_captures', 'on', true);
  FOR trig IN SELECT tgname FROM pg_trigger
               WHERE tgrelid = relation AND tgname LIKE 'webhook\_capture\_%'
                 AND (event_prefix IS NULL OR split_part(tgname, ':', 2) = event_prefix) LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', trig, relation);
  END LOOP;
  PERFORM set_config('webhook._changing_captures', coalesce(guarded, ''), true);
END
$$;
COMMENT ON FUNCTION webhook.untrack(regclass, text) IS
  'Stop capturing a table: every event prefix, or only event_prefix.';

CREATE FUNCTION webhook.track(
    relation     regclass,
    events       text[] DEFAULT '{insert,update,delete}',
    event_prefix text DEFAULT NULL,
    condition    text DEFAULT NULL,
    columns      text[] DEFAULT NULL,
    skip_unchanged boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rel       record;
  op        text;
  ops       text[];
  prefix    text;
  cols      text;
  col       text;
  att       record;
  when_sql  text;
  msg       text;
  state     text;
  scope     text;
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
  -- Payloads are JSON, which is UTF-8 (RFC 8259), and the native capture
  -- writes a row's text as such.
  IF getdatabaseencoding() <> 'UTF8' THEN
    RAISE EXCEPTION 'tables of a database in encoding % cannot be tracked', getdatabaseencoding()
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Captured rows are written as JSON, in UTF-8: use a database created WITH ENCODING ''UTF8'' (emit() works in any encoding).';
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
  IF webhook._event_type_reserved(prefix) THEN
    RAISE EXCEPTION 'event prefix % is reserved', quote_literal(prefix)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Event types webhook.* are pg_webhook''s own (webhook.endpoint.failing, ...); pass another event_prefix.';
  END IF;
  IF NOT webhook._event_type_ok(prefix || '.insert') OR length(prefix) > 40 THEN
    RAISE EXCEPTION 'invalid event prefix %', quote_literal(prefix)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Event prefixes use letters, digits, _ and -, in dot-separated parts (shop.orders), at most 40 characters; pass event_prefix for tables with other characters in their names.';
  END IF;

  -- The ordering key is the table's primary key as it is when a row is
  -- captured (capture.rs; a migration may change it), NULL without one:
  -- such events carry no ordering key and are delivered unordered.
  IF NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = relation AND i.indisprimary) THEN
    RAISE NOTICE 'table % has no primary key: its events carry no ordering key', relation
      USING HINT = 'Ordered endpoints deliver them without per-row ordering. Add a primary key to order them.';
  END IF;

  cols := '';
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
    END LOOP;
  END IF;

  -- Ordering keys are scoped by their table: `<scope>:<primary key>`
  -- (capture.rs). The scope is the one the table's captures have, so
  -- that re-tracking it (a migration changing columns or a condition) or
  -- renaming it keeps each row's events in one queue; else the table's
  -- name now, with its oid when another table's captures keep that name
  -- (one renamed away).
  scope := webhook._capture_scope(relation);
  IF scope IS NULL THEN
    scope := rel.nspname || '.' || rel.relname;
    IF EXISTS (SELECT 1 FROM pg_trigger t
                WHERE t.tgfoid = 'webhook._capture_row'::regproc AND t.tgrelid <> relation AND t.tgnargs >= 4
                  AND webhook._trigger_argument(t.tgargs, 4) = scope) THEN
      scope := scope || '#' || relation::oid;
    END IF;
  END IF;

  PERFORM webhook.untrack(relation, prefix);
  FOREACH op IN ARRAY ops LOOP
    when_sql := NULL;
    -- Only the condition is a WHEN clause: PostgreSQL makes a trigger
    -- depend on every column its WHEN uses, so a migration that retypes a
    -- column of `columns` would be refused. Whether an update changed one
    -- of them is decided by the capture function (capture.rs).
    IF condition IS NOT NULL THEN
      when_sql := '(' || condition || ')';
    END IF;
    BEGIN
      -- A fifth argument for updates of every column that skip no-op
      -- ones (capture.rs); with `columns` they are skipped already.
      EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s FOR EACH ROW %s EXECUTE FUNCTION webhook._capture_row(%L, %L, %L, %L%s)',
                     'webhook_capture_' || op || ':' || prefix, upper(op), relation,
                     CASE WHEN when_sql IS NULL THEN '' ELSE 'WHEN (' || when_sql || ')' END,
                     prefix || '.' || op, '', cols, scope,
                     CASE WHEN op = 'update' AND cols = '' AND skip_unchanged THEN ', ''skip_unchanged''' ELSE '' END);
    EXCEPTION WHEN syntax_error OR undefined_column OR undefined_function OR datatype_mismatch
                   OR invalid_object_definition OR feature_not_supported OR undefined_table
                   OR ambiguous_column OR invalid_text_representation OR grouping_error THEN
      GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
      RAISE EXCEPTION 'invalid condition for % events on %: %', op, relation, msg
        USING ERRCODE = state,
              HINT = 'condition is a boolean SQL expression over NEW (insert, update) and OLD (update, delete), like a trigger''s WHEN clause; restrict events when it uses only one of them. It is read with search_path = pg_catalog, pg_temp: schema-qualify your own functions, types and operators (public.is_vip(NEW.customer_id), OPERATOR(public.=)).';
    END;
  END LOOP;
END
$$;
COMMENT ON FUNCTION webhook.track(regclass, text[], text, text, text[], boolean) IS
  'Capture a table''s row changes as events <prefix>.<op> in the writing transaction, optionally filtered (condition), projected (columns) and without no-op updates (skip_unchanged).';

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
  IF webhook._event_type_reserved(event_type) THEN
    RAISE EXCEPTION 'event type % is reserved', quote_literal(event_type)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Event types webhook.* are pg_webhook''s own (webhook.endpoint.failing, ...); choose another prefix.';
  END IF;
  IF payload IS NULL THEN
    RAISE EXCEPTION 'payload must not be NULL'
      USING ERRCODE = 'null_value_not_allowed', HINT = 'Pass ''{}''::jsonb for an event without data.';
  END IF;
  body := '{"type":' || to_json(event_type)::text || ',"timestamp":"' || webhook._rfc3339(ts)
          || '","data":' || payload::text || '}';
  PERFORM webhook._check_event_size(event_type, octet_length(body));
  INSERT INTO webhook.event_log (event_type, body, ordering_key, created_at, traceparent)
  VALUES (event_type, body, webhook._ordering_key(ordering_key), ts, webhook._traceparent())
  RETURNING event_log.id INTO id;
  PERFORM webhook._wrote_events();
  RETURN id;
END
$$;
COMMENT ON FUNCTION webhook.emit(text, jsonb, text) IS
  'Write a custom event into the outbox in the caller''s transaction; returns its id.';

-- Maintenance without events (docs/capture.md, "Backfills"): a migration
-- that rewrites rows (a backfill, a loaddata) suspends capture for its own
-- transaction; other sessions' writes are captured as always. Granted
-- (grant_tracker, grant_manager), never to a plain writer: whoever may
-- suspend capture may make changes no receiver hears of. Suspending and
-- resuming write the operational events webhook.capture.suspended and
-- webhook.capture.resumed (who, which transaction), which commit or roll
-- back with it. _suspend_capture is capture.rs's (the portable edition's:
-- a row of webhook.capture_suspension).
CREATE FUNCTION webhook._capture_switched(event_type text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE id bigint; ts timestamptz := clock_timestamp();
BEGIN
  INSERT INTO webhook.event_log (event_type, body, created_at)
  VALUES (event_type,
          '{"type":' || to_json(event_type)::text || ',"timestamp":"' || webhook._rfc3339(ts) || '","data":'
          || jsonb_build_object('role', session_user, 'transaction', pg_current_xact_id()::text)::text || '}',
          ts)
  RETURNING event_log.id INTO id;
  PERFORM webhook._wrote_events();
  PERFORM pg_notify('webhook_operational', id::text);
END
$$;

-- Both switches: the caller's privilege (SECURITY INVOKER: current_user
-- is the caller), then the switch and its event.
CREATE FUNCTION webhook._switch_capture(suspend boolean) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT has_function_privilege('webhook._suspend_capture(boolean)', 'EXECUTE') THEN
    RAISE EXCEPTION 'role % may not suspend capture', current_user
      USING ERRCODE = 'insufficient_privilege',
            HINT = format('A superuser grants it to a role that tracks tables: SELECT webhook.grant_tracker(%L);', current_user);
  END IF;
  PERFORM webhook._suspend_capture(suspend);
  PERFORM webhook._capture_switched(CASE WHEN suspend THEN 'webhook.capture.suspended' ELSE 'webhook.capture.resumed' END);
END
$$;

CREATE FUNCTION webhook.suspend_capture() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM webhook._switch_capture(true);
END
$$;
COMMENT ON FUNCTION webhook.suspend_capture() IS
  'Capture nothing in the rest of this transaction (a backfill); other sessions are captured as always. Trackers and managers only.';

CREATE FUNCTION webhook.resume_capture() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM webhook._switch_capture(false);
END
$$;
COMMENT ON FUNCTION webhook.resume_capture() IS
  'Capture again in this transaction after webhook.suspend_capture().';
