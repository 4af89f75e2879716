-- The portable edition's capture trigger: extension/src/capture.rs and
-- payload.rs in PL/pgSQL. The same trigger arguments (written by
-- webhook.track(), capture.sql), the same envelope and, for every column
-- type, the same JSON bytes: PostgreSQL's to_json() writes most types
-- exactly as payload.rs does; the five it writes otherwise (timestamptz,
-- timestamp, date, time, bytea), and arrays and composites holding them, are
-- rewritten from it, as are money, timetz and ranges and multiranges (as
-- their bounds). The capture function runs with the settings output
-- functions read fixed by its SET clauses, as payload.rs
-- SessionIndependent fixes them: no byte depends on the writer's session.
-- Two differences remain, both of form only
-- (tests/sql/test_portable_capture.py pins them): a type with a cast to
-- json of its own (an extension's, as hstore's) is written by that cast
-- here and by its output function in the native edition; and a json value
-- inside a composite that is rewritten loses the white space around it
-- (json keeps its text as written; rebuilt from json_each(), only the value
-- is left). One row this edition cannot capture: a composite value holding
-- both a json value with the escape \u0000 and a timestamp, date or bytea
-- (PostgreSQL's JSON functions refuse to read into it); its statement fails
-- with PostgreSQL's error, nothing is written.
--
-- Everything about the table is read from the catalog on every row: there
-- is no event trigger to say a migration changed it, so nothing is cached
-- that could go stale (a column added, dropped, renamed or retyped is
-- captured as it is now, as the native edition does).

-- A domain's base type (through domains over domains).
CREATE FUNCTION webhook._base_type(t oid) RETURNS oid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  WITH RECURSIVE b(oid, typbasetype) AS (
    SELECT oid, typbasetype FROM pg_type WHERE oid = t
    UNION ALL
    SELECT p.oid, p.typbasetype FROM pg_type p JOIN b ON p.oid = b.typbasetype)
  SELECT oid FROM b WHERE typbasetype = 0
$$;

-- Does capture write values of this type otherwise than to_json()?
CREATE FUNCTION webhook._json_differs(typ oid) RETURNS boolean
LANGUAGE sql STABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
  WITH RECURSIVE r(oid) AS (
    SELECT webhook._base_type(typ)
    UNION
    SELECT webhook._base_type(c.child)
      FROM r JOIN pg_type p ON p.oid = r.oid
      CROSS JOIN LATERAL (
        SELECT p.typelem AS child WHERE p.typsubscript = 'array_subscript_handler'::regproc
        UNION ALL
        SELECT a.atttypid FROM pg_attribute a
         WHERE p.typtype = 'c' AND a.attrelid = p.typrelid AND a.attnum > 0 AND NOT a.attisdropped) c
  )
  SELECT EXISTS (SELECT 1 FROM r JOIN pg_type p ON p.oid = r.oid
                  WHERE r.oid IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype, 'time'::regtype,
                                  'bytea'::regtype, 'timetz'::regtype, 'money'::regtype)
                     OR p.typtype IN ('r', 'm'))
$$;

-- payload.rs push_datum(): the JSON of one value of type `typ`, from the
-- JSON to_json() gave it.
CREATE FUNCTION webhook._json_value(v json, typ oid) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE base oid := CASE WHEN typ IN (17, 790, 1082, 1083, 1114, 1184, 1266) THEN typ ELSE webhook._base_type(typ) END;
        t record; s text; sub oid;
        is_empty boolean; lower_inf boolean; upper_inf boolean; lower_inc boolean; upper_inc boolean;
        lower_v json; upper_v json;
