"""`webhookd install` / `uninstall`: the portable edition put into a
database by its owner, an ordinary role (as a managed service gives one),
and taken out again; every refusal says why and changes nothing."""

import subprocess

import psycopg
import pytest

from support import editions
from support.cluster import dsn
from support.webhookd import WEBHOOKD

OWNER = editions.OWNER


@pytest.fixture
def owned_db(pg_cluster, dbname):
    """An empty database (no edition) owned by the ordinary owner role."""
    name = f"{dbname}_owned"
    editions.create_owner()
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name} OWNER {OWNER}")
    yield name
    with psycopg.connect(dsn(), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def as_owner(name):
    return psycopg.connect(editions.owner_url(name), autocommit=True)


def as_superuser(name):
    return psycopg.connect(dsn(name), autocommit=True)


def uninstall(name, *args):
    return subprocess.run([str(WEBHOOKD), "uninstall", "--database-url", editions.owner_url(name), *args],
                          capture_output=True, text=True, timeout=120)


def test_the_owner_installs_it_with_no_superuser_and_no_library(owned_db):
    with as_superuser(owned_db) as c:
        owner = c.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s",
                          (OWNER,)).fetchone()
    assert owner == (False, False, False)
    done = editions.portable_install(owned_db)
    assert done.returncode == 0, done.stderr
    assert "0.2.0 (portable edition) installed" in done.stdout
    with as_owner(owned_db) as c:
        assert c.execute("SELECT webhook.edition(), webhook.version()").fetchone() == ("portable", "0.2.0")
        # Everything is the owner's, and nothing comes from a library.
        assert c.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'webhook'").fetchone()[0] \
            == OWNER
        native = c.execute(
            "SELECT array_agg(p.oid::regprocedure::text) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
            "WHERE p.pronamespace = 'webhook'::regnamespace AND (p.probin IS NOT NULL OR l.lanname = 'c')"
        ).fetchone()[0]
        assert native is None
        assert c.execute("SELECT count(*) FROM pg_proc WHERE probin LIKE '%%pg_webhook%%'").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0] == 0
        # ...and it works: a tracked table's change becomes a signed delivery.
        c.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric)")
        c.execute("SELECT webhook.track('orders')")
        c.execute("UPDATE webhook.portable_settings SET allow_http = true")
        c.execute("SELECT webhook.create_endpoint('http://127.0.0.1:9/hook', '{orders.*}', NULL)")
        c.execute("INSERT INTO orders VALUES (1, 9.50)")
        row = c.execute("SELECT event_id, signature FROM webhook.claim(10, '60 seconds', 'probe')").fetchone()
        assert row and row[1].startswith("v1,")


@pytest.mark.skipif(editions.EDITION != "portable",
                    reason="the portable run's server (make e2e-portable) has no pg_webhook library; the native run's has")
def test_the_portable_runs_server_has_no_pg_webhook_library_at_all(pg_cluster):
    """What the whole portable run is tested on: a server (cluster.sh's
    PGWEBHOOK_PG_ROOT=server) that could not load pg_webhook if it tried."""
    with as_superuser("postgres") as c:
        assert c.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_webhook'").fetchone()[0] == 0
        libdir = c.execute("SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'").fetchone()[0]
        files = [r[0] for r in c.execute("SELECT f FROM pg_ls_dir(%s) f", (libdir,))]
        assert "plpgsql.so" in files and not [f for f in files if "webhook" in f]
        with pytest.raises(psycopg.errors.UndefinedFile):
            c.execute("LOAD 'pg_webhook'")


def test_installing_the_same_release_again_is_nothing_to_do(owned_db):
    assert editions.portable_install(owned_db).returncode == 0
    again = editions.portable_install(owned_db)
    assert again.returncode == 0, again.stderr
    assert "installed already; nothing to do" in again.stdout


def test_a_downgrade_is_refused_and_changes_nothing(owned_db):
    assert editions.portable_install(owned_db).returncode == 0
    with as_owner(owned_db) as c:
        # What a later release's installation answers.
        c.execute("CREATE OR REPLACE FUNCTION webhook.version() RETURNS text LANGUAGE sql STABLE "
                  "SET search_path = pg_catalog, pg_temp AS $$ SELECT '9.0.0' $$")
    done = editions.portable_install(owned_db)
    assert done.returncode == 1
    assert "pg_webhook 9.0.0, newer than this webhookd's 0.2.0; a downgrade is never done" in done.stderr
    with as_owner(owned_db) as c:
        assert c.execute("SELECT webhook.version()").fetchone()[0] == "9.0.0"


@pytest.mark.native_only("it needs the native extension beside the portable edition; the portable run's server has no "
                         "pg_webhook library (test_the_portable_runs_server_has_no_pg_webhook_library_at_all)")
