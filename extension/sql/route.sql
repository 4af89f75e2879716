-- Route: fan committed events out to the endpoints that want them, in
-- commit order.

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
SET jit = off SET plan_cache_mode = force_generic_plan SET max_parallel_workers_per_gather = 0 AS $$
DECLARE snap pg_snapshot := webhook._route_begin();
BEGIN
  IF snap IS NULL THEN
    RETURN 0;
  END IF;
  RETURN (webhook._route(max_events, max_events, snap, NULL, 0, '{}', '{}', '{}', NULL)).routed;
END
$$;
COMMENT ON FUNCTION webhook.route(int) IS
  'webhookd''s: fan newly committed events out into deliveries, in commit order; returns how many events it routed.';
