"""Every type has one form in the payload and in the ordering key, whatever
the writing session's settings (TimeZone, DateStyle, IntervalStyle,
extra_float_digits, bytea_output, lc_monetary, search_path,
quote_all_identifiers): the forms docs/capture.md lists, checked here
value by value, and the same row written from sessions that set all of
them differently gives byte-identical events and keys. Both editions."""

import json

import pytest

from support.cluster import q, q1

# Sessions as different as PostgreSQL lets them be (this machine has the C
# locales only; lc_monetary cannot change money's scale here).
SESSIONS = [
    {},
    {"TimeZone": "Asia/Kathmandu", "DateStyle": "SQL, DMY", "IntervalStyle": "sql_standard",
     "extra_float_digits": "-4", "bytea_output": "escape", "lc_monetary": "POSIX",
     "search_path": "webhook, pg_catalog", "quote_all_identifiers": "on"},
    {"TimeZone": "America/St_Johns", "DateStyle": "Postgres, YMD", "IntervalStyle": "postgres_verbose",
     "extra_float_digits": "0", "lc_monetary": "C.utf8"},
    {"TimeZone": "Etc/GMT+12", "DateStyle": "German", "IntervalStyle": "iso_8601", "extra_float_digits": "3",
     "search_path": "\"$user\""},
    {"TimeZone": "Pacific/Kiritimati", "DateStyle": "ISO, DMY", "IntervalStyle": "postgres",
     "extra_float_digits": "2", "quote_all_identifiers": "on"},
]

COLUMNS = """
    iv interval, ivs interval[], m money, tt timetz, f8 float8, f4 float4, pt point,
    tr tstzrange, dr daterange, ir int4range, nr numrange, er int4range, mr int4multirange, tmr tstzmultirange,
    rc regclass, rt regtype, ts timestamptz, d date, n numeric, b bytea, part public.part
"""

# One row, its values as SQL that reads the same in every session above.
VALUES = """
    interval 'P1Y2M3DT4H5M6.5S', ARRAY[interval '-1 year -2 mons +3 days -04:05:06', interval '0', interval '1 microsecond'],
    '-1234.5'::money, '12:00:00.25+05:45', 0.1::float8 + 0.2::float8, 1.1::float4, point(1.5, 1e-7),
    tstzrange('2026-01-01 09:00+09', '2026-02-01 00:00+00', '[)'), daterange('2026-03-01', NULL, '[]'),
    int4range(1, 5, '(]'), numrange(1.10, 2.500, '[]'), 'empty'::int4range, '{[1,3), [5,7)}'::int4multirange,
    tstzmultirange(tstzrange(NULL, '2026-01-01 00:00+00')),
    'public.forms'::regclass, 'int4'::regtype, '2026-01-02 03:04:05.678+02', '0044-03-15 BC', 12345678901234.123456,
    '\\xdeadbeef', ROW(interval '1 day 02:00', tstzrange('2026-06-01 00:00+00', NULL), '0.05'::money)::public.part
"""

WANT = {
    "iv": "P1Y2M3DT4H5M6.5S",
    "ivs": ["P-1Y-2M3DT-4H-5M-6S", "PT0S", "PT0.000001S"],
    "m": "-1234.50",  # a number: compared as text below
    "tt": "12:00:00.250000+05:45",
    "f8": 0.30000000000000004,
    "f4": 1.1,
    "pt": "(1.5,1e-07)",
    "tr": {"lower": "2026-01-01T00:00:00.000000Z", "upper": "2026-02-01T00:00:00.000000Z",
           "lower_inc": True, "upper_inc": False},
    "dr": {"lower": "2026-03-01", "upper": None, "lower_inc": True, "upper_inc": False},
    "ir": {"lower": 2, "upper": 6, "lower_inc": True, "upper_inc": False},
    "nr": {"lower": "1.10", "upper": "2.500", "lower_inc": True, "upper_inc": True},  # numbers: as text below
    "er": {"empty": True},
    "mr": [{"lower": 1, "upper": 3, "lower_inc": True, "upper_inc": False},
           {"lower": 5, "upper": 7, "lower_inc": True, "upper_inc": False}],
    "tmr": [{"lower": None, "upper": "2026-01-01T00:00:00.000000Z", "lower_inc": False, "upper_inc": False}],
    "rc": "public.forms",
    "rt": "integer",
    "ts": "2026-01-02T01:04:05.678000Z",
    "d": "-0043-03-15",
    "n": "12345678901234.123456",
    "b": "3q2+7w==",
    "part": {"iv": "P1DT2H", "r": {"lower": "2026-06-01T00:00:00.000000Z", "upper": None,
                                   "lower_inc": True, "upper_inc": False}, "m": "0.05"},
}


