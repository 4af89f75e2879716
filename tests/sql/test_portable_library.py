"""The portable edition's library (extension/sql/portable/library.sql): the
functions the native edition implements in Rust, in SQL and PL/pgSQL. Each
gives the same bytes, the same errors (SQLSTATE and message) and has the same
signature, volatility, strictness and parallel safety as its Rust twin, for
the same inputs: here both run side by side, the native one in a database
with the extension, the portable one in a database with pgcrypto and the portable
edition."""

import base64
import itertools
import os
import random

import psycopg
import pytest

from support import editions
from support.cluster import q, q1

# They compare the portable edition with the native one in `db`.
pytestmark = pytest.mark.skipif(editions.EDITION != "native", reason="compares the portable edition with the native one of `db`")

# The portable edition's own helpers, which the native edition does not have.
HELPERS = {"_hmac_sha256", "_random_bytes", "_secret_key", "_signed_content", "_iso_date", "_iso_timestamp",
           "_json_differs", "_json_value", "_row_json", "_column_differs", "_capture_arguments_invalid",
           "_holds_nul_escape", "_column", "_attnum", "_capture_attnums_invalid",
           "_columns_changed", "_iso_time", "_iso_timetz", "_money_json", "_base_type"}
# The native edition's event triggers (the stage files' native-only blocks).
NATIVE_ONLY = {"_guard_outbox_index", "_on_drop_extension"}
RNG = random.Random(20261207)


def outcome(conn, sql, *args):
    """The value, or the error as (SQLSTATE, message)."""
    try:
        return ("ok", q1(conn, sql, *args))
    except psycopg.Error as e:
        return ("error", e.sqlstate, e.diag.message_primary)


def same(db, portable_db, sql, cases):
    """Every case gives the same outcome in both editions; returns how many
    of them were errors (so a test can say it covered both sides)."""
    errors = 0
    for args in cases:
        native, port = outcome(db, sql, *args), outcome(portable_db, sql, *args)
        assert port == native, (sql, args)
        errors += native[0] == "error"
    return errors


def b64(n):
    return base64.b64encode(RNG.randbytes(n)).decode()


def test_both_editions_have_the_same_functions_alike(db, portable_db):
    """One SQL API: every function of the native edition is in the portable
    one with the same arguments, result, volatility, strictness and parallel
    safety (but its event triggers); the portable one has only its helpers
    besides."""
    sig = ("SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid), "
           "p.provolatile, p.proisstrict, p.proparallel FROM pg_proc p "
           "WHERE p.pronamespace = 'webhook'::regnamespace AND NOT (p.proname = ANY(%s)) ORDER BY 1, 2")
    native = q(db, sig, list(HELPERS | NATIVE_ONLY))
    assert len(native) > 60
    assert q(portable_db, sig, list(HELPERS | NATIVE_ONLY)) == native
    assert {r[0] for r in q(db, "SELECT proname FROM pg_proc WHERE pronamespace = 'webhook'::regnamespace "
                                "AND proname = ANY(%s)", list(NATIVE_ONLY))} == NATIVE_ONLY
    helpers = q(portable_db, "SELECT DISTINCT proname FROM pg_proc WHERE pronamespace = 'webhook'::regnamespace "
                          "AND proname = ANY(%s)", list(HELPERS))
    assert {r[0] for r in helpers} == HELPERS
    # Nothing of the portable library is C: it loads no shared library.
    assert q1(portable_db, "SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
                        "WHERE p.pronamespace = 'webhook'::regnamespace AND (l.lanname = 'c' OR p.probin IS NOT NULL)") == 0


