"""No function of pg_webhook runs with its caller's search_path.

A function that resolves names through the caller's search_path runs
whatever operator or function a role that may CREATE in a schema on that
path planted there (the CVE-2018-1058 pattern): an operator with an exact
match for the argument types wins over pg_catalog's inexact one, and one on
a path that lists pg_catalog after it wins over everything. As the caller
is often a superuser (track() in the README, any CREATE INDEX, which fires
our event trigger), that makes the planting role superuser.

The rule is checked on the catalog, and then tried: operators planted in
`public` by a role with nothing but CREATE there, every public function of
the extension and the DDL that fires its event triggers run by a
superuser whose search_path puts `public` first, and none of the planted
code may run.
"""

import re

import psycopg
import pytest

from support.cluster import ROOT, connect, q, q1

PINNED = "search_path=pg_catalog, pg_temp"

# The one SQL function without a SET clause, and why (claim.sql): a SET
# clause would stop the planner from inlining it into its callers, which
# pin the path; nobody else may execute it.
INLINED = {"_rooms"}


def functions(conn):
    return q(
        conn,
        """SELECT p.proname, l.lanname, coalesce(p.proconfig, '{}'), p.oid::regprocedure::text,
                  has_function_privilege('public', p.oid, 'EXECUTE'), p.prosqlbody IS NOT NULL
             FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE p.pronamespace = 'webhook'::regnamespace ORDER BY 1""",
    )


def test_every_function_pins_its_search_path(db):
    unpinned = []
    for name, lang, config, sig, public, standard_body in functions(db):
        # C runs no SQL; a SQL-standard body (RETURN ..., the portable
        # edition's) was resolved when it was created, whatever the caller's
        # path is now.
        if lang == "c" or standard_body:
            continue
        if name in INLINED:
            assert lang == "sql" and not public, f"{sig} must stay an inlinable SQL function nobody else executes"
            continue
        if PINNED not in config:
            unpinned.append(f"{sig} ({lang}, {config or 'no SET'})")
    assert not unpinned, "functions without SET search_path = pg_catalog, pg_temp:\n" + "\n".join(unpinned)


def test_c_functions_run_no_sql():
    """The C functions are exempt from the rule because they resolve
    nothing by name through the path: they run no SQL (SPI only in the
    #[pg_test]s) and find their relations by OID or qualified name."""
    for path in sorted((ROOT / "extension" / "src").glob("*.rs")):
        text = path.read_text()
        tests = re.search(r"^#\[cfg\(any\(test, feature = \"pg_test\"\)\)\]|^#\[cfg\(test\)\]", text, re.M)
        body = text[: tests.start()] if tests else text
        for bad in ("Spi::", "SPI_", "spi::"):
            assert bad not in body, f"{path.name} runs SQL ({bad}) outside its tests"


PLANTER = "sp_planter"

# Types pg_webhook's functions compare; operators on them (and between a
# type and `unknown`-typed literals, which resolve to the other side's type)
# are planted in public wherever pg_catalog has no exact match, and also
# where it has one (they win when the caller's path lists public first).
TYPES = [
    "oid", "regclass", "regprocedure", "regrole", "regnamespace", "name", "text", '"char"', "smallint",
    "integer", "bigint", "boolean", "timestamptz", "interval", "jsonb", "text[]", "bigint[]", "integer[]",
    "int2vector", "pg_snapshot", "xid8", "double precision",
]
OPERATORS = ["=", "<>", "<", "<=", ">", ">=", "~", "~*", "!~", "~~", "!~~", "||", "+", "-", "&&", "@>"]