def test_never_over_the_native_extension_nor_the_native_over_it(owned_db):
    with as_superuser(owned_db) as c:
        c.execute("CREATE EXTENSION pg_webhook")
    done = editions.portable_install(owned_db)
    assert done.returncode == 1
    assert "the native edition of pg_webhook (extension version 0.2.0) is installed" in done.stderr
    gone = uninstall(owned_db, "--yes")
    assert gone.returncode == 1 and "DROP EXTENSION pg_webhook" in gone.stderr
    with as_superuser(owned_db) as c:
        assert c.execute("SELECT webhook.edition()").fetchone()[0] == "native"
        c.execute("DROP EXTENSION pg_webhook")
    # DROP EXTENSION leaves the (empty) schema it was created in.
    left = editions.portable_install(owned_db)
    assert left.returncode == 1 and "an empty schema webhook is left in this database" in left.stderr
    with as_superuser(owned_db) as c:
        c.execute("DROP SCHEMA webhook")
    assert editions.portable_install(owned_db).returncode == 0
    with as_superuser(owned_db) as c:
        with pytest.raises(psycopg.errors.DuplicateSchema) as e:
            c.execute("CREATE EXTENSION pg_webhook")
        assert "portable edition is installed" in str(e.value)
        assert "webhookd uninstall" in e.value.diag.message_hint


def test_a_schema_webhook_of_someone_else_is_left_alone(owned_db):
    with as_superuser(owned_db) as c:
        c.execute("CREATE SCHEMA webhook")
        c.execute("CREATE TABLE webhook.theirs (x int)")
    done = editions.portable_install(owned_db)
    assert done.returncode == 1
    assert "a schema named webhook already exists in this database and is not pg_webhook's" in done.stderr
    with as_superuser(owned_db) as c:
        assert c.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'webhook'::regnamespace").fetchone()[0] == 1


def test_the_printed_script_installs_with_psql_as_the_owner(owned_db):
    script = subprocess.run([str(WEBHOOKD), "install", "--print"], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin"}, check=True).stdout
    assert script.startswith("-- pg_webhook 0.2.0, portable edition")
    with as_owner(owned_db) as c:
        c.execute("CREATE EXTENSION pgcrypto")
        c.execute(script)
        assert c.execute("SELECT webhook.edition(), webhook.version()").fetchone() == ("portable", "0.2.0")
        # Run twice, the script stops at its guard, with a hint.
        with pytest.raises(psycopg.errors.DuplicateSchema) as e:
            c.execute(script)
        assert "webhookd install upgrades it in place" in e.value.diag.message_hint
    assert editions.portable_install(owned_db).stdout.endswith("nothing to do\n")


def test_only_the_owner_may_change_the_settings(owned_db):
    """Not even a role that manages the endpoints may allow http:// or
    raise the event size limit (superuser-only GUCs in the native edition)."""
    assert editions.portable_install(owned_db).returncode == 0
    with as_superuser(owned_db) as c:
        c.execute("DROP ROLE IF EXISTS pgwh_other")
        c.execute("CREATE ROLE pgwh_other LOGIN")
    with as_owner(owned_db) as c:
        c.execute("SELECT webhook.grant_manager('pgwh_other')")
    try:
        other = f"postgres://pgwh_other@127.0.0.1:{editions.PORT}/{owned_db}"
        with psycopg.connect(other, autocommit=True) as c:
            assert c.execute("SELECT allow_http FROM webhook.portable_settings").fetchone()[0] is False
            for change in ("UPDATE webhook.portable_settings SET allow_http = true",
                           "UPDATE webhook.portable_settings SET max_event_size = 1073741823"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(change)
    finally:
        with as_superuser(owned_db) as c:
            c.execute("DROP OWNED BY pgwh_other")
            c.execute("REVOKE ALL ON DATABASE " + owned_db + " FROM pgwh_other")
        with psycopg.connect(dsn(), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {owned_db} WITH (FORCE)")
            c.execute("DROP ROLE pgwh_other")


def test_uninstall_says_what_it_would_remove_then_leaves_the_tables_as_they_were(owned_db):
    assert editions.portable_install(owned_db).returncode == 0
    with as_owner(owned_db) as c:
        c.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric)")
        c.execute("CREATE TABLE reviews (id int PRIMARY KEY, stars int)")
        c.execute("SELECT webhook.track('orders')")
        c.execute("SELECT webhook.track('reviews', '{insert}')")
        c.execute("SELECT webhook.create_endpoint('https://example.invalid/hook', '{orders.*}', NULL)")
        c.execute("INSERT INTO orders VALUES (1, 9.50)")
        c.execute("INSERT INTO reviews VALUES (1, 5)")
    asked = uninstall(owned_db)
    assert asked.returncode == 1
    assert ("would remove pg_webhook 0.2.0 (portable edition): the capture triggers of 2 tracked table(s), "
            "1 endpoint(s)") in asked.stderr
    assert "run again with --yes" in asked.stderr
    with as_owner(owned_db) as c:
        assert c.execute("SELECT count(*) FROM webhook.tracked_tables").fetchone()[0] == 2
    done = uninstall(owned_db, "--yes")
    assert done.returncode == 0, done.stderr
    with as_owner(owned_db) as c:
        assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'webhook'").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone()[0] == 0
        assert c.execute("SELECT * FROM orders").fetchall() == [(1, 9.50)]
        c.execute("INSERT INTO orders VALUES (2, 1)")  # no trigger left to fail
        assert c.execute("SELECT extname FROM pg_extension WHERE extname = 'pgcrypto'").fetchone()
    again = uninstall(owned_db, "--yes")
    assert again.returncode == 0 and "nothing to remove" in again.stdout
    # ...and it can be installed again.
    assert editions.portable_install(owned_db).returncode == 0
