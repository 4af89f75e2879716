-- The portable edition's library: the functions the native edition
-- implements in Rust (extension/src/), written in SQL and PL/pgSQL for
-- databases that cannot load pg_webhook's shared library (managed services).
-- Same names, arguments, results, volatility and errors, so the stage files
-- (extension/sql/*.sql) run unchanged on top of either; each says which
-- Rust function it stands for, and tests/sql/test_portable_library.py checks
-- that both give the same bytes for the same input.
--
-- Loaded first: only the pgcrypto wrappers are called while the stage files
-- are created, and PL/pgSQL bodies are resolved when they run.

-- Where this edition may be created: not beside the native extension (one
-- database holds one edition), not over an installation of its own
-- (`webhookd install` upgrades that in place, after its own checks), and
-- not into a schema `webhook` someone else made. Nothing in an existing
-- schema is called: its functions could be anyone's.
DO $portable$
DECLARE native text;
BEGIN
  SELECT e.extversion INTO native FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_webhook';
  IF native IS NOT NULL THEN
    RAISE EXCEPTION 'the native edition of pg_webhook (extension version %) is installed in this database', native
      USING ERRCODE = 'duplicate_object',
            HINT = 'One database holds one edition: keep the native one, or move as the README''s "Managed PostgreSQL" describes.';
  END IF;
  IF EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = 'webhook') THEN
    -- From the catalog: to_regprocedure() needs USAGE on the schema.
    IF EXISTS (SELECT FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'webhook' AND p.proname = 'edition' AND p.pronargs = 0) THEN
      RAISE EXCEPTION 'pg_webhook''s portable edition is already installed in this database'
        USING ERRCODE = 'duplicate_schema',
              HINT = 'webhookd install upgrades it in place; webhookd uninstall removes it.';
    END IF;
    RAISE EXCEPTION 'a schema named webhook already exists in this database'
      USING ERRCODE = 'duplicate_schema',
            HINT = 'pg_webhook keeps everything in schema webhook: rename or drop that schema first.';
  END IF;
END
$portable$;
CREATE SCHEMA webhook;

-- HMAC and random bytes come from pgcrypto (a trusted extension on every
-- managed service), in whatever schema it was created in (Supabase puts it in
-- `extensions`): the two wrappers name that schema, everything else calls
-- them. Created here, once, because a function's body cannot name a schema
-- found at install time any other way.
DO $portable$
DECLARE crypto name;
BEGIN
  SELECT n.nspname INTO crypto FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
   WHERE e.extname = 'pgcrypto';
  IF crypto IS NULL THEN
    RAISE EXCEPTION 'pg_webhook''s portable edition needs the pgcrypto extension'
      USING ERRCODE = 'undefined_object',
            HINT = 'Run CREATE EXTENSION pgcrypto; (a trusted extension: the database owner may create it), then install again.';
  END IF;
  -- webhook.sign's HMAC-SHA256 (Rust: hmac::Hmac<Sha256>, signing/src/lib.rs).
  EXECUTE format($f$
    CREATE FUNCTION webhook._hmac_sha256(data bytea, key bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN %I.hmac(data, key, 'sha256')$f$, crypto);
  -- _generate_secret's randomness (Rust: getrandom).
  EXECUTE format($f$
    CREATE FUNCTION webhook._random_bytes(n int) RETURNS bytea
    LANGUAGE sql VOLATILE STRICT PARALLEL SAFE
    RETURN %I.gen_random_bytes(n)$f$, crypto);
END
$portable$;

-- outbox.sql's webhook.edition(), this edition's answer.
CREATE FUNCTION webhook.edition() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$ SELECT 'portable' $$;

-- outbox.sql's webhook.version(): the release this script was assembled
-- from (webhookd's build writes it in), which `webhookd install` compares
-- with its own to upgrade in place or refuse a downgrade. STABLE like the
-- native one (which reads pg_extension).
CREATE FUNCTION webhook.version() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$ SELECT '@PORTABLE_VERSION@' $$;

-- The settings the native edition keeps as superuser-only GUCs
-- (extension/src/guc.rs: webhook.allow_http, webhook.max_event_size). A
-- placeholder GUC could be SET by any role, so here they live in a table
-- only its owner (the installing role) can change; every role may read it.
CREATE TABLE webhook.portable_settings (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    -- guc.rs ALLOW_HTTP: may endpoint URLs use plain http://?
    allow_http     boolean NOT NULL DEFAULT false,
    -- guc.rs DEFAULT_MAX_EVENT_SIZE and its bounds.
    max_event_size int NOT NULL DEFAULT 1048576 CHECK (max_event_size BETWEEN 256 AND 1073741823)
);
INSERT INTO webhook.portable_settings DEFAULT VALUES;
GRANT SELECT ON webhook.portable_settings TO PUBLIC;

-- The key of a `whsec_` secret (Rust: webhook_signing::decode_secret), with
-- its errors. The base64 must be canonical, as Rust's decoder wants it:
-- padded, no whitespace, and no bits set past the last byte.
CREATE FUNCTION webhook._secret_key(secret text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE b64 text := substr(secret, 7); key bytea; why text;
BEGIN
  IF NOT starts_with(secret, 'whsec_') THEN
    why := 'a secret must start with "whsec_"';
  ELSIF b64 !~ '^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$' THEN
    why := 'the part after "whsec_" is not valid base64';
  ELSE
    key := decode(b64, 'base64');
    why := CASE WHEN length(key) < 24 THEN format('the key is %s bytes; at least 24 are required', length(key))
                WHEN length(key) > 64 THEN format('the key is %s bytes; at most 64 are allowed', length(key)) END;
  END IF;
  IF why IS NOT NULL THEN
    RAISE EXCEPTION 'invalid webhook secret: %', why
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Pass NULL to generate a secret, or a secret of the form whsec_<base64 of at least 24 bytes>.';
  END IF;
  RETURN key;
END
$$;

-- The signed content of Standard Webhooks: `msg_id.ts.body`, as UTF-8.
CREATE FUNCTION webhook._signed_content(msg_id text, ts bigint, body text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN convert_to(msg_id || '.' || ts::text || '.' || body, 'UTF8');

-- Rust: lib.rs sign().
CREATE FUNCTION webhook.sign(secret text, msg_id text, ts bigint, body text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN 'v1,' || encode(webhook._hmac_sha256(webhook._signed_content(msg_id, ts, body),
                                            webhook._secret_key(secret)), 'base64');

-- Rust: lib.rs sign_all(): one `v1,` signature per secret, space separated
-- (NULL elements skipped).
CREATE FUNCTION webhook._sign_all(secrets text[], msg_id text, ts bigint, body text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN coalesce((SELECT string_agg(webhook.sign(s.secret, msg_id, ts, body), ' ' ORDER BY s.n)
                   FROM unnest(secrets) WITH ORDINALITY AS s (secret, n)
                  WHERE s.secret IS NOT NULL), '');

-- Rust: lib.rs verify() (webhook_signing::verify): does any `v1,` entry of
-- the header match? An entry without a comma is an error; entries of other
-- versions and undecodable signatures are skipped.
CREATE FUNCTION webhook.verify(secret text, msg_id text, ts bigint, body text, signature text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE expected bytea := webhook._hmac_sha256(webhook._signed_content(msg_id, ts, body),
                                               webhook._secret_key(secret));
        entry text; sig text; ok boolean := false;
BEGIN
  FOR entry IN SELECT e FROM regexp_split_to_table(signature, '[[:space:]]+') AS e WHERE e <> '' LOOP
    IF strpos(entry, ',') = 0 THEN
      RAISE EXCEPTION 'invalid signature header: entry "%" has no comma', replace(replace(entry, '\', '\\'), '"', '\"')
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A webhook-signature header is a space-separated list of v1,<base64> entries.';
    END IF;
    CONTINUE WHEN split_part(entry, ',', 1) <> 'v1';
    sig := substr(entry, 4);
    CONTINUE WHEN sig !~ '^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$';
    ok := ok OR decode(sig, 'base64') = expected;
  END LOOP;
  RETURN ok;
END
$$;

-- Rust: lib.rs generate_secret(): `whsec_` and 32 random bytes.
CREATE FUNCTION webhook._generate_secret() RETURNS text
LANGUAGE sql VOLATILE STRICT PARALLEL SAFE
RETURN 'whsec_' || encode(webhook._random_bytes(32), 'base64');

-- Rust: lib.rs check_secret().
CREATE FUNCTION webhook._check_secret(secret text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN webhook._secret_key(secret) IS NOT NULL;

-- Rust: payload.rs push_date(): ISO 8601 with astronomical years (1 BC is
-- 0000, written without a sign; 2 BC is -0001), at least four digits.
CREATE FUNCTION webhook._iso_date(d date) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE y int;
BEGIN
  IF NOT isfinite(d) THEN
    RETURN CASE WHEN d > 'epoch'::date THEN 'infinity' ELSE '-infinity' END;
  END IF;
  y := extract(year FROM d)::int;
  IF y < 0 THEN
    y := y + 1;
  END IF;
  RETURN CASE WHEN y < 0 THEN '-' ELSE '' END
      || CASE WHEN abs(y) < 10000 THEN to_char(abs(y), 'FM0000') ELSE abs(y)::text END
      -- Not to_char(): it goes through timestamp, whose range ends before date's.
      || '-' || lpad(extract(month FROM d)::int::text, 2, '0') || '-' || lpad(extract(day FROM d)::int::text, 2, '0');
END
$$;

-- Rust: payload.rs push_timestamp() without the quotes: the date, `T`, the
-- time with its fraction (always six digits), `Z` when `utc`.
CREATE FUNCTION webhook._iso_timestamp(ts timestamp, utc boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE us int;
BEGIN
  IF NOT isfinite(ts) THEN
    RETURN CASE WHEN ts > 'epoch'::timestamp THEN 'infinity' ELSE '-infinity' END;
  END IF;
  us := (extract(microseconds FROM ts)::bigint % 1000000)::int;
  RETURN webhook._iso_date(ts::date) || to_char(ts, '"T"HH24:MI:SS')
      || '.' || to_char(us, 'FM000000')
      || CASE WHEN utc THEN 'Z' ELSE '' END;
END
$$;

-- Rust: payload.rs push_time_of_day(): a time of day (24:00:00 is one).
CREATE FUNCTION webhook._iso_time(t time) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN to_char(extract(hour FROM t), 'FM00') || ':' || to_char(extract(minute FROM t), 'FM00') || ':'
       || to_char(floor(extract(microseconds FROM t) / 1000000), 'FM00') || '.'
       || to_char(extract(microseconds FROM t)::bigint % 1000000, 'FM000000');

-- Rust: payload.rs push_timetz(): the time as _iso_time() writes it, the
-- offset as +HH:MM (+HH:MM:SS when it has seconds).
CREATE FUNCTION webhook._iso_timetz(t timetz) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE east int := extract(timezone FROM t)::int;
BEGIN
  RETURN webhook._iso_time(t::time) || CASE WHEN east >= 0 THEN '+' ELSE '-' END
      || to_char(abs(east) / 3600, 'FM00') || ':' || to_char(abs(east) / 60 % 60, 'FM00')
      || CASE WHEN abs(east) % 60 <> 0 THEN ':' || to_char(abs(east) % 60, 'FM00') ELSE '' END;
END
$$;

-- Rust: payload.rs push_money(): the stored count of the currency's
-- smallest unit as hundredths, two fraction digits. money::numeric scales
-- the count by lc_monetary's fraction digits (its result has that scale),
-- which undoes that.
CREATE FUNCTION webhook._money_json(m money) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
RETURN round(m::numeric * 10::numeric ^ scale(m::numeric) / 100, 2)::text;

-- Rust: lib.rs rfc3339(): in UTC.
CREATE FUNCTION webhook._rfc3339(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN webhook._iso_timestamp(ts AT TIME ZONE 'UTC', true);

-- Rust: outbox.rs generation_sql() (GENERATION_BITS = 40).
CREATE FUNCTION webhook._generation(id bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN id >> 40;

-- Rust: outbox.rs generation_start_sql().
CREATE FUNCTION webhook._generation_start(k bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF k < 0 OR k > 8388607 THEN
    RAISE EXCEPTION 'generation % is out of range', k
      USING ERRCODE = 'numeric_value_out_of_range', HINT = 'Generations are numbered from 0 to 8388607.';
  END IF;
  RETURN k << 40;
END
$$;

-- Rust: outbox.rs event_type_ok(): dot-separated parts of ASCII letters,
-- digits, `_` and `-`, at most 200 bytes (NULL: false).
CREATE FUNCTION webhook._event_type_ok(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(octet_length(t) <= 200 AND t ~ '^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$', false);

-- Rust: outbox.rs event_type_reserved() (NULL: false).
CREATE FUNCTION webhook._event_type_reserved(t text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(t = 'webhook' OR starts_with(t, 'webhook.'), false);

-- Rust: outbox.rs ordering_key() (ORDERING_KEY_MAX = 256 bytes).
-- PL/pgSQL: called per captured row, where a SQL function (not inlined,
-- being strict) would start an executor of its own each time.
CREATE FUNCTION webhook._ordering_key(key text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN CASE WHEN octet_length(key) <= 256 THEN key
              ELSE 'sha256:' || encode(sha256(convert_to(key, 'UTF8')), 'hex') END;
END
$$;

-- Rust: outbox.rs check_size_sql() (error.rs EventTooLarge).
CREATE FUNCTION webhook._check_event_size(event_type text, size bigint) RETURNS void
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE max int := (SELECT s.max_event_size FROM webhook.portable_settings s);
BEGIN
  IF size > max THEN
    RAISE EXCEPTION '% event of % bytes exceeds webhook.max_event_size (% bytes)', event_type, size, max
      USING ERRCODE = 'program_limit_exceeded',
            HINT = 'Nothing was written. Capture fewer columns (webhook.track(..., columns => ...)), or send an id the receiver can fetch the rest by; the owner of the webhook schema can raise webhook.portable_settings.max_event_size.';
  END IF;
END
$$;

-- Rust: outbox.rs without_nul_escapes(): every `\u0000` escape becomes
-- `\ufffd`; escapes are taken whole, so an escaped backslash followed by
-- "u0000" is left alone.
CREATE FUNCTION webhook._without_nul_escapes(body text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN regexp_replace(body, '(?<=^|[^\\])((?:\\\\)*)\\u0000', '\1\\ufffd', 'g');

-- Rust: route.rs patterns_for(): `*` unless the type is pg_webhook's own,
-- each prefix at a dot, the type itself.
CREATE FUNCTION webhook._patterns_for(event_type text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE WHEN starts_with(event_type, 'webhook.') THEN '{}'::text[] ELSE '{*}'::text[] END
    || coalesce((SELECT array_agg(array_to_string((string_to_array(event_type, '.'))[1:i], '.') || '.*' ORDER BY i)
                   FROM generate_series(1, cardinality(string_to_array(event_type, '.')) - 1) AS i), '{}')
    || event_type;

-- Rust: route.rs matches(): `*` (every application event), the type itself,
-- or a prefix ending in `.*`.
CREATE FUNCTION webhook._matches(patterns text[], event_type text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN patterns && webhook._patterns_for(event_type);

-- Rust: guc.rs traceparent(): webhook.traceparent when it is a W3C
-- `traceparent` (lowercase hex, version not ff, ids not all zeros), else NULL.
CREATE FUNCTION webhook._traceparent() RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
RETURN (SELECT v FROM (SELECT current_setting('webhook.traceparent', true) AS v) s
         WHERE v ~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
           AND NOT starts_with(v, 'ff-')
           AND substr(v, 4, 32) <> repeat('0', 32)
           AND substr(v, 37, 16) <> repeat('0', 16));

-- Rust: guc.rs allow_http().
CREATE FUNCTION webhook._allow_http() RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE
RETURN (SELECT s.allow_http FROM webhook.portable_settings s);

-- Wake-ups (extension/src/wake.rs): a commit that wrote events NOTIFYs
-- only while a dispatcher is idle. The native edition keeps "idle until"
-- in a word of shared memory; here an idle dispatcher holds a session-level
-- advisory lock (released by itself when its connection ends), which a
-- writing transaction tests without waiting and without writing anything.
-- Unlike the native edition, every transaction that writes while the
-- dispatcher is idle notifies (not only the first), and it looks when it
-- writes its first event rather than at commit; a commit that misses the
-- dispatcher's going idle is found by its next poll.

-- Rust: lib.rs set_idle() (wake.rs): idle_ms > 0 idle, 0 busy.
CREATE FUNCTION webhook._set_idle(idle_ms bigint) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE held boolean := EXISTS (SELECT 1 FROM pg_locks l
                                  WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
                                    AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                                    AND l.classid = 0 AND l.objid = 1711 AND l.objsubid = 1 AND l.mode = 'ExclusiveLock');
BEGIN
  IF idle_ms < 0 THEN
    RAISE EXCEPTION 'idle_ms must not be negative' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- Key 1711: the pair (0, 1711) of pg_locks' classid and objid.
  IF idle_ms > 0 AND NOT held THEN
    PERFORM pg_try_advisory_lock(1711);
  ELSIF idle_ms = 0 AND held THEN
    PERFORM pg_advisory_unlock(1711);
  END IF;
END
$$;

-- Rust: capture.rs suspend_capture() and SUSPENDED: the transactions in
-- which capture is suspended. A row, not a setting: any role may SET a
-- placeholder setting, and suspending is granted. Written and read only by
-- the owner's functions (suspend_capture() through this one, the capture
-- trigger); a row of a savepoint rolled back goes with it, as the native
-- edition's flag does; rows of ended transactions are removed by the next
-- call.
CREATE TABLE webhook.capture_suspension (txid xid8 PRIMARY KEY);

CREATE FUNCTION webhook._suspend_capture(suspend boolean) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  DELETE FROM webhook.capture_suspension WHERE txid < pg_snapshot_xmin(pg_current_snapshot());
  IF suspend THEN
    INSERT INTO webhook.capture_suspension VALUES (pg_current_xact_id()) ON CONFLICT DO NOTHING;
  ELSE
    DELETE FROM webhook.capture_suspension WHERE txid = pg_current_xact_id();
  END IF;
  -- What the capture trigger looks at first (a setting is cheap to read);
  -- the row decides.
  PERFORM set_config('webhook.capture_suspended', CASE WHEN suspend THEN 'on' ELSE '' END, true);
END
$$;

-- Rust: lib.rs wrote_events() (capture.rs mark_written, on_xact): once per
-- transaction, NOTIFY webhook if webhook.notify is on and a dispatcher is
-- idle (the notification is sent at commit, and not at all on rollback).
CREATE FUNCTION webhook._wrote_events() RETURNS void
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE notify text;
BEGIN
  IF current_setting('webhook.wrote_events', true) IS NOT DISTINCT FROM 'yes' THEN
    RETURN;
  END IF;
  PERFORM set_config('webhook.wrote_events', 'yes', true);
  -- The native edition's webhook.notify is a boolean setting, which SET
  -- checks; here it is a placeholder any text can be SET to, so it is read
  -- as PostgreSQL reads a boolean setting (any unique prefix of on, off,
  -- true, false, yes, no; 1 or 0; any case). Empty (RESET, or never set)
  -- is the default, on. Anything else wakes the dispatcher, the safe
  -- choice, and says why rather than fail the transaction that wrote.
  notify := current_setting('webhook.notify', true);
  IF notify ~* '^(of|off|f|fa|fal|fals|false|n|no|0)$' THEN
    RETURN;
  END IF;
  IF coalesce(notify, '') <> '' AND notify !~* '^(on|t|tr|tru|true|y|ye|yes|1)$' THEN
    RAISE WARNING 'webhook.notify is set to "%", which is not a boolean: idle dispatchers are woken as if it were on', notify
      USING HINT = 'SET webhook.notify to on or off.';
  END IF;
  -- Granted (and given back at once) unless an idle dispatcher holds it.
  IF pg_try_advisory_lock_shared(1711) THEN
    PERFORM pg_advisory_unlock_shared(1711);
  ELSE
    PERFORM pg_notify('webhook', NULL);
  END IF;
END
$$;
