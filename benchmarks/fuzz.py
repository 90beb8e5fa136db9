"""The hostile-input run: thousands of generated cases over every reader and loader (``sketchdown.fuzz``), each
bounded to 10 s and 2 GB of extra address space, hostile pickles included. Every case must end in a result or the
project's one-line error; anything else is a finding, listed with the first bytes of its case. Writes
results/fuzz.{json,md} and the README block; the exit status is 1 when there is a finding.

    python benchmarks/fuzz.py --cases 10000
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from sketchdown import fuzz
from sketchdown.files import write_json, write_text
from tables import fuzz_table, replace_block


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=10_000, help="cases in all, shared evenly by the targets")
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed (the same seed generates the same cases)")
    p.add_argument("--only", nargs="+", help="target names (default: all)")
    p.add_argument("--out", type=Path, default=Path("results/fuzz.json"), help="also writes the .md beside it")
    p.add_argument("--readme", type=Path, default=Path("README.md"), help="README whose block `fuzz` is updated")
    return p


def main(args: argparse.Namespace) -> int:
    names = args.only or ["raster sketch", "photo", "svg", "stroke json", "ndjson", "sketchx pickle",
                          "stroke-3 npz", "pairs csv", "index"]
    started = time.perf_counter()
    report = fuzz.fuzz(-(-args.cases // len(names)), args.only, args.seed,
                       progress=lambda name, n: print(f"{name}: {n} cases", flush=True))
    command = "python benchmarks/fuzz.py " + " ".join(sys.argv[1:])
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown CPU")
    summary = {"command": command.strip(), "cases": report.cases, "seconds": round(time.perf_counter() - started, 1),
               "cpu": cpu, "outcomes": {k: dict(v) for k, v in report.outcomes.items()},
               "findings": report.findings, "slowest_seconds": round(report.slowest, 4),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "bounds": {"seconds": fuzz.SECONDS, "extra_address_space_bytes": fuzz.MEMORY}}
    table = fuzz_table(summary)
    write_json(summary, args.out)
    write_text(args.out.with_suffix(".md"), f"# Hostile-input run\n\n{table}\n\nOn {cpu}.\n")
    replace_block(args.readme, "fuzz", table)
    print(table)
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
