-- Retention: what is kept, and for how long. The outbox, deliveries and
-- attempts are partitioned into generations of event ids (outbox.rs);
-- webhook.maintain() starts and drops whole generations.

-- Deletes rows one by one (and leaves VACUUM to clean up after them): kept
-- for 0.1.0 callers; webhook.maintain() drops whole generations instead.
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
COMMENT ON FUNCTION webhook.prune(interval) IS
  'Delete finished events older than the retention with their deliveries and attempts, row by row (0.1.0''s; maintain() replaces it).';

-- How long events, deliveries and attempts are kept, and how often a new
-- generation of partitions starts (webhook.set_retention changes both).
CREATE TABLE webhook.settings (
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    retention           interval NOT NULL DEFAULT '7 days',
    generation_interval interval NOT NULL DEFAULT '1 day',
    -- An endpoint whose every attempt has failed this long is disabled
    -- (operations.sql); NULL: never (webhook.set_auto_disable).
    auto_disable_after  interval DEFAULT '5 days',
    -- Where maintain()'s last look at the endpoints' attempts ended
    -- (operations.sql, _health_check): the next looks from here.
    health_checked_at   timestamptz
);
INSERT INTO webhook.settings DEFAULT VALUES;

-- The generations of the outbox (outbox.rs: ids [k << 40, (k + 1) << 40)):
-- started_at is when the id sequence moved into it (NULL: created ahead,
-- not started), ended_at when the next one started.
CREATE TABLE webhook.generation (
    k          bigint PRIMARY KEY,
    started_at timestamptz,
    ended_at   timestamptz
);

