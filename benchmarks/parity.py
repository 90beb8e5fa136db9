"""fp32 vs bf16 training: the same short run in both precisions, judged on validation against the seed noise.

Reads finished run folders (``metrics.jsonl``) and writes results/precision-parity.{json,md} and the README block
``parity``. Noise is the gap between two bf16 seeds of the same run, floored at one validation query; the
precisions agree when the fp32 run's best validation acc@1 is within that of the bf16 run with the same seed.

    python benchmarks/parity.py --fp32 runs/chairs-v1/direct-fp32-s0 \\
        --bf16 runs/chairs-v1/direct-bf16-short-s0 runs/chairs-v1/direct-bf16-short-s1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sketchdown.files import write_json
from tables import replace_block


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fp32", type=Path, required=True, help="the fp32 run (seed 0)")
    p.add_argument("--bf16", type=Path, nargs=2, required=True, help="the bf16 runs: the same seed, then another")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    return p


def summary(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    best = max(records, key=lambda r: (r["val_acc1"], -r["val_mean_rank"]))
    return {"run": str(run), "precision": records[-1].get("precision", "fp32"), "epochs": len(records),
            # the least disturbed epoch after the first (which also decodes and caches the images)
            "seconds_per_epoch": round(min(r["seconds"] for r in records[1:] or records), 1),
            "best_val_acc1": round(best["val_acc1"], 2), "best_val_mean_rank": round(best["val_mean_rank"], 2),
            "val_acc1_per_epoch": [round(r["val_acc1"], 2) for r in records],
            "final_train_loss": round(records[-1]["train_loss"], 4), "val_queries": records[-1]["val_queries"]}


def main(args: argparse.Namespace) -> None:
    fp32, same, other = summary(args.fp32), summary(args.bf16[0]), summary(args.bf16[1])
    one_query = 100.0 / fp32["val_queries"]
    noise = max(abs(same["best_val_acc1"] - other["best_val_acc1"]), one_query)
    gap = abs(fp32["best_val_acc1"] - same["best_val_acc1"])
    bf16_epoch = min(same["seconds_per_epoch"], other["seconds_per_epoch"])
    verdict = {"noise": round(noise, 2), "gap": round(gap, 2), "agree": gap <= noise,
               "speedup": round(fp32["seconds_per_epoch"] / bf16_epoch, 2)}
    lines = ["| run | trained in | epochs | s/epoch | best val acc@1 | mean rank | val acc@1 per epoch | final loss |",
             "|---|---|---:|---:|---:|---:|---|---:|"]
    for r in (fp32, same, other):
        lines.append(f"| `{r['run']}` | {r['precision']} | {r['epochs']} | {r['seconds_per_epoch']} | "
                     f"{r['best_val_acc1']:.2f} | {r['best_val_mean_rank']:.2f} | "
                     f"{' '.join(f'{v:.1f}' for v in r['val_acc1_per_epoch'])} | {r['final_train_loss']} |")
    lines.append(f"\nfp32 vs bf16 (same seed): {verdict['gap']:.2f} points apart; noise (bf16 seed gap, at least one "
                 f"of {fp32['val_queries']} validation queries): {verdict['noise']:.2f}: "
                 f"{'the precisions agree' if verdict['agree'] else 'the precisions DISAGREE'}; bf16 epochs are "
                 f"{verdict['speedup']:.2f}x faster (s/epoch: the fastest epoch after the first, the least disturbed "
                 f"by other processes). Command: `python {' '.join(sys.argv)}`")
    table = "\n".join(lines)
    write_json({"runs": [fp32, same, other], "verdict": verdict, "command": "python " + " ".join(sys.argv)},
               args.results / "precision-parity.json")
    (args.results / "precision-parity.md").write_text("# Precision parity\n\n" + table + "\n")
    replace_block(args.readme, "parity", table)
    print(table)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
