-- Claim: lease due deliveries (retries first, then freshly routed events)
-- and return them signed; release() gives leases back.

-- How many more deliveries each endpoint may have leased right now, for
-- `worker`: its max_in_flight less the live leases other
-- dispatchers hold (so the limit holds across several webhookd; one that
-- died holds its leases' room until they expire), and no more than the
-- worker's own cap (caps: what it has room for, counting its own requests
-- exactly, which its unrecorded leases in the table would not), less what
-- this claim leased already (`mine`: its leases all end at lease_until).
-- `fresh`: those of this claim's leases it made as it routed (created by
-- this transaction, so created_at = now(); the due part leases deliveries
-- an earlier transaction created). _route() stops at an endpoint its own
-- routing filled, never at one the due part filled.
-- Without a worker name (a claim by hand) every live lease counts.
-- Disabled and excluded endpoints (paused by the dispatcher's circuit
-- breaker) get none.
-- A set-returning SQL function (STABLE, no SET clause, not STRICT) so that
-- the planner inlines it into each caller's query, whose plan the caller
-- caches: one plan for every endpoint at once, the caller's conditions on
-- `id` choosing the endpoints computed. As a PL/pgSQL
-- function called per endpoint it cost 30–40 µs an endpoint (B11), 30 ms a
-- claim over 1,000 endpoints (B10).
-- The one function without a pinned search_path (a SET clause would stop
-- the inlining): it is inlined into _due() and _route(), which pin it, and
-- is executable by nobody else; every operator and function in it has an
-- exact match in pg_catalog, which a role's search_path searches first
-- (tests/sql/test_search_path.py holds both).
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

-- Claim due deliveries: lease them and return everything needed to send
-- them, signed, so the dispatcher never reads a secret. Due deliveries come
-- first (they are older), then newly committed events, routed and leased in
-- one step.
-- The request's headers are the endpoint's own (`headers`) plus the
-- Standard Webhooks ones: webhook-id is event_id, webhook-timestamp is
-- signed_at, webhook-signature is signature; content-type and user-agent
-- are the dispatcher's. Assembling the whole header object here cost a
-- claim about 20 µs per delivery, on the one session every claim goes
-- through (docs/bench/history.md).
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
COMMENT ON FUNCTION webhook.claim(int, interval, text, bigint[], int, bigint[], int[], bigint) IS
  'webhookd''s: route new events, lease due deliveries and return each request signed (the caller never reads a secret).';

-- Give back leases without an attempt (graceful shutdown).
CREATE FUNCTION webhook.release(delivery_ids bigint[], claim_tokens int[]) RETURNS int
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
COMMENT ON FUNCTION webhook.release(bigint[], int[]) IS
  'webhookd''s: give leases back without an attempt (graceful shutdown); returns how many it gave back.';
