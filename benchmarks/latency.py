"""Retrieval latency at catalogue scale: ``sketchdown bench`` as a script (see sketchdown/retrieval/bench.py).

Writes results/latency.json and results/latency.md, and refreshes the table between the ``latency`` markers in
README.md.

    python benchmarks/latency.py --teacher runs/teacher --v1 runs/v1 --v2 runs/v2
    python benchmarks/latency.py --teacher xception --v1 mobilenet_v2 --queries 20 --warmup 2   # zero-shot smoke
"""

from __future__ import annotations

import argparse
import sys

from sketchdown.errors import SketchdownError
from sketchdown.retrieval.bench import add_arguments
from sketchdown.retrieval.bench import main as run


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def main(args: argparse.Namespace) -> None:
    try:
        run(args)
    except SketchdownError as err:
        sys.exit(f"latency.py: error: {err}")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
