"""Before and after on one machine: bench/run.py in two checkouts, interleaved, then the medians.

    python bench/pairs.py BEFORE_DIR AFTER_DIR [--pairs 3] [--duration 5] [--workers N]

Each checkout runs its own bench/run.py with its own `.venv/bin/python` (make both venvs first),
alternately (before, after, before, after, ...), so both see the same machine over the same
minutes; one run's figures on a shared VM move by ±30%. Prints every run's output, then one table:
the median of each row for each checkout. Exits non-zero if any run's money check failed.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROW = re.compile(r"^\| (?P<label>[^|]+?) +\|(?P<cells>.+)\|$")
LINE_FIGURES = {  # the lines below the table, read as figures too
    "c=1 p50 added ms": re.compile(r"at c=1: p50 \+([\d.]+) ms"),
    "stream TTFB added ms": re.compile(r"time to first byte \+([\d.]+) ms"),
    "CPU per request, gateway / bare": re.compile(r"gateway / bare passthrough \(c=50 JSON\): ([\d.]+)"),
    "SQLite write transactions per request": re.compile(r"transactions per request \(c=50 JSON\): ([\d.nan]+)"),
    "peak RSS MiB over the memory trace": re.compile(r"peak RSS MiB over those requests: ([\d.]+)"),
    "RSS growth over the memory trace %": re.compile(r"growth from .* requests: ([+\-\d.]+)%"),
}


def figures(output: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in output.splitlines():
        row = ROW.match(line)
        if row and not row["label"].startswith("-") and row["label"].strip():
            cells = [c.strip().replace(",", "") for c in row["cells"].split("|")]
            try:
                found[f"{row['label'].strip()} (gateway)"] = float(cells[2])
                found[f"{row['label'].strip()} (gateway/bare)"] = float(cells[3])
            except (ValueError, IndexError):
                continue
    for name, pattern in LINE_FIGURES.items():
        match = pattern.search(output)
        if match:
            found[name] = float(match[1])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    runs: dict[Path, list[dict[str, float]]] = {args.before: [], args.after: []}
    ok = True
    for pair in range(args.pairs):
        for checkout in runs:
            command = [str(checkout / ".venv" / "bin" / "python"), "bench/run.py", "--duration", str(args.duration)]
            command += ["--workers", str(args.workers)] if args.workers > 1 else []
            done = subprocess.run(command, cwd=checkout, capture_output=True, text=True)
            print(f"## pair {pair + 1}, {checkout}\n{done.stdout}{done.stderr}", flush=True)
            ok = ok and done.returncode == 0 and "money check" in done.stdout
            runs[checkout].append(figures(done.stdout))
    names = [name for name in runs[args.after][0] if all(name in run for runs_of in runs.values() for run in runs_of)]
    print(f"\nmedians of {args.pairs} interleaved pairs (--duration {args.duration}, --workers {args.workers})\n")
    print(f"| {'':52} | {'before':>10} | {'after':>10} |")
    print(f"| {'-' * 52} | {'-' * 9}: | {'-' * 9}: |")
    for name in names:
        before, after = (statistics.median(run[name] for run in runs[c]) for c in runs)
        print(f"| {name:52} | {before:>10,.3f} | {after:>10,.3f} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