def apply(db, settings):
    db.execute("RESET ALL")
    for name, value in settings.items():
        db.execute("SELECT set_config(%s, %s, false)", (name, value))


def numbers_as_text(text):
    return json.loads(text, parse_float=str, parse_int=int)


@pytest.fixture
def forms(db):
    db.execute("CREATE TYPE part AS (iv interval, r tstzrange, m money)")
    db.execute(f"CREATE TABLE forms (id int PRIMARY KEY, {COLUMNS})")
    db.execute("SELECT webhook.track('forms')")
    yield db
    db.execute("RESET ALL")


def test_every_type_has_its_documented_form(forms):
    db = forms
    apply(db, SESSIONS[1])
    db.execute(f"INSERT INTO public.forms VALUES (1, {VALUES})")
    db.execute("RESET ALL")
    body = q1(db, "SELECT body FROM webhook.event_log")
    new = numbers_as_text(body)["data"]["new"]
    want = dict(WANT, f8=str(WANT["f8"]), f4=str(WANT["f4"]))
    assert {k: v for k, v in new.items() if k != "id"} == want
    # money and numeric bounds are JSON numbers, not strings.
    assert '"m":-1234.50,' in body and '"lower":1.10,"upper":2.500' in body and '"m":0.05}' in body


def test_the_same_row_from_every_session_is_the_same_bytes(forms):
    db = forms
    for i, settings in enumerate(SESSIONS):
        apply(db, settings)
        db.execute(f"INSERT INTO public.forms VALUES ({i}, {VALUES})")
        db.execute(f"UPDATE public.forms SET f8 = f8 WHERE id = {i}")
        db.execute(f"DELETE FROM public.forms WHERE id = {i}")
    db.execute("RESET ALL")
    rows = q(db, "SELECT body FROM webhook.event_log ORDER BY id")
    assert len(rows) == 3 * len(SESSIONS)

    def data(body):
        d = json.loads(body)["data"]
        for side in ("new", "old"):
            if d[side]:
                d[side].pop("id")
        return json.dumps(d, sort_keys=True)

    per_op = {}
    for (body,) in rows:
        per_op.setdefault(json.loads(body)["data"]["op"], set()).add(data(body))
    assert {op: len(v) for op, v in per_op.items()} == {"insert": 1, "update": 1, "delete": 1}, per_op


# Ordering keys of the types whose text depends on a session setting.
KEYS = [
    ("float8", "0.1::float8 + 0.2::float8", "0.30000000000000004"),
    ("float4", "1.1::float4", "1.1"),
    ("interval", "interval '1 day 02:00:00.5'", "P1DT2H0.5S"),
    ("money", "'12.3'::money", "12.30"),
    ("timetz", "'23:59:59.999999-03:30'::timetz", "23:59:59.999999-03:30"),
    ("tstzrange", "tstzrange('2026-01-01 09:00+09', NULL)", '["2026-01-01 00:00:00+00",)'),
    ("regclass", "'public.forms'::regclass", "public.forms"),
    ("timestamptz", "'2026-01-01 09:00+09'::timestamptz", "2026-01-01T00:00:00.000000Z"),
]


@pytest.mark.parametrize("typ,value,want", KEYS, ids=[k[0] for k in KEYS])
def test_an_ordering_key_is_the_same_from_every_session(db, typ, value, want):
    db.execute("CREATE TABLE forms (id int)")  # for the regclass value
    db.execute(f"CREATE TABLE keyed (k {typ} PRIMARY KEY, note text)")
    db.execute("SELECT webhook.track('keyed')")
    for settings in SESSIONS:
        apply(db, settings)
        db.execute(f"INSERT INTO public.keyed VALUES ({value}, 'x')")
        db.execute("UPDATE public.keyed SET note = 'y'")
        db.execute("DELETE FROM public.keyed")
    db.execute("RESET ALL")
    keys = {k for (k,) in q(db, "SELECT ordering_key FROM webhook.event_log")}
    assert keys == {"public.keyed:" + want}
