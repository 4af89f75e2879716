-- Endpoints: where events go, their secrets, and the API that manages them.

CREATE TABLE webhook.endpoint (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             text NOT NULL,
    event_types     text[] NOT NULL,
    description     text,
    headers         jsonb NOT NULL DEFAULT '{}',
    timeout_ms      int NOT NULL DEFAULT 15000 CHECK (timeout_ms BETWEEN 100 AND 300000),
    ordered         boolean NOT NULL DEFAULT false,
    max_in_flight   int NOT NULL DEFAULT 16 CHECK (max_in_flight BETWEEN 1 AND 10000),
    rate_limit      int CHECK (rate_limit > 0),
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Since when every attempt has failed (NULL: healthy, or no attempts
    -- yet): set and cleared by maintain()'s look at the attempts
    -- (operations.sql, _health_check), which also writes the
    -- webhook.endpoint.failing / .recovered events; auto-disable counts
    -- from it. In the database, so every webhookd agrees.
    failing_since   timestamptz,
    -- This endpoint's retry policy (NULL: webhookd's, --retry-schedule): the
    -- delays before attempts 2, 3, ..., and how long after its delivery was
    -- made an attempt may still be scheduled (then dead).
    retry_schedule  interval[],
    retry_max_age   interval
);

-- Routing asks "which endpoints want this event type" once per type with
-- event_types && webhook._patterns_for(type): an index lookup, so routing
-- costs the same with 5 or 5,000 endpoints.
CREATE INDEX endpoint_patterns ON webhook.endpoint USING gin (event_types);

CREATE TABLE webhook.endpoint_secret (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id bigint NOT NULL REFERENCES webhook.endpoint ON DELETE CASCADE,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- NULL: current; otherwise it keeps signing until then (rotation overlap)
    expires_at  timestamptz
);
CREATE INDEX ON webhook.endpoint_secret (endpoint_id);

-- Checks of endpoint settings.
-- webhook._event_type_ok(t) is in Rust (outbox.rs): the capture trigger
-- checks its event type with the same rule.

