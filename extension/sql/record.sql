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
DECLARE n int; dead bigint[]; r record;
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
    RETURNING d.id, d.status
  )
  SELECT count(*), coalesce(array_agg(u.id) FILTER (WHERE u.status = 'dead'), '{}')
    INTO n, dead
    FROM upd u;
  -- Deliveries that gave up: webhook.delivery.dead (operations.sql). An
  -- endpoint's change of health is maintain()'s, not every batch's.
  IF cardinality(dead) > 0 THEN
    PERFORM webhook._dead(dead);
  END IF;
  -- 410 Gone: the receiver asks us to stop. A statement of its own, run
  -- only then: as a part of the one above, its plan was set up per batch.
  IF 410 = ANY (http_statuses) THEN
    FOR r IN
      UPDATE webhook.endpoint ep
         SET enabled = false, disabled_reason = 'receiver answered 410 Gone at ' || now(), updated_at = now()
       WHERE ep.enabled AND ep.id IN (SELECT d.endpoint_id
                                        FROM unnest(delivery_ids, http_statuses) AS o(delivery_id, http_status)
                                        JOIN webhook.delivery d ON d.id = o.delivery_id
                                       WHERE o.http_status = 410)
      RETURNING ep.id, ep.url, ep.disabled_reason
    LOOP
      PERFORM webhook._operational('webhook.endpoint.disabled', r.id,
                                   jsonb_build_object('url', r.url, 'reason', 'gone', 'detail', r.disabled_reason));
    END LOOP;
  END IF;
  RETURN n;
END
$$;