BEGIN
  IF v IS NULL OR json_typeof(v) = 'null' THEN
    RETURN 'null';
  END IF;
  IF base = 'money'::regtype THEN
    RETURN webhook._money_json((v #>> '{}')::money);
  END IF;
  IF base IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype, 'time'::regtype, 'bytea'::regtype,
              'timetz'::regtype) THEN
    s := v #>> '{}';
    RETURN '"' || CASE base
      WHEN 'timetz'::regtype THEN webhook._iso_timetz(s::timetz)
      WHEN 'timestamptz'::regtype THEN webhook._rfc3339(s::timestamptz)
      WHEN 'timestamp'::regtype THEN webhook._iso_timestamp(s::timestamp, false)
      WHEN 'date'::regtype THEN webhook._iso_date(s::date)
      WHEN 'time'::regtype THEN webhook._iso_time(s::time)
      -- to_json() writes bytea as its output function does (hex or escape,
      -- as bytea_output says), which bytea's input reads back; payload.rs
      -- writes base64.
      ELSE translate(encode(s::bytea, 'base64'), E'\n', '') END || '"';
  END IF;
  IF NOT webhook._json_differs(base) THEN
    RETURN v::text;
  END IF;
  SELECT p.typelem, p.typtype, p.typrelid, p.typsubscript = 'array_subscript_handler'::regproc AS is_array
    INTO t FROM pg_type p WHERE p.oid = base;
  IF t.typtype = 'r' THEN
    -- payload.rs push_range(): its bounds, each as a value of its subtype.
    -- The text to_json() gave it reads back as the same range: written and
    -- read under the capture function's settings.
    EXECUTE format('SELECT pg_catalog.isempty(r), pg_catalog.lower_inf(r), pg_catalog.upper_inf(r), '
                   'pg_catalog.lower_inc(r), pg_catalog.upper_inc(r), '
                   'pg_catalog.to_json(pg_catalog.lower(r)), pg_catalog.to_json(pg_catalog.upper(r)) '
                   'FROM (SELECT $1::%s AS r) s', base::regtype)
      INTO is_empty, lower_inf, upper_inf, lower_inc, upper_inc, lower_v, upper_v USING v #>> '{}';
    IF is_empty THEN
      RETURN '{"empty":true}';
    END IF;
    SELECT r.rngsubtype INTO sub FROM pg_range r WHERE r.rngtypid = base;
    RETURN '{"lower":' || CASE WHEN lower_inf THEN 'null' ELSE webhook._json_value(lower_v, sub) END
        || ',"upper":' || CASE WHEN upper_inf THEN 'null' ELSE webhook._json_value(upper_v, sub) END
        || ',"lower_inc":' || lower_inc::text || ',"upper_inc":' || upper_inc::text || '}';
  END IF;
  IF t.typtype = 'm' THEN
    -- payload.rs push_multirange(): its ranges, in order.
    SELECT r.rngtypid INTO sub FROM pg_range r WHERE r.rngmultitypid = base;
    EXECUTE format('SELECT pg_catalog.string_agg(webhook._json_value(pg_catalog.to_json(u.r), $2), '','' ORDER BY u.n) '
                   'FROM pg_catalog.unnest($1::%s) WITH ORDINALITY AS u (r, n)', base::regtype)
      INTO s USING v #>> '{}', sub;
    RETURN '[' || coalesce(s, '') || ']';
  END IF;
  IF t.is_array THEN
    -- Elements are never arrays themselves: a JSON array inside is the
    -- next dimension of a multidimensional array.
    RETURN '[' || coalesce((SELECT string_agg(webhook._json_value(e.v, CASE WHEN json_typeof(e.v) = 'array'
                                                                            THEN base ELSE t.typelem END), ','
                                              ORDER BY e.n)
                              FROM json_array_elements(v) WITH ORDINALITY AS e (v, n)), '') || ']';
  END IF;
  -- A composite: its attributes in order, each by its own type.
  RETURN '{' || coalesce((SELECT string_agg(to_json(e.key)::text || ':' || webhook._json_value(e.value, a.atttypid), ','
                                            ORDER BY e.n)
                            FROM json_each(v) WITH ORDINALITY AS e (key, value, n)
                            JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attname = e.key
                                               AND a.attnum > 0 AND NOT a.attisdropped), '') || '}';
END
$$;

-- payload.rs push_row(): a row's JSON object, every live column or only
-- those named in `cols`, in the table's order; `fix` names the columns
-- whose values to_json() writes otherwise (with their types). `r` is
-- to_json(rec). Rebuilt from json_each(), a json column's value would lose
-- the white space around it (json keeps its text as written, and to_json()
-- embeds it so); when the rebuilt row is shorter, such values are read
-- from the row itself.
CREATE FUNCTION webhook._row_json(r json, rec anyelement, cols name[], fix_names name[], fix_types oid[]) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE out text; whole text;
BEGIN
  IF r IS NULL THEN
    RETURN NULL;
  END IF;
  IF cols IS NULL AND fix_names IS NULL THEN
    RETURN r::text;
  END IF;
  IF webhook._holds_nul_escape(r) THEN
    -- json_each() would refuse the row (see _holds_nul_escape): column by column.
    SELECT '{' || coalesce(string_agg(to_json(a.attname::text)::text || ':'
                                      || CASE WHEN f.typ IS NULL THEN coalesce(webhook._column(rec, a.attname, true), 'null')
                                              ELSE webhook._json_value(webhook._column(rec, a.attname, true)::json, f.typ) END,
                                      ',' ORDER BY a.attnum), '') || '}'
      INTO out
      FROM pg_attribute a
      LEFT JOIN unnest(fix_names, fix_types) AS f (name, typ) ON f.name = a.attname
     WHERE a.attrelid = (SELECT t.typrelid FROM pg_type t WHERE t.oid = pg_typeof(rec)) AND a.attnum > 0
       AND NOT a.attisdropped AND (cols IS NULL OR a.attname = ANY (cols));
    RETURN out;
  END IF;
  SELECT '{' || coalesce(string_agg(to_json(e.key)::text || ':'
                                    || CASE WHEN f.typ IS NULL THEN e.value::text ELSE webhook._json_value(e.value, f.typ) END,
                                    ',' ORDER BY e.n) FILTER (WHERE cols IS NULL OR e.key = ANY (cols)), '') || '}',
         '{' || coalesce(string_agg(to_json(e.key)::text || ':' || e.value::text, ',' ORDER BY e.n), '') || '}'
    INTO out, whole
    FROM json_each(r) WITH ORDINALITY AS e (key, value, n)
    LEFT JOIN unnest(fix_names, fix_types) AS f (name, typ) ON f.name = e.key;
  IF length(whole) = length(r::text) THEN
    RETURN out;
  END IF;
  SELECT '{' || coalesce(string_agg(to_json(e.key)::text || ':'
                                    || CASE WHEN f.typ IS NOT NULL THEN webhook._json_value(e.value, f.typ)
                                            WHEN json_typeof(e.value) = 'null' THEN 'null'
                                            WHEN webhook._base_type(a.atttypid) = 'json'::regtype
                                              THEN webhook._column(rec, e.key::name, false)
                                            ELSE e.value::text END,
                                    ',' ORDER BY e.n), '') || '}'
    INTO out
    FROM json_each(r) WITH ORDINALITY AS e (key, value, n)
    LEFT JOIN unnest(fix_names, fix_types) AS f (name, typ) ON f.name = e.key
    LEFT JOIN pg_attribute a ON a.attrelid = (SELECT t.typrelid FROM pg_type t WHERE t.oid = pg_typeof(rec))
                            AND a.attname = e.key AND a.attnum > 0 AND NOT a.attisdropped
   WHERE cols IS NULL OR e.key = ANY (cols);
  RETURN out;
END
$$;

-- A row's JSON that holds the escape \u0000 (a json column may: json
-- accepts it, text cannot hold it): PostgreSQL's JSON functions that read
-- into it (json_each, ->) refuse such a row, so it is read column by
-- column instead. Escaped backslashes before `u0000` make this say yes
-- too, which costs only time.
CREATE FUNCTION webhook._holds_nul_escape(r json) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN strpos(r::text, '\u0000') > 0;

