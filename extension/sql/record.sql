-- Record: the outcome of each attempt, the retry or dead-letter decision
-- webhookd made, and the attempt log.

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
COMMENT ON FUNCTION webhook.record(bigint[], int[], int[], text[], double precision[], text[], timestamptz[], text) IS
  'webhookd''s: record a batch of attempt outcomes for the leases it holds (succeeded, retry at a time, or dead).';
