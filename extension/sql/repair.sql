-- Repair: redeliver one event, replay an endpoint's dead deliveries.

CREATE FUNCTION webhook.redeliver(event_id bigint, endpoint_id bigint DEFAULT NULL) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
COMMENT ON FUNCTION webhook.redeliver(bigint, bigint) IS
  'Deliver an event again, to every endpoint that had it or to one endpoint; returns the deliveries requeued or made.';

CREATE FUNCTION webhook.replay(endpoint_id bigint, since timestamptz) RETURNS int
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
COMMENT ON FUNCTION webhook.replay(bigint, timestamptz) IS
  'Requeue an endpoint''s dead deliveries made since a time; returns how many.';

-- Delete finished events older than `retention` with their deliveries and attempts.
