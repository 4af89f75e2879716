-- Privileges: nothing is executable by PUBLIC that writes events, claims
-- or reads secrets; grant_*() give each role what it needs. Loaded last
-- (pgrx's finalize step), when every object exists.

REVOKE EXECUTE ON FUNCTION webhook.emit(text, jsonb, text), webhook._capture_row(), webhook._suspend_capture(boolean),
  webhook._capture_switched(text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION webhook.route(int), webhook.claim(int, interval, text, bigint[], int, bigint[], int[], bigint),
  webhook._route(int, int, pg_snapshot, timestamptz, int, bigint[], bigint[], int[], text), webhook._route_begin(),
  webhook._window_bounds(pg_snapshot, pg_snapshot), webhook._window_chunk(pg_snapshot, pg_snapshot, bigint, bigint, int),
  webhook._due(int, timestamptz, timestamptz, bigint[], bigint[], int[], text),
  webhook._rooms(timestamptz, timestamptz, bigint[], bigint[], int[], text),
  webhook.record(bigint[], int[], int[], text[], double precision[], text[], timestamptz[], text),
  webhook.release(bigint[], int[]), webhook.prune(interval), webhook._set_idle(bigint),
  webhook.maintain(), webhook._create_generation(bigint), webhook.set_retention(interval, interval),
  webhook._health_check(), webhook._dead(bigint[]), webhook._auto_disable(interval),
  webhook.set_auto_disable(interval)
  FROM PUBLIC;

-- The dispatcher's privileges: claim, record, release, route, maintain
-- (retention) and read the delivery views, but never SELECT a secret, nor
-- prune(): with its own retention it could erase the record of what it
-- delivered (maintain() keeps the one an operator set).
CREATE FUNCTION webhook.grant_dispatcher(role regrole) RETURNS void
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
COMMENT ON FUNCTION webhook.grant_dispatcher(regrole) IS
  'Grant a role what webhookd needs: claim, record, release, route, maintain and the delivery views.';

-- Emitting custom events: webhook.emit(). Every subscribed endpoint signs
-- what is emitted, so this is granted to the roles that should speak for
-- the application, never to the dispatcher.
CREATE FUNCTION webhook.grant_emitter(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA webhook TO %s', role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION webhook.emit(text, jsonb, text) TO %s', role);
END
$$;
COMMENT ON FUNCTION webhook.grant_emitter(regrole) IS 'Grant a role webhook.emit(), to write custom events.';

-- Tracking tables: webhook.track() / untrack() on tables the role may add
-- triggers to (PostgreSQL's TRIGGER privilege, e.g. their owner).
CREATE FUNCTION webhook.grant_tracker(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE format('GRANT USAGE ON SCHEMA webhook TO %s', role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION webhook._capture_row(), webhook._suspend_capture(boolean), '
                 'webhook._capture_switched(text) TO %s', role);
END
$$;
COMMENT ON FUNCTION webhook.grant_tracker(regrole) IS
  'Grant a role webhook.track() and untrack() on the tables it may add triggers to, and suspend_capture().';

-- Managing endpoints: create, change, delete, read and rotate secrets,
-- test, redeliver and replay, and read every view. Such a role can read
-- every secret, so it is as trusted as the receivers' owners.
CREATE FUNCTION webhook.grant_manager(role regrole) RETURNS void
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
COMMENT ON FUNCTION webhook.grant_manager(regrole) IS
  'Grant a role the endpoint API (secrets included), redeliver, replay, prune, suspend_capture() and every view.';

REVOKE EXECUTE ON FUNCTION webhook.grant_dispatcher(regrole), webhook.grant_emitter(regrole),
  webhook.grant_tracker(regrole), webhook.grant_manager(regrole) FROM PUBLIC;

-- sign() and verify() are Rust (lib.rs); their comments are here, in the
-- file that runs when every object exists.
COMMENT ON FUNCTION webhook.sign(text, text, bigint, text) IS
  'The Standard Webhooks signature v1,<base64> of msg_id.ts.body under a whsec_ secret.';
COMMENT ON FUNCTION webhook.verify(text, text, bigint, text, text) IS
  'Whether any v1 entry of a webhook-signature header matches msg_id.ts.body under a whsec_ secret.';
