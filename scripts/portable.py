#!/usr/bin/env python3
"""Write pg_webhook's portable edition as one SQL file (`make portable`).

The portable edition is the native extension's SQL without its shared
library: the stage files of extension/sql/, in the order extension/src/lib.rs
loads them, less their blocks between `-- native:begin` and `-- native:end`
(the C trigger function and the event triggers), with the SQL and PL/pgSQL
twins of the Rust functions from extension/sql/portable/: library.sql first,
and portable/<stage>.sql right after the stage it completes.

    scripts/portable.py [OUT]   # default target/portable/pg_webhook-portable--<version>.sql
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQL = ROOT / "extension" / "sql"
PORTABLE = SQL / "portable"
BEGIN, END = "-- native:begin", "-- native:end"


def version():
    return tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]


def stages():
    """The stage files in the order lib.rs loads them."""
    lib = (ROOT / "extension" / "src" / "lib.rs").read_text()
    names = re.findall(r'extension_sql_file!\(\s*"\.\./sql/([a-z_]+)\.sql"', lib)
    if not names:
        sys.exit("scripts/portable.py: no extension_sql_file! in extension/src/lib.rs")
    return names


def without_native(path):
    """The file's text without its native-only blocks (whose markers must pair)."""
    out, inside = [], None
    for n, line in enumerate(path.read_text().splitlines(keepends=True), 1):
        mark = line.strip()
        if mark.startswith(BEGIN):
            if inside:
                sys.exit(f"{path}:{n}: {BEGIN} inside the block begun at line {inside}")
            inside = n
        elif mark.startswith(END):
            if not inside:
                sys.exit(f"{path}:{n}: {END} without {BEGIN}")
            inside = None
        elif not inside:
            out.append(line)
    if inside:
        sys.exit(f"{path}:{inside}: {BEGIN} is never ended")
    return "".join(out)


def edition():
    v = version()
    parts = [
        f"-- pg_webhook {v}, portable edition: for PostgreSQL that cannot load pg_webhook's\n"
        "-- library (managed services). Install with psql -f as the database's owner, after\n"
        "-- CREATE EXTENSION pgcrypto. Written by scripts/portable.py from extension/sql/;\n"
        "-- edit those files, not this one.\n",
        "BEGIN;\nCREATE SCHEMA webhook;\n",
        f"-- portable/library.sql\n{(PORTABLE / 'library.sql').read_text()}",
    ]
    known = {"library"}
    for stage in stages():
        parts.append(f"-- {stage}.sql\n{without_native(SQL / f'{stage}.sql')}")
        extra = PORTABLE / f"{stage}.sql"
        if extra.exists():
            parts.append(f"-- portable/{stage}.sql\n{extra.read_text()}")
            known.add(stage)
    stray = {p.stem for p in PORTABLE.glob("*.sql")} - known
    if stray:
        sys.exit(f"scripts/portable.py: extension/sql/portable/ has files for no stage: {sorted(stray)}")
    parts.append("COMMIT;\n")
    return "\n".join(parts)


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target" / "portable" / f"pg_webhook-portable--{version()}.sql"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(edition())
    print(out)


if __name__ == "__main__":
    main()
