"""The paper's pilot study: how much a trained model loses when the SKETCH is shrunk vs when the PHOTO is shrunk,
and how many test sketches are already retrieved at rank 1 at each canvas.

For each canvas c in 32/64/128/256: (a) sketch at c x c, photos at 256; (b) sketch at 256, photos at c x c.
"Rank 1 at c" is the share of test sketches whose true photo ranks first with the sketch at c; "cheapest rank-1
canvas" counts each sketch once, at the smallest canvas where it is at rank 1 (the head-room a canvas selector
can use). Writes results/pilot-<set>.json, results/pilot-<set>.md and results/pilot-<set>.png.

    python benchmarks/pilot.py --run runs/shoes-v1/direct-s0 --set shoes-v1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from sketchdown.data.datasets import PhotoDataset, SketchCanvasDataset, load_set  # noqa: E402
from sketchdown.data.render import CANVASES  # noqa: E402
from sketchdown.eval.evaluate import encode  # noqa: E402
from sketchdown.files import write_json  # noqa: E402
from sketchdown.eval.metrics import metrics_from_ranks, true_ranks  # noqa: E402
from tables import replace_block  # noqa: E402
from sketchdown.models.artifact import load_model  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="run folder (best.pt) or checkpoint of the direct model")
    p.add_argument("--set", default="shoes-v1", help="retrieval set; its test split is used")
    p.add_argument("--data", default=None, help="data root (default ../shared/data)")
    p.add_argument("--canvas", type=int, nargs="+", default=list(CANVASES))
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--readme", type=Path, default=Path("README.md"), help="README with pilot:<set> markers")
    return p


def main(args: argparse.Namespace) -> None:
    model = load_model(args.run)
    rset = load_set(args.set, "test", args.data)
    targets = torch.tensor(rset.targets)
    full = max(args.canvas)
    photos_full = encode(model, PhotoDataset(rset.photos, full), "photo", desc="photos")
    sketches_full = encode(model, SketchCanvasDataset(rset.sketches, full), "sketch", desc="sketches")
    rows, rank1 = [], {}
    for c in args.canvas:
        sk = encode(model, SketchCanvasDataset(rset.sketches, c), "sketch", desc=f"sketches@{c}")
        ph = encode(model, PhotoDataset(rset.photos, c), "photo", desc=f"photos@{c}")
        ranks = true_ranks(sk @ photos_full.T, targets)
        photo_ranks = true_ranks(sketches_full @ ph.T, targets)
        rank1[c] = ranks == 1
        rows.append({"canvas": c, "sketch_shrunk": metrics_from_ranks(ranks), "photo_shrunk": metrics_from_ranks(photo_ranks)})
    at_full = rank1[full]
    cheapest = np.full(len(rset), -1)
    for c in sorted(args.canvas, reverse=True):
        cheapest[rank1[c]] = c
    for row in rows:
        c = row["canvas"]
        row["rank1_share"] = float(100 * rank1[c].mean())
        row["rank1_kept_of_full"] = float(100 * (rank1[c] & at_full).sum() / max(1, at_full.sum()))
        row["cheapest_rank1_share"] = float(100 * (cheapest == c).mean())
    out = {"run": str(args.run), "set": rset.name, "queries": len(rset), "gallery": len(rset.photos),
           "never_rank1_share": float(100 * (cheapest == -1).mean()), "rows": rows,
           "command": "python " + " ".join(sys.argv)}
    stem = args.out / f"pilot-{args.set}"
    write_json(out, stem.with_suffix(".json"))
    lines = [f"Pilot study on {rset.name} ({len(rset)} sketches, {len(rset.photos)} photos), model `{args.run}`", "",
             "| canvas | acc@1 sketch shrunk | acc@1 photo shrunk | acc@10 sketch shrunk | acc@10 photo shrunk | "
             "rank 1 at this canvas | of those at rank 1 at 256, still rank 1 | cheapest rank-1 canvas |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s, p = r["sketch_shrunk"], r["photo_shrunk"]
        lines.append(f"| {r['canvas']} | {s['acc1']:.2f} | {p['acc1']:.2f} | {s['acc10']:.2f} | {p['acc10']:.2f} | "
                     f"{r['rank1_share']:.2f} | {r['rank1_kept_of_full']:.2f} | {r['cheapest_rank1_share']:.2f} |")
    lines += ["", f"Never at rank 1 at any canvas: {out['never_rank1_share']:.2f}%. Command: `{out['command']}`"]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    replace_block(args.readme, f"pilot:{args.set}", "\n".join(lines))
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    x = [r["canvas"] for r in rows]
    ax[0].plot(x, [r["sketch_shrunk"]["acc1"] for r in rows], "o-", label="sketch shrunk")
    ax[0].plot(x, [r["photo_shrunk"]["acc1"] for r in rows], "s--", label="photo shrunk")
    ax[0].set(xscale="log", xticks=x, xticklabels=x, xlabel="canvas (px)", ylabel="acc@1 (%)", title=rset.name)
    ax[0].legend()
    ax[1].bar([str(c) for c in x], [r["cheapest_rank1_share"] for r in rows])
    ax[1].set(xlabel="cheapest canvas with the true photo at rank 1", ylabel="share of sketches (%)")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
