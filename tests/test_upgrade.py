"""Releases: a released version's install script is frozen in
extension/sql/ (what users' databases were created from), the build of
that version installs exactly it, and every frozen release has an upgrade
path (pg_webhook--A--B.sql scripts) to the version this build installs.

Upgrades: `ALTER EXTENSION pg_webhook UPDATE` from every release gives
exactly the schema (and privileges) of a fresh install of this version, and
keeps every delivery: pending ones are delivered, succeeded ones are not sent
again, dead ones stay dead until replayed (README, "Releases and upgrades").
These tests install the frozen script with today's library, as a
user's database has it after a package upgrade."""

import base64
import difflib
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections import Counter, deque
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from conftest import ROOT, Webhookd, connect, dsn, pg_dir, q, q1, wait_for

SQL = ROOT / "extension" / "sql"


def current_version():
    text = (ROOT / "Cargo.toml").read_text()
    section = text.split("[workspace.package]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version = "([^"]+)"', section, re.M).group(1)


def released_versions():
    """Every frozen release, oldest first."""
    found = [m.group(1) for p in SQL.iterdir() if (m := re.fullmatch(r"pg_webhook--([^-]+)\.sql", p.name))]
    return sorted(found, key=lambda v: tuple(int(x) for x in re.findall(r"\d+", v)))


# The releases a database can be upgraded from: every frozen one but the
# version this build installs.
UPGRADABLE = [v for v in released_versions() if v != current_version()]


def objects(script):
    """The script's objects, in any order (pgrx orders them by a dependency
    graph, not stably), without the generated `-- file.rs:line` comments
    (which move with any edit of the Rust code)."""
    blocks = script.split("/* <begin connected objects> */")
    return sorted(
        "\n".join(l for l in b.splitlines() if not re.fullmatch(r"-- \S+\.rs:\d+", l)).strip()
        for b in blocks
    )


def test_a_released_version_installs_exactly_its_frozen_script():
    version = current_version()
    frozen = SQL / f"pg_webhook--{version}.sql"
    # A version not frozen yet is still being developed.
    if not frozen.exists():
        return
    installed = pg_dir("--sharedir") / "extension" / f"pg_webhook--{version}.sql"
    assert objects(installed.read_text()) == objects(frozen.read_text()), (
        f"the schema changed while the version is still {version}, which is released: "
        "bump the version and add pg_webhook--{version}--<new>.sql"
    )


def test_every_released_version_has_an_upgrade_path_to_this_one():
    version = current_version()
    released = released_versions()
    assert released, "no release is frozen in extension/sql"
    steps = {}
    for p in SQL.iterdir():
        if m := re.fullmatch(r"pg_webhook--([^-]+)--([^-]+)\.sql", p.name):
            steps.setdefault(m.group(1), []).append(m.group(2))
    for start in released:
        seen, todo = {start}, deque([start])
        while todo:
            for nxt in steps.get(todo.popleft(), []):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert version in seen, f"no upgrade path from {start} to {version}"


# ---------------------------------------------------------------- set-up


@pytest.fixture(scope="session")
def released_scripts():
    """Installs the frozen install scripts of earlier releases beside the
    build's own scripts. `make install` (cargo pgrx install) copies only the
    upgrade scripts and this version's generated script; a user's system has
    the old ones from the packages it was installed from. Idempotent and
    atomic (a rename), so suites running side by side never see half a file;
    through sudo when this user cannot write the directory."""
    dest = pg_dir("--sharedir") / "extension"
    for version in UPGRADABLE:
        src = SQL / f"pg_webhook--{version}.sql"
        target = dest / src.name
        if target.exists() and target.read_bytes() == src.read_bytes():
            continue
        tmp = dest / f".{src.name}.{os.getpid()}"
        if os.access(dest, os.W_OK):
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        else:
            subprocess.run(["sudo", "install", "-m", "0644", str(src), str(tmp)], check=True)
            subprocess.run(["sudo", "mv", "-f", str(tmp), str(target)], check=True)
    return UPGRADABLE


_db_counter = itertools.count()


@pytest.fixture
def new_database(pg_cluster, released_scripts):
    """Makes empty databases (no extension yet; http:// endpoints allowed)
    and drops them after the test."""
    made = []

    def make(tag):
        name = f"u{os.getpid()}_{next(_db_counter)}_{tag}"
        with psycopg.connect(dsn(), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name}")
            c.execute(f"CREATE DATABASE {name}")
            c.execute(f"ALTER DATABASE {name} SET webhook.allow_http = on")
        made.append(name)
        return name

    yield make
    with psycopg.connect(dsn(), autocommit=True) as c:
        for name in made:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def upgraded_and_fresh(new_database, release):
    """(database created at `release` and upgraded, database created fresh)."""
    upgraded, fresh = new_database("upgraded"), new_database("fresh")
    with connect(upgraded) as c:
        c.execute(f"CREATE EXTENSION pg_webhook VERSION '{release}'")
    with connect(upgraded) as c:
        c.execute("ALTER EXTENSION pg_webhook UPDATE")
    with connect(fresh) as c:
        c.execute("CREATE EXTENSION pg_webhook")
    return upgraded, fresh


# ---------------------------------------------------------------- the schema, described


def privileges(conn, acl_sql, oid, kind):
    """`grant <privilege> to <role>` lines of an ACL column (NULL read as
    the owner's default, so an ACL written out in full equals the same
    default left NULL), e.g. acl_sql = 'SELECT proacl, proowner FROM pg_proc
    WHERE oid = %s'."""
    rows = q(
        conn,
        f"""SELECT format('grant %%s to %%s%%s', e.privilege_type,
                          CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END,
                          CASE WHEN e.is_grantable THEN ' with grant option' ELSE '' END)
              FROM ({acl_sql}) AS o(acl, owner), aclexplode(coalesce(o.acl, acldefault(%s, o.owner))) e
             ORDER BY 1""",
        oid,
        kind,
    )
    return [r[0] for r in rows]


def init_privileges(conn, catalog, oid):
    """The extension's initial privileges (pg_init_privs: what pg_dump
    takes as the extension's own and does not dump)."""
    rows = q(
        conn,
        """SELECT format('initial privilege (pg_dump): %%s to %%s%%s', e.privilege_type,
                         CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END,
                         CASE WHEN e.is_grantable THEN ' with grant option' ELSE '' END)
             FROM pg_init_privs p, aclexplode(p.initprivs) e
            WHERE p.objoid = %s AND p.classoid = %s::regclass AND p.objsubid = 0
            ORDER BY 1""",
        oid,
        catalog,
    )
    return [r[0] for r in rows]


def comment(conn, oid, catalog):
    c = q1(conn, "SELECT obj_description(%s, %s)", oid, catalog)
    return [f"comment: {c}"] if c is not None else []


def describe_function(conn, oid):
    name, kind = q1(conn, "SELECT oid::regprocedure::text, prokind FROM pg_proc WHERE oid = %s", oid)
    lines = [] if kind == "a" else q1(conn, "SELECT pg_get_functiondef(%s)", oid).rstrip().splitlines()
    lines += privileges(conn, "SELECT proacl, proowner FROM pg_proc WHERE oid = %s", oid, "f")
    lines += init_privileges(conn, "pg_proc", oid)
    lines += comment(conn, oid, "pg_proc")
    return f"function {name}", lines


def describe_columns(conn, oid):
    """Every column by its physical position, dropped ones too: the capture
    trigger writes webhook.event_log's tuples directly (outbox.rs) and
    refuses a layout other than the fresh one, and `SELECT *` and
    composite-typed functions follow the physical order."""
    rows = q(
        conn,
        """SELECT a.attnum, a.attname, a.attisdropped, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
                  CASE WHEN a.attcollation <> t.typcollation THEN a.attcollation::regcollation::text END,
                  a.attstorage <> t.typstorage, a.attoptions, a.attstattarget,
                  col_description(a.attrelid, a.attnum)
             FROM pg_attribute a
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             LEFT JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = %s AND a.attnum > 0
            ORDER BY a.attnum""",
        oid,
    )
    lines = []
    for num, name, dropped, typ, notnull, default, ident, gen, coll, storage, opts, stat, comm in rows:
        if dropped:
            lines.append(f"column {num}: (dropped column: the physical layout differs from a fresh install's)")
            continue
        line = f"column {num}: {name} {typ}"
        if coll:
            line += f" COLLATE {coll}"
        if notnull:
            line += " NOT NULL"
        if ident:
            line += " GENERATED " + {"a": "ALWAYS", "d": "BY DEFAULT"}[ident] + " AS IDENTITY"
        if gen:
            line += f" GENERATED ALWAYS AS ({default}) STORED"
        elif default is not None:
            line += f" DEFAULT {default}"
        if storage:
            line += " (non-default storage)"
        # pg_attver: an option the PostgreSQL build here puts on every column, different each time.
        opts = [o for o in opts or [] if not o.startswith("pg_attver=")]
        if opts:
            line += f" WITH {opts}"
        if stat not in (None, -1):
            line += f" STATISTICS {stat}"
        lines.append(line)
        if comm is not None:
            lines.append(f"column {num} comment: {comm}")
        lines += [
            f"column {num} grant {r[0]} to {r[1]}"
            for r in q(
                conn,
                "SELECT e.privilege_type, CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE e.grantee::regrole::text END "
                "FROM pg_attribute a, aclexplode(a.attacl) e WHERE a.attrelid = %s AND a.attnum = %s ORDER BY 1, 2",
                oid,
                num,
            )
        ]
    return lines


def describe_relation(conn, oid):
    name, kind, persistence, options, rls, force_rls, replident, am, ispart = q1(
        conn,
        """SELECT c.oid::regclass::text, c.relkind, c.relpersistence, c.reloptions, c.relrowsecurity,
                  c.relforcerowsecurity, c.relreplident, am.amname, c.relispartition
             FROM pg_class c LEFT JOIN pg_am am ON am.oid = c.relam WHERE c.oid = %s""",
        oid,
    )
    what = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "S": "sequence",
            "i": "index", "I": "index", "c": "type", "f": "foreign table"}.get(kind, f"relation ({kind})")
    lines = []
    if kind == "S":
        lines.append(
            "sequence: "
            + " ".join(
                str(x)
                for x in q1(
                    conn,
                    """SELECT format_type(seqtypid, NULL), 'start', seqstart, 'increment', seqincrement, 'min', seqmin,
                              'max', seqmax, 'cache', seqcache, CASE WHEN seqcycle THEN 'cycle' ELSE 'no cycle' END
                         FROM pg_sequence WHERE seqrelid = %s""",
                    oid,
                )
            )
        )
        owner = q1(
            conn,
            """SELECT format('owned by %%s.%%s (%%s)', d.refobjid::regclass, a.attname,
                             CASE d.deptype WHEN 'i' THEN 'identity' ELSE 'OWNED BY' END)
                 FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                WHERE d.classid = 'pg_class'::regclass AND d.objid = %s AND d.refclassid = 'pg_class'::regclass
                  AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')""",
            oid,
        )
        if owner:
            lines.append(owner)
    elif kind in ("i", "I"):
        lines.append(q1(conn, "SELECT pg_get_indexdef(%s)", oid))
    else:
        lines += describe_columns(conn, oid)
    if kind in ("v", "m"):
        lines += ["definition:"] + q1(conn, "SELECT pg_get_viewdef(%s, true)", oid).rstrip().splitlines()
    if kind in ("r", "p", "m", "f"):
        lines.append(f"persistence {persistence}, access method {am}, replica identity {replident}")
        if rls or force_rls:
            lines.append(f"row level security {rls}, forced {force_rls}")
        if kind == "p":
            lines.append("PARTITION BY " + q1(conn, "SELECT pg_get_partkeydef(%s)", oid))
        if ispart:
            lines.append(
                q1(
                    conn,
                    "SELECT format('partition of %%s %%s', inhparent::regclass, pg_get_expr(c.relpartbound, c.oid)) "
                    "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhrelid = %s",
                    oid,
                )
            )
        else:
            parents = q(conn, "SELECT inhparent::regclass::text FROM pg_inherits WHERE inhrelid = %s ORDER BY 1", oid)
            lines += [f"inherits {r[0]}" for r in parents]
        lines += [
            f"constraint {n}: {d}"
            for n, d in q(
                conn,
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s ORDER BY conname",
                oid,
            )
        ]
        lines += [
            f"index: {d}{' (clustered)' if cl else ''}{'' if valid else ' (INVALID)'}"
            for d, cl, valid in q(
                conn,
                "SELECT pg_get_indexdef(indexrelid), indisclustered, indisvalid FROM pg_index "
                "WHERE indrelid = %s ORDER BY 1",
                oid,
            )
        ]
        lines += [
            f"trigger: {d} (enabled {e})"
            for d, e in q(
                conn,
                "SELECT pg_get_triggerdef(oid), tgenabled FROM pg_trigger "
                "WHERE tgrelid = %s AND NOT tgisinternal ORDER BY 1",
                oid,
            )
        ]
        lines += [
            "policy: " + " ".join(map(str, r))
            for r in q(
                conn,
                "SELECT policyname, permissive, roles, cmd, qual, with_check FROM pg_policies p "
                "JOIN pg_class c ON c.relname = p.tablename JOIN pg_namespace n ON n.oid = c.relnamespace "
                "AND n.nspname = p.schemaname WHERE c.oid = %s ORDER BY 1",
                oid,
            )
        ]
        lines += [
            f"statistics: {r[0]}"
            for r in q(conn, "SELECT pg_get_statisticsobjdef(oid) FROM pg_statistic_ext WHERE stxrelid = %s ORDER BY 1",
                       oid)
        ]
    if kind in ("r", "p", "v", "m"):
        lines += [
            f"rule: {r[0]}"
            for r in q(
                conn,
                "SELECT pg_get_ruledef(oid) FROM pg_rewrite WHERE ev_class = %s AND rulename <> '_RETURN' ORDER BY 1",
                oid,
            )
        ]
    if options:
        lines.append(f"options: {sorted(options)}")
    lines += privileges(conn, "SELECT relacl, relowner FROM pg_class WHERE oid = %s", oid, "s" if kind == "S" else "r")
    lines += init_privileges(conn, "pg_class", oid)
    lines += comment(conn, oid, "pg_class")
    return f"{what} {name}", lines


def describe_type(conn, oid):
    name, typtype, relid, base, notnull, default = q1(
        conn,
        "SELECT oid::regtype::text, typtype, typrelid, format_type(typbasetype, typtypmod), typnotnull, typdefault "
        "FROM pg_type WHERE oid = %s",
        oid,
    )
    lines = [f"kind {typtype}"]
    if typtype == "c":
        lines += describe_columns(conn, relid)
    elif typtype == "e":
        labels = q(conn, "SELECT enumlabel FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder", oid)
        lines += [f"label {r[0]}" for r in labels]
    elif typtype == "d":
        lines.append(f"domain over {base}{' NOT NULL' if notnull else ''}{f' DEFAULT {default}' if default else ''}")
        lines += [
            f"constraint {n}: {d}"
            for n, d in q(conn, "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contypid = %s "
                                "ORDER BY 1", oid)
        ]
    else:
        lines.append(
            " ".join(
                str(x)
                for x in q1(
                    conn,
                    "SELECT typinput::regproc, typoutput::regproc, typreceive::regproc, typsend::regproc, typlen, "
                    "typbyval, typalign, typstorage FROM pg_type WHERE oid = %s",
                    oid,
                )
            )
        )
    lines += privileges(conn, "SELECT typacl, typowner FROM pg_type WHERE oid = %s", oid, "T")
    lines += comment(conn, oid, "pg_type")
    return f"type {name}", lines


def describe_event_trigger(conn, oid):
    name, event, func, tags, enabled = q1(
        conn,
        "SELECT evtname, evtevent, evtfoid::regprocedure::text, evttags, evtenabled "
        "FROM pg_event_trigger WHERE oid = %s",
        oid,
    )
    return f"event trigger {name}", [f"ON {event} WHEN TAG IN {sorted(tags or [])} EXECUTE {func} (enabled {enabled})"]


def describe_schema(conn, oid):
    name = q1(conn, "SELECT nspname FROM pg_namespace WHERE oid = %s", oid)
    lines = privileges(conn, "SELECT nspacl, nspowner FROM pg_namespace WHERE oid = %s", oid, "n")
    lines += init_privileges(conn, "pg_namespace", oid) + comment(conn, oid, "pg_namespace")
    return f"schema {name}", lines


DESCRIBE = {
    "pg_proc": describe_function,
    "pg_class": describe_relation,
    "pg_type": describe_type,
    "pg_event_trigger": describe_event_trigger,
    "pg_namespace": describe_schema,
}


def describe(dbname):
    """{object: [lines]} for every object extension pg_webhook owns (its
    members in pg_depend), with what hangs on them (columns, constraints,
    indexes, triggers, privileges, comments), plus the extension itself."""
    with connect(dbname) as conn:
        # Names print schema-qualified, the same way in both databases.
        conn.execute("SET search_path = pg_catalog")
        conn.execute("SET TimeZone = 'UTC'")
        out = {}
        members = q(
            conn,
            """SELECT d.classid::regclass::text, d.objid, pg_describe_object(d.classid, d.objid, d.objsubid)
                 FROM pg_depend d JOIN pg_extension x ON d.refobjid = x.oid
                WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND x.extname = 'pg_webhook'""",
        )
        for catalog, oid, what in members:
            key, lines = DESCRIBE[catalog](conn, oid) if catalog in DESCRIBE else (what, [])
            # Privileges and comments first, next to the object's name in a diff.
            first = ("grant ", "initial privilege", "comment:")
            out[key] = [x for x in lines if x.startswith(first)] + [x for x in lines if not x.startswith(first)]
        ext = q1(
            conn,
            """SELECT extversion, extnamespace::regnamespace::text, extrelocatable,
                      (SELECT array_agg(c::regclass::text ORDER BY c::regclass::text) FROM unnest(extconfig) c),
                      extcondition
                 FROM pg_extension WHERE extname = 'pg_webhook'""",
        )
        out["extension pg_webhook"] = [
            f"version {ext[0]}",
            f"schema {ext[1]}, relocatable {ext[2]}",
            f"configuration tables (pg_dump dumps their rows): {ext[3]} where {ext[4]}",
        ]
        return out


def schema_diff(expected, actual, expected_name, actual_name):
    """'' when equal, else which objects differ and a unified diff of their
    descriptions."""
    if expected == actual:
        return ""
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    changed = sorted(k for k in expected.keys() & actual.keys() if expected[k] != actual[k])

    def text(d):
        return [f"{line}" for k in sorted(d) for line in [f"=== {k}", *[f"    {x}" for x in d[k]]]]

    diff = difflib.unified_diff(text(expected), text(actual), expected_name, actual_name, lineterm="", n=4)
    summary = []
    if missing:
        summary.append(f"missing after the upgrade ({len(missing)}): " + ", ".join(missing))
    if extra:
        summary.append(f"only after the upgrade ({len(extra)}): " + ", ".join(extra))
    if changed:
        summary.append(f"different ({len(changed)}): " + ", ".join(changed))
    return "\n".join(summary) + "\n\n" + "\n".join(diff)


# ---------------------------------------------------------------- the schema


@pytest.mark.parametrize("release", UPGRADABLE)
def test_an_upgraded_database_has_exactly_the_schema_of_a_fresh_install(new_database, release):
    upgraded, fresh = upgraded_and_fresh(new_database, release)
    got, want = describe(upgraded), describe(fresh)
    assert want["extension pg_webhook"][0] == f"version {current_version()}"
    diff = schema_diff(want, got, "CREATE EXTENSION pg_webhook (fresh)", f"{release} + ALTER EXTENSION UPDATE")
    if diff:
        pytest.fail(f"upgrading from {release} does not give the schema of a fresh install:\n{diff}", pytrace=False)


ROLE_KINDS = ("dispatcher", "emitter", "tracker", "manager")


def effective_privileges(dbname, roles):
    """Per extension object, what each of `roles` (kind -> role name) may do,
    by has_*_privilege (so privileges through PUBLIC or a role membership
    count too); roles named by their kind, so two databases' sets of roles
    compare."""
    with connect(dbname) as conn:
        conn.execute("SET search_path = pg_catalog")
        out = {}
        for kind, role in roles.items():
            rows = conn.execute(
                """WITH m AS (
                     SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension x ON d.refobjid = x.oid
                      WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND x.extname = 'pg_webhook')
                   SELECT 'function ' || p.oid::regprocedure::text, 'EXECUTE'
                     FROM m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
                    WHERE has_function_privilege(%(r)s, p.oid, 'EXECUTE')
                   UNION ALL
                   SELECT 'relation ' || c.oid::regclass::text, pr
                     FROM m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid,
                          unnest(CASE WHEN c.relkind = 'S' THEN '{USAGE,SELECT,UPDATE}'::text[]
                                      ELSE '{SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER}' END) pr
                    WHERE CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(%(r)s, c.oid, pr)
                               ELSE has_table_privilege(%(r)s, c.oid, pr) END
                   UNION ALL
                   SELECT 'relation ' || c.oid::regclass::text || ' column ' || a.attname, pr
                     FROM m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid AND c.relkind <> 'S'
                     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped,
                          unnest('{SELECT,INSERT,UPDATE}'::text[]) pr
                    WHERE has_column_privilege(%(r)s, c.oid, a.attnum, pr)
                      AND NOT has_table_privilege(%(r)s, c.oid, pr)
                   UNION ALL
                   SELECT 'schema webhook', pr FROM unnest('{USAGE,CREATE}'::text[]) pr
                    WHERE has_schema_privilege(%(r)s, 'webhook', pr)
                   ORDER BY 1, 2""",
                {"r": role},
            ).fetchall()
            for obj, priv in rows:
                out.setdefault(obj, []).append(f"{kind}: {priv}")
        return out


@pytest.mark.parametrize("release", UPGRADABLE)
def test_roles_granted_before_an_upgrade_have_exactly_the_privileges_of_a_fresh_grant(new_database, release):
    """A deployment's roles (README, Roles) were given their privileges by
    grant_*() of the release it was installed with: after the upgrade each
    may do exactly what the same grant gives on a fresh install, no less
    (webhookd must still claim) and no more (nothing the new version stopped
    granting, no new function left executable)."""
    upgraded, fresh = new_database("upgraded"), new_database("fresh")
    # Names that need quoting ("Ops Team"): the upgrade must quote them once.
    roles = {db: {k: f"{db} {k} Team" for k in ROLE_KINDS} for db in (upgraded, fresh)}
    with connect("postgres") as c:
        for db in roles:
            for role in roles[db].values():
                c.execute(f'DROP ROLE IF EXISTS "{role}"')
                c.execute(f'CREATE ROLE "{role}"')
    try:
        with connect(upgraded) as c:
            c.execute(f"CREATE EXTENSION pg_webhook VERSION '{release}'")
            for kind, role in roles[upgraded].items():
                c.execute(f"SELECT webhook.grant_{kind}('\"{role}\"')")
        with connect(upgraded) as c:
            c.execute("ALTER EXTENSION pg_webhook UPDATE")
        with connect(fresh) as c:
            c.execute("CREATE EXTENSION pg_webhook")
            for kind, role in roles[fresh].items():
                c.execute(f"SELECT webhook.grant_{kind}('\"{role}\"')")
        got, want = effective_privileges(upgraded, roles[upgraded]), effective_privileges(fresh, roles[fresh])
        diff = schema_diff(
            want, got, "fresh install, then grant_*()", f"grant_*() at {release}, then ALTER EXTENSION UPDATE"
        )
        if diff:
            pytest.fail(f"roles granted at {release} have other privileges after the upgrade:\n{diff}", pytrace=False)
    finally:
        with connect("postgres") as c:
            for db in roles:
                c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
                for role in roles[db].values():
                    c.execute(f'DROP ROLE IF EXISTS "{role}"')


# ---------------------------------------------------------------- the deliveries


def new_secret():
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# Deliveries in every state are built through 0.1.0's own dispatcher API
# (claim / record / release), as its webhookd left them; the checks after the
# upgrade use only the interface kept between releases (docs/interface.md):
# webhook.events, deliveries, attempts, endpoint_health, emit, replay,
# enable_endpoint and webhookd.
OLDEST = "0.1.0"
# The "crashed" worker's lease: still running when the upgrade runs and
# webhookd starts, short enough not to slow the test down.
LEASE_S = 4
EVENTS = "SELECT id, event_type, body, payload, ordering_key, created_at FROM webhook.events"
DELIVERIES = "SELECT event_id, endpoint_id, status, attempts, last_http_status, last_error FROM webhook.deliveries"
ATTEMPTS = "SELECT event_id, endpoint_id, attempted_at, http_status, duration_ms, error FROM webhook.attempts"
HEALTH = "SELECT endpoint_id, enabled, backlog, dead FROM webhook.endpoint_health"


def keyed(conn, sql, n=1):
    """Rows of `sql` by their first n columns."""
    return {(r[0] if n == 1 else r[:n]): r[n:] for r in q(conn, sql)}


def changed(before, after):
    """Lines naming each entry of `before` that `after` lacks or has otherwise."""
    return [f"  {k}: {v} -> {after.get(k, '(missing)')}" for k, v in before.items() if after.get(k) != v]


def claim_one(db, event, endpoint, others, lease="60 seconds"):
    """The delivery of `event` to `endpoint` claimed the 0.1.0 way (the
    only one due) by a webhookd that never answers: (delivery_id,
    claim_token, event_id)."""
    rows = q(
        db,
        "SELECT delivery_id, claim_token, event_id FROM webhook.claim(max_deliveries => 1, lease => %s::interval, "
        "worker => 'old-webhookd', exclude_endpoints => %s)",
        lease,
        others,
    )
    assert [r[2] for r in rows] == [event], rows
    return rows[0]


def record(db, claimed, status, retry_at_sql):
    """0.1.0's record() of one attempt's outcome; retry_at_sql NULL: dead."""
    delivery, token, _ = claimed
    ok = 200 <= status < 300
    db.execute(
        "SELECT webhook.record(ARRAY[%s::bigint], ARRAY[%s::int], ARRAY[%s::int], ARRAY[%s::text], "
        f"ARRAY[%s::float8], ARRAY[%s::text], ARRAY[{retry_at_sql}]::timestamptz[], 'old-webhookd')",
        (delivery, token, status, None if ok else f"HTTP {status}", 12.5, "ok" if ok else "try later"),
    )


def emit(db, event_type, payload, key=None):
    return q1(db, "SELECT webhook.emit(%s, %s::jsonb, %s)", event_type, json.dumps(payload), key)


@contextmanager
def old_schema_new_library():
    """The release's SQL run with this build's library, as in a user's
    database after a package upgrade and before ALTER EXTENSION UPDATE:
    applications keep writing tracked tables and the old webhookd keeps
    working meanwhile, so a failure here is a failure of the upgrade too."""
    try:
        yield
    except psycopg.Error as e:
        pytest.fail(
            f"{OLDEST}'s schema with this build's library (a database after a package upgrade, before "
            f"ALTER EXTENSION UPDATE) fails: {e.sqlstate} {e}",
            pytrace=True,
        )


def received(r):
    """Event ids a receiver got, in order of arrival."""
    return [int(i) for i in r.ids()]


def test_an_upgrade_keeps_every_delivery_and_delivers_what_was_pending(new_database, receiver):
    if OLDEST not in UPGRADABLE:
        pytest.skip(f"this build is {OLDEST}: nothing to upgrade to")
    name = new_database("deliveries")
    main_r, off_r = receiver(), receiver()
    ord_r = receiver(lambda n, req: (503, {}, b"", 0) if n == 1 else (204, {}, b"", 0))
    keys = {"main": new_secret(), "ordered": new_secret(), "off": new_secret()}
    db = connect(name)
    with old_schema_new_library():
        db.execute(f"CREATE EXTENSION pg_webhook VERSION '{OLDEST}'")
        main = q1(db, "SELECT webhook.create_endpoint(%s, '{main.*}', %s)", main_r.url, keys["main"])
        ordered = q1(
            db, "SELECT webhook.create_endpoint(%s, '{ordered.*}', %s, ordered => true)", ord_r.url, keys["ordered"]
        )
        off = q1(db, "SELECT webhook.create_endpoint(%s, '{off.*}', %s)", off_r.url, keys["off"])
        label = {main: "main", ordered: "ordered", off: "off"}
        not_main = [ordered, off]
        db.execute("CREATE TABLE shop_orders (id int PRIMARY KEY, total numeric NOT NULL)")
        db.execute("SELECT webhook.track('shop_orders', '{insert,update}', event_prefix => 'main.orders')")

        def last_captured(event_type):
            return q1(db, "SELECT max(id) FROM webhook.events WHERE event_type = %s", event_type)

        # main: one succeeded, one dead, one failed with its retry due now, one
        # leased by a worker that crashed (the lease still running), one captured
        # and one emitted pending never attempted, two committed but not routed.
        succeeded = emit(db, "main.succeeded", {"state": "succeeded"})
        record(db, claim_one(db, succeeded, main, not_main), 200, "NULL")
        dead = emit(db, "main.dead", {"state": "dead"})
        record(db, claim_one(db, dead, main, not_main), 500, "NULL")
        retried = emit(db, "main.retried", {"state": "retried"})
        retried_claim = claim_one(db, retried, main, not_main)
        leased = emit(db, "main.leased", {"state": "leased"})
        claim_one(db, leased, main, not_main, f"{LEASE_S} seconds")
        record(db, retried_claim, 503, "clock_timestamp()")
        db.execute("INSERT INTO shop_orders VALUES (1, 10.5)")
        captured = last_captured("main.orders.insert")
        pending = emit(db, "main.pending", {"state": "pending"})
        # ordered: two events of one key pending, a third one not routed yet.
        k1 = [emit(db, "ordered.step", {"n": n}, "k1") for n in (1, 2)]
        # off: two pending deliveries, then disabled; an event committed while it
        # is disabled is not its delivery (README, Endpoints).
        off_pending = [emit(db, "off.ping", {"n": n}) for n in (1, 2)]
        db.execute("SELECT webhook.route()")
        db.execute("SELECT webhook.disable_endpoint(%s)", (off,))
        while_disabled = emit(db, "off.ping", {"n": 3})
        db.execute("SELECT webhook.route()")
        unrouted = [emit(db, "main.unrouted", {"state": "unrouted"})]
        db.execute("UPDATE shop_orders SET total = 11 WHERE id = 1")
        unrouted.append(last_captured("main.orders.update"))
        k1.append(emit(db, "ordered.step", {"n": 3}, "k1"))

        events_before = keyed(db, EVENTS)
        deliveries_before = keyed(db, DELIVERIES, 2)
        attempts_before = sorted(q(db, ATTEMPTS))
        health_before = keyed(db, HEALTH)
        lease_end = q1(
            db, f"SELECT extract(epoch FROM next_attempt_at)::float8 FROM webhook.deliveries WHERE event_id = {leased}"
        )
        assert lease_end > time.time() + 1, "the crashed worker's lease ran out before the upgrade: raise LEASE_S"
        # The set-up is what it says (in 0.1.0's views).
        states = {succeeded: "succeeded", dead: "dead", retried: "pending", leased: "pending", captured: "pending",
                  pending: "pending"}
        assert {e: deliveries_before[(e, main)][0] for e in states} == states
        assert len(attempts_before) == 3 and health_before[off][0] is False
        assert not {e for e, _ in deliveries_before} & {*unrouted, k1[2], while_disabled}
    db.close()

    with connect(name) as c:
        c.execute("ALTER EXTENSION pg_webhook UPDATE")
    db = connect(name)
    assert q1(db, "SELECT extversion FROM pg_extension WHERE extname = 'pg_webhook'") == current_version()

    # Everything that was there reads the same, before anything runs.
    lost = changed(events_before, keyed(db, EVENTS))
    assert not lost, "events changed by the upgrade (id: before -> after):\n" + "\n".join(lost)
    lost = changed(deliveries_before, keyed(db, DELIVERIES, 2))
    assert not lost, (
        "deliveries changed by the upgrade ((event, endpoint): (status, attempts, last status, last error) "
        "before -> after):\n" + "\n".join(lost)
    )
    attempts_after = sorted(q(db, ATTEMPTS))
    assert attempts_after == attempts_before, f"attempts before the upgrade: {attempts_before}\nafter: {attempts_after}"
    health_after = keyed(db, HEALTH)
    for ep, (enabled, backlog, dead_n) in health_before.items():
        # Events committed but not routed yet may count in the backlog now.
        now = health_after.get(ep, (None, None, None))
        assert now[0] == enabled and now[2] == dead_n and backlog <= now[1] <= backlog + 3, (
            f"endpoint_health of {label[ep]} (enabled, backlog, dead): "
            f"{health_before[ep]} before the upgrade, {now} after"
        )

    # New events after the upgrade; one of the ordered key, behind its three.
    after = [emit(db, "main.after_upgrade", {"state": "new"})]
    k1.append(emit(db, "ordered.step", {"n": 4}, "k1"))
    expect_main = {retried, leased, captured, pending, *unrouted}
    w = Webhookd(name, "--retry-schedule", "200ms", "--retry-jitter", "0", "--poll-interval", "200ms")
    try:
        # Captured by a trigger installed before the upgrade, while webhookd runs.
        db.execute("INSERT INTO shop_orders VALUES (2, 20)")
        after.append(last_captured("main.orders.insert"))
        expect_main |= set(after)

        def missing():
            return {
                "main": sorted(expect_main - set(received(main_r))),
                "ordered": sorted(set(k1) - set(received(ord_r)))
            }

        try:
            wait_for(lambda: not any(missing().values()), 30)
        except AssertionError:
            pytest.fail(f"not delivered 30 s after the upgrade: {missing()}\nwebhookd:\n{w.output()[-3000:]}")
        time.sleep(0.5)
        # Disabled: nothing yet. Dead: stays dead until replayed.
        assert received(off_r) == [], "the disabled endpoint got deliveries"
        assert dead not in received(main_r), "the dead delivery was sent without a replay"
        status = q1(db, f"SELECT status FROM webhook.deliveries WHERE event_id = {dead} AND endpoint_id = {main}")
        assert status == "dead", f"the dead delivery ({dead}) is {status or 'gone'} after the upgrade"

        db.execute("SELECT webhook.enable_endpoint(%s)", (off,))
        assert q1(db, "SELECT webhook.replay(%s, '-infinity')", main) == 1
        try:
            wait_for(lambda: set(off_pending) <= set(received(off_r)) and dead in received(main_r), 30)
        except AssertionError:
            pytest.fail(
                f"after enable_endpoint and replay: off got {received(off_r)} of {off_pending}, "
                f"main {'got' if dead in received(main_r) else 'did not get'} the replayed {dead}\n"
                f"webhookd:\n{w.output()[-3000:]}"
            )
        time.sleep(0.5)
    finally:
        w.stop()

    # Each receiver got exactly its own deliveries, once (the ordered key's
    # first event twice: the receiver failed it once), signed with its own
    # endpoint's secret, the bodies byte for byte as stored before the upgrade.
    assert Counter(received(main_r)) == Counter(expect_main | {dead}), (
        f"main got {sorted(received(main_r))}, wanted each of {sorted(expect_main | {dead})} once "
        f"(not {succeeded}, which succeeded before the upgrade)"
    )
    assert received(ord_r) == [k1[0], *k1], (
        f"the ordered key {k1} arrived as {received(ord_r)} (its first one failed once)"
    )
    assert sorted(received(off_r)) == off_pending, (
        f"the endpoint disabled before the upgrade got {received(off_r)}: its pending {off_pending}, "
        f"not {while_disabled}, committed while it was disabled"
    )
    bodies = dict(q(db, "SELECT id, body FROM webhook.events"))
    for r, key in ((main_r, keys["main"]), (ord_r, keys["ordered"]), (off_r, keys["off"])):
        for req in r.requests:
            Webhook(key).verify(req["body"], req["headers"])
            event = int(req["headers"]["webhook-id"])
            stored = events_before[event][1] if event in events_before else bodies[event]
            assert req["body"].decode() == stored, f"event {event}: sent {req['body']!r}, stored {stored!r}"
    # The crashed worker's lease was honoured: nobody else sent it before it ran out.
    leased_at = min(req["at"] for req in main_r.requests if int(req["headers"]["webhook-id"]) == leased)
    assert leased_at >= lease_end - 0.05, (
        f"the leased delivery went {lease_end - leased_at:.2f} s before its lease ran out"
    )

    # What the views say afterwards: everything delivered, the retried one on
    # its second attempt, the attempts from before the upgrade still there,
    # the events as they were.
    final = keyed(db, DELIVERIES, 2)
    for ep, r in ((main, main_r), (ordered, ord_r), (off, off_r)):
        mine = {e: v[0] for (e, p), v in final.items() if p == ep}
        done_before = {succeeded} if ep == main else set()
        assert mine == {e: "succeeded" for e in {*received(r), *done_before}}, f"{label[ep]}: deliveries {mine}"
    assert final[(retried, main)][:2] == ("succeeded", 2)
    attempts_final = q(db, ATTEMPTS)
    assert not [a for a in attempts_before if a not in attempts_final], "attempts from before the upgrade were lost"
    assert len(attempts_final) == len(attempts_before) + sum(r.count() for r in (main_r, ord_r, off_r))
    health = keyed(db, HEALTH)
    assert health == {ep: (True, 0, 0) for ep in label}, f"endpoint_health (enabled, backlog, dead): {health}"
    lost = changed(events_before, keyed(db, EVENTS))
    assert not lost, "events changed (id: before -> after):\n" + "\n".join(lost)
    db.close()
