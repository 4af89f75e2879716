-- pg_webhook 0.1.0 → 0.2.0 (ALTER EXTENSION pg_webhook UPDATE).
-- Every event, delivery (pending, leased, dead or done) and attempt is
-- kept; tests/sql/test_upgrade.py checks that the result is exactly a fresh
-- 0.2.0 install.

-- Storage: the outbox, deliveries and attempts become partitioned by event
-- id into generations (outbox.rs). The existing tables, rows and all,
-- become generation 0, kept until their deliveries are done and the
-- retention has passed; indexes are renamed as a fresh install names them.
CREATE FUNCTION webhook."_generation"(
	"id" bigint
) RETURNS bigint
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'generation_sql_wrapper';
CREATE FUNCTION webhook."_generation_start"(
	"k" bigint
) RETURNS bigint
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'generation_start_sql_wrapper';

ALTER TABLE webhook.event_log RENAME TO event_log_p0;
ALTER INDEX webhook.event_log_pkey RENAME TO event_log_p0_pkey;
ALTER INDEX webhook.event_log_txid RENAME TO event_log_p0_txid_idx;
COMMENT ON TABLE webhook.event_log_p0 IS NULL;

ALTER TABLE webhook.delivery RENAME TO delivery_p0;
ALTER TABLE webhook.delivery_p0 ALTER COLUMN id DROP IDENTITY;
CREATE SEQUENCE webhook.delivery_id_seq;
SELECT setval('webhook.delivery_id_seq', coalesce(max(id), 0) + 1, false) FROM webhook.delivery_p0;
ALTER TABLE webhook.delivery_p0 ALTER COLUMN id SET DEFAULT nextval('webhook.delivery_id_seq');
ALTER TABLE webhook.delivery_p0 DROP CONSTRAINT delivery_pkey;
ALTER TABLE webhook.delivery_p0 ADD CONSTRAINT delivery_p0_pkey PRIMARY KEY (id, event_id);
ALTER TABLE webhook.delivery_p0 RENAME CONSTRAINT delivery_event_id_endpoint_id_key TO delivery_p0_event_id_endpoint_id_key;
ALTER INDEX webhook.delivery_due RENAME TO delivery_p0_endpoint_id_next_attempt_at_id_idx;
ALTER INDEX webhook.delivery_key RENAME TO delivery_p0_endpoint_id_ordering_key_id_idx;
ALTER INDEX webhook.delivery_dead RENAME TO delivery_p0_endpoint_id_created_at_idx;

ALTER TABLE webhook.attempt_log RENAME TO attempt_log_p0;
ALTER TABLE webhook.attempt_log_p0 ALTER COLUMN id DROP IDENTITY;
CREATE SEQUENCE webhook.attempt_log_id_seq;
SELECT setval('webhook.attempt_log_id_seq', coalesce(max(id), 0) + 1, false) FROM webhook.attempt_log_p0;
ALTER TABLE webhook.attempt_log_p0 ALTER COLUMN id SET DEFAULT nextval('webhook.attempt_log_id_seq');
ALTER TABLE webhook.attempt_log_p0 DROP CONSTRAINT attempt_log_pkey;
ALTER TABLE webhook.attempt_log_p0 ADD CONSTRAINT attempt_log_p0_pkey PRIMARY KEY (id, event_id);
ALTER INDEX webhook.attempt_log_delivery_id_idx RENAME TO attempt_log_p0_delivery_id_idx;
ALTER INDEX webhook.attempt_log_endpoint_id_created_at_idx RENAME TO attempt_log_p0_endpoint_id_created_at_idx;

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
) PARTITION BY RANGE (id);
ALTER SEQUENCE webhook.event_id_seq OWNED BY webhook.event_log.id;
-- Routing finds new events by transaction id. A btree, not BRIN: BRIN was
-- free to maintain but the unsummarized tail (everything since the last
-- VACUUM) is scanned in full by every route() call (see docs/bench/history.md).
CREATE INDEX event_log_txid ON webhook.event_log (txid);

COMMENT ON TABLE webhook.event_log IS
  'The outbox: one row per captured or emitted event. Query it through the view webhook.events.';

CREATE TABLE webhook.delivery (
    -- assigned in routing order, which follows commit order
    id               bigint NOT NULL DEFAULT nextval('webhook.delivery_id_seq'),
    event_id         bigint NOT NULL,
    endpoint_id      bigint NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CONSTRAINT delivery_status_check CHECK (status IN ('pending', 'succeeded', 'dead')),
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
    PRIMARY KEY (id, event_id),
    UNIQUE (event_id, endpoint_id)
) PARTITION BY RANGE (event_id);
ALTER SEQUENCE webhook.delivery_id_seq OWNED BY webhook.delivery.id;
-- One due queue per endpoint: a claim reads each endpoint's head, so a
-- failing or paused endpoint's backlog is never scanned past (or waited
-- behind) to reach another endpoint's deliveries.
CREATE INDEX delivery_due ON webhook.delivery (endpoint_id, next_attempt_at, id) WHERE status = 'pending';
-- What claims look for beside each endpoint's head: which endpoints have
-- an unleased delivery waiting (a skip scan visits only those), and leases
-- that expired (their dispatcher died), oldest first.
CREATE INDEX delivery_waiting ON webhook.delivery (endpoint_id, next_attempt_at)
    WHERE status = 'pending' AND leased_by IS NULL;
CREATE INDEX delivery_leased ON webhook.delivery (next_attempt_at)
    WHERE status = 'pending' AND leased_by IS NOT NULL;
CREATE INDEX delivery_key ON webhook.delivery (endpoint_id, ordering_key, id)
    WHERE status = 'pending' AND ordering_key IS NOT NULL;
CREATE INDEX delivery_dead ON webhook.delivery (endpoint_id, created_at) WHERE status = 'dead';


CREATE TABLE webhook.attempt_log (
    id               bigint NOT NULL DEFAULT nextval('webhook.attempt_log_id_seq'),
    delivery_id      bigint NOT NULL,
    event_id         bigint NOT NULL,
    endpoint_id      bigint NOT NULL,
    attempt          int NOT NULL,
    http_status      int,
    duration_ms      double precision,
    error            text,
    response_excerpt text,
    worker           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, event_id)
) PARTITION BY RANGE (event_id);
ALTER SEQUENCE webhook.attempt_log_id_seq OWNED BY webhook.attempt_log.id;
CREATE INDEX ON webhook.attempt_log (delivery_id);
CREATE INDEX ON webhook.attempt_log (endpoint_id, created_at);

-- PostgreSQL 18 keeps NOT NULL constraints in pg_constraint, named
-- <table>_<column>_not_null unless the schema holds that name already: the
-- old tables (generation 0 now) do, so the new parents got a suffix. Named
-- as a fresh install names them, before the old tables are attached (the
-- name must then match the partition's, and an attached partition's
-- constraint can no longer be renamed). Before 18 there are none.
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.conrelid::regclass AS rel, c.conname, format('%s_%s_not_null', t.relname, a.attname) AS want
             FROM pg_catalog.pg_constraint c
             JOIN pg_catalog.pg_class t ON t.oid = c.conrelid
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'n' AND t.relnamespace = 'webhook'::regnamespace
              AND t.relname IN ('event_log', 'delivery', 'attempt_log')
              AND c.conname <> format('%s_%s_not_null', t.relname, a.attname)
  LOOP
    EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', r.rel, r.conname, r.want);
  END LOOP;
END $$;

ALTER TABLE webhook.event_log ATTACH PARTITION webhook.event_log_p0 FOR VALUES FROM (0) TO (1099511627776);
ALTER TABLE webhook.delivery ATTACH PARTITION webhook.delivery_p0 FOR VALUES FROM (0) TO (1099511627776);
ALTER TABLE webhook.attempt_log ATTACH PARTITION webhook.attempt_log_p0 FOR VALUES FROM (0) TO (1099511627776);

-- Grants made on the tables (webhook.grant_manager) move to the new parents.
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT t, a.grantee, a.privilege_type
             FROM unnest(ARRAY['event_log', 'delivery', 'attempt_log']) AS t,
                  LATERAL (SELECT c.relacl, c.relowner FROM pg_class c
                            WHERE c.oid = ('webhook.' || t || '_p0')::regclass) c,
                  LATERAL aclexplode(c.relacl) a
            WHERE a.grantee <> c.relowner LOOP
    EXECUTE format('GRANT %s ON webhook.%I TO %s', r.privilege_type, r.t,
                   CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END);
    EXECUTE format('REVOKE %s ON webhook.%I FROM %s', r.privilege_type, r.t || '_p0',
                   CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END);
  END LOOP;
END
$$;

CREATE OR REPLACE VIEW webhook.events AS
SELECT id, event_type,
       CASE WHEN strpos(body, '\u0000') = 0 THEN body::jsonb
            ELSE webhook._without_nul_escapes(body)::jsonb END AS payload,
       body, ordering_key, created_at, txid
  FROM webhook.event_log;

CREATE OR REPLACE VIEW webhook.deliveries AS
SELECT d.id AS delivery_id, d.event_id, d.endpoint_id, e.event_type, d.status, d.attempts,
       d.next_attempt_at, d.last_http_status, d.last_error, d.last_attempt_at, d.completed_at,
       d.ordering_key, d.created_at,
       (d.status = 'pending' AND d.claim_token > 0 AND d.next_attempt_at > now() AND d.leased_by IS NOT NULL) AS in_flight
  FROM webhook.delivery d
  JOIN webhook.event_log e ON e.id = d.event_id;

CREATE OR REPLACE VIEW webhook.attempts AS
SELECT a.id, a.delivery_id, a.event_id, a.endpoint_id, a.attempt, a.created_at AS attempted_at,
       a.http_status, a.duration_ms, a.error, a.response_excerpt, a.worker
  FROM webhook.attempt_log a;

CREATE OR REPLACE VIEW webhook.endpoint_health AS
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

