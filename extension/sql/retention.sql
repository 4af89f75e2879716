-- Retention: what is kept, and for how long.

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
