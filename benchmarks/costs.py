"""Cost of every registered backbone in the paper's accounting, plus measured CPU latency, at each canvas.

Writes results/costs.json and results/costs.md, and refreshes the table between the ``costs`` markers in
README.md. Latency: batch 1, median (and p95) over --repeats timed forward passes after 10 warm-up passes,
on this machine's CPU with the stated thread count.

    python benchmarks/costs.py
"""

from __future__ import annotations

import argparse
import platform
import sys
import warnings
from pathlib import Path

import torch

from sketchdown.data.render import CANVASES
from sketchdown.files import write_json
from sketchdown.eval.flops import backbone_cost, measure_latency
from sketchdown.models.registry import create_backbone, list_backbones
from tables import replace_block


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=None, help="default: every registered backbone")
    p.add_argument("--canvas", type=int, nargs="+", default=list(CANVASES))
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=Path("results/costs.json"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    return p


def markdown(rows: list[dict], meta: dict) -> str:
    lines = ["| backbone | canvas | params (M) | GFLOPs | CPU ms/sketch (median) | p95 |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['backbone']} | {r['canvas']} | {r['params_m']:.2f} | {r['gflops']:.3f} | {r['cpu_ms']:.2f} | "
              f"{r['cpu_p95_ms']:.2f} |" for r in rows]
    lines.append(f"\n_{meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}; command: `{meta['command']}`_")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.backbones or list(list_backbones()):
            backbone = create_backbone(name, "none")  # cost does not depend on the weights
            for c in args.canvas:
                lat = measure_latency(backbone, c, repeats=args.repeats, threads=args.threads)
                rows.append({"backbone": name, **backbone_cost(backbone, c).as_dict(),
                             "cpu_ms": lat.median_ms, "cpu_p95_ms": lat.p95_ms})
                print(f"{name:<18} {c:>4}  {rows[-1]['gflops']:8.3f} GFLOPs  {lat.median_ms:8.2f} ms", flush=True)
    meta = {"command": "python " + " ".join(sys.argv), "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__}
    write_json({**meta, "rows": rows}, args.out)
    table = markdown(rows, meta)
    args.out.with_suffix(".md").write_text(table + "\n")
    replace_block(args.readme, "costs", table)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
