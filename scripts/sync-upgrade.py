#!/usr/bin/env python3
"""Keep the functions and comments of the open upgrade script identical to
the stage files.

The upgrade script of the release under development
(extension/sql/pg_webhook--A--B.sql) re-creates every function whose
definition changed since release A. Their text must equal the stage files'
(extension/sql/{outbox,capture,route,...}.sql), or an upgraded database
differs from a fresh install (tests/sql/test_upgrade.py compares the two). This
script copies each such function's definition from the stage file that
defines it, keeping the upgrade script's own `CREATE` or `CREATE OR
REPLACE`; functions the stage files do not define (the migration's own)
are left alone.

The same holds for each `COMMENT ON FUNCTION|VIEW|TABLE webhook.x` of the
stage files: the upgrade script must make it, word for word, after its
last `CREATE` of that object (a function dropped and made anew loses its
comment). A comment that differs is copied in place; a missing one is
added at the end of the script.

    scripts/sync-upgrade.py [--check] [upgrade-script]

--check: change nothing, exit 1 and name the functions and comments that
differ. Objects are matched by name (schema webhook has no overloaded
names).
"""
import re
import sys
from pathlib import Path

SQL = Path(__file__).resolve().parent.parent / "extension" / "sql"
START = re.compile(r"^CREATE (OR REPLACE )?FUNCTION (webhook\.\w+)\(", re.M)
# A comment statement: COMMENT ON, the object (a function with its argument
# types), IS and a string literal or NULL.
COMMENT = re.compile(r"^COMMENT ON (FUNCTION|VIEW|TABLE) (webhook\.\w+)(?:\([^)]*\))? IS\s+(?:NULL|'(?:[^']|'')*');\n",
                     re.M)
COMMENTS_HEADER = "\n-- Comments (psql's \\df+, \\dv+), as the stage files make them.\n"


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


def comments(text):
    """(kind, name) -> (start, end) of each comment statement."""
    return {(m.group(1), m.group(2)): (m.start(), m.end()) for m in COMMENT.finditer(text)}


def last_create(text, kind, name):
    """Where the last CREATE of that object starts (-1: none)."""
    made = re.compile(rf"^CREATE (OR REPLACE )?{kind} {re.escape(name)}\b", re.M)
    return max((m.start() for m in made.finditer(text)), default=-1)


def sync_comments(text, stage_comments):
    """The script with the stage files' comments; the keys that differed,
    and those that come before their object is made (not fixed here)."""
    differ, early, missing = [], [], []
    for key, new in sorted(stage_comments.items()):
        mine = comments(text)
        if key not in mine:
            differ.append(key)
            missing.append(new)
            continue
        a, b = mine[key]
        if text[a:b] != new:
            differ.append(key)
            text = text[:a] + new + text[b:]
            a = text.index(new)
        if a < last_create(text, *key):
            early.append(key)
    if missing:
        if COMMENTS_HEADER not in text:
            text = text.rstrip("\n") + "\n" + COMMENTS_HEADER
        text += "".join(missing)
    return text, differ, early


def main():
    args = [a for a in sys.argv[1:] if a != "--check"]
    check = "--check" in sys.argv[1:]
    if args:
        upgrade = Path(args[0])
    else:
        scripts = sorted(p for p in SQL.glob("pg_webhook--*--*.sql"))
        upgrade = scripts[-1]
    stage = {}
    stage_comments = {}
    for p in sorted(SQL.glob("*.sql")):
        if p.name.startswith("pg_webhook--"):
            continue
        text = p.read_text()
        for name, (a, b) in functions(text).items():
            stage[name] = text[a:b]
        for key, (a, b) in comments(text).items():
            stage_comments[key] = text[a:b]
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
    text, comments_differ, early = sync_comments(text, stage_comments)
    differ += [f"comment on {kind.lower()} {name}" for kind, name in comments_differ]
    for kind, name in early:
        print(f"{upgrade.name}: the comment on {kind.lower()} {name} comes before its last CREATE; "
              "move it after", file=sys.stderr)
    if check:
        if differ:
            print(f"{upgrade.name}: differs from the stage files in {', '.join(sorted(differ))}", file=sys.stderr)
        if differ or early:
            sys.exit(1)
        return
    if differ:
        upgrade.write_text(text)
        print(f"{upgrade.name}: synced {', '.join(sorted(differ))}")
    if early:
        sys.exit(1)


if __name__ == "__main__":
    main()