def test_signatures_and_verification_are_byte_identical(db, portable_db):
    secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] + ["whsec_" + b64(n) for n in (24, 25, 26, 32, 33, 48, 64)]
    bodies = ['{"test": 2432232314}', "", "{}", '{"name": "Zoë ✓ 日本"}', "x" * 5000, '{"nul": "\\u0000"}']
    cases = [(s, f"msg_{b64(9)}", RNG.randrange(0, 1 << 40), b) for s, b in itertools.product(secrets, bodies)]
    assert same(db, portable_db, "SELECT webhook.sign(%s, %s, %s, %s)", cases) == 0
    # The Standard Webhooks specification's own example.
    assert q1(portable_db, "SELECT webhook.sign(%s, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, %s)",
              secrets[0], bodies[0]) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert same(db, portable_db, "SELECT webhook._sign_all(%s, %s, %s, %s)",
                [(secrets[:3], "msg_1", 1, "{}"), ([secrets[0], None, secrets[4]], "msg_2", 2, "{}"),
                 ([], "msg_3", 3, "{}"), ([None], "msg_4", 4, "{}")]) == 0
    sig = q1(db, "SELECT webhook.sign(%s, 'msg_1', 1, '{}')", secrets[1])
    headers = [sig, f"v1,AAAA {sig}", f"v2,{sig[3:]} {sig}", "v1,AAAA", "v1,!!!", f"  {sig}  ", "", "v1",
               f"{sig} nocomma", "v1,Zm9v", f"v1,{sig[3:-1]}", f"v1a,{sig[3:]}"]
    errors = same(db, portable_db, "SELECT webhook.verify(%s, 'msg_1', 1, '{}', %s)", [(secrets[1], h) for h in headers])
    assert errors == 2  # "v1" and "nocomma" have no comma


def test_secrets_are_checked_alike(db, portable_db):
    good = "whsec_" + b64(32)
    bad = ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2hvcnQ=", "whsec_!!!", "whsec_", "whsec_" + b64(23),
           "whsec_" + b64(65), "whsec_" + b64(25).rstrip("="), good[:-2] + " " + good[-2:], good + "\n",
           # Bits set past the last byte: Rust's decoder refuses such base64.
           "whsec_" + b64(25)[:-3] + "B==", "whsec_" + b64(26)[:-2] + "B=", "WHSEC_" + good[6:]]
    errors = same(db, portable_db, "SELECT webhook._check_secret(%s)", [(s,) for s in [good, *bad]])
    assert errors == len(bad)
    fresh = q1(portable_db, "SELECT webhook._generate_secret()")
    assert fresh.startswith("whsec_") and len(base64.b64decode(fresh[6:])) == 32
    assert q1(db, "SELECT webhook._check_secret(%s)", fresh)
    assert fresh != q1(portable_db, "SELECT webhook._generate_secret()")


def test_timestamps_are_written_alike(db, portable_db):
    cases = ["2001-02-03 04:05:06.5+00", "2001-02-03 04:05:06+05:30", "1970-01-01 00:00:00+00",
             "2026-12-07 23:59:59.999999+00", "2026-12-07 12:00:00.000100-08", "0001-01-01 00:00:00+00",
             "0001-12-31 23:59:59.9 BC", "0044-03-15 12:00:00+00 BC", "10000-01-01 00:00:00+00",
             "294276-12-31 23:59:59.999999+00", "4713-11-24 00:00:00+00 BC", "infinity", "-infinity"]
    for _ in range(200):
        bc = RNG.random() < 0.3
        cases.append(f"{RNG.randrange(1, 4713 if bc else 10000):04d}-{RNG.randrange(1, 13):02d}-{RNG.randrange(1, 29):02d} "
                     f"{RNG.randrange(24):02d}:{RNG.randrange(60):02d}:{RNG.randrange(60):02d}."
                     f"{RNG.randrange(10 ** 6):06d}{RNG.choice(['+00', '-07', '+13:45'])}{' BC' if bc else ''}")
    for session_zone in ["UTC", "America/St_Johns"]:
        db.execute(f"SET TimeZone = '{session_zone}'")
        portable_db.execute(f"SET TimeZone = '{session_zone}'")
        assert same(db, portable_db, "SELECT webhook._rfc3339(%s::timestamptz)", [(c,) for c in cases]) == 0


def test_generations_event_types_and_ordering_keys_alike(db, portable_db):
    gens = [0, 1, (1 << 40) - 1, 1 << 40, 123456789012345, (1 << 63) - 1, -1]
    assert same(db, portable_db, "SELECT webhook._generation(%s::bigint)", [(g,) for g in gens]) == 0
    ks = [0, 1, 8388607, 8388608, -1, 1 << 40]
    assert same(db, portable_db, "SELECT webhook._generation_start(%s::bigint)", [(k,) for k in ks]) == 3
    types = [None, "", "orders", "orders.insert", "a.b.c.d", "orders_archive.insert", "x-y.z_1", "orders.",
             ".orders", "a..b", "orders insert", "orders.*", "Zoë.insert", "ORDERS.İnsert", "webhook",
             "webhook.endpoint.failing", "webhooks.x", "a" * 200, "a" * 201, "é" * 100, "tab\t.x", "x.y\n"]
    for fn in ("_event_type_ok", "_event_type_reserved"):
        assert same(db, portable_db, f"SELECT webhook.{fn}(%s)", [(t,) for t in types]) == 0
    keys = ["", "order:1", "k" * 256, "k" * 257, "é" * 128, "é" * 129, "日本" * 60, "x" * 10000]
    assert same(db, portable_db, "SELECT webhook._ordering_key(%s)", [(k,) for k in keys]) == 0


