#!/usr/bin/env python3
"""Check the documentation against itself and against the SQL it documents.

    scripts/check-docs.py

1. Links: every relative link and image in README.md, SECURITY.md,
   BENCHMARKS.md, CHANGELOG.md and docs/*.md names a file or folder of the
   repository, and every `#anchor` (in the same page or another) a heading
   of that page, as GitHub makes anchors: the heading's text lowercased,
   punctuation dropped, spaces turned into `-`, `-1`, `-2`, ... after
   repeats. Links with a scheme (https:, mailto:) are not followed, nor is
   anything inside code.
2. The SQL API: every public function of schema webhook (a `CREATE
   [OR REPLACE] FUNCTION webhook.<name>` without a leading `_` in the stage
   files extension/sql/*.sql, and each `#[pg_extern]` of extension/src
   whose SQL name has none) has a `### <name>` heading in docs/sql-api.md
   and a `COMMENT ON FUNCTION` in the stage files; so has every view, with
   a `COMMENT ON VIEW`; and each `###` heading of docs/sql-api.md names a
   public function or a view. The stage files are the ones the extension
   is built from; `pg_webhook--*.sql` are frozen install scripts and
   upgrade scripts (scripts/sync-upgrade.py checks the open one).
3. Internal functions (a leading `_`) each have a row in the table of
   docs/development.md, and the table names no function that is gone.
4. Every page of docs/ is in the book's docs/SUMMARY.md, and
   docs/webhookd.md has one flag table per subcommand between
   `<!-- flags:<command>:begin -->` and `<!-- flags:<command>:end -->`.

Exit 1 with a line per problem; standard library only.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQL = ROOT / "extension" / "sql"
DOCS = ROOT / "docs"
PAGES = [ROOT / n for n in ("README.md", "SECURITY.md", "BENCHMARKS.md", "CHANGELOG.md")] + sorted(DOCS.glob("*.md"))
FLAG_TABLES = ("global", "run", "listen", "status", "healthcheck", "console")

problems = []


def problem(path, line, what):
    problems.append(f"{path.relative_to(ROOT)}:{line}: {what}")


FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the target ends at the first space
# (a title may follow) or the closing parenthesis.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)")
CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")
HTML_ID = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def prose_lines(text):
    """(line number, line) of every line outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def slug(heading):
    """GitHub's anchor of a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = text.replace("`", "")
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"(\*\*|__|\*|~~)", "", text)
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in "-_ ")
    return text.replace(" ", "-")


_anchors = {}


def anchors(path):
    """Every anchor a page has: its headings' and explicit HTML ones."""
    if path not in _anchors:
        seen = {}
        found = set()
        for _, line in prose_lines(path.read_text()):
            m = HEADING.match(line)
            if m:
                s = slug(m.group(2))
                n = seen.get(s, 0)
                seen[s] = n + 1
                found.add(s if n == 0 else f"{s}-{n}")
            found.update(HTML_ID.findall(line))
        _anchors[path] = found
    return _anchors[path]


def check_links(page):
    for n, line in prose_lines(page.read_text()):
        line = CODE_SPAN.sub("", line)
        targets = LINK.findall(line)
        m = REFERENCE.match(line)
        if m:
            targets.append(m.group(1))
        for target in targets:
            if not target or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                problem(page, n, f"link to {target}: no such file")
                continue
            try:
                dest.relative_to(ROOT)
            except ValueError:
                problem(page, n, f"link to {target}: outside the repository")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problem(page, n, f"link to {target}: {dest.relative_to(ROOT)} has no heading #{anchor}")


def stage_files():
    return [p for p in sorted(SQL.glob("*.sql")) if not p.name.startswith("pg_webhook--")]