@pytest.fixture
def planted(db, dbname):
    """Operators planted in public by a role with CREATE on it and nothing
    else; each logs that it ran, as whom, and returns what pg_catalog's
    would (or NULL) so that nothing else changes."""
    db.execute(f"DROP ROLE IF EXISTS {PLANTER}")
    db.execute(f"CREATE ROLE {PLANTER} LOGIN")
    db.execute(f"GRANT CREATE ON SCHEMA public TO {PLANTER}")
    db.execute(f"GRANT CONNECT ON DATABASE {dbname} TO {PLANTER}")
    db.execute("CREATE TABLE public.planted_ran (who text, op text)")
    db.execute("GRANT INSERT ON public.planted_ran TO PUBLIC")
    with psycopg.connect(f"{db.info.dsn} user={PLANTER}", autocommit=True) as p:
        n = 0
        for left in TYPES:
            for right in TYPES:
                if left != right and not ({left, right} & {"text", "name", "oid"}):
                    continue
                for op in OPERATORS:
                    n += 1
                    fn = f"public.planted_{n}"
                    p.execute(
                        f"""CREATE FUNCTION {fn}(a {left}, b {right}) RETURNS boolean
                            LANGUAGE plpgsql AS $f$
                            BEGIN
                              INSERT INTO public.planted_ran VALUES (current_user, '{left} {op} {right}');
                              RETURN NULL;
                            END $f$"""
                    )
                    p.execute(f"CREATE OPERATOR public.{op} (FUNCTION = {fn}, LEFTARG = {left}, RIGHTARG = {right})")
    assert n > 100
    yield
    db.execute("SET search_path = pg_catalog")
    db.execute(f"DROP OWNED BY {PLANTER} CASCADE")
    db.execute(f"DROP ROLE {PLANTER}")


def ran(db):
    return q(db, "SELECT DISTINCT who, op FROM public.planted_ran ORDER BY 1, 2")


# How each public function is called below: the test fails when the
# extension gains one it does not call. The calls themselves use no
# operator (with public first on the path, the test's own `=` would run a
# planted one).
CALLS = [
    ("track", "SELECT webhook.track('public.sp_orders', events => '{insert,update}', condition => 'NEW.note IS NOT NULL OR true', columns => '{id,note,status}')"),
    ("track", "SELECT webhook.track('public.sp_orders', event_prefix => 'sp_all')"),
    ("create_endpoint", "SELECT webhook.create_endpoint('http://127.0.0.1:9/sp', '{sp_orders.*,sp_all.*}', description => 'sp')"),
    ("create_endpoint", "SELECT webhook.create_endpoint('http://127.0.0.1:9/ops', '{webhook.*}', headers => '{\"x-a\": \"b\"}')"),
    ("alter_endpoint", "SELECT webhook.alter_endpoint({ep}, description => 'sp2', headers => '{\"x-b\": \"c\"}', timeout => '5 seconds', max_in_flight => 4, rate_limit => 10, retry_schedule => '{1s,2s}', retry_max_age => '1 hour')"),
    ("endpoint_secret", "SELECT webhook.endpoint_secret({ep})"),
    ("rotate_secret", "SELECT webhook.rotate_secret({ep})"),
    ("emit", "SELECT webhook.emit('sp_all.custom', '{\"a\": 1}', 'k1')"),
    ("suspend_capture", "SELECT webhook.suspend_capture()"),
    ("resume_capture", "SELECT webhook.resume_capture()"),
    ("insert", "INSERT INTO public.sp_orders VALUES (1, 'n', 'new'), (2, NULL, 'new')"),
    ("update", "UPDATE public.sp_orders SET note = 'm', status = 'paid'"),
    ("delete", "DELETE FROM public.sp_orders"),
    ("edition", "SELECT webhook.edition()"),
    ("version", "SELECT webhook.version()"),
    ("sign", "SELECT webhook.sign('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 1614265330, '{}')"),
    ("verify", "SELECT webhook.verify('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_1', 1614265330, '{}', 'v1,x')"),
    ("send_test", "SELECT webhook.send_test({ep})"),
    ("route", "SELECT webhook.route()"),
    ("claim", "SELECT count(*) FROM webhook.claim(1, '1 minute', 'sp-worker')"),
    ("release", "SELECT webhook.release(array_agg(delivery_id), array_agg(claim_token)) FROM webhook.claim(1, '1 minute', 'sp-worker')"),
    ("record", """SELECT webhook.record(array_agg(delivery_id), array_agg(claim_token), array_agg(500), array_agg('request error: x'::text),
                  array_agg(1.0::float8), array_agg(NULL::text), array_agg(NULL::timestamptz), 'sp-worker')
                  FROM webhook.claim(100, '1 minute', 'sp-worker')"""),
    ("redeliver", "SELECT webhook.redeliver({event})"),
    ("replay", "SELECT webhook.replay({ep}, '2000-01-01 00:00:00+00')"),
    ("disable_endpoint", "SELECT webhook.disable_endpoint({ep})"),
    ("enable_endpoint", "SELECT webhook.enable_endpoint({ep})"),
    ("endpoint_activity", "SELECT count(*) FROM webhook.endpoint_activity()"),
    ("event_types", "SELECT count(*) FROM webhook.event_types()"),
    ("set_retention", "SELECT webhook.set_retention('7 days', '1 day')"),
    ("set_auto_disable", "SELECT webhook.set_auto_disable('5 days')"),
    ("maintain", "SELECT webhook.maintain()"),
    ("prune", "SELECT webhook.prune('7 days')"),
    ("grant_dispatcher", "SELECT webhook.grant_dispatcher('sp_user')"),
    ("grant_emitter", "SELECT webhook.grant_emitter('sp_user')"),
    ("grant_tracker", "SELECT webhook.grant_tracker('sp_user')"),
    ("grant_manager", "SELECT webhook.grant_manager('sp_user')"),
    ("views", "SELECT count(*) FROM webhook.events"),
    ("views", "SELECT count(*) FROM webhook.deliveries"),
    ("views", "SELECT count(*) FROM webhook.attempts"),
    ("views", "SELECT count(*) FROM webhook.endpoint_health"),
    ("views", "SELECT count(*) FROM webhook.tracked_tables"),
    ("untrack", "SELECT webhook.untrack('public.sp_orders', 'sp_all')"),
    ("delete_endpoint", "SELECT webhook.delete_endpoint({ep})"),
    ("untrack", "SELECT webhook.untrack('public.sp_orders')"),
]