def test_nul_escapes_are_replaced_alike(db, portable_db):
    bodies = ['{"a": "\\u0000"}', '{"a": "\\\\u0000"}', '{"a": "\\\\\\u0000"}', '{"a": "\\u0000\\u0000x"}',
              '\\u0000', '{"a": "\\u00001"}', '{"a": "\\u0001", "b": "\\n\\u0000"}', '{"a": "\\\\\\\\u0000"}',
              '{"a": "no escapes"}', '{"a": "\\"\\u0000\\""}', '\\\\\\\\\\u0000\\\\']
    assert same(db, portable_db, "SELECT webhook._without_nul_escapes(%s)", [(b,) for b in bodies]) == 0


def test_patterns_match_alike(db, portable_db):
    types = ["orders.insert", "orders.line.insert", "orders_archive.insert", "a.b.c.d", "x", "",
             "webhook.delivery.dead", "webhook", "orders.", "a..b"]
    candidates = ["*", "orders.*", "orders.insert", "orders.line.*", "orders.line.insert", "orders.update",
                  "orders_archive.*", "a.*", "a.b.*", "a.b.c.*", "a.b.c.d", "a.b.c.d.*", "x", "x.*", "x*",
                  "webhook.*", "webhook.delivery.dead", "*.*", "", "a..*"]
    assert same(db, portable_db, "SELECT webhook._patterns_for(%s)", [(t,) for t in types]) == 0
    pairs = [([p], t) for p in candidates for t in types]
    pairs += [([], "orders.insert"), (["reviews.*", "orders.delete"], "orders.insert"),
              (["*", "webhook.endpoint.*"], "webhook.endpoint.failing"), (["reviews.*", None, "orders.insert"], "orders.insert")]
    assert same(db, portable_db, "SELECT webhook._matches(%s::text[], %s)", pairs) == 0


def test_settings_are_read_alike(db, portable_db):
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    values = [good, "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "", good.upper(),
              "ff" + good[2:], "00-" + "0" * 32 + good[35:], good[:36] + "0" * 16 + "-01", good[:-3],
              good + "\r\nx: y", good[:35] + "-00f067aa0ba902b7-01"]
    for v in values:
        for c in (db, portable_db):
            c.execute("SELECT set_config('webhook.traceparent', %s, false)", (v,))
        assert outcome(portable_db, "SELECT webhook._traceparent()") == outcome(db, "SELECT webhook._traceparent()"), v
    for c in (db, portable_db):
        c.execute("RESET webhook.traceparent")
    assert outcome(portable_db, "SELECT webhook._traceparent()") == outcome(db, "SELECT webhook._traceparent()")

    for allow in (False, True):
        db.execute(f"SET webhook.allow_http = {'on' if allow else 'off'}")
        portable_db.execute("UPDATE webhook.portable_settings SET allow_http = %s", (allow,))
        assert q1(portable_db, "SELECT webhook._allow_http()") is q1(db, "SELECT webhook._allow_http()") is allow

    for limit in (1048576, 256, 5000):
        db.execute(f"SET webhook.max_event_size = {limit}")
        portable_db.execute("UPDATE webhook.portable_settings SET max_event_size = %s", (limit,))
        sizes = [(t, n) for t in ("orders.insert",) for n in (0, 255, 256, 257, 4999, 5000, 5001, 1048577)]
        same(db, portable_db, "SELECT webhook._check_event_size(%s, %s)", sizes)
    # Only the owner may change them: another role can read, never write.
    role = f"app_{RNG.randrange(1 << 30)}"
    portable_db.execute(f"CREATE ROLE {role}")
    try:
        portable_db.execute(f"GRANT USAGE ON SCHEMA webhook TO {role}")
        portable_db.execute(f"SET ROLE {role}")
        assert q1(portable_db, "SELECT webhook._allow_http()") is True
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            portable_db.execute("UPDATE webhook.portable_settings SET allow_http = false")
    finally:
        portable_db.execute("RESET ROLE")
        portable_db.execute(f"DROP OWNED BY {role}")
        portable_db.execute(f"DROP ROLE {role}")
