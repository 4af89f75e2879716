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
