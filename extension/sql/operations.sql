-- Operations: pg_webhook's own events about its endpoints and deliveries,
-- and auto-disable. The events are ordinary events in the outbox, of types
--   webhook.endpoint.disabled   (data.reason: gone, auto-disable or manual)
--   webhook.endpoint.enabled
--   webhook.endpoint.failing    (the first failure after a success)
--   webhook.endpoint.recovered  (the first success after failing)
--   webhook.delivery.dead       (an application event's delivery gave up)
--   webhook.capture.suspended   (capture.sql suspend_capture(), resume_capture())
--   webhook.capture.resumed
-- so an operator's endpoint subscribed to webhook.* (a Slack relay, a
-- pager bridge) gets them signed, retried and logged like any other. They
-- are also announced with NOTIFY on the channel webhook_operational for
-- listeners inside the database. The payload is the event's id and nothing
-- else: LISTEN and NOTIFY need no privilege, so any role that may connect
-- hears the channel and may send on it. A listener reads the event from
-- webhook.events (which needs SELECT) and checks that it is a webhook.*
-- event; a forged notification can only point at a real event.
--
-- Data a dispatcher wrote (an attempt's error) is untrusted: the events
-- carry its class (webhook._error_class), never its text.
--
-- Bounded and loop-free: failing and recovered are written on a change of
-- an endpoint's state, at most once per endpoint and maintain() call, not
-- per attempt; `*` does not match webhook.* types
-- (route.rs), and an event about an endpoint is never routed to it
-- (route.sql, by the ordering key 'webhook:endpoint:<id>', which also keeps
-- an ordered operator endpoint's events about one endpoint in order); a
-- dead delivery of one of these events makes no event of its own.

-- Write one operational event about `about` (an endpoint id) in the
-- caller's transaction. The caller's privileges apply (SECURITY INVOKER):
-- only a role that may write the outbox can use it.
-- It never aborts its caller: these events report a change of state
-- (an endpoint disabled, a delivery dead) that must happen even when its
-- event cannot be written, and one endpoint's data must never stop
-- record() or maintain() for the others. A failure is a WARNING in the
-- server log, with its SQLSTATE, and NULL.
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

-- What kind of failure an attempt's error text reports, from a fixed list
-- (webhookd's Failure kinds, pipeline/deliver.rs): the error is whatever the
-- dispatcher recorded, so signed events carry this, never the text.
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

-- From maintain() (about once a minute, one webhookd at a time): each
-- enabled endpoint's attempts since the last look decide its health. Only
-- failures (at least one attempt, no success) make a healthy endpoint
-- failing, from its first failure in the window; any success makes a
-- failing one recovered. An endpoint with successes and failures mixed
-- (a receiver rejecting some requests) stays as it was, so a flapping
-- receiver makes no stream of events: at most one change per endpoint a
-- look. Nothing on the delivery path: each look is two probes of
-- attempt_log's (endpoint_id, created_at) index per enabled endpoint.
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

-- After record(): a webhook.delivery.dead event for each delivery that
-- gave up, unless it was one of these events itself.
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

-- From maintain(): disable the endpoints whose every attempt has failed
-- for `after` (NULL: never), with the reason recorded and an event.
-- Enabling one again (enable_endpoint) resumes its pending deliveries.
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

-- How long every attempt of an endpoint must have failed before it is
-- disabled (default 5 days, as Svix); NULL: never.
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
COMMENT ON FUNCTION webhook.set_auto_disable(interval) IS
  'Disable endpoints whose every attempt has failed this long (default 5 days); NULL: never.';