-- webhook._matches(patterns, event_type) and webhook._patterns_for(type)
-- are in Rust (route.rs).
--
-- Every text an endpoint stores is bounded in bytes (not characters: a
-- character is up to 4 bytes), so that whatever is built from it (an
-- operational event, a request's headers) has a size known in advance.

CREATE FUNCTION webhook._check_patterns(patterns text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE p text;
BEGIN
  IF patterns IS NULL OR cardinality(patterns) = 0 THEN
    RAISE EXCEPTION 'event_types must list at least one pattern'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use ''{*}'' for every event, ''{orders.*}'' for a prefix, or exact types like ''{orders.insert}''.';
  END IF;
  IF cardinality(patterns) > 100 THEN
    RAISE EXCEPTION 'event_types lists % patterns, at most 100 are allowed', cardinality(patterns)
      USING ERRCODE = 'program_limit_exceeded',
            HINT = 'Use prefixes (orders.*) to cover several event types with one pattern.';
  END IF;
  FOREACH p IN ARRAY patterns LOOP
    IF p IS NULL OR NOT (p = '*' OR webhook._event_type_ok(p)
                         OR (right(p, 2) = '.*' AND webhook._event_type_ok(left(p, -2)))) THEN
      RAISE EXCEPTION 'invalid event type pattern %', coalesce(quote_literal(p), 'NULL')
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A pattern is *, an exact type (orders.insert) or a prefix ending in .* (orders.*); * may only stand alone or last.';
    END IF;
  END LOOP;
  RETURN (SELECT array_agg(DISTINCT x ORDER BY x) FROM unnest(patterns) x);
END
$$;

CREATE FUNCTION webhook._check_url(url text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE m text[];
BEGIN
  IF url IS NULL OR octet_length(url) > 2048 OR url ~ '[[:space:][:cntrl:]]' THEN
    RAISE EXCEPTION 'invalid endpoint URL %', coalesce(quote_literal(left(url, 100)), 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'An endpoint URL is an absolute https:// URL of at most 2048 bytes without spaces.';
  END IF;
  m := regexp_match(url, '^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([/?][^#]*)?$');
  IF m IS NULL OR m[2] = '' THEN
    RAISE EXCEPTION 'invalid endpoint URL %', quote_literal(url)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'An endpoint URL is absolute, like https://example.com/webhooks, and has no #fragment.';
  END IF;
  IF position('@' IN m[2]) > 0 THEN
    RAISE EXCEPTION 'endpoint URL must not contain credentials'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Put credentials in a header instead: create_endpoint(..., headers => ''{"authorization": "..."}'').';
  END IF;
  IF lower(m[1]) = 'https' THEN
    RETURN url;
  ELSIF lower(m[1]) = 'http' THEN
    -- Through the library, never current_setting(): see guc.rs.
    IF webhook._allow_http() THEN
      RETURN url;
    END IF;
    RAISE EXCEPTION 'endpoint URL must use https://'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'For local development, SET webhook.allow_http = on (superuser) to allow http:// URLs.';
  END IF;
  RAISE EXCEPTION 'unsupported URL scheme %', quote_literal(m[1])
    USING ERRCODE = 'invalid_parameter_value', HINT = 'Endpoint URLs use https://.';
END
$$;

-- At most 32 headers of at most 8 KiB together (names and values): many
-- servers refuse a request whose headers pass 8 KiB.
CREATE FUNCTION webhook._check_headers(headers jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE k text; v jsonb;
BEGIN
  IF headers IS NULL THEN RETURN '{}'; END IF;
  IF jsonb_typeof(headers) <> 'object' THEN
    RAISE EXCEPTION 'headers must be a JSON object'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Example: ''{"authorization": "Bearer abc"}''.';
  END IF;
  IF (SELECT count(*) FROM jsonb_each(headers)) > 32
     OR (SELECT sum(octet_length(key) + octet_length(value #>> '{}')) FROM jsonb_each(headers)) > 8192 THEN
    RAISE EXCEPTION 'headers are too large'
      USING ERRCODE = 'program_limit_exceeded',
            HINT = 'An endpoint has at most 32 headers of at most 8192 bytes together (names and values).';
  END IF;
  FOR k, v IN SELECT * FROM jsonb_each(headers) LOOP
    IF k !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' OR jsonb_typeof(v) <> 'string' OR (v #>> '{}') ~ '[\r\n]' THEN
      RAISE EXCEPTION 'invalid header %', quote_literal(k)
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Header names are HTTP tokens and values are strings without line breaks.';
    END IF;
    -- The names pg_webhook sets and those it never forwards: the lists of
    -- signing/src/headers.rs, whose tests check the two marked lines.
    IF lower(k) IN ('webhook-id', 'webhook-timestamp', 'webhook-signature', 'content-type', 'user-agent', 'host', 'content-length', 'transfer-encoding') OR lower(k) LIKE 'webhook-%' THEN -- headers::SET_BY_WEBHOOKD
      RAISE EXCEPTION 'header % is set by pg_webhook and cannot be overridden', quote_literal(k)
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'content-type, user-agent and the webhook-* headers are part of the Standard Webhooks request, host, content-length and transfer-encoding of its framing; choose another name.';
    END IF;
    IF lower(k) IN ('connection', 'te', 'upgrade', 'keep-alive', 'trailer', 'expect') OR lower(k) LIKE 'proxy-%' THEN -- headers::HOP_BY_HOP
      RAISE EXCEPTION 'header % is about the connection and is never forwarded', quote_literal(k)
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'connection, te, upgrade, keep-alive, trailer, expect and proxy-* are hop-by-hop: they describe one connection, not the request.';
    END IF;
  END LOOP;
  RETURN coalesce((SELECT jsonb_object_agg(lower(key), value) FROM jsonb_each(headers)), '{}');
END
$$;

-- A request timeout in milliseconds, or an error saying what is allowed.
CREATE FUNCTION webhook._check_timeout(timeout interval) RETURNS int
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE ms int;
BEGIN
  ms := (extract(epoch FROM timeout) * 1000)::int;
  IF ms IS NULL OR ms < 100 OR ms > 300000 THEN
    RAISE EXCEPTION 'timeout must be between 100 milliseconds and 5 minutes'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'The default is 15 seconds; receivers should answer quickly and work asynchronously.';
  END IF;
  RETURN ms;
END
$$;

CREATE FUNCTION webhook._check_max_in_flight(max_in_flight int) RETURNS int
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF max_in_flight IS NULL OR max_in_flight NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'max_in_flight must be between 1 and 10000'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'It bounds concurrent requests to this endpoint; the default is 16.';
  END IF;
  RETURN max_in_flight;
END
$$;

-- A retry policy's parts, or an error saying what is allowed.
CREATE FUNCTION webhook._check_retry(retry_schedule interval[], retry_max_age interval) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF retry_schedule IS NOT NULL AND (cardinality(retry_schedule) > 100
     OR EXISTS (SELECT 1 FROM unnest(retry_schedule) d WHERE d IS NULL OR d < interval '10 milliseconds' OR d > interval '30 days')) THEN
    RAISE EXCEPTION 'retry_schedule must list at most 100 delays of 10 milliseconds to 30 days'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'The delays before attempts 2, 3, ...: ''{5s,5min,30min,2h}''; an empty list means no retries.';
  END IF;
  IF retry_max_age IS NOT NULL AND (retry_max_age <= interval '0' OR retry_max_age > interval '90 days') THEN
    RAISE EXCEPTION 'retry_max_age must be positive and at most 90 days'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'No attempt is scheduled later than this after the delivery was made; NULL: no limit but the schedule.';
  END IF;
END
$$;

-- A description: at most 1024 bytes; '' (clear) is NULL.
CREATE FUNCTION webhook._check_description(description text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF octet_length(description) > 1024 THEN
    RAISE EXCEPTION 'description is % bytes long, at most 1024 are allowed', octet_length(description)
      USING ERRCODE = 'string_data_right_truncation',
            HINT = 'A description is a short note for operators; keep documents elsewhere and link to them.';
  END IF;
  RETURN nullif(description, '');
END
$$;

CREATE FUNCTION webhook._endpoint(endpoint_id bigint) RETURNS webhook.endpoint
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE ep webhook.endpoint;
BEGIN
  SELECT * INTO ep FROM webhook.endpoint e WHERE e.id = endpoint_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'endpoint % does not exist', coalesce(endpoint_id::text, 'NULL')
      USING ERRCODE = 'no_data_found', HINT = 'SELECT id, url FROM webhook.endpoint lists the endpoints.';
  END IF;
  RETURN ep;
END
$$;

CREATE FUNCTION webhook.create_endpoint(
    url           text,
    event_types   text[] DEFAULT '{*}',
    secret        text DEFAULT NULL,
    description   text DEFAULT NULL,
    headers       jsonb DEFAULT '{}',
    timeout       interval DEFAULT '15 seconds',
    ordered       boolean DEFAULT false,
    max_in_flight int DEFAULT 16,
    rate_limit    int DEFAULT NULL,
    -- This endpoint's retries (NULL: webhookd's schedule; '{}': none).
    retry_schedule interval[] DEFAULT NULL,
    retry_max_age  interval DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE id bigint; ms int;
BEGIN
  PERFORM webhook._check_retry(retry_schedule, retry_max_age);
  ms := webhook._check_timeout(timeout);
  PERFORM webhook._check_max_in_flight(max_in_flight);
  IF rate_limit IS NOT NULL AND rate_limit <= 0 THEN
    RAISE EXCEPTION 'rate_limit must be positive (requests per second) or NULL for none'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL for no limit.';
  END IF;
  IF secret IS NOT NULL THEN
    PERFORM webhook._check_secret(secret);
  END IF;
  INSERT INTO webhook.endpoint (url, event_types, description, headers, timeout_ms, ordered, max_in_flight, rate_limit,
                                retry_schedule, retry_max_age)
  VALUES (webhook._check_url(url), webhook._check_patterns(event_types), webhook._check_description(description),
          webhook._check_headers(headers), ms, coalesce(ordered, false), max_in_flight, rate_limit,
          retry_schedule, retry_max_age)
  RETURNING endpoint.id INTO id;
  INSERT INTO webhook.endpoint_secret (endpoint_id, secret)
  VALUES (id, coalesce(secret, webhook._generate_secret()));
  RETURN id;
END
$$;
COMMENT ON FUNCTION webhook.create_endpoint(text, text[], text, text, jsonb, interval, boolean, int, int, interval[], interval) IS
  'Create an endpoint: a URL subscribed to event type patterns, with its signing secret; returns its id.';

-- Change an endpoint's settings: each argument left NULL keeps its value.
-- rate_limit 0 removes the limit, description '' clears it,
-- default_retry_schedule => true goes back to webhookd's schedule and
-- retry_max_age '0' removes the age limit (NULL means "unchanged" here).
-- Deliveries already routed keep going to the endpoint; new event_types
-- apply to events routed from now on.
CREATE FUNCTION webhook.alter_endpoint(
    id            bigint,
    url           text DEFAULT NULL,
    event_types   text[] DEFAULT NULL,
    description   text DEFAULT NULL,
    headers       jsonb DEFAULT NULL,
    timeout       interval DEFAULT NULL,
    ordered       boolean DEFAULT NULL,
    max_in_flight int DEFAULT NULL,
    rate_limit    int DEFAULT NULL,
    retry_schedule interval[] DEFAULT NULL,
    retry_max_age  interval DEFAULT NULL,
    -- true: back to webhookd's schedule (retry_schedule must be NULL).
    default_retry_schedule boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE ep webhook.endpoint;
BEGIN
  ep := webhook._endpoint(id);
  IF default_retry_schedule AND retry_schedule IS NOT NULL THEN
    RAISE EXCEPTION 'pass retry_schedule or default_retry_schedule, not both'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'default_retry_schedule => true goes back to webhookd''s schedule.';
  END IF;
  PERFORM webhook._check_retry(retry_schedule, nullif(retry_max_age, interval '0'));
  IF rate_limit IS NOT NULL AND rate_limit < 0 THEN
    RAISE EXCEPTION 'rate_limit must be positive (requests per second), or 0 to remove the limit'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'NULL leaves the current limit as it is.';
  END IF;
  UPDATE webhook.endpoint e
     SET url = CASE WHEN alter_endpoint.url IS NULL THEN e.url ELSE webhook._check_url(alter_endpoint.url) END,
         event_types = CASE WHEN alter_endpoint.event_types IS NULL THEN e.event_types
                            ELSE webhook._check_patterns(alter_endpoint.event_types) END,
         description = CASE WHEN alter_endpoint.description IS NULL THEN e.description
                            ELSE webhook._check_description(alter_endpoint.description) END,
         headers = CASE WHEN alter_endpoint.headers IS NULL THEN e.headers
                        ELSE webhook._check_headers(alter_endpoint.headers) END,
         timeout_ms = CASE WHEN alter_endpoint.timeout IS NULL THEN e.timeout_ms
                           ELSE webhook._check_timeout(alter_endpoint.timeout) END,
         ordered = coalesce(alter_endpoint.ordered, e.ordered),
         max_in_flight = CASE WHEN alter_endpoint.max_in_flight IS NULL THEN e.max_in_flight
                              ELSE webhook._check_max_in_flight(alter_endpoint.max_in_flight) END,
         rate_limit = CASE WHEN alter_endpoint.rate_limit IS NULL THEN e.rate_limit
                           ELSE nullif(alter_endpoint.rate_limit, 0) END,
         retry_schedule = CASE WHEN default_retry_schedule THEN NULL
                               ELSE coalesce(alter_endpoint.retry_schedule, e.retry_schedule) END,
         retry_max_age = CASE WHEN alter_endpoint.retry_max_age IS NULL THEN e.retry_max_age
                              ELSE nullif(alter_endpoint.retry_max_age, interval '0') END,
         updated_at = now()
   WHERE e.id = alter_endpoint.id;
END
$$;
COMMENT ON FUNCTION webhook.alter_endpoint(bigint, text, text[], text, jsonb, interval, boolean, int, int, interval[], interval, boolean) IS
  'Change the endpoint settings given, with create_endpoint''s checks; NULL keeps a setting as it is.';

CREATE FUNCTION webhook.endpoint_secret(endpoint_id bigint) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM webhook._endpoint(endpoint_id);
  RETURN (SELECT s.secret FROM webhook.endpoint_secret s
           WHERE s.endpoint_id = endpoint_secret.endpoint_id AND s.expires_at IS NULL
           ORDER BY s.id DESC LIMIT 1);
END
$$;
COMMENT ON FUNCTION webhook.endpoint_secret(bigint) IS
  'The endpoint''s current signing secret (whsec_...), for its receiver.';

CREATE FUNCTION webhook.rotate_secret(endpoint_id bigint, new_secret text DEFAULT NULL,
                                      overlap interval DEFAULT '24 hours') RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE s text;
BEGIN
  PERFORM webhook._endpoint(endpoint_id);
  IF overlap IS NULL OR overlap < interval '0' THEN
    RAISE EXCEPTION 'overlap must be a non-negative interval' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF new_secret IS NOT NULL THEN
    PERFORM webhook._check_secret(new_secret);
  END IF;
  s := coalesce(new_secret, webhook._generate_secret());
  UPDATE webhook.endpoint_secret es SET expires_at = now() + overlap
   WHERE es.endpoint_id = rotate_secret.endpoint_id AND (es.expires_at IS NULL OR es.expires_at > now() + overlap);
  DELETE FROM webhook.endpoint_secret es
   WHERE es.endpoint_id = rotate_secret.endpoint_id AND es.expires_at <= now();
  INSERT INTO webhook.endpoint_secret (endpoint_id, secret) VALUES (rotate_secret.endpoint_id, s);
  RETURN s;
END
$$;
COMMENT ON FUNCTION webhook.rotate_secret(bigint, text, interval) IS
  'Sign with a new secret at once (returned); the older ones keep signing beside it until the overlap ends.';

CREATE FUNCTION webhook.disable_endpoint(id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE ep webhook.endpoint;
BEGIN
  PERFORM webhook._endpoint(id);
  UPDATE webhook.endpoint e SET enabled = false, disabled_reason = 'disabled by ' || current_user, updated_at = now()
   WHERE e.id = disable_endpoint.id AND e.enabled
  RETURNING e.* INTO ep;
  IF FOUND THEN
    PERFORM webhook._operational('webhook.endpoint.disabled', ep.id,
                                 jsonb_build_object('url', ep.url, 'reason', 'manual', 'detail', ep.disabled_reason));
  END IF;
END
$$;
COMMENT ON FUNCTION webhook.disable_endpoint(bigint) IS
  'Stop delivering to an endpoint; events committed while it is disabled are not queued for it.';

-- Enabled again, an endpoint starts with a clean record (auto-disable
-- counts from its next failure) and its pending deliveries go out.
CREATE FUNCTION webhook.enable_endpoint(id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE ep webhook.endpoint;
BEGIN
  PERFORM webhook._endpoint(id);
  UPDATE webhook.endpoint e SET enabled = true, disabled_reason = NULL, failing_since = NULL, updated_at = now()
   WHERE e.id = enable_endpoint.id AND NOT e.enabled
  RETURNING e.* INTO ep;
  IF FOUND THEN
    PERFORM webhook._operational('webhook.endpoint.enabled', ep.id,
                                 jsonb_build_object('url', ep.url, 'by', current_user));
  END IF;
END
$$;
COMMENT ON FUNCTION webhook.enable_endpoint(bigint) IS
  'Deliver to a disabled endpoint again: its pending deliveries go out and its health record starts afresh.';

CREATE FUNCTION webhook.delete_endpoint(id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM webhook._endpoint(id);
  DELETE FROM webhook.attempt_log a WHERE a.endpoint_id = delete_endpoint.id;
  DELETE FROM webhook.delivery d WHERE d.endpoint_id = delete_endpoint.id;
  DELETE FROM webhook.endpoint e WHERE e.id = delete_endpoint.id;
END
$$;
COMMENT ON FUNCTION webhook.delete_endpoint(bigint) IS
  'Delete an endpoint with its secrets, deliveries and attempts.';

CREATE FUNCTION webhook.send_test(endpoint_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE ep webhook.endpoint; id bigint; ts timestamptz := clock_timestamp();
BEGIN
  ep := webhook._endpoint(endpoint_id);
  IF NOT ep.enabled THEN
    RAISE EXCEPTION 'endpoint % is disabled', endpoint_id
      USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'SELECT webhook.enable_endpoint(' || endpoint_id || ') first.';
  END IF;
  INSERT INTO webhook.event_log (event_type, body, endpoint_id, created_at, traceparent)
  VALUES ('webhook.test',
          '{"type":"webhook.test","timestamp":"' || webhook._rfc3339(ts) || '","data":{"endpoint_id":' || endpoint_id
            || ',"message":"This is a test event from pg_webhook."}}',
          endpoint_id, ts, webhook._traceparent())
  RETURNING event_log.id INTO id;
  PERFORM webhook._wrote_events();
  RETURN id;
END
$$;
COMMENT ON FUNCTION webhook.send_test(bigint) IS
  'Send a webhook.test event to this endpoint only; returns the event id.';