# DDL that fires pg_webhook's event triggers (capture.sql): the guard on
# every CREATE INDEX / ALTER TABLE, the drop guard on DROP EXTENSION.
DDL = [
    "CREATE INDEX ON public.sp_other (note) WHERE note IS NULL",
    "CREATE INDEX ON public.sp_other ((lower(note)))",
    "ALTER TABLE public.sp_other ADD COLUMN extra text",
    "ALTER TABLE public.sp_other RENAME COLUMN extra TO extra2",
    "CREATE TABLE public.sp_third (id int)",
    "ALTER TABLE public.sp_other DISABLE TRIGGER USER",
    "ALTER TABLE public.sp_other DROP COLUMN extra2 CASCADE",
    "DROP EXTENSION IF EXISTS pg_webhook_none",
]


@pytest.mark.parametrize("path", ['"$user", public', "public, pg_catalog"])
def test_a_superuser_runs_nothing_planted_in_public(db, planted, path):
    db.execute("SET search_path = pg_catalog")
    public = {r[0] for r in q(db, """SELECT p.proname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                                      WHERE p.pronamespace = 'webhook'::regnamespace AND p.proname !~ '^_'""")}
    called = {name for name, _ in CALLS}
    assert public <= called, f"public functions this test does not call: {sorted(public - called)}"

    db.execute("SET webhook.allow_http = on")
    db.execute("DROP ROLE IF EXISTS sp_user")
    db.execute("CREATE ROLE sp_user")
    db.execute("CREATE TABLE public.sp_orders (id int PRIMARY KEY, note text, status varchar(20))")
    db.execute("CREATE TABLE public.sp_other (id int PRIMARY KEY, note text)")
    try:
        db.execute(f"SET search_path = {path}")
        ep = event = None
        for name, sql in CALLS:
            try:
                cur = db.execute(sql.replace("{ep}", str(ep)).replace("{event}", str(event)))
                row = cur.fetchone() if cur.description else None
            except psycopg.Error as e:
                pytest.fail(f"{name}: {sql}\n{e.sqlstate}: {e}")
            if name == "create_endpoint" and ep is None:
                ep = row[0]
            if name == "emit":
                event = row[0]
        for sql in DDL:
            db.execute(sql)
        assert ran(db) == [], f"planted operators ran (search_path {path})"
    finally:
        db.execute("SET search_path = pg_catalog")
        db.execute("DROP TABLE IF EXISTS public.sp_orders, public.sp_other, public.sp_third")
        db.execute("DROP OWNED BY sp_user")
        db.execute("DROP ROLE sp_user")


def test_the_planted_operators_do_run_where_the_path_is_not_pinned(db, planted):
    """The test's own control: the same planting wins in an unpinned
    function, so the test above would see it."""
    db.execute(
        """CREATE FUNCTION public.sp_unpinned(r regclass) RETURNS boolean LANGUAGE plpgsql AS $$
           BEGIN RETURN EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = r AND c.relname ~ 'x'); END $$"""
    )
    db.execute("SET search_path = \"$user\", public")
    db.execute("SELECT public.sp_unpinned('pg_class')")
    assert ran(db), "the control saw nothing: the planting does not work"
    assert q1(db, "SELECT DISTINCT who FROM public.planted_ran") == "postgres"