-- Routing passes events nobody wants in large chunks, budgets deliveries
-- rather than events, and finds an event type's endpoints by index.
CREATE FUNCTION webhook."_patterns_for"(
	"event_type" TEXT
) RETURNS TEXT[]
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'patterns_for_sql_wrapper';
CREATE INDEX endpoint_patterns ON webhook.endpoint USING gin (event_types);
DROP FUNCTION webhook._route(int, pg_snapshot, timestamptz, int, bigint[], int[], text);
-- Fan out committed events into deliveries, in commit order. Events are taken
-- by transaction visibility between two snapshots (never by an id cursor,
-- which would skip a transaction that commits after a higher id).
--
-- Two budgets: at most max_events events are read, and routing stops before
-- the event whose deliveries would take it past max_pairs deliveries (the
-- first event that goes anywhere always goes, however many endpoints want
-- it). Events no
-- endpoint wants cost a read and nothing else (no row, no lease), so a claim
-- passes a bulk UPDATE nobody subscribed to in a few large chunks instead of
-- walking it `room` events at a time while wanted events wait behind it.
-- Patterns are matched once per event type in the chunk, not per event,
-- and through endpoint_patterns (only the endpoints that want the type).
--
-- With lease_max > 0 (called by claim()), up to lease_max of the new
-- deliveries are created already leased to `worker` until lease_until and
-- their ids returned: a fresh delivery is then written once here and once by
-- record(), never re-found through the due index and updated in between.
-- Only deliveries that could be claimed right now are leased: within the
-- endpoint's room (webhook._rooms: its max_in_flight less live leases, the
-- dispatcher's caps, none when excluded), and for an ordered endpoint the
-- first pending delivery of its ordering key. The rest are created due now and claimed through the
-- due index.
--
-- routed: events consumed (matched or not); matched: those that went
-- somewhere; made: deliveries created; ended: the window is done (the next
-- call starts a new one from a new snapshot).
CREATE FUNCTION webhook._route(max_events int, max_pairs int, cur pg_snapshot, lease_until timestamptz,
                               lease_max int, exclude bigint[], cap_ids bigint[], cap_n int[], worker text,
                               OUT routed int, OUT matched int, OUT made int, OUT leased bigint[],
                               OUT ended boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE st webhook.router; last bigint; hi bigint; n_read int; stop bigint;
BEGIN
  -- The caller holds the router lock and took `cur` after taking it and
  -- before its transaction had an xid (see _route_begin()).
  leased := '{}';
  routed := 0;
  matched := 0;
  made := 0;
  ended := true;
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
  WITH ev AS MATERIALIZED (
    SELECT * FROM webhook._window_chunk(st.prev_snap, cur, last, hi, max_events)
  ), typ AS MATERIALIZED (
    -- MATERIALIZED: inlined, the planner joined each event to the
    -- endpoints and matched its type's patterns once per event, not per
    -- type (100,000 lookups of endpoint_patterns for one type).
    SELECT t.event_type, ep.id AS endpoint_id, ep.ordered
      FROM (SELECT DISTINCT ev.event_type FROM ev WHERE ev.endpoint_id IS NULL) t
      JOIN webhook.endpoint ep ON ep.enabled AND ep.event_types && webhook._patterns_for(t.event_type)
  ), every_pair AS MATERIALIZED (
    SELECT ev.id AS event_id, typ.endpoint_id, CASE WHEN typ.ordered THEN ev.ordering_key END AS ordering_key
      FROM ev JOIN typ ON typ.event_type = ev.event_type
     WHERE ev.endpoint_id IS NULL
       -- pg_webhook's own events never go to the endpoint they are about
       -- (named by their ordering key, operations.sql): no loops.
       AND NOT (ev.event_type LIKE 'webhook.%' AND ev.ordering_key = 'webhook:endpoint:' || typ.endpoint_id)
    UNION ALL
    -- send_test(): one endpoint, named by the event.
    SELECT ev.id, ep.id, CASE WHEN ep.ordered THEN ev.ordering_key END
      FROM ev JOIN webhook.endpoint ep ON ep.id = ev.endpoint_id AND ep.enabled
  ), room AS (
    -- fresh: what this claim's routing leased already (earlier chunks);
    -- an endpoint it filled stops routing like one filled by this chunk,
    -- while one that was busy before the claim, or filled by the claim's
    -- due part, does not: a recovered endpoint catching up on its backlog
    -- took its whole room from the due queue on every claim, and stopped
    -- each claim's routing after one event, so every other endpoint's
    -- fresh events waited seconds behind it (B6, docs/bench/history.md).
    SELECT r.id, r.room AS n, r.fresh
      FROM webhook._rooms(now(), lease_until, exclude, cap_ids, cap_n, worker) r
     WHERE lease_max > 0 AND r.id IN (SELECT DISTINCT p.endpoint_id FROM every_pair p)
  ), ranked AS (
    -- Which deliveries could be leased now, in event order: within the
    -- endpoint's room, and for an ordered endpoint only the first pending
    -- delivery of its ordering key.
    SELECT p.*, coalesce(room.n, 0) AS room, coalesce(room.fresh, 0) AS fresh,
           row_number() OVER (PARTITION BY p.endpoint_id ORDER BY p.event_id) AS nth,
           p.ordering_key IS NULL OR (
             row_number() OVER (PARTITION BY p.endpoint_id, p.ordering_key ORDER BY p.event_id) = 1
             AND NOT EXISTS (SELECT 1 FROM webhook.delivery q
                              WHERE q.endpoint_id = p.endpoint_id AND q.ordering_key = p.ordering_key
                                AND q.status = 'pending' AND q.ordering_key IS NOT NULL)) AS key_free
      FROM every_pair p LEFT JOIN room ON room.id = p.endpoint_id
  ), per_event AS (
    SELECT r.event_id,
           count(*) FILTER (WHERE r.nth <= r.room AND r.key_free) AS leasable,
           bool_or((r.room > 0 OR r.fresh > 0) AND r.nth > r.room) AS overflows
      FROM ranked r GROUP BY r.event_id
  ), stop AS (
    -- Routing stops before the first event that would take the batch past
    -- max_pairs leases, or that finds an endpoint's room used up by earlier
    -- events of this chunk or of this claim's earlier chunks (routed now,
    -- its delivery would only wait, and be written once more when leased
    -- later). Events whose endpoints all had no room to begin with (paused,
    -- busy with earlier leases, or filled by the claim's due part) do not
    -- stop it: they become pending deliveries, as they must, and the events
    -- behind them go on. The first event goes (even to more endpoints than
    -- the batch has room for) unless it can lease nothing because this
    -- claim's routing filled its endpoints.
    SELECT coalesce((SELECT min(c.event_id) FROM (
                       SELECT e.event_id, e.overflows, e.leasable,
                              sum(e.leasable) OVER (ORDER BY e.event_id) AS upto,
                              row_number() OVER (ORDER BY e.event_id) AS k
                         FROM per_event e) c
                      WHERE (c.k > 1 AND (c.overflows OR c.upto > max_pairs))
                         OR (c.k = 1 AND c.overflows AND c.leasable = 0)), 9223372036854775807) AS id
  ), pair AS (
    SELECT r.*, r.nth <= r.room AND r.key_free AS leasable
      FROM ranked r WHERE r.event_id < (SELECT stop.id FROM stop)
  ), leased_pair AS (
    -- No more than lease_max leases, even when the first event alone goes
    -- to more endpoints than that.
    SELECT p.*, p.leasable AND sum(p.leasable::int) OVER (ORDER BY p.event_id, p.endpoint_id) <= lease_max AS lease
      FROM pair p
  ), ins AS (
    INSERT INTO webhook.delivery (event_id, endpoint_id, ordering_key, next_attempt_at, claim_token, leased_by)
    SELECT r.event_id, r.endpoint_id, r.ordering_key,
           CASE WHEN r.lease THEN lease_until ELSE now() END,
           CASE WHEN r.lease THEN 1 ELSE 0 END,
           CASE WHEN r.lease THEN worker END
      FROM leased_pair r
     ORDER BY r.event_id, r.endpoint_id
    ON CONFLICT (event_id, endpoint_id) DO NOTHING
    RETURNING webhook.delivery.id, webhook.delivery.claim_token
  )
  SELECT (SELECT count(*) FROM ev), (SELECT max(ev.id) FROM ev),
         (SELECT count(*) FROM ev WHERE ev.id < stop.id), nullif(stop.id, 9223372036854775807),
         (SELECT count(DISTINCT pair.event_id) FROM pair), (SELECT count(*) FROM ins),
         coalesce((SELECT array_agg(ins.id ORDER BY ins.id) FROM ins WHERE ins.claim_token = 1), '{}')
    INTO n_read, last, routed, stop, matched, made, leased
    FROM stop;
  IF stop IS NOT NULL THEN
    last := stop - 1;
  END IF;
  ended := stop IS NULL AND (n_read < max_events OR last >= hi);
  IF ended THEN
    UPDATE webhook.router SET prev_snap = cur, cur_snap = NULL, last_id = 0, hi_id = 0;
  ELSE
    UPDATE webhook.router SET cur_snap = cur, last_id = last, hi_id = hi;
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION webhook.route(max_events int DEFAULT 10000) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Queue statements are short: compiling them (the planner's cost estimates
-- on these tables are often far off) or re-planning them per call would
-- cost more than running them.
SET jit = off SET plan_cache_mode = force_generic_plan SET max_parallel_workers_per_gather = 0 AS $$
DECLARE snap pg_snapshot := webhook._route_begin();
BEGIN
  IF snap IS NULL THEN
    RETURN 0;
  END IF;
  RETURN (webhook._route(max_events, max_events, snap, NULL, 0, '{}', '{}', '{}', NULL)).routed;
END
$$;

-- Claims visit only endpoints with something waiting, and an endpoint's
-- max_in_flight counts every dispatcher's leases.
DROP FUNCTION webhook._due(int, timestamptz, bigint[], int[]);
DROP FUNCTION webhook._room_left(bigint[], int[], bigint[]);
-- How many more deliveries each endpoint may have leased right now, for
-- `worker`: its max_in_flight less the live leases other
-- dispatchers hold (so the limit holds across several webhookd; one that
-- died holds its leases' room until they expire), and no more than the
-- worker's own cap (caps: what it has room for, counting its own requests
-- exactly, which its unrecorded leases in the table would not), less what
-- this claim leased already (`mine`: its leases all end at lease_until).
-- Without a worker name (a claim by hand) every live lease counts.
-- Disabled and excluded endpoints (paused by the dispatcher's circuit
-- breaker) get none.
-- A set-returning SQL function (STABLE, no SET clause, not STRICT) so that
-- the planner inlines it into each caller's query, whose plan the caller
-- caches: one plan for every endpoint at once, the caller's conditions on
-- `id` choosing the endpoints computed. As a PL/pgSQL
-- function called per endpoint it cost 30–40 µs an endpoint (B11), 30 ms a
-- claim over 1,000 endpoints (B10).
CREATE FUNCTION webhook._rooms(t_now timestamptz, lease_until timestamptz,
                               exclude bigint[], cap_ids bigint[], cap_n int[], worker text)
RETURNS TABLE (id bigint, room int, fresh int)
LANGUAGE sql STABLE AS $$
  SELECT e.id,
         CASE WHEN NOT e.enabled OR e.id = ANY (exclude) THEN 0
              WHEN coalesce(worker, '') = '' THEN greatest(0, least(c.cap - coalesce(l.mine, 0), e.max_in_flight - coalesce(l.others, 0)))
              ELSE greatest(0, c.cap - coalesce(l.mine, 0) - coalesce(l.others, 0)) END::int,
         coalesce(l.fresh, 0)::int
    FROM webhook.endpoint e
    -- Every live lease, counted once per call (there are no more than the
    -- dispatchers' concurrency): through delivery_leased, the one index
    -- whose predicate and key these conditions match. Counted per endpoint
    -- instead (endpoint_id = e.id), a plan made while the deliveries
    -- looked empty walked the (event_id, endpoint_id) index for each.
    LEFT JOIN (SELECT d.endpoint_id,
                      count(*) FILTER (WHERE coalesce(worker, '') = '' OR d.leased_by <> worker) AS others,
                      count(*) FILTER (WHERE d.next_attempt_at = lease_until) AS mine,
                      count(*) FILTER (WHERE d.next_attempt_at = lease_until AND d.created_at = now()) AS fresh
                 FROM webhook.delivery d
                WHERE d.status = 'pending' AND d.leased_by IS NOT NULL AND d.next_attempt_at > t_now
                GROUP BY d.endpoint_id) l ON l.endpoint_id = e.id
   CROSS JOIN LATERAL (
     SELECT least(e.max_in_flight,
                  coalesce((SELECT min(k.n) FROM unnest(cap_ids, cap_n) AS k(id, n) WHERE k.id = e.id),
                           e.max_in_flight)) AS cap) c
$$;

-- Due deliveries (retries, expired leases, deliveries routed while their
-- endpoint was busy or paused), oldest first, locked, within each
-- endpoint's room. Fair by construction: each endpoint's own queue is read
-- from its head (delivery_due leads with endpoint_id), so one endpoint's
-- deep backlog or pile of retries costs the others nothing; a global
-- "oldest first" scan would walk past every row of an excluded endpoint on
-- each claim and hand whole batches to whichever endpoint fell behind
-- first. Only endpoints with an unleased pending delivery are visited (a
-- skip scan of delivery_due, one index descent each), so the cost of a
-- claim does not grow with endpoints that have nothing waiting; expired
-- leases are found through delivery_leased, oldest first.
-- The planner settings pin those ordered index scans: on this busy table the
-- statistics are often stale (an empty table at the last ANALYZE, 50,000 due
-- rows now), and the bitmap scan + sort it then picks reads every due row on
-- each claim (see docs/bench/history.md).
CREATE FUNCTION webhook._due(max_deliveries int, t_now timestamptz, lease_until timestamptz,
                             exclude bigint[], cap_ids bigint[], cap_n int[], worker text) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
SET enable_bitmapscan = off SET enable_seqscan = off AS $$
DECLARE ids bigint[];
BEGIN
  -- Nothing waits unleased and no lease has expired (usual while every
  -- delivery is leased as it is routed): two probes of the head of a
  -- partial index instead of the walk below (95 µs a claim in B11). Not
  -- "waiting and due": a waiting row's time is not indexed across
  -- endpoints, and retries scheduled later would be walked.
  IF NOT EXISTS (SELECT 1 FROM webhook.delivery d WHERE d.status = 'pending' AND d.leased_by IS NULL)
     AND NOT EXISTS (SELECT 1 FROM webhook.delivery d
                      WHERE d.status = 'pending' AND d.leased_by IS NOT NULL AND d.next_attempt_at <= t_now) THEN
    RETURN '{}';
  END IF;
  WITH RECURSIVE waiting AS (
    (SELECT d.endpoint_id, d.next_attempt_at
       FROM webhook.delivery d
      WHERE d.status = 'pending' AND d.leased_by IS NULL
      ORDER BY d.endpoint_id, d.next_attempt_at LIMIT 1)
    UNION ALL
    SELECT n.endpoint_id, n.next_attempt_at
      FROM waiting w
     CROSS JOIN LATERAL (
       SELECT d.endpoint_id, d.next_attempt_at
         FROM webhook.delivery d
        WHERE d.status = 'pending' AND d.leased_by IS NULL AND d.endpoint_id > w.endpoint_id
        ORDER BY d.endpoint_id, d.next_attempt_at LIMIT 1) n
  ), expired AS (
    SELECT DISTINCT d.endpoint_id
      FROM (SELECT d.endpoint_id FROM webhook.delivery d
             WHERE d.status = 'pending' AND d.leased_by IS NOT NULL AND d.next_attempt_at <= t_now
             ORDER BY d.next_attempt_at LIMIT max_deliveries) d
  ), ep AS MATERIALIZED (
    SELECT r.id, r.room
      FROM webhook._rooms(t_now, lease_until, exclude, cap_ids, cap_n, worker) r
     WHERE r.id IN (SELECT w.endpoint_id FROM waiting w WHERE w.next_attempt_at <= t_now
                    UNION SELECT x.endpoint_id FROM expired x)
  ), due AS MATERIALIZED (
    SELECT h.id, h.next_attempt_at
      FROM ep
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

-- claim() also returns each endpoint's retry policy: a new row type, so
-- the function is made anew (the old one renamed, its EXECUTE grants
-- copied, then dropped, below).
ALTER FUNCTION webhook.claim(int, interval, text, bigint[], int, bigint[], int[], bigint) RENAME TO _claim_0_1_0;
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
                 timeout_ms int, max_in_flight int, rate_limit int,
                 -- The endpoint's retry policy, if it has one (else
                 -- webhookd's): the delays before attempts 2, 3, ... in
                 -- milliseconds, and how many milliseconds are left until
                 -- the delivery's maximum age (counted by the database's
                 -- clock, so webhookd's may differ).
                 retry_schedule_ms bigint[], retry_budget_ms bigint,
                 -- The W3C traceparent of the transaction that wrote the
                 -- event, if it set one (sent as the traceparent header).
                 traceparent text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- jit and plan cache: as for route(). Every join here is a handful of rows
-- looked up by key; stale statistics must not turn one into a merge join
-- walking the outbox, or a key lookup into a sequential scan.
SET jit = off SET enable_mergejoin = off SET enable_hashjoin = off SET enable_seqscan = off
-- Never a parallel plan: the outbox and deliveries are partitioned, and a
-- Parallel Append over them looked cheap to the planner while starting its
-- workers cost a claim 7 ms (docs/bench/history.md, session 8).
SET max_parallel_workers_per_gather = 0
SET plan_cache_mode = force_generic_plan AS $$
-- claimed: everything this call leases, due deliveries first, then fresh ones.
DECLARE ts bigint; t_now timestamptz; lease_until timestamptz; claimed bigint[]; room int;
        snap pg_snapshot; r record; over_cap bigint[]; full_ids bigint[]; scan int; passed int;
        dense boolean;
BEGIN
  IF max_body_bytes IS NULL OR max_body_bytes <= 0 THEN
    RAISE EXCEPTION 'max_body_bytes must be positive'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'It bounds the event bodies one claim returns, in bytes; the default is 16 MiB.';
  END IF;
  -- Stored as each lease's holder and in every attempt (record() cuts it
  -- there too): a name, not a document.
  IF octet_length(worker) > 128 THEN
    RAISE EXCEPTION 'worker name is % bytes long, at most 128 are allowed', octet_length(worker)
      USING ERRCODE = 'string_data_right_truncation',
            HINT = 'webhookd''s --worker names the dispatcher in webhook.attempts (default: host-pid).';
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
  -- webhook-timestamp: whole seconds, floored as the Standard Webhooks
  -- libraries do (rounded, it could be up to half a second in the
  -- receiver's future).
  ts := floor(extract(epoch FROM t_now))::bigint;
  lease_until := t_now + lease;
  exclude_endpoints := coalesce(exclude_endpoints, '{}');
  claimed := webhook._due(max_deliveries, t_now, lease_until, exclude_endpoints, cap_endpoints, cap_counts, worker);
  IF cardinality(claimed) > 0 THEN
    UPDATE webhook.delivery d
       SET next_attempt_at = lease_until, claim_token = d.claim_token + 1, leased_by = coalesce(worker, '')
     WHERE d.id = ANY (claimed);
  END IF;
  -- Route as many events as their deliveries fill the batch (the budget
  -- counts deliveries, so an event going to three endpoints takes three):
  -- fresh deliveries are then created leased, written once here and once by
  -- record(). When every endpoint is left out (paused), one pass still
  -- routes, leasing nothing: the events become pending deliveries, visible
  -- as each endpoint's backlog while it is down. When the rest are merely
  -- busy (no room left: the dispatcher's caps, or leases held) or the batch
  -- is full, nothing is routed: a claim comes again as soon as a request
  -- ends and routes straight into leases. Routed now, each of those
  -- deliveries would be written three times (created pending, leased
  -- through the due queue, recorded) instead of twice, which made a drain a
  -- third slower (docs/bench/history.md). While that lasts webhookd calls route()
  -- about once a second, so a slow endpoint's backlog still shows as
  -- pending deliveries.
  --
  -- Events nobody wants are passed, not counted: while chunks come back
  -- with fewer deliveries than the budget, each next chunk reads 16 times
  -- more events (up to 20,000 a chunk, 100,000 a claim), so a wanted event
  -- behind a bulk change nobody subscribed to waits for a few large reads,
  -- not for batch-sized ones.
  IF snap IS NOT NULL AND max_deliveries > cardinality(claimed) THEN
    -- Endpoints known to have no room: the busy check below then reads the
    -- endpoint table only until it meets one that may have some.
    full_ids := exclude_endpoints || ARRAY(SELECT c.id FROM unnest(cap_endpoints, cap_counts) AS c(id, n) WHERE c.n <= 0);
    IF NOT EXISTS (SELECT 1 FROM webhook.endpoint e WHERE e.enabled AND e.id <> ALL (exclude_endpoints)) THEN
      PERFORM webhook._route(max_deliveries, max_deliveries, snap, NULL, 0, '{}', '{}', '{}', NULL);
    ELSIF EXISTS (SELECT 1
                    FROM webhook._rooms(t_now, lease_until, exclude_endpoints, cap_endpoints, cap_counts, worker) x
                   WHERE x.id <> ALL (full_ids) AND x.room > 0) THEN
      scan := 0;
      passed := 0;
      FOR i IN 1..10 LOOP
        room := max_deliveries - cardinality(claimed);
        EXIT WHEN room <= 0;
        -- The first chunk is about what the dispatcher has room for (its
        -- caps) rather than the batch: a claim after each finished request
        -- has room for one. After a chunk of wanted events, the rest of the
        -- batch; after one nobody wanted, 16 times more.
        scan := CASE WHEN scan = 0
                     THEN least(room, coalesce((SELECT sum(c.n) FROM unnest(cap_counts) AS c(n) WHERE c.n > 0), 32))
                     WHEN dense THEN room
                     ELSE least(20000, scan * 16) END;
        SELECT * INTO r FROM webhook._route(scan, room, snap, lease_until, room,
                                            exclude_endpoints, cap_endpoints, cap_counts, coalesce(worker, ''));
        claimed := claimed || r.leased;
        passed := passed + r.routed;
        -- Go on only after a whole chunk was passed with room left (events
        -- nobody wants, read 16 times as many next time). A chunk cut
        -- short filled the batch or an endpoint's room, and a short one
        -- ended its window: a window behind it waits for the next claim,
        -- which comes at once (a claim that found work is followed by
        -- another); calling _route again here cost every claim at low
        -- rates a second, empty routing pass.
        -- Nor after one that made deliveries it could not lease (an
        -- endpoint's room is used up), nor after a chunk of wanted events
        -- when the dispatcher said what it has room for (its caps sized
        -- that chunk; the next claim follows at once).
        dense := r.matched = r.routed;
        EXIT WHEN r.ended OR r.routed < scan OR passed >= 100000 OR cardinality(r.leased) < r.made
               OR (dense AND cardinality(cap_counts) > 0);
      END LOOP;
    END IF;
  END IF;
  IF cardinality(claimed) = 0 THEN
    RETURN;
  END IF;
  -- The dispatcher's memory is bounded by its settings, not by payloads:
  -- events past max_body_bytes (in the order of their first delivery) are
  -- given back, due at once, for the next claim. octet_length() of a
  -- stored body reads its size without detoasting it.
  -- Here and below, each claimed row is read by its id, each event and
  -- endpoint by its key, one row at a time (LIMIT 1 keeps the lookups
  -- apart): as joins of whole tables, a plan cached while the deliveries
  -- looked empty (the first claim after a VACUUM ANALYZE) read every
  -- delivery through another index on each claim, 3–15 ms a claim at
  -- 20,000 deliveries (docs/bench/history.md, session 9).
  WITH c AS MATERIALIZED (
    SELECT d.id, d.event_id
      FROM unnest(claimed) AS k(id)
     CROSS JOIN LATERAL (SELECT x.id, x.event_id FROM webhook.delivery x WHERE x.id = k.id LIMIT 1) d
  ), e AS (
    SELECT g.event_id, g.first_id,
           sum(g.len) OVER (ORDER BY g.first_id) AS upto,
           min(g.first_id) OVER () AS very_first
      FROM (SELECT c.event_id, min(c.id) AS first_id,
                   (SELECT octet_length(ev.body) FROM webhook.event_log ev WHERE ev.id = c.event_id LIMIT 1) AS len
              FROM c GROUP BY c.event_id) g
  )
  SELECT coalesce(array_agg(c.id), '{}') INTO over_cap
    FROM c JOIN e ON e.event_id = c.event_id
   WHERE e.upto > max_body_bytes AND e.first_id > e.very_first;
  IF cardinality(over_cap) > 0 THEN
    UPDATE webhook.delivery d SET next_attempt_at = t_now, leased_by = NULL WHERE d.id = ANY (over_cap);
    claimed := ARRAY(SELECT x FROM unnest(claimed) AS x WHERE x <> ALL (over_cap));
  END IF;
  -- Each body once: on the first row of its event; later rows of the same
  -- event (other endpoints) carry NULL and share it.
  RETURN QUERY
  WITH c AS MATERIALIZED (
    SELECT d.*
      FROM unnest(claimed) AS k(id)
     CROSS JOIN LATERAL (SELECT x.id, x.claim_token, x.event_id, x.endpoint_id, x.attempts, x.created_at
                           FROM webhook.delivery x WHERE x.id = k.id LIMIT 1) d
  ), sec AS (
    -- Each endpoint's signing secrets once per claim, newest first.
    SELECT s.endpoint_id, array_agg(s.secret ORDER BY s.id DESC) AS secrets
      FROM webhook.endpoint_secret s
     WHERE s.endpoint_id IN (SELECT c.endpoint_id FROM c)
       AND (s.expires_at IS NULL OR s.expires_at > now())
     GROUP BY s.endpoint_id
  )
  SELECT c.id, c.claim_token, c.event_id, c.endpoint_id, c.attempts + 1, ep.url, ep.headers,
         webhook._sign_all(sec.secrets, c.event_id::text, ts, ev.body), ts,
         CASE WHEN row_number() OVER (PARTITION BY c.event_id ORDER BY c.id) = 1 THEN ev.body END,
         ep.timeout_ms, ep.max_in_flight, ep.rate_limit,
         CASE WHEN ep.retry_schedule IS NOT NULL
              THEN ARRAY(SELECT (extract(epoch FROM s) * 1000)::bigint FROM unnest(ep.retry_schedule) s) END,
         (extract(epoch FROM c.created_at + ep.retry_max_age - t_now) * 1000)::bigint,
         ev.traceparent
    FROM c
   CROSS JOIN LATERAL (SELECT e.body, e.traceparent FROM webhook.event_log e WHERE e.id = c.event_id LIMIT 1) ev
   CROSS JOIN LATERAL (SELECT x.url, x.headers, x.timeout_ms, x.max_in_flight, x.rate_limit, x.retry_schedule,
                              x.retry_max_age
                         FROM webhook.endpoint x WHERE x.id = c.endpoint_id LIMIT 1) ep
    LEFT JOIN sec ON sec.endpoint_id = c.endpoint_id
   ORDER BY c.id;
  IF FOUND AND idle_hint_ms > 0 THEN
    PERFORM webhook._set_idle(0);
  END IF;
END
$$;

DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT a.grantee FROM pg_proc p, LATERAL aclexplode(p.proacl) a
            WHERE p.oid = 'webhook._claim_0_1_0(int, interval, text, bigint[], int, bigint[], int[], bigint)'::regprocedure
              AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner AND a.grantee <> 0 LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION webhook.claim(int, interval, text, bigint[], int, bigint[], int[], bigint) TO %s', r.grantee::regrole);
  END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION webhook.claim(int, interval, text, bigint[], int, bigint[], int[], bigint) FROM PUBLIC;
DROP FUNCTION webhook._claim_0_1_0(int, interval, text, bigint[], int, bigint[], int[], bigint);

-- Queue functions never run parallel plans (partitioned tables made them look cheap).
CREATE OR REPLACE FUNCTION webhook.release(delivery_ids bigint[], claim_tokens int[]) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Key lookups only, as in record().
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off SET enable_mergejoin = off
SET max_parallel_workers_per_gather = 0 AS $$
DECLARE n int;
BEGIN
  UPDATE webhook.delivery d SET next_attempt_at = now(), leased_by = NULL
    FROM unnest(delivery_ids, claim_tokens) AS r(id, token)
   WHERE d.id = r.id AND d.claim_token = r.token AND d.status NOT IN ('succeeded', 'dead');
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION webhook.record(
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
SET max_parallel_workers_per_gather = 0
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE n int; dead bigint[]; gone bigint[]; r record;
BEGIN
  -- Only the holder of a delivery's current lease records its attempt:
  -- the attempt rows are made from the deliveries the update changed, so
  -- a dispatcher cannot write attempts (and so an endpoint's health) for
  -- deliveries it does not hold. The texts are the dispatcher's and
  -- untrusted: bounded here in characters, so in bytes (4 per character
  -- at most), whatever webhookd sent.
  WITH o AS (
    SELECT * FROM unnest(delivery_ids, claim_tokens, http_statuses, errors, durations_ms, response_excerpts, retry_at)
        AS o(delivery_id, claim_token, http_status, error, duration_ms, excerpt, retry_at)
  ), upd AS (
    UPDATE webhook.delivery d
       SET attempts = d.attempts + 1,
           last_http_status = o.http_status,
           last_error = left(o.error, 1024),
           last_attempt_at = now(),
           leased_by = NULL,
           status = CASE WHEN o.http_status BETWEEN 200 AND 299 THEN 'succeeded'
                         WHEN o.retry_at IS NULL THEN 'dead' ELSE 'pending' END,
           next_attempt_at = CASE WHEN o.http_status BETWEEN 200 AND 299 OR o.retry_at IS NULL
                                  THEN d.next_attempt_at ELSE o.retry_at END,
           completed_at = CASE WHEN o.http_status BETWEEN 200 AND 299 OR o.retry_at IS NULL THEN now() END
      FROM o
     WHERE d.id = o.delivery_id AND d.claim_token = o.claim_token AND d.status NOT IN ('succeeded', 'dead')
    RETURNING d.id, d.event_id, d.endpoint_id, d.attempts, d.status, o.http_status, o.duration_ms,
              d.last_error AS error, left(o.excerpt, 1024) AS excerpt
  ), logged AS (
    INSERT INTO webhook.attempt_log (delivery_id, event_id, endpoint_id, attempt, http_status, duration_ms, error, response_excerpt, worker)
    SELECT u.id, u.event_id, u.endpoint_id, u.attempts, u.http_status, u.duration_ms, u.error, u.excerpt,
           left(record.worker, 128)
      FROM upd u
     ORDER BY u.id
  )
  SELECT count(*), coalesce(array_agg(u.id) FILTER (WHERE u.status = 'dead'), '{}'),
         coalesce(array_agg(DISTINCT u.endpoint_id) FILTER (WHERE u.http_status = 410), '{}')
    INTO n, dead, gone
    FROM upd u;
  -- Deliveries that gave up: webhook.delivery.dead (operations.sql). An
  -- endpoint's change of health is maintain()'s, not every batch's.
  IF cardinality(dead) > 0 THEN
    PERFORM webhook._dead(dead);
  END IF;
  -- 410 Gone: the receiver asks us to stop (as answered to a delivery
  -- this dispatcher held). A statement of its own, run only then: as a
  -- part of the one above, its plan was set up per batch.
  IF cardinality(gone) > 0 THEN
    FOR r IN
      UPDATE webhook.endpoint ep
         SET enabled = false, disabled_reason = 'receiver answered 410 Gone at ' || now(), updated_at = now()
       WHERE ep.enabled AND ep.id = ANY (gone)
      RETURNING ep.id, ep.url, ep.disabled_reason
    LOOP
      PERFORM webhook._operational('webhook.endpoint.disabled', r.id,
                                   jsonb_build_object('url', r.url, 'reason', 'gone', 'detail', r.disabled_reason));
    END LOOP;
  END IF;
  RETURN n;
END
$$;

-- Retention: settings, generations, maintain().
-- How long events, deliveries and attempts are kept, and how often a new
-- generation of partitions starts (webhook.set_retention changes both).
CREATE TABLE webhook.settings (
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    retention           interval NOT NULL DEFAULT '7 days',
    generation_interval interval NOT NULL DEFAULT '1 day'
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

INSERT INTO webhook.generation (k, started_at) VALUES (0, now());

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

-- Retention, run by webhookd about once a minute (any role granted it may
-- run it; concurrent calls skip): start a new generation when the current
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

CREATE OR REPLACE FUNCTION webhook._guard_outbox_index() RETURNS event_trigger
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

CREATE OR REPLACE FUNCTION webhook.grant_dispatcher(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA webhook TO %s', role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION webhook.route(int), webhook.claim(int, interval, text, bigint[], int, bigint[], int[], bigint), '
                 'webhook.record(bigint[], int[], int[], text[], double precision[], text[], timestamptz[], text), '
                 'webhook.release(bigint[], int[]), webhook._set_idle(bigint), '
                 'webhook.maintain() TO %s', role);
  EXECUTE format('GRANT SELECT ON webhook.deliveries, webhook.endpoint_health, webhook.attempts TO %s', role);
END
$$;

REVOKE EXECUTE ON FUNCTION webhook._route(int, int, pg_snapshot, timestamptz, int, bigint[], bigint[], int[], text),
  webhook._due(int, timestamptz, timestamptz, bigint[], bigint[], int[], text),
  webhook._rooms(timestamptz, timestamptz, bigint[], bigint[], int[], text),
  webhook.maintain(), webhook._create_generation(bigint), webhook.set_retention(interval, interval)
  FROM PUBLIC;

-- Roles that dispatch (granted claim()) may also run maintain(), as
-- webhook.grant_dispatcher() now grants.
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT DISTINCT a.grantee
             FROM pg_proc p, LATERAL aclexplode(p.proacl) a
            WHERE p.oid = 'webhook.claim(int, interval, text, bigint[], int, bigint[], int[], bigint)'::regprocedure
              AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner AND a.grantee <> 0 LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION webhook.maintain() TO %s', r.grantee::regrole::text);
  END LOOP;
END
$$;

-- Endpoints: settings are checked in one place (create and alter), and
-- endpoints can be changed (webhook.alter_endpoint); attempts per time
-- bucket (webhook.endpoint_activity) for sparklines and success rates;
-- the event types endpoints can subscribe to (webhook.event_types).
CREATE FUNCTION webhook._check_timeout(timeout interval) RETURNS int
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE ms int;
BEGIN
  ms := (extract(epoch FROM timeout) * 1000)::int;
  IF ms IS NULL OR ms < 100 OR ms > 300000 THEN
    RAISE EXCEPTION 'timeout must be between 100 milliseconds and 5 minutes'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'The default is 15 seconds; receivers should answer quickly and work asynchronously.';
  END IF;
  RETURN ms;
END
$$;

CREATE FUNCTION webhook._check_max_in_flight(max_in_flight int) RETURNS int
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF max_in_flight IS NULL OR max_in_flight NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'max_in_flight must be between 1 and 10000'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'It bounds concurrent requests to this endpoint; the default is 16.';
  END IF;
  RETURN max_in_flight;
END
$$;

-- create_endpoint() takes a retry policy: new parameters, a new function.
DROP FUNCTION webhook.create_endpoint(text, text[], text, text, jsonb, interval, boolean, int, int);
CREATE FUNCTION webhook.create_endpoint(
    url           text,
    event_types   text[] DEFAULT '{*}',
    secret        text DEFAULT NULL,
    description   text DEFAULT NULL,
    headers       jsonb DEFAULT '{}',
    timeout       interval DEFAULT '15 seconds',
    ordered       boolean DEFAULT false,
    max_in_flight int DEFAULT 16,
    rate_limit    int DEFAULT NULL,
    -- This endpoint's retries (NULL: webhookd's schedule; '{}': none).
    retry_schedule interval[] DEFAULT NULL,
    retry_max_age  interval DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE id bigint; ms int;
BEGIN
  PERFORM webhook._check_retry(retry_schedule, retry_max_age);
  ms := webhook._check_timeout(timeout);
  PERFORM webhook._check_max_in_flight(max_in_flight);
  IF rate_limit IS NOT NULL AND rate_limit <= 0 THEN
    RAISE EXCEPTION 'rate_limit must be positive (requests per second) or NULL for none'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL for no limit.';
  END IF;
  IF secret IS NOT NULL THEN
    PERFORM webhook._check_secret(secret);
  END IF;
  INSERT INTO webhook.endpoint (url, event_types, description, headers, timeout_ms, ordered, max_in_flight, rate_limit,
                                retry_schedule, retry_max_age)
  VALUES (webhook._check_url(url), webhook._check_patterns(event_types), webhook._check_description(description),
          webhook._check_headers(headers), ms, coalesce(ordered, false), max_in_flight, rate_limit,
          retry_schedule, retry_max_age)
  RETURNING endpoint.id INTO id;
  INSERT INTO webhook.endpoint_secret (endpoint_id, secret)
  VALUES (id, coalesce(secret, webhook._generate_secret()));
  RETURN id;
END
$$;

CREATE FUNCTION webhook.alter_endpoint(
    id            bigint,
    url           text DEFAULT NULL,
    event_types   text[] DEFAULT NULL,
    description   text DEFAULT NULL,
    headers       jsonb DEFAULT NULL,
    timeout       interval DEFAULT NULL,
    ordered       boolean DEFAULT NULL,
    max_in_flight int DEFAULT NULL,
    rate_limit    int DEFAULT NULL,
    retry_schedule interval[] DEFAULT NULL,
    retry_max_age  interval DEFAULT NULL,
    -- true: back to webhookd's schedule (retry_schedule must be NULL).
    default_retry_schedule boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE ep webhook.endpoint;
BEGIN
  ep := webhook._endpoint(id);
  IF default_retry_schedule AND retry_schedule IS NOT NULL THEN
    RAISE EXCEPTION 'pass retry_schedule or default_retry_schedule, not both'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'default_retry_schedule => true goes back to webhookd''s schedule.';
  END IF;
  PERFORM webhook._check_retry(retry_schedule, nullif(retry_max_age, interval '0'));
  IF rate_limit IS NOT NULL AND rate_limit < 0 THEN
    RAISE EXCEPTION 'rate_limit must be positive (requests per second), or 0 to remove the limit'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'NULL leaves the current limit as it is.';
  END IF;
  UPDATE webhook.endpoint e
     SET url = CASE WHEN alter_endpoint.url IS NULL THEN e.url ELSE webhook._check_url(alter_endpoint.url) END,
         event_types = CASE WHEN alter_endpoint.event_types IS NULL THEN e.event_types
                            ELSE webhook._check_patterns(alter_endpoint.event_types) END,
         description = CASE WHEN alter_endpoint.description IS NULL THEN e.description
                            ELSE webhook._check_description(alter_endpoint.description) END,
         headers = CASE WHEN alter_endpoint.headers IS NULL THEN e.headers
                        ELSE webhook._check_headers(alter_endpoint.headers) END,
         timeout_ms = CASE WHEN alter_endpoint.timeout IS NULL THEN e.timeout_ms
                           ELSE webhook._check_timeout(alter_endpoint.timeout) END,
         ordered = coalesce(alter_endpoint.ordered, e.ordered),
         max_in_flight = CASE WHEN alter_endpoint.max_in_flight IS NULL THEN e.max_in_flight
                              ELSE webhook._check_max_in_flight(alter_endpoint.max_in_flight) END,
         rate_limit = CASE WHEN alter_endpoint.rate_limit IS NULL THEN e.rate_limit
                           ELSE nullif(alter_endpoint.rate_limit, 0) END,
         retry_schedule = CASE WHEN default_retry_schedule THEN NULL
                               ELSE coalesce(alter_endpoint.retry_schedule, e.retry_schedule) END,
         retry_max_age = CASE WHEN alter_endpoint.retry_max_age IS NULL THEN e.retry_max_age
                              ELSE nullif(alter_endpoint.retry_max_age, interval '0') END,
         updated_at = now()
   WHERE e.id = alter_endpoint.id;
END
$$;

CREATE FUNCTION webhook.endpoint_activity(since timestamptz DEFAULT now() - interval '1 hour',
                                          bucket interval DEFAULT '5 minutes')
RETURNS TABLE (endpoint_id bigint, bucket_start timestamptz, attempts bigint, failures bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF since IS NULL OR bucket IS NULL OR bucket < interval '1 second' THEN
    RAISE EXCEPTION 'since must be a time and bucket at least one second'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'The defaults are the last hour in 5-minute buckets.';
  END IF;
  IF extract(epoch FROM now() - since) / extract(epoch FROM bucket) > 10000 THEN
    RAISE EXCEPTION 'at most 10000 buckets'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Use a later since or a longer bucket.';
  END IF;
  -- Per endpoint, through attempt_log's (endpoint_id, created_at) index.
  RETURN QUERY
  SELECT ep.id, x.b, x.n, x.failed
    FROM webhook.endpoint ep
   CROSS JOIN LATERAL (
     SELECT date_bin(bucket, a.created_at, since) AS b, count(*) AS n,
            count(*) FILTER (WHERE a.http_status IS NULL OR a.http_status NOT BETWEEN 200 AND 299) AS failed
       FROM webhook.attempt_log a
      WHERE a.endpoint_id = ep.id AND a.created_at >= since
      GROUP BY 1) x
   ORDER BY ep.id, x.b;
END
$$;
CREATE FUNCTION webhook.event_types(recent int DEFAULT 10000)
RETURNS TABLE (event_type text, tracked boolean, last_seen_at timestamptz)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF recent IS NULL OR recent < 0 OR recent > 1000000 THEN
    RAISE EXCEPTION 'recent must be between 0 and 1000000'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'It is how many of the newest events are looked at; the default is 10000.';
  END IF;
  RETURN QUERY
  WITH t AS (SELECT DISTINCT tt.event_prefix || '.' || op AS event_type
               FROM webhook.tracked_tables tt, unnest(tt.events) op),
       r AS (SELECT x.event_type, max(x.created_at) AS last_seen_at
               FROM (SELECT e.event_type, e.created_at FROM webhook.event_log e ORDER BY e.id DESC LIMIT recent) x
              GROUP BY x.event_type)
  SELECT coalesce(t.event_type, r.event_type), t.event_type IS NOT NULL, r.last_seen_at
    FROM t FULL JOIN r ON r.event_type = t.event_type
   ORDER BY 1;
END
$$;

-- Operations (operations.sql): pg_webhook's own events (webhook.endpoint.*,
-- webhook.delivery.dead) and auto-disable. An endpoint's health state and
-- the auto-disable setting; endpoint_health shows the state; the webhook.*
-- event types are reserved for these events (emit, track).
ALTER TABLE webhook.endpoint ADD COLUMN failing_since timestamptz;
ALTER TABLE webhook.settings ADD COLUMN auto_disable_after interval DEFAULT '5 days',
  ADD COLUMN health_checked_at timestamptz;
CREATE OR REPLACE VIEW webhook.endpoint_health AS
SELECT ep.id AS endpoint_id, ep.url, ep.enabled, ep.disabled_reason,
       coalesce(p.backlog, 0) AS backlog,
       p.oldest_pending_at,
       coalesce(dd.dead, 0) AS dead,
       la.last_success_at, la.last_failure_at,
       la.last_status,
       ep.failing_since
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

CREATE FUNCTION webhook._operational(event_type text, about bigint, data jsonb) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE id bigint; ts timestamptz := clock_timestamp(); body text; msg text; state text;
BEGIN
  BEGIN
    body := '{"type":' || to_json(event_type)::text || ',"timestamp":"' || webhook._rfc3339(ts)
            || '","data":' || (jsonb_build_object('endpoint_id', about) || coalesce(data, '{}'))::text || '}';
    INSERT INTO webhook.event_log (event_type, body, ordering_key, created_at)
    VALUES (event_type, body, 'webhook:endpoint:' || about, ts)
    RETURNING event_log.id INTO id;
    PERFORM webhook._wrote_events();
    PERFORM pg_notify('webhook_operational', id::text);
  EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
    RAISE WARNING 'pg_webhook: the % event about endpoint % was not written: % (SQLSTATE %)',
                  event_type, about, msg, state
      USING HINT = 'The change of state it reports was made; see webhook.endpoint_health.';
    RETURN NULL;
  END;
  RETURN id;
END
$$;

CREATE FUNCTION webhook._health_check() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The window ends a little before now: an attempt is stamped with the
-- time its record() transaction began, which may commit after this look
-- began; two seconds leave room for such a transaction to commit, so
-- no attempt falls between two looks.
DECLARE since timestamptz; upto timestamptz := now() - interval '2 seconds'; r record;
BEGIN
  SELECT coalesce(s.health_checked_at, upto - interval '1 minute') INTO since FROM webhook.settings s;
  FOR r IN
    SELECT ep.id, ep.url, ep.failing_since, ok.at AS ok_at, bad.at AS failed_at, bad.status, bad.error
      FROM webhook.endpoint ep
      LEFT JOIN LATERAL (SELECT a.created_at AS at FROM webhook.attempt_log a
                          WHERE a.endpoint_id = ep.id AND a.created_at > since AND a.created_at <= upto
                            AND a.http_status BETWEEN 200 AND 299
                          LIMIT 1) ok ON true
      -- Looked for only without a success (then the window holds only
      -- failures, or nothing): a busy healthy endpoint's window is not read.
      LEFT JOIN LATERAL (SELECT a.created_at AS at, a.http_status AS status, a.error FROM webhook.attempt_log a
                          WHERE ok.at IS NULL AND a.endpoint_id = ep.id AND a.created_at > since AND a.created_at <= upto
                          ORDER BY a.created_at LIMIT 1) bad ON true
     WHERE ep.enabled
       AND ((ok.at IS NULL AND bad.at IS NOT NULL AND ep.failing_since IS NULL)
            OR (ok.at IS NOT NULL AND ep.failing_since IS NOT NULL))
  LOOP
    IF r.ok_at IS NOT NULL THEN
      UPDATE webhook.endpoint ep SET failing_since = NULL WHERE ep.id = r.id;
      PERFORM webhook._operational('webhook.endpoint.recovered', r.id,
                                   jsonb_build_object('url', r.url, 'failing_since', r.failing_since));
    ELSE
      UPDATE webhook.endpoint ep SET failing_since = r.failed_at WHERE ep.id = r.id;
      PERFORM webhook._operational('webhook.endpoint.failing', r.id,
        jsonb_build_object('url', r.url, 'last_status', r.status, 'last_error_class', webhook._error_class(r.error)));
    END IF;
  END LOOP;
  UPDATE webhook.settings s SET health_checked_at = upto;
END
$$;

CREATE FUNCTION webhook._dead(delivery_ids bigint[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT d.id, d.event_id, d.endpoint_id, e.event_type, d.attempts, d.last_http_status, d.last_error
      FROM unnest(delivery_ids) AS k(id)
     CROSS JOIN LATERAL (SELECT x.* FROM webhook.delivery x WHERE x.id = k.id LIMIT 1) d
     CROSS JOIN LATERAL (SELECT y.event_type FROM webhook.event_log y WHERE y.id = d.event_id LIMIT 1) e
     WHERE e.event_type NOT LIKE 'webhook.%'
     ORDER BY d.id
  LOOP
    PERFORM webhook._operational('webhook.delivery.dead', r.endpoint_id,
      jsonb_build_object('event_id', r.event_id, 'event_type', r.event_type, 'attempts', r.attempts,
                         'last_status', r.last_http_status, 'last_error_class', webhook._error_class(r.last_error)));
  END LOOP;
END
$$;

CREATE FUNCTION webhook._auto_disable(after interval) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE r record; n int := 0;
BEGIN
  IF after IS NULL THEN
    RETURN 0;
  END IF;
  FOR r IN
    UPDATE webhook.endpoint ep
       SET enabled = false, updated_at = now(),
           disabled_reason = 'auto-disabled: every attempt failed since ' || webhook._rfc3339(ep.failing_since)
     WHERE ep.enabled AND ep.failing_since <= now() - after
    RETURNING ep.id, ep.url, ep.failing_since, ep.disabled_reason
  LOOP
    PERFORM webhook._operational('webhook.endpoint.disabled', r.id,
      jsonb_build_object('url', r.url, 'reason', 'auto-disable', 'failing_since', r.failing_since,
                         'detail', r.disabled_reason));
    n := n + 1;
  END LOOP;
  RETURN n;
END
$$;

CREATE FUNCTION webhook.set_auto_disable(after interval) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF after IS NOT NULL AND after <= interval '0' THEN
    RAISE EXCEPTION 'auto-disable period must be positive, or NULL for never'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'The default is 5 days: SELECT webhook.set_auto_disable(''5 days'');';
  END IF;
  UPDATE webhook.settings s SET auto_disable_after = after;
END
$$;

CREATE OR REPLACE FUNCTION webhook.disable_endpoint(id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE ep webhook.endpoint;
BEGIN
  PERFORM webhook._endpoint(id);
  UPDATE webhook.endpoint e SET enabled = false, disabled_reason = 'disabled by ' || current_user, updated_at = now()
   WHERE e.id = disable_endpoint.id AND e.enabled
  RETURNING e.* INTO ep;
  IF FOUND THEN
    PERFORM webhook._operational('webhook.endpoint.disabled', ep.id,
                                 jsonb_build_object('url', ep.url, 'reason', 'manual', 'detail', ep.disabled_reason));
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION webhook.enable_endpoint(id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE ep webhook.endpoint;
BEGIN
  PERFORM webhook._endpoint(id);
  UPDATE webhook.endpoint e SET enabled = true, disabled_reason = NULL, failing_since = NULL, updated_at = now()
   WHERE e.id = enable_endpoint.id AND NOT e.enabled
  RETURNING e.* INTO ep;
  IF FOUND THEN
    PERFORM webhook._operational('webhook.endpoint.enabled', ep.id,
                                 jsonb_build_object('url', ep.url, 'by', current_user));
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION webhook.emit(event_type text, payload jsonb, ordering_key text DEFAULT NULL) RETURNS bigint
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

-- Captures survive migrations: no DDL drops or disables a capture while its
-- table stays (event triggers, capture.sql); the ordering key is the
-- primary key at capture time and an update's `columns` test is made by the
-- capture function, so no WHEN clause names a column but a condition's.
-- Triggers made by 0.1.0's track() keep their WHEN (and with it their
-- dependency on those columns) until track() is called again; they capture
-- exactly as before.
CREATE OR REPLACE FUNCTION webhook._on_drop_extension() RETURNS event_trigger
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
CREATE FUNCTION webhook._capture_scope(relation regclass) RETURNS text
LANGUAGE plpgsql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN (SELECT webhook._trigger_argument(t.tgargs, 4) FROM pg_trigger t
           WHERE t.tgrelid = relation AND t.tgfoid = 'webhook._capture_row'::regproc AND t.tgnargs >= 4
             AND t.tgparentid = 0
           ORDER BY t.tgname LIMIT 1);
END
$$;

CREATE OR REPLACE FUNCTION webhook.untrack(relation regclass, event_prefix text DEFAULT NULL) RETURNS void
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

-- 0.1.0's track() compared columns through it; the capture function does now.
DROP FUNCTION webhook._base_type(oid);

-- track() gains skip_unchanged.
DROP FUNCTION webhook.track(regclass, text[], text, text, text[]);
CREATE OR REPLACE FUNCTION webhook.track(
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

REVOKE EXECUTE ON FUNCTION webhook._health_check(), webhook._dead(bigint[]),
  webhook._auto_disable(interval), webhook.set_auto_disable(interval)
  FROM PUBLIC;

-- Per-endpoint retry policy: a schedule and a maximum age beside webhookd's.
ALTER TABLE webhook.endpoint ADD COLUMN retry_schedule interval[], ADD COLUMN retry_max_age interval;
CREATE FUNCTION webhook._check_retry(retry_schedule interval[], retry_max_age interval) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF retry_schedule IS NOT NULL AND (cardinality(retry_schedule) > 100
     OR EXISTS (SELECT 1 FROM unnest(retry_schedule) d WHERE d IS NULL OR d < interval '10 milliseconds' OR d > interval '30 days')) THEN
    RAISE EXCEPTION 'retry_schedule must list at most 100 delays of 10 milliseconds to 30 days'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The delays before attempts 2, 3, ...: ''{5s,5min,30min,2h}''; an empty list means no retries.';
  END IF;
  IF retry_max_age IS NOT NULL AND (retry_max_age <= interval '0' OR retry_max_age > interval '90 days') THEN
    RAISE EXCEPTION 'retry_max_age must be positive and at most 90 days'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'No attempt is scheduled later than this after the delivery was made; NULL: no limit but the schedule.';
  END IF;
END
$$;

-- Trace context: events carry the writing session's webhook.traceparent.
ALTER TABLE webhook.event_log ADD COLUMN traceparent text;
CREATE FUNCTION webhook."_traceparent"() RETURNS TEXT
STABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'traceparent_sql_wrapper';
CREATE OR REPLACE FUNCTION webhook.send_test(endpoint_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE ep webhook.endpoint; id bigint; ts timestamptz := clock_timestamp();
BEGIN
  ep := webhook._endpoint(endpoint_id);
  IF NOT ep.enabled THEN
    RAISE EXCEPTION 'endpoint % is disabled', endpoint_id
      USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'SELECT webhook.enable_endpoint(' || endpoint_id || ') first.';
  END IF;
  INSERT INTO webhook.event_log (event_type, body, endpoint_id, created_at, traceparent)
  VALUES ('webhook.test',
          '{"type":"webhook.test","timestamp":"' || webhook._rfc3339(ts) || '","data":{"endpoint_id":' || endpoint_id
            || ',"message":"This is a test event from pg_webhook."}}',
          endpoint_id, ts, webhook._traceparent())
  RETURNING event_log.id INTO id;
  PERFORM webhook._wrote_events();
  RETURN id;
END
$$;

-- Reserved event types (webhook.*) are refused by one rule, also in the
-- capture trigger; ordering keys over 256 bytes are stored as a digest.
CREATE FUNCTION webhook."_event_type_reserved"(
	"t" TEXT
) RETURNS bool
IMMUTABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'event_type_reserved_sql_wrapper';
CREATE FUNCTION webhook."_ordering_key"(
	"key" TEXT
) RETURNS TEXT
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'ordering_key_sql_wrapper';

-- Endpoint settings are bounded in bytes (URL, headers, description,
-- number of patterns).
CREATE OR REPLACE FUNCTION webhook._check_patterns(patterns text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE p text;
BEGIN
  IF patterns IS NULL OR cardinality(patterns) = 0 THEN
    RAISE EXCEPTION 'event_types must list at least one pattern'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''{*}'' for every event, ''{orders.*}'' for a prefix, or exact types like ''{orders.insert}''.';
  END IF;
  IF cardinality(patterns) > 100 THEN
    RAISE EXCEPTION 'event_types lists % patterns, at most 100 are allowed', cardinality(patterns)
      USING ERRCODE = 'program_limit_exceeded',
            HINT = 'Use prefixes (orders.*) to cover several event types with one pattern.';
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
CREATE OR REPLACE FUNCTION webhook._check_url(url text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE m text[];
BEGIN
  IF url IS NULL OR octet_length(url) > 2048 OR url ~ '[[:space:][:cntrl:]]' THEN
    RAISE EXCEPTION 'invalid endpoint URL %', coalesce(quote_literal(left(url, 100)), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'An endpoint URL is an absolute https:// URL of at most 2048 bytes without spaces.';
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
CREATE OR REPLACE FUNCTION webhook._check_headers(headers jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE k text; v jsonb;
BEGIN
  IF headers IS NULL THEN RETURN '{}'; END IF;
  IF jsonb_typeof(headers) <> 'object' THEN
    RAISE EXCEPTION 'headers must be a JSON object'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Example: ''{"authorization": "Bearer abc"}''.';
  END IF;
  IF (SELECT count(*) FROM jsonb_each(headers)) > 32
     OR (SELECT sum(octet_length(key) + octet_length(value #>> '{}')) FROM jsonb_each(headers)) > 8192 THEN
    RAISE EXCEPTION 'headers are too large'
      USING ERRCODE = 'program_limit_exceeded',
            HINT = 'An endpoint has at most 32 headers of at most 8192 bytes together (names and values).';
  END IF;
  FOR k, v IN SELECT * FROM jsonb_each(headers) LOOP
    IF k !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' OR jsonb_typeof(v) <> 'string' OR (v #>> '{}') ~ '[\r\n]' THEN
      RAISE EXCEPTION 'invalid header %', quote_literal(k)
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Header names are HTTP tokens and values are strings without line breaks.';
    END IF;
    -- The names pg_webhook sets and those it never forwards: the lists of
    -- signing/src/headers.rs, whose tests check the two marked lines.
    IF lower(k) IN ('webhook-id', 'webhook-timestamp', 'webhook-signature', 'content-type', 'user-agent', 'host', 'content-length', 'transfer-encoding') OR lower(k) LIKE 'webhook-%' THEN -- headers::SET_BY_WEBHOOKD
      RAISE EXCEPTION 'header % is set by pg_webhook and cannot be overridden', quote_literal(k)
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'content-type, user-agent and the webhook-* headers are part of the Standard Webhooks request, host, content-length and transfer-encoding of its framing; choose another name.';
    END IF;
    IF lower(k) IN ('connection', 'te', 'upgrade', 'keep-alive', 'trailer', 'expect') OR lower(k) LIKE 'proxy-%' THEN -- headers::HOP_BY_HOP
      RAISE EXCEPTION 'header % is about the connection and is never forwarded', quote_literal(k)
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'connection, te, upgrade, keep-alive, trailer, expect and proxy-* are hop-by-hop: they describe one connection, not the request.';
    END IF;
  END LOOP;
  RETURN coalesce((SELECT jsonb_object_agg(lower(key), value) FROM jsonb_each(headers)), '{}');
END
$$;
CREATE FUNCTION webhook._check_description(description text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF octet_length(description) > 1024 THEN
    RAISE EXCEPTION 'description is % bytes long, at most 1024 are allowed', octet_length(description)
      USING ERRCODE = 'string_data_right_truncation',
            HINT = 'A description is a short note for operators; keep documents elsewhere and link to them.';
  END IF;
  RETURN nullif(description, '');
END
$$;

-- Managers may prune (they may delete those rows anyway) and use the new
-- deliveries' sequence (redeliver() to an endpoint that had no delivery);
-- dispatchers no longer may prune: granted prune() with a retention of its
-- own, a compromised webhookd could erase the record of what it delivered.
CREATE OR REPLACE FUNCTION webhook.grant_tracker(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA webhook TO %s', role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION webhook._capture_row(), webhook._suspend_capture(boolean), '
                 'webhook._capture_switched(text) TO %s', role);
END
$$;

CREATE OR REPLACE FUNCTION webhook.grant_manager(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA webhook TO %s', role);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON webhook.endpoint, webhook.endpoint_secret, '
                 'webhook.delivery, webhook.attempt_log TO %s', role);
  EXECUTE format('GRANT SELECT, INSERT ON webhook.event_log TO %s', role);
  -- redeliver() makes a delivery for an endpoint that had none.
  EXECUTE format('GRANT USAGE ON SEQUENCE webhook.event_id_seq, webhook.delivery_id_seq TO %s', role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION webhook.prune(interval), webhook._suspend_capture(boolean), '
                 'webhook._capture_switched(text) TO %s', role);
  EXECUTE format('GRANT SELECT ON webhook.events, webhook.deliveries, webhook.attempts, webhook.endpoint_health, '
                 'webhook.tracked_tables TO %s', role);
END
$$;
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT DISTINCT a.grantee
             FROM pg_proc p, LATERAL aclexplode(p.proacl) a
            WHERE p.oid = 'webhook.prune(interval)'::regprocedure
              AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner AND a.grantee <> 0 LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION webhook.prune(interval) FROM %s', r.grantee::regrole::text);
  END LOOP;
  FOR r IN SELECT DISTINCT a.grantee
             FROM pg_class c, LATERAL aclexplode(c.relacl) a
            WHERE c.oid = 'webhook.endpoint_secret'::regclass
              AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner AND a.grantee <> 0 LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION webhook.prune(interval) TO %s', r.grantee::regrole::text);
    EXECUTE format('GRANT USAGE ON SEQUENCE webhook.delivery_id_seq TO %s', r.grantee::regrole::text);
  END LOOP;
END
$$;

-- Signed operational events carry the class of a dispatcher's error, never
-- its text (operations.sql).
CREATE FUNCTION webhook._error_class(error text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE
    WHEN error IS NULL THEN NULL
    WHEN error = 'timeout' OR error LIKE 'timeout:%' THEN 'timeout'
    WHEN error LIKE 'DNS:%' THEN 'dns'
    WHEN error LIKE 'connect error:%' THEN 'connect'
    WHEN error LIKE 'TLS handshake:%' THEN 'tls'
    WHEN error LIKE 'request error:%' THEN 'request'
    WHEN error LIKE 'reading response:%' THEN 'response'
    WHEN error LIKE 'target % refused%' THEN 'refused'
    WHEN error LIKE 'invalid URL:%' THEN 'unsendable'
    ELSE 'other' END
$$;

-- Every function pins its search_path: run with the caller's, a function's
-- queries could pick an operator or function planted in a schema on that
-- path (by any role that may CREATE there) and run it as the caller. The
-- functions re-created above have it already; webhook._rooms is inlined
-- into callers that pin it (claim.sql), and C functions run no SQL.
DO $$
DECLARE f regprocedure;
BEGIN
  FOR f IN SELECT p.oid FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE p.pronamespace = 'webhook'::regnamespace AND l.lanname IN ('plpgsql', 'sql')
              AND p.proconfig IS NULL AND p.proname <> '_rooms' LOOP
    EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', f);
  END LOOP;
END
$$;

-- New in 0.2.0: which edition and release this is (outbox.sql).
CREATE FUNCTION webhook.edition() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$ SELECT 'native' $$;
CREATE FUNCTION webhook.version() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_webhook'
$$;

-- Comments (psql's \df+, \dv+), as the stage files make them.
COMMENT ON FUNCTION webhook.alter_endpoint(bigint, text, text[], text, jsonb, interval, boolean, int, int, interval[], interval, boolean) IS
  'Change the endpoint settings given, with create_endpoint''s checks; NULL keeps a setting as it is.';
COMMENT ON FUNCTION webhook.claim(int, interval, text, bigint[], int, bigint[], int[], bigint) IS
  'webhookd''s: route new events, lease due deliveries and return each request signed (the caller never reads a secret).';
COMMENT ON FUNCTION webhook.create_endpoint(text, text[], text, text, jsonb, interval, boolean, int, int, interval[], interval) IS
  'Create an endpoint: a URL subscribed to event type patterns, with its signing secret; returns its id.';
COMMENT ON FUNCTION webhook.delete_endpoint(bigint) IS
  'Delete an endpoint with its secrets, deliveries and attempts.';
COMMENT ON FUNCTION webhook.disable_endpoint(bigint) IS
  'Stop delivering to an endpoint; events committed while it is disabled are not queued for it.';
COMMENT ON FUNCTION webhook.emit(text, jsonb, text) IS
  'Write a custom event into the outbox in the caller''s transaction; returns its id.';
COMMENT ON FUNCTION webhook.enable_endpoint(bigint) IS
  'Deliver to a disabled endpoint again: its pending deliveries go out and its health record starts afresh.';
COMMENT ON FUNCTION webhook.endpoint_activity(timestamptz, interval) IS
  'Each endpoint''s attempts and failures per time bucket since a time (default: the last hour in 5-minute buckets).';
COMMENT ON FUNCTION webhook.endpoint_secret(bigint) IS
  'The endpoint''s current signing secret (whsec_...), for its receiver.';
COMMENT ON FUNCTION webhook.event_types(int) IS
  'Event types an endpoint can subscribe to: those tracked tables emit and those seen among the newest events.';
COMMENT ON FUNCTION webhook.grant_dispatcher(regrole) IS
  'Grant a role what webhookd needs: claim, record, release, route, maintain and the delivery views.';
COMMENT ON FUNCTION webhook.grant_emitter(regrole) IS 'Grant a role webhook.emit(), to write custom events.';
COMMENT ON FUNCTION webhook.grant_manager(regrole) IS
  'Grant a role the endpoint API (secrets included), redeliver, replay, prune, suspend_capture() and every view.';
COMMENT ON FUNCTION webhook.grant_tracker(regrole) IS
  'Grant a role webhook.track() and untrack() on the tables it may add triggers to, and suspend_capture().';
COMMENT ON FUNCTION webhook.maintain() IS
  'Upkeep, run by webhookd about once a minute: endpoint health, auto-disable, and starting and dropping generations.';
COMMENT ON FUNCTION webhook.prune(interval) IS
  'Delete finished events older than the retention with their deliveries and attempts, row by row (0.1.0''s; maintain() replaces it).';
COMMENT ON FUNCTION webhook.record(bigint[], int[], int[], text[], double precision[], text[], timestamptz[], text) IS
  'webhookd''s: record a batch of attempt outcomes for the leases it holds (succeeded, retry at a time, or dead).';
COMMENT ON FUNCTION webhook.redeliver(bigint, bigint) IS
  'Deliver an event again, to every endpoint that had it or to one endpoint; returns the deliveries requeued or made.';
COMMENT ON FUNCTION webhook.release(bigint[], int[]) IS
  'webhookd''s: give leases back without an attempt (graceful shutdown); returns how many it gave back.';
COMMENT ON FUNCTION webhook.replay(bigint, timestamptz) IS
  'Requeue an endpoint''s dead deliveries made since a time; returns how many.';
COMMENT ON FUNCTION webhook.rotate_secret(bigint, text, interval) IS
  'Sign with a new secret at once (returned); the older ones keep signing beside it until the overlap ends.';
COMMENT ON FUNCTION webhook.route(int) IS
  'webhookd''s: fan newly committed events out into deliveries, in commit order; returns how many events it routed.';
COMMENT ON FUNCTION webhook.send_test(bigint) IS
  'Send a webhook.test event to this endpoint only; returns the event id.';
COMMENT ON FUNCTION webhook.set_auto_disable(interval) IS
  'Disable endpoints whose every attempt has failed this long (default 5 days); NULL: never.';
COMMENT ON FUNCTION webhook.set_retention(interval, interval) IS
  'Set how long events, deliveries and attempts are kept, and how long each generation of partitions lasts.';
COMMENT ON FUNCTION webhook.sign(text, text, bigint, text) IS
  'The Standard Webhooks signature v1,<base64> of msg_id.ts.body under a whsec_ secret.';
COMMENT ON FUNCTION webhook.track(regclass, text[], text, text, text[], boolean) IS
  'Capture a table''s row changes as events <prefix>.<op> in the writing transaction, optionally filtered (condition), projected (columns) and without no-op updates (skip_unchanged).';
COMMENT ON FUNCTION webhook.untrack(regclass, text) IS
  'Stop capturing a table: every event prefix, or only event_prefix.';
COMMENT ON FUNCTION webhook.verify(text, text, bigint, text, text) IS
  'Whether any v1 entry of a webhook-signature header matches msg_id.ts.body under a whsec_ secret.';
COMMENT ON VIEW webhook.attempts IS
  'Every HTTP attempt: its status, duration, error, response excerpt and the worker that made it.';
COMMENT ON VIEW webhook.deliveries IS
  'One row per event and endpoint: pending, succeeded or dead, its attempts and the last outcome.';
COMMENT ON VIEW webhook.endpoint_health IS
  'Per endpoint: backlog, oldest pending delivery, dead deliveries, last success and failure, failing since.';
COMMENT ON VIEW webhook.events IS
  'Every event in the outbox: its type, its body as jsonb (payload) and as sent (body), ordering key and time.';
COMMENT ON VIEW webhook.tracked_tables IS
  'What is captured: one row per tracked table and event prefix, with its operations and the triggers that capture them.';
COMMENT ON FUNCTION webhook.edition() IS
  'Which edition of pg_webhook this database has: native (the extension and its library) or portable (SQL and PL/pgSQL only).';
COMMENT ON FUNCTION webhook.version() IS
  'Which release of pg_webhook this database has (for example 0.2.0), in either edition.';

CREATE FUNCTION webhook."_suspend_capture"(
	"suspend" bool /* bool */
) RETURNS void
STRICT VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'suspend_capture_wrapper';

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
REVOKE EXECUTE ON FUNCTION webhook._suspend_capture(boolean), webhook._capture_switched(text) FROM PUBLIC;
-- Roles granted by 0.1.0's grant_tracker and grant_manager get what those
-- grant now: suspend_capture().
DO $$
DECLARE r regrole;
BEGIN
  FOR r IN SELECT DISTINCT a.grantee::regrole
             FROM pg_proc p, LATERAL aclexplode(p.proacl) a
            WHERE p.oid = 'webhook._capture_row()'::regprocedure AND a.privilege_type = 'EXECUTE'
              AND a.grantee <> 0 AND a.grantee <> p.proowner
           UNION
           SELECT DISTINCT a.grantee::regrole
             FROM pg_class c, LATERAL aclexplode(c.relacl) a
            WHERE c.oid = 'webhook.endpoint_secret'::regclass AND a.privilege_type = 'SELECT'
              AND a.grantee <> 0 AND a.grantee <> c.relowner LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION webhook._suspend_capture(boolean), webhook._capture_switched(text) TO %s', r);
  END LOOP;
END
$$;

-- Ordering keys of captured rows are scoped by their table (0.2.0):
-- `<schema>.<table>:<primary key>` (outbox.rs scoped_key). The events
-- 0.1.0's captures wrote that are not done yet (not routed, or with a
-- pending delivery) get their table's scope, the name their body carries,
-- so that a row's events from before and after the upgrade stay in one
-- queue on an ordered endpoint (0.2.0's library scopes the keys of 0.1.0's
-- triggers by the table's name as soon as it is installed, before this
-- runs: those are left as they are). Events emit() wrote keep their keys: an
-- event counts as captured when a capture trigger of its type exists and
-- its body names its table and operation as capture writes them.
DO $$
DECLARE ids bigint[]; keys text[];
BEGIN
  SELECT array_agg(e.id), array_agg((e.body::json -> 'data' ->> 'table') || ':' || e.ordering_key)
    INTO ids, keys
    FROM webhook.event_log e CROSS JOIN webhook.router r
   WHERE e.ordering_key IS NOT NULL
     AND e.event_type ~ '\.(insert|update|delete)$'
     AND ((e.txid >= pg_snapshot_xmin(r.prev_snap)::text::bigint
           AND NOT pg_visible_in_snapshot(e.txid::text::xid8, r.prev_snap))
          OR EXISTS (SELECT 1 FROM webhook.delivery d WHERE d.event_id = e.id AND d.status = 'pending'))
     AND EXISTS (SELECT 1 FROM pg_trigger t
                  WHERE t.tgfoid = 'webhook._capture_row'::regproc
                    AND t.tgname = 'webhook_capture_' || substring(e.event_type FROM '[^.]+$') || ':'
                                   || substring(e.event_type FROM '^(.*)\.[^.]+$'))
     AND e.body ~ '^\{"type":"[^"]*","timestamp":"[^"]*","data":\{"table":"'
     AND e.body::json -> 'data' ->> 'op' = substring(e.event_type FROM '[^.]+$')
     -- Captured by 0.2.0's library before this update: scoped already.
     AND NOT starts_with(e.ordering_key, (e.body::json -> 'data' ->> 'table') || ':');
  UPDATE webhook.delivery d SET ordering_key = k.key
    FROM unnest(ids, keys) AS k (id, key)
   WHERE d.event_id = k.id AND d.status = 'pending' AND d.ordering_key IS NOT NULL;
  UPDATE webhook.event_log e SET ordering_key = k.key FROM unnest(ids, keys) AS k (id, key) WHERE e.id = k.id;
END
$$;
