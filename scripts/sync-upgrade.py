#!/usr/bin/env python3
"""Keep the functions of the open upgrade script identical to the stage files.

The upgrade script of the release under development
(extension/sql/pg_webhook--A--B.sql) re-creates every function whose
definition changed since release A. Their text must equal the stage files'
(extension/sql/{outbox,capture,route,...}.sql), or an upgraded database
differs from a fresh install (tests/test_upgrade.py compares the two). This
script copies each such function's definition from the stage file that
defines it, keeping the upgrade script's own `CREATE` or `CREATE OR
REPLACE`; functions the stage files do not define (the migration's own)
are left alone.

    scripts/sync-upgrade.py [--check] [upgrade-script]

--check: change nothing, exit 1 and name the functions that differ.
Functions are matched by name (schema webhook has no overloaded names).
"""
import re
import sys
from pathlib import Path

SQL = Path(__file__).resolve().parent.parent / "extension" / "sql"
START = re.compile(r"^CREATE (OR REPLACE )?FUNCTION (webhook\.\w+)\(", re.M)


def functions(text):
    """name -> (start, end) of each function definition: from its CREATE
    line through the line that closes its dollar-quoted body."""
    out = {}
    for m in START.finditer(text):
        body = text.index("$$", m.end())
        close = text.index("$$", body + 2)
        end = text.index("\n", close) + 1
        out[m.group(2)] = (m.start(), end)
    return out


def main():
    args = [a for a in sys.argv[1:] if a != "--check"]
    check = "--check" in sys.argv[1:]
    if args:
        upgrade = Path(args[0])
    else:
        scripts = sorted(p for p in SQL.glob("pg_webhook--*--*.sql"))
        upgrade = scripts[-1]
    stage = {}
    for p in sorted(SQL.glob("*.sql")):
        if p.name.startswith("pg_webhook--"):
            continue
        text = p.read_text()
        for name, (a, b) in functions(text).items():
            stage[name] = text[a:b]
    text = upgrade.read_text()
    differ = []
    for name, (a, b) in sorted(functions(text).items(), key=lambda kv: -kv[1][0]):
        if name not in stage:
            continue
        mine = text[a:b]
        new = stage[name]
        if mine.startswith("CREATE OR REPLACE "):
            new = new.replace("CREATE FUNCTION ", "CREATE OR REPLACE FUNCTION ", 1)
        if mine != new:
            differ.append(name)
            text = text[:a] + new + text[b:]
    if check:
        if differ:
            print(f"{upgrade.name}: differs from the stage files in {', '.join(sorted(differ))}", file=sys.stderr)
            sys.exit(1)
        return
    if differ:
        upgrade.write_text(text)
        print(f"{upgrade.name}: synced {', '.join(sorted(differ))}")


if __name__ == "__main__":
    main()
