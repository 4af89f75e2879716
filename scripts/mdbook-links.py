#!/usr/bin/env python3
"""mdBook preprocessor (docs/book.toml): the repository's links, made to
work in the book.

The pages are written for the repository: README.md links to
docs/sql-api.md, the docs link to ../README.md#verifying-a-request-receivers.
In the book, README.md is the page docs/guide.md (which only includes it),
CHANGELOG.md is docs/changelog.md, SECURITY.md docs/reporting.md. Every
relative link is read from where its text comes from (the included file
for those pages) and pointed at the book's page for that file; a link to a
file the book does not have (BENCHMARKS.md, deploy/...) becomes its text.
Anchors stay as they are: mdBook makes a heading's id as GitHub makes its
anchor. Standard library only.
"""
import json
import os
import re
import sys
from pathlib import Path

INCLUDE = re.compile(r"\{\{#include\s+([^}\s]+)\s*\}\}")
COMMENT = re.compile(r"<!--.*?-->", re.S)
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]*)>?((?:\s+\"[^\"]*\")?)\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+).+?\1")


def chapters(items):
    """Every chapter of the book, sub-chapters included."""
    for item in items:
        if isinstance(item, dict) and "Chapter" in item:
            yield item["Chapter"]
            yield from chapters(item["Chapter"].get("sub_items", []))


def origin(page):
    """The file a page's text comes from: itself, or the one file it only includes."""
    text = COMMENT.sub("", page.read_text()).strip()
    m = INCLUDE.fullmatch(text)
    return (page.parent / m.group(1)).resolve() if m else page.resolve()


def rewrite_line(line, base, here, pages, src):
    """The line with each relative link pointed at the book."""
    def link(m):
        bang, text, target, title = m.groups()
        if not target or target.startswith("#") or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
            return m.group(0)
        path, hash_, anchor = target.partition("#")
        dest = (base.parent / path).resolve()
        if dest in pages:
            new = os.path.relpath(pages[dest], here.parent)
        else:
            try:
                dest.relative_to(src)
            except ValueError:
                return text  # not in the book
            new = os.path.relpath(dest, here.parent)
        return f"{bang}[{text}]({new}{hash_}{anchor}{title})"

    # A link that starts inside inline code is code, and stays as written.
    code = [c.span() for c in CODE_SPAN.finditer(line)]

    def outside_code(m):
        return m.group(0) if any(a <= m.start() < b for a, b in code) else link(m)

    return LINK.sub(outside_code, line)


def rewrite(content, base, here, pages, src):
    fenced = False
    lines = []
    for line in content.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            line = rewrite_line(line, base, here, pages, src)
        lines.append(line)
    return "\n".join(lines)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "supports":
        sys.exit(0)  # every renderer
    context, book = json.load(sys.stdin)
    src = (Path(context["root"]) / context["config"]["book"].get("src", "src")).resolve()
    items = book.get("sections", book.get("items", []))
    found = [(c, (src / c["source_path"]).resolve()) for c in chapters(items) if c.get("source_path")]
    pages = {origin(page): page for _, page in found}
    for chapter, page in found:
        chapter["content"] = rewrite(chapter["content"], origin(page), page, pages, src)
    json.dump(book, sys.stdout)


if __name__ == "__main__":
    main()
