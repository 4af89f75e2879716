-- Deliveries and attempts: the state of each (event, endpoint) pair and the
-- log of every HTTP attempt, with the views users read them through.

-- Deliveries and attempts are partitioned like the outbox, by their event's
-- generation (range of event ids): a generation's events, deliveries and
-- attempts are kept and dropped together (retention.sql).
CREATE SEQUENCE webhook.delivery_id_seq;
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

CREATE SEQUENCE webhook.attempt_log_id_seq;
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

CREATE VIEW webhook.deliveries AS
SELECT d.id AS delivery_id, d.event_id, d.endpoint_id, e.event_type, d.status, d.attempts,
       d.next_attempt_at, d.last_http_status, d.last_error, d.last_attempt_at, d.completed_at,
       d.ordering_key, d.created_at,
       (d.status = 'pending' AND d.claim_token > 0 AND d.next_attempt_at > now() AND d.leased_by IS NOT NULL) AS in_flight
  FROM webhook.delivery d
  JOIN webhook.event_log e ON e.id = d.event_id;
COMMENT ON VIEW webhook.deliveries IS
  'One row per event and endpoint: pending, succeeded or dead, its attempts and the last outcome.';

CREATE VIEW webhook.attempts AS
SELECT a.id, a.delivery_id, a.event_id, a.endpoint_id, a.attempt, a.created_at AS attempted_at,
       a.http_status, a.duration_ms, a.error, a.response_excerpt, a.worker
  FROM webhook.attempt_log a;
COMMENT ON VIEW webhook.attempts IS
  'Every HTTP attempt: its status, duration, error, response excerpt and the worker that made it.';

CREATE VIEW webhook.endpoint_health AS
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
COMMENT ON VIEW webhook.endpoint_health IS
  'Per endpoint: backlog, oldest pending delivery, dead deliveries, last success and failure, failing since.';

-- Each endpoint's attempts and failures per time bucket since a time (for
-- a sparkline, a success rate): one row per endpoint and bucket that had
-- attempts, bucket_start aligned to `bucket` from `since`. A failure is
-- what endpoint_health counts as one: no answer or a status outside 2xx.
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
COMMENT ON FUNCTION webhook.endpoint_activity(timestamptz, interval) IS
  'Each endpoint''s attempts and failures per time bucket since a time (default: the last hour in 5-minute buckets).';

-- Event types an endpoint can subscribe to: those the tracked tables emit
-- (prefix.op, from webhook.tracked_tables) and those seen among the most
-- recent `recent` events (custom events from emit(), types of tables no
-- longer tracked), with when each was last seen there.
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
COMMENT ON FUNCTION webhook.event_types(int) IS
  'Event types an endpoint can subscribe to: those tracked tables emit and those seen among the newest events.';