-- One column of a row, read by name: its to_json() (as_json), or its
-- `value::text`, for the key columns ->> of to_json() writes otherwise.
CREATE FUNCTION webhook._column(r anyelement, col name, as_json boolean) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE t text;
BEGIN
  EXECUTE format(CASE WHEN as_json THEN 'SELECT pg_catalog.to_json(($1).%I)::pg_catalog.text'
                      ELSE 'SELECT ($1).%I::pg_catalog.text' END, col) INTO t USING r;
  RETURN t;
END
$$;

-- Does capture write values of this column type otherwise than to_json()?
-- The built-in types of ordinary tables answered at once, any other
-- through the catalog.
CREATE FUNCTION webhook._column_differs(typ oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
  WHEN typ IN (16, 20, 21, 23, 25, 114, 700, 701, 869, 1042, 1043, 1186, 1700, 2950, 3802,
               1000, 1005, 1007, 1009, 1015, 1016, 1021, 1022, 1231, 199, 3807, 2951) THEN false
  WHEN typ IN (17, 790, 1082, 1083, 1114, 1184, 1266, 1001, 791, 1182, 1183, 1115, 1185, 1270) THEN true
  ELSE webhook._json_differs(typ) END;

-- A capture trigger's arguments that webhook.track() did not write
-- (error.rs TriggerArguments).
CREATE FUNCTION webhook._capture_arguments_invalid(trigger name, relation regclass, why text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RAISE EXCEPTION 'webhook capture trigger % on % has invalid arguments: %', to_json(trigger::text), relation, why
    USING ERRCODE = 'trigger_protocol_violated',
          HINT = 'Capture triggers are installed by webhook.track(); drop this trigger and call webhook.track() for the table instead.';
END
$$;

-- A column number of a trigger argument, as capture.rs parse_attnums()
-- reads it (an i16, white space around it allowed); NULL if it is none.
CREATE FUNCTION webhook._attnum(a text) RETURNS int2
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN a ~ '^\s*[+-]?[0-9]{1,5}\s*$' AND trim(a)::int BETWEEN -32768 AND 32767 THEN trim(a)::int2 END;

-- Which column number of the trigger's arguments is wrong, in capture.rs's
-- words (parse_attnums: the key columns' argument first).
CREATE FUNCTION webhook._capture_attnums_invalid(trigger name, relation regclass, tracked oid, args text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE natts int := (SELECT c.relnatts FROM pg_class c WHERE c.oid = tracked); arg text; part text;
BEGIN
  FOREACH arg IN ARRAY args LOOP
    CONTINUE WHEN arg = '';
    FOREACH part IN ARRAY string_to_array(arg, ',') LOOP
      IF webhook._attnum(part) IS NULL THEN
        PERFORM webhook._capture_arguments_invalid(trigger, relation, format('%s is not a column number', to_json(part)));
      ELSIF webhook._attnum(part) NOT BETWEEN 1 AND natts THEN
        PERFORM webhook._capture_arguments_invalid(trigger, relation,
          format('column number %s is not a column of the table', webhook._attnum(part)));
      END IF;
    END LOOP;
  END LOOP;
END
$$;

-- capture.rs changed(): did an update change any of the columns `cols`
-- (by name, of table `rel`)? A NULL on one side only, or values the column
-- type's own default btree equality says differ (named by its schema, on
-- values of exactly its input type); types without one compare their text.
CREATE FUNCTION webhook._columns_changed(rel oid, cols name[], old_row anyelement, new_row anyelement) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE test text; answer boolean;
BEGIN
  SELECT string_agg(CASE WHEN eq.nsp IS NULL
                         THEN format('($1).%1$I::pg_catalog.text IS DISTINCT FROM ($2).%1$I::pg_catalog.text', a.attname)
                         ELSE format('(($1).%1$I IS NULL) <> (($2).%1$I IS NULL) OR NOT (($1).%1$I%3$s OPERATOR(%2$s.=) ($2).%1$I%3$s)',
                                     a.attname, eq.nsp, eq.cast) END, ' OR ')
    INTO test
    FROM pg_attribute a
    LEFT JOIN LATERAL (
      SELECT o.oprnamespace::regnamespace::text AS nsp,
             CASE WHEN t.typtype = 'p' THEN '' ELSE '::' || format_type(oc.opcintype, NULL) END AS cast
        FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
        JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = oc.opcintype
                       AND ao.amoprighttype = oc.opcintype AND ao.amopstrategy = 3
        JOIN pg_operator o ON o.oid = ao.amopopr
        JOIN pg_type t ON t.oid = oc.opcintype
       WHERE am.amname = 'btree' AND oc.opcdefault
         AND oc.opcintype IN (a.atttypid, webhook._base_type(a.atttypid))
       ORDER BY oc.opcintype = a.atttypid DESC
       LIMIT 1) eq ON true
   WHERE a.attrelid = rel AND a.attname = ANY (cols) AND a.attnum > 0 AND NOT a.attisdropped;
  IF test IS NULL THEN
    RETURN false;
  END IF;
  EXECUTE 'SELECT coalesce(' || test || ', false)' INTO answer USING old_row, new_row;
  RETURN answer;
END
$$;

-- The AFTER ROW trigger webhook.track() installs (capture.rs
-- webhook_capture_row). SECURITY DEFINER: it writes the outbox, which the
-- writing role may not; who may install it is granted (grant_tracker),
-- and its arguments are checked on every row.
CREATE FUNCTION webhook._capture_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Its catalog query, planned anew for every row, would cost more than the
-- rest of the trigger.
SET plan_cache_mode = force_generic_plan
-- What output functions read, fixed as payload.rs SessionIndependent fixes
-- it (and search_path above, as its with_catalog_search_path): no byte of
-- an event depends on the writer's session.
SET "DateStyle" = 'ISO, MDY' SET "IntervalStyle" = 'iso_8601' SET extra_float_digits = 1 SET "TimeZone" = 'UTC'
SET quote_all_identifiers = off AS $$
DECLARE
  event_type text := TG_ARGV[0];
  op text := lower(TG_OP);
  ts timestamptz := clock_timestamp();
  row_new json;
  row_old json;
  projected name[];
  tracked oid;
  sh record;
  key text;
  -- The row the key is read from (the new one, the old one for a delete),
  -- and whether it must be read column by column (_holds_nul_escape).
  key_row json;
  key_nul boolean;
  v json;
  i int;
  body text;
BEGIN
  IF TG_LEVEL <> 'ROW' OR TG_WHEN <> 'AFTER' THEN
    RAISE EXCEPTION 'webhook capture must run as an AFTER ROW trigger'
      USING ERRCODE = 'trigger_protocol_violated', HINT = 'Use webhook.track(table) to install it.';
  END IF;
  -- capture.rs SUSPENDED (webhook.suspend_capture()).
  IF current_setting('webhook.capture_suspended', true) = 'on'
     AND EXISTS (SELECT 1 FROM webhook.capture_suspension s WHERE s.txid = pg_current_xact_id()) THEN
    RETURN NULL;
  END IF;
  IF TG_NARGS NOT IN (3, 4, 5) THEN
    PERFORM webhook._capture_arguments_invalid(TG_NAME, TG_RELID, format('expected 3 to 5 arguments, got %s', TG_NARGS));
  END IF;
  IF NOT webhook._event_type_ok(event_type) THEN
    PERFORM webhook._capture_arguments_invalid(TG_NAME, TG_RELID, format('%s is not a valid event type', to_json(event_type)));
  END IF;
  IF webhook._event_type_reserved(event_type) THEN
    PERFORM webhook._capture_arguments_invalid(TG_NAME, TG_RELID,
      format('event type %s is reserved: webhook.* are pg_webhook''s own', to_json(event_type)));
  END IF;

  -- The tracked table: this one, or for a partition's cloned trigger the
  -- table track() was called on (the top of the trigger's clone chain).
  WITH RECURSIVE up (relid, parent) AS (
    SELECT t.tgrelid, t.tgparentid FROM pg_trigger t WHERE t.tgrelid = TG_RELID AND t.tgname = TG_NAME
    UNION ALL
    SELECT t.tgrelid, t.tgparentid FROM up JOIN pg_trigger t ON t.oid = up.parent
  )
  SELECT coalesce((SELECT up.relid FROM up WHERE up.parent = 0), TG_RELID) INTO tracked;
  -- Its key (its primary key now) and projected columns (track() wrote the
  -- tracked table's column numbers; a partition's columns are found by
  -- name), and the columns to_json() writes otherwise. Each lookup by key,
  -- so that the generic plan reads the catalog by its indexes.
  WITH wanted AS (
    SELECT 'key' AS kind, k.ord, k.a AS attnum
      FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k (a, ord)
     WHERE i.indrelid = tracked AND i.indisprimary AND k.ord <= i.indnkeyatts AND k.a > 0
    UNION ALL
    SELECT 'only', o.ord, webhook._attnum(o.a) FROM unnest(string_to_array(nullif(TG_ARGV[2], ''), ',')) WITH ORDINALITY AS o (a, ord)
  ), named AS (
    SELECT w.kind, w.ord,
           (SELECT ta.attname FROM pg_attribute ta WHERE ta.attrelid = tracked AND ta.attnum = w.attnum AND w.attnum > 0) AS tracked_name
      FROM wanted w
  ), mapped AS (
    SELECT n.kind, n.ord, n.tracked_name IS NOT NULL AS known, pa.attname,
           CASE WHEN pt.typtype = 'd' THEN webhook._base_type(pt.oid) ELSE pt.oid END AS base
      FROM named n
      LEFT JOIN LATERAL (SELECT a.attname, a.atttypid FROM pg_attribute a
                          WHERE a.attrelid = TG_RELID AND a.attname = n.tracked_name AND a.attnum > 0 AND NOT a.attisdropped) pa ON true
      LEFT JOIN LATERAL (SELECT t.oid, t.typtype FROM pg_type t WHERE t.oid = pa.atttypid) pt ON true
  ), fix AS (
    SELECT array_agg(a.attname ORDER BY a.attnum) AS names, array_agg(a.atttypid ORDER BY a.attnum) AS types
      FROM pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped AND webhook._column_differs(a.atttypid)
  )
  SELECT (SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.oid = tracked) AS table_name,
         coalesce((SELECT bool_and(m.known) FROM mapped m), true) AS args_ok,
         coalesce((SELECT array_agg(m.attname ORDER BY m.ord) FROM mapped m WHERE m.kind = 'only' AND m.attname IS NOT NULL), '{}') AS only,
         fix.names AS fix_names, fix.types AS fix_types,
         -- Key columns: NULL where dropped after track(); how each is written.
         (SELECT array_agg(m.attname ORDER BY m.ord) FROM mapped m WHERE m.kind = 'key') AS key_names,
         (SELECT array_agg(m.base ORDER BY m.ord) FROM mapped m WHERE m.kind = 'key') AS key_types,
         (SELECT array_agg(p.typsubscript = 'array_subscript_handler'::regproc OR p.typtype = 'c'
                           OR EXISTS (SELECT 1 FROM pg_cast c WHERE c.castsource = p.oid
                                         AND c.casttarget IN ('json'::regtype, 'jsonb'::regtype)) ORDER BY m.ord)
            FROM mapped m LEFT JOIN LATERAL (SELECT t.* FROM pg_type t WHERE t.oid = m.base) p ON true
           WHERE m.kind = 'key') AS key_by_text
    INTO sh FROM fix;
  -- The second argument is empty but in 0.1.0's triggers (the key's column
  -- numbers then; the key is the primary key now): checked as capture.rs
  -- checks it, raising only for a bad one.
  IF NOT sh.args_ok OR TG_ARGV[1] <> '' THEN
    PERFORM webhook._capture_attnums_invalid(TG_NAME, TG_RELID, tracked, ARRAY[TG_ARGV[1], TG_ARGV[2]]);
  END IF;
  -- outbox.rs check_key_scope() (KEY_SCOPE_MAX).
  IF TG_NARGS >= 4 AND octet_length(TG_ARGV[3]) NOT BETWEEN 1 AND 140 THEN
    PERFORM webhook._capture_arguments_invalid(TG_NAME, TG_RELID,
      format('the key scope must be 1 to 140 bytes, not %s', octet_length(TG_ARGV[3])));
  END IF;
  IF TG_NARGS = 5 AND TG_ARGV[4] <> 'skip_unchanged' THEN
    PERFORM webhook._capture_arguments_invalid(TG_NAME, TG_RELID, format('%s is not an option', to_json(TG_ARGV[4])));
  END IF;
  IF op = 'update' AND TG_ARGV[2] <> '' AND NOT webhook._columns_changed(TG_RELID, sh.only, OLD, NEW) THEN
    RETURN NULL;
  END IF;
  -- capture.rs skip_unchanged: an update of every column, only if one changed.
  IF op = 'update' AND TG_ARGV[2] = '' AND TG_NARGS = 5
     AND NOT webhook._columns_changed(TG_RELID, ARRAY(SELECT a.attname FROM pg_attribute a
                                                        WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped),
                                      OLD, NEW) THEN
    RETURN NULL;
  END IF;

  IF op <> 'delete' THEN
    row_new := to_json(NEW);
  END IF;
  IF op <> 'insert' THEN
    row_old := to_json(OLD);
  END IF;
  projected := CASE WHEN TG_ARGV[2] <> '' THEN sh.only END;
  body := '{"type":' || to_json(event_type)::text || ',"timestamp":"' || webhook._rfc3339(ts)
          || '","data":{"table":' || to_json(sh.table_name)::text || ',"op":"' || op
          || '","new":' || coalesce(webhook._row_json(row_new, NEW, projected, sh.fix_names, sh.fix_types), 'null')
          || ',"old":' || coalesce(webhook._row_json(row_old, OLD, projected, sh.fix_names, sh.fix_types), 'null')
          || '}}';
  PERFORM webhook._check_event_size(event_type, octet_length(body));

  -- payload.rs key_text(): the key columns' text, comma separated: what
  -- `value::text` gives (->> of to_json() is exactly that for every type
  -- but booleans, arrays, composites and types with a json cast), except for the
  -- types written otherwise in the payload (timestamps, dates, times,
  -- bytea, money), written as there.
  -- Key columns dropped after track() (the primary key went with them)
  -- are left out; without any, the event has no key.
  key_row := coalesce(row_new, row_old);
  key_nul := webhook._holds_nul_escape(key_row);
  FOR i IN 1 .. coalesce(cardinality(sh.key_names), 0) LOOP
    CONTINUE WHEN sh.key_names[i] IS NULL;
    key := CASE WHEN key IS NULL THEN '' ELSE key || ',' END;
    v := CASE WHEN key_nul
              THEN webhook._column(CASE WHEN op = 'delete' THEN OLD ELSE NEW END, sh.key_names[i], true)::json
              ELSE key_row -> sh.key_names[i]::text END;
    CONTINUE WHEN json_typeof(v) = 'null';
    key := key || CASE
      WHEN sh.key_types[i] IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype, 'bytea'::regtype, 'time'::regtype,
                               'timetz'::regtype, 'money'::regtype)
        THEN trim(BOTH '"' FROM webhook._json_value(v, sh.key_types[i]))
      -- to_json() writes booleans as JSON does, their output function as t and f.
      WHEN sh.key_types[i] = 'bool'::regtype THEN CASE WHEN v::text = 'true' THEN 't' ELSE 'f' END
      WHEN sh.key_by_text[i] THEN webhook._column(CASE WHEN op = 'delete' THEN OLD ELSE NEW END, sh.key_names[i], false)
      ELSE v #>> '{}' END;
  END LOOP;

  -- outbox.rs scoped_key(): the scope (the tracked table's name now for
  -- 0.1.0's triggers, which have none), `:`, the key as stored.
  INSERT INTO webhook.event_log (event_type, body, ordering_key, created_at, traceparent)
  VALUES (event_type, body,
          CASE WHEN key IS NOT NULL
               THEN CASE WHEN TG_NARGS >= 4 THEN TG_ARGV[3] ELSE sh.table_name END || ':' || webhook._ordering_key(key) END,
          ts,
          CASE WHEN current_setting('webhook.traceparent', true) <> '' THEN webhook._traceparent() END);
  PERFORM webhook._wrote_events();
  RETURN NULL;
END
$$;
