"""Releases: a released version's install script is frozen in
extension/sql/ (what users' databases were created from), the build of
that version installs exactly it, and every frozen release has an upgrade
path (pg_webhook--A--B.sql scripts) to the version this build installs.

Upgrades: `ALTER EXTENSION pg_webhook UPDATE` from every release gives
exactly the schema (and privileges) of a fresh install of this version, and
keeps the privileges granted before it; that it keeps every delivery is
tests/webhookd/test_upgrade_deliveries.py, which needs a webhookd.
These tests install the frozen script with today's library, as a
user's database has it after a package upgrade."""

import difflib
import re
from collections import deque

import pytest

from support.cluster import connect, pg_dir, q, q1
from support.upgrade import SQL, UPGRADABLE, current_version, released_versions

pytestmark = pytest.mark.native_only(
    "the native extension's frozen releases and ALTER EXTENSION pg_webhook UPDATE; the portable edition's "
    "installs and upgrades are webhookd install's (test_portable_install.py)")


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


# ---------------------------------------------------------------- ordering keys


@pytest.mark.parametrize("release", UPGRADABLE)
def test_an_upgrade_scopes_the_keys_of_the_undelivered_events_of_captures(new_database, release):
    """0.2.0 scopes a captured row's ordering key by its table
    (`public.coupons:1241`). The upgrade gives that scope to the events of
    0.1.0's captures that are not done (not routed yet, or with a pending
    delivery), so that a row's events from before and after the upgrade
    stay in one queue; done events and emit()'s keys stay as they were."""
    db = new_database("keys")
    with connect(db) as c:
        c.execute(f"CREATE EXTENSION pg_webhook VERSION '{release}'")
        c.execute("CREATE TABLE reviews (id int PRIMARY KEY, stars int)")
        c.execute("CREATE TABLE coupons (id int PRIMARY KEY, code text)")
        c.execute("SELECT webhook.track('reviews')")
        c.execute("SELECT webhook.track('coupons')")
        endpoint = q1(c, "SELECT webhook.create_endpoint('http://127.0.0.1:9/hook', '{*}', ordered => true)")
        c.execute("INSERT INTO reviews VALUES (1241, 1)")
        c.execute("INSERT INTO coupons VALUES (1241, 'A')")
        c.execute("SELECT webhook.emit('app.note', '{}', '1241')")
        assert q1(c, "SELECT webhook.route()") == 3
        # The review was delivered; the coupon and the note wait.
        c.execute("UPDATE webhook.delivery SET status = 'succeeded' "
                  "WHERE event_id = (SELECT min(id) FROM webhook.event_log)")
        c.execute("UPDATE reviews SET stars = 2")  # not routed yet
        # Written by 0.1.0's library, which did not scope them (today's
        # scopes the keys of 0.1.0's triggers by the table's name).
        c.execute("UPDATE webhook.event_log SET ordering_key = split_part(ordering_key, ':', 2) "
                  "WHERE event_type <> 'app.note'")
        c.execute("UPDATE webhook.delivery SET ordering_key = split_part(ordering_key, ':', 2) "
                  "WHERE ordering_key LIKE 'public.%%'")
        # Captured by today's library before the update: kept as it is.
        c.execute("INSERT INTO reviews VALUES (7, 5)")
    with connect(db) as c:
        c.execute("ALTER EXTENSION pg_webhook UPDATE")
        assert q(c, "SELECT event_type, ordering_key FROM webhook.event_log ORDER BY id") == [
            ("reviews.insert", "1241"),
            ("coupons.insert", "public.coupons:1241"),
            ("app.note", "1241"),
            ("reviews.update", "public.reviews:1241"),
            ("reviews.insert", "public.reviews:7"),
        ]
        assert q(c, "SELECT e.event_type, d.status, d.ordering_key FROM webhook.delivery d "
                    "JOIN webhook.event_log e ON e.id = d.event_id ORDER BY d.id") == [
            ("reviews.insert", "succeeded", "1241"),
            ("coupons.insert", "pending", "public.coupons:1241"),
            ("app.note", "pending", "1241"),
        ]
        # 0.1.0's triggers scope by the table's name now; track() again
        # writes the scope into the trigger, which a rename keeps.
        c.execute("UPDATE coupons SET code = 'B'")
        c.execute("SELECT webhook.track('coupons')")
        c.execute("ALTER TABLE coupons RENAME TO vouchers")
        c.execute("UPDATE vouchers SET code = 'C'")
        assert q(c, "SELECT ordering_key FROM webhook.event_log WHERE event_type = 'coupons.update' ORDER BY id") == [
            ("public.coupons:1241",), ("public.coupons:1241",)]
        # One queue: the new events wait behind the pending insert.
        assert q1(c, "SELECT webhook.route()") == 4
        claimed = q(c, "SELECT e.event_type, e.ordering_key FROM webhook.claim(10, '1 minute', 'w') k "
                       "JOIN webhook.event_log e ON e.id = k.event_id ORDER BY 1, 2")
        assert claimed == [("app.note", "1241"), ("coupons.insert", "public.coupons:1241"),
                           ("reviews.insert", "public.reviews:7"), ("reviews.update", "public.reviews:1241")], endpoint
