"""Retrieval latency at catalogue scale: ``sketchdown bench`` as a script (see sketchdown/retrieval/bench.py).

Writes results/latency.json and results/latency.md (the library; --out names others), then refreshes the table
between the README.md markers named as the output file (``latency``, ``latency-shoes-v1``; this script).

    python benchmarks/latency.py --teacher runs/teacher --v1 runs/v1 --v2 runs/v2
    python benchmarks/latency.py --teacher xception --v1 mobilenet_v2 --queries 20 --warmup 2   # zero-shot smoke
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tables import replace_block

from sketchdown.errors import SketchdownError
from sketchdown.cli import bench_arguments
from sketchdown.retrieval.bench import main as run


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_arguments(p)
    p.add_argument("--readme", type=Path, default=Path("README.md"),
                   help="README whose table between the latency markers is refreshed, if it has them")
    return p


def main(args: argparse.Namespace) -> None:
    try:
        run(args)
        # the block named as the output: "latency" (Chair-V1, the default file), "latency-shoes-v1", ...
        replace_block(args.readme, args.out.stem, args.out.with_suffix(".md").read_text().strip())
    except SketchdownError as err:
        sys.exit(f"latency.py: error: {err}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