-- Create generation k's partitions of event_log, delivery and attempt_log
-- (what exists already is left alone). Each is created on its own and then
-- attached, which locks the parent only against other DDL (SHARE UPDATE
-- EXCLUSIVE), so captures and claims go on meanwhile; the indexes are
-- created by the attach, from the parent's.
CREATE FUNCTION webhook._create_generation(k bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE t text; part text; lo bigint := webhook._generation_start(k); hi bigint := webhook._generation_start(k + 1);
BEGIN
  FOREACH t IN ARRAY ARRAY['event_log', 'delivery', 'attempt_log'] LOOP
    part := t || '_p' || k;
    CONTINUE WHEN to_regclass('webhook.' || quote_ident(part)) IS NOT NULL;
    EXECUTE format('CREATE TABLE webhook.%I (LIKE webhook.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, t);
    IF t = 'delivery' THEN
      -- A queue table: every delivery is inserted and updated twice within
      -- seconds. Vacuum and analyze it far more often than the defaults, so
      -- dead index entries stay few and the planner's row counts stay close.
      EXECUTE format('ALTER TABLE webhook.%I SET (autovacuum_vacuum_scale_factor = 0.02, '
                     'autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0)', part);
    END IF;
    EXECUTE format('ALTER TABLE webhook.%I ATTACH PARTITION webhook.%I FOR VALUES FROM (%s) TO (%s)', t, part, lo, hi);
  END LOOP;
END
$$;

SELECT webhook._create_generation(0);
INSERT INTO webhook.generation (k, started_at) VALUES (0, now());

CREATE FUNCTION webhook.set_retention(retention interval, generation_interval interval DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE g interval;
BEGIN
  IF retention IS NULL OR retention <= interval '0' THEN
    RAISE EXCEPTION 'retention must be a positive interval'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The default is 7 days: SELECT webhook.set_retention(''7 days'');';
  END IF;
  -- About a seventh of the retention: what is older than the retention is
  -- gone within a seventh more.
  g := coalesce(generation_interval, least(greatest(retention / 7, interval '1 minute'), interval '1 day'));
  IF g <= interval '0' OR g > retention THEN
    RAISE EXCEPTION 'generation_interval must be positive and no longer than the retention'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Leave it NULL for about a seventh of the retention (at least a minute, at most a day).';
  END IF;
  UPDATE webhook.settings s SET retention = set_retention.retention, generation_interval = g;
END
$$;
COMMENT ON FUNCTION webhook.set_retention(interval, interval) IS
  'Set how long events, deliveries and attempts are kept, and how long each generation of partitions lasts.';

-- Retention and auto-disable (operations.sql), run by webhookd about once
-- a minute (any role granted it may run it; concurrent calls skip): start a
-- new generation when the current
-- one is older than generation_interval, and drop whole generations that
-- ended longer than `retention` ago: their events, deliveries and attempts
-- at once, without DELETE or VACUUM.
--
-- A generation with a pending delivery, or with an event routing has not
-- passed yet, is kept (`kept`) until that delivery succeeds or is dead and
-- the retention has passed again: nothing undelivered is dropped. A dead
-- delivery stays replayable for the retention period. Dropping a partition
-- locks its parent for a moment; if that lock is not granted within 100 ms
-- (a long transaction holds the outbox), the generation is left for the
-- next call (`deferred`) rather than making captures wait behind it.
CREATE FUNCTION webhook.maintain(OUT generation bigint, OUT started boolean, OUT dropped int,
                                 OUT kept int, OUT deferred int)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE cfg webhook.settings; cur webhook.generation; g webhook.generation; horizon bigint; busy boolean;
        part text; old_timeout text := current_setting('lock_timeout');
BEGIN
  started := false;
  dropped := 0;
  kept := 0;
  deferred := 0;
  IF NOT pg_try_advisory_xact_lock(7347627150213) THEN
    RETURN;
  END IF;
  SELECT * INTO cfg FROM webhook.settings;
  PERFORM webhook._health_check();
  PERFORM webhook._auto_disable(cfg.auto_disable_after);
  SELECT * INTO cur FROM webhook.generation x WHERE x.started_at IS NOT NULL ORDER BY x.k DESC LIMIT 1;
  generation := cur.k;

  SELECT pg_snapshot_xmin(r.prev_snap)::text::bigint INTO horizon FROM webhook.router r;
  PERFORM set_config('lock_timeout', '100ms', true);
  FOR g IN SELECT * FROM webhook.generation x
            WHERE x.ended_at IS NOT NULL AND x.ended_at + cfg.retention <= now() ORDER BY x.k LOOP
    BEGIN
      -- Locked before looking, so no delivery can become pending after the look.
      EXECUTE format('LOCK TABLE webhook.%I, webhook.%I, webhook.%I IN ACCESS EXCLUSIVE MODE',
                     'event_log_p' || g.k, 'delivery_p' || g.k, 'attempt_log_p' || g.k);
      EXECUTE format('SELECT EXISTS (SELECT 1 FROM webhook.%I d WHERE d.status = ''pending'') '
                     'OR EXISTS (SELECT 1 FROM webhook.%I e WHERE e.txid >= $1)',
                     'delivery_p' || g.k, 'event_log_p' || g.k)
        INTO busy USING horizon;
      IF busy THEN
        kept := kept + 1;
      ELSE
        -- Generation 0 was created with the extension, and so belongs to it.
        FOR part IN SELECT c.oid::regclass::text FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
                     WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
                       AND c.relnamespace = 'webhook'::regnamespace
                       AND c.relname IN ('event_log_p' || g.k, 'delivery_p' || g.k, 'attempt_log_p' || g.k) LOOP
          EXECUTE format('ALTER EXTENSION pg_webhook DROP TABLE %s', part);
        END LOOP;
        EXECUTE format('DROP TABLE webhook.%I, webhook.%I, webhook.%I',
                       'attempt_log_p' || g.k, 'delivery_p' || g.k, 'event_log_p' || g.k);
        DELETE FROM webhook.generation x WHERE x.k = g.k;
        dropped := dropped + 1;
      END IF;
    EXCEPTION WHEN lock_not_available THEN
      deferred := deferred + 1;
    END;
  END LOOP;
  PERFORM set_config('lock_timeout', old_timeout, true);

  -- The next generation's partitions are created a call ahead of its
  -- start: the id sequence moves into a generation only once an earlier,
  -- committed call created its partitions, so no capture draws an id whose
  -- partition it cannot see yet. setval() is not transactional: it comes
  -- last, and never moves the sequence back.
  IF NOT EXISTS (SELECT 1 FROM webhook.generation x WHERE x.k = cur.k + 1) THEN
    PERFORM webhook._create_generation(cur.k + 1);
    INSERT INTO webhook.generation (k) VALUES (cur.k + 1);
  ELSIF cur.started_at + cfg.generation_interval <= now() THEN
    UPDATE webhook.generation x SET ended_at = now() WHERE x.k = cur.k;
    UPDATE webhook.generation x SET started_at = now() WHERE x.k = cur.k + 1;
    PERFORM setval('webhook.event_id_seq',
                   greatest(webhook._generation_start(cur.k + 1),
                            (SELECT s.last_value + 1 FROM webhook.event_id_seq s)), false);
    generation := cur.k + 1;
    started := true;
  END IF;
END
$$;
COMMENT ON FUNCTION webhook.maintain() IS
  'Upkeep, run by webhookd about once a minute: endpoint health, auto-disable, and starting and dropping generations.';
