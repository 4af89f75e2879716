"""python3 -m pgwh_bench COMMAND ARGS (with bench/ on PYTHONPATH, as
scripts/bench.sh and `make lint` run it). `python3 -m pgwh_bench -h` lists
the commands; each record command takes its arguments in the order of its
function in record.py."""

import argparse
import inspect
import sys

from . import record

RECORDS = {
    "b5": record.b5,
    "b8-record": record.b8_record,
    "b8-summary": record.b8_summary,
    "b9": record.b9,
    "b11": record.b11,
    "b11-sessions": record.b11_sessions,
    "last-fields": record.last_fields,
}


def summary(fn):
    """The first sentence of a function's docstring, on one line."""
    return " ".join(inspect.getdoc(fn).split("\n\n")[0].split()).split(". ")[0].rstrip(".")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m pgwh_bench", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="render results into BENCHMARKS.md's generated block and plots")
    rep.add_argument("results")
    rep.add_argument("--plots", required=True)
    rep.add_argument("--splice")
    chk = sub.add_parser("check-goals", help="BENCHMARKS.md's prose against the goal table")
    chk.add_argument("path", nargs="?", default="BENCHMARKS.md")
    for name, fn in RECORDS.items():
        p = sub.add_parser(name, help=summary(fn))
        for param in inspect.signature(fn).parameters.values():
            p.add_argument(param.name, nargs="+" if param.kind is param.VAR_POSITIONAL else None)
    a = ap.parse_args(argv)

    if a.command == "report":
        # matplotlib only here: the record commands run on the system's python3.
        from .report import render

        render(a.results, a.plots, a.splice)
    elif a.command == "check-goals":
        from .prose import check

        problems = check(open(a.path).read(), a.path)
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    else:
        fn = RECORDS[a.command]
        args = []
        for param in inspect.signature(fn).parameters.values():
            v = getattr(a, param.name)
            args.extend(v if param.kind is param.VAR_POSITIONAL else [v])
        fn(*args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