def sql_objects():
    """Functions and views of the stage files and the Rust functions:
    ({function: where}, {view: where}, {(kind, name)} commented)."""
    functions, views, commented = {}, {}, set()
    for p in stage_files():
        text = p.read_text()
        for m in re.finditer(r"^CREATE (?:OR REPLACE )?FUNCTION webhook\.(\w+)\(", text, re.M):
            functions[m.group(1)] = p.name
        for m in re.finditer(r"^CREATE (?:OR REPLACE )?VIEW webhook\.(\w+)", text, re.M):
            views[m.group(1)] = p.name
        for m in re.finditer(r"^COMMENT ON (FUNCTION|VIEW) webhook\.(\w+)", text, re.M):
            commented.add((m.group(1), m.group(2)))
    # #[pg_extern(...)] fn name: SQL name `name`, or the one it gives.
    for p in sorted((ROOT / "extension" / "src").glob("*.rs")):
        text = p.read_text()
        for m in re.finditer(r"#\[pg_extern(?:\(([^)]*)\))?\]\s*(?:pub(?:\([^)]*\))?\s+)?fn\s+(\w+)", text):
            named = re.search(r'name\s*=\s*"(\w+)"', m.group(1) or "")
            functions[named.group(1) if named else m.group(2)] = p.name
    return functions, views, commented


def check_sql_api():
    functions, views, commented = sql_objects()
    api = DOCS / "sql-api.md"
    headings = {}
    for n, line in prose_lines(api.read_text()):
        m = re.match(r"^###\s+(.*?)\s*$", line)
        if m:
            headings[m.group(1).replace("`", "")] = n
    for name, where in sorted(functions.items()):
        if name.startswith("_"):
            continue
        if name not in headings:
            problem(api, 1, f"no '### {name}' for the function webhook.{name} ({where})")
        if ("FUNCTION", name) not in commented:
            problem(SQL / where if where.endswith(".sql") else SQL / "grants.sql", 1,
                    f"no COMMENT ON FUNCTION webhook.{name} in the stage files")
    for name, where in sorted(views.items()):
        if name not in headings:
            problem(api, 1, f"no '### {name}' for the view webhook.{name} ({where})")
        if ("VIEW", name) not in commented:
            problem(SQL / where, 1, f"no COMMENT ON VIEW webhook.{name}")
    for name, n in headings.items():
        if name.startswith("_") or (name not in functions and name not in views):
            problem(api, n, f"'### {name}': schema webhook has no public function or view {name}")
    dev = DOCS / "development.md"
    listed = {}
    for n, line in prose_lines(dev.read_text()):
        m = re.match(r"^\|\s*`(_\w+)`\s*\|", line)
        if m:
            listed[m.group(1)] = n
    for name, where in sorted(functions.items()):
        if name.startswith("_") and name not in listed:
            problem(dev, 1, f"the internal function webhook.{name} ({where}) has no row in the table of internal functions")
    for name, n in listed.items():
        if name not in functions:
            problem(dev, n, f"webhook.{name} is listed as an internal function but no longer exists")


def check_book():
    summary = DOCS / "SUMMARY.md"
    if not summary.exists():
        problems.append("docs/SUMMARY.md: missing")
        return
    linked = {(DOCS / t.partition("#")[0]).resolve() for t in LINK.findall(summary.read_text())}
    for page in sorted(DOCS.glob("*.md")):
        if page != summary and page.resolve() not in linked:
            problem(summary, 1, f"{page.name} is not in the book")
    webhookd = DOCS / "webhookd.md"
    text = webhookd.read_text()
    for command in FLAG_TABLES:
        m = re.search(rf"<!-- flags:{command}:begin -->\n(.*?)<!-- flags:{command}:end -->", text, re.S)
        if not m:
            problem(webhookd, 1, f"no flags:{command}:begin ... flags:{command}:end table")
            continue
        first = text[:m.start(1)].count("\n") + 1
        rows = [(first + i, r) for i, r in enumerate(m.group(1).splitlines()) if r.strip()]
        if not rows or rows[0][1].replace(" ", "") != "|flag|env|default|meaning|":
            problem(webhookd, first, f"flags:{command}: the table's head is not | flag | env | default | meaning |")
        for n, r in rows[2:]:
            cells = [c.strip() for c in r.strip().strip("|").split("|")]
            if (len(cells) != 4 or not re.fullmatch(r"`--[a-z0-9-]+`", cells[0])
                    or not re.fullmatch(r"(`[A-Z0-9_]+`)?", cells[1]) or not cells[3]):
                problem(webhookd, n, f"flags:{command}: not a row | `--flag` | `ENV` or nothing | default | meaning |")


def main():
    for page in PAGES:
        if page.exists():
            check_links(page)
        else:
            problems.append(f"{page.relative_to(ROOT)}: missing")
    check_sql_api()
    check_book()
    for p in problems:
        print(p, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
