"""How much of the oracle's head-room any canvas selector could capture: the oracle chooses each sketch's canvas
from a REDRAW of it (the sketch moved as training augments it: a few degrees, a few per cent of scale and shift, a
mirror, a tenth of its strokes dropped; the student was trained to treat these as the same sketch) and is scored on
the sketch itself.

The oracle of the selector tables knows, for the very sketch, at which canvases the true photo comes first. Part of
that is a property of the drawing, which a selector could learn; part is chance: whether a sketch that nearly
retrieves at 64 px happens to come first there. An oracle that sees a redraw keeps the first part and loses the
second, so its share of the head-room (`captured`, measured as for the selectors: over the best blind policy at the
same cost, against the best per-sketch choice at that cost) is a ceiling for a selector that reads the sketch. Also
reported: how often the sketch and a redraw agree on whether the true photo comes first, per canvas, against the
agreement two independent draws with the same hit rates would have; and, for the cascade's signal, the most accurate
cascade on the top-1 minus top-2 similarity within each budget, its thresholds searched on the split itself (a
ceiling for what the margins can tell, not a selector).

    python benchmarks/redraw_oracle.py --model sketchynet-v1-chairs --set chairs-v1 --split test \
        --out results/redraw-oracle-chairs-v1.json
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from functools import partial

import numpy as np
import torch

from sketchdown.data.datasets import item_seed, load_set, load_sketch
from sketchdown.data.render import prepare
from sketchdown.data.transforms import SKETCH_AUGMENTS, augment_raster, augment_vector, raster_augmenter
from sketchdown.files import write_json
from sketchdown.retrieval.encoder import load
from sketchdown.select.bank import Bank, build_bank
from sketchdown.select.reinforce import Decisions, at_canvas, headroom, oracle_actions, outcome


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the student: a shipped name, artifact or run folder")
    p.add_argument("--set", default="chairs-v1")
    p.add_argument("--split", default="test", help="test diagnoses only; nothing is chosen on it")
    p.add_argument("--redraws", type=int, default=8)
    p.add_argument("--strength", default="standard", choices=sorted(SKETCH_AUGMENTS))
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0],
                   help="cost weights (acc@1 share per GFLOP) for the choice by redraw hit rate")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.15, 0.2, 0.26],
                   help="mean student GFLOPs within which the best margin cascade is sought")
    p.add_argument("--limit", type=int, default=None, help="the first N sketches only (a quick look; tests)")
    p.add_argument("--data", default=None)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    return p


def redrawn(sketches: list, raster_method: str, strength: str, redraw: int) -> list:
    """Each sketch prepared as the student draws it, then moved once as training moves it (seeded per sketch)."""
    aug = SKETCH_AUGMENTS[strength]
    raster_aug = raster_augmenter(aug)
    out = []
    for i, path in enumerate(sketches):
        sketch = prepare(load_sketch(path), raster_method)
        torch.manual_seed(item_seed(redraw, i))
        moved = augment_vector(sketch, aug) if sketch.is_vector else augment_raster(sketch, raster_aug)
        out.append(replace(moved, source=f"{moved.source}#redraw{redraw}"))
    return out


def agreement(a: Bank, b: Bank) -> list[dict]:
    """Per canvas: how often two banks of the same sketches agree on rank 1, and what chance would give."""
    rows = []
    for k, c in enumerate(a.canvases):
        x, y = (a.ranks[:, k] == 1).numpy(), (b.ranks[:, k] == 1).numpy()
        chance = x.mean() * y.mean() + (1 - x.mean()) * (1 - y.mean())
        rows.append({"canvas": c, "agree": float((x == y).mean()), "chance": float(chance)})
    return rows


def mean_of(values: list[float | None]) -> float | None:
    """The mean of the values that exist (a head-room share is undefined where the gap is zero)."""
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def share(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


def scored(own: Bank, actions: torch.Tensor) -> dict:
    """acc@1 and student cost of per-sketch canvases on ``own``, with the selectors' head-room figures."""
    chosen = outcome(own, at_canvas(own, actions))
    return {"acc1": chosen["acc1"], "student_gflops": chosen["student_gflops"], **headroom(own, chosen)}


def margin_cascade(bank: Bank, thresholds: tuple[float, ...]) -> Decisions:
    """Stop at the first canvas whose top-1 minus top-2 similarity reaches its threshold (the largest always stops),
    paying for every canvas computed: the cascade's signal with no learning in the way."""
    margin = bank.top_scores[:, :, 0] - bank.top_scores[:, :, 1]
    stops = torch.cat([margin[:, :-1] >= torch.tensor(thresholds, dtype=margin.dtype),
                       torch.ones(len(bank), 1, dtype=torch.bool)], 1)
    final = stops.long().argmax(1)
    return Decisions(final, bank.student_gflops.double().cumsum(0)[final], torch.zeros(len(bank), dtype=torch.float64))


def best_margin_cascades(bank: Bank, budgets: list[float], steps: int = 10) -> list[dict]:
    """Per budget, the most accurate margin cascade within it, its thresholds searched over the deciles of each
    canvas's margins ON THIS SPLIT: a ceiling for what the margins can tell, not a selector."""
    margin = (bank.top_scores[:, :-1, 0] - bank.top_scores[:, :-1, 1]).double()
    grids = [[*torch.quantile(margin[:, k], torch.linspace(0, 1, steps + 1, dtype=torch.float64)).tolist(),
              float("inf")] for k in range(margin.shape[1])]
    tried = [(outcome(bank, margin_cascade(bank, th)), th) for th in itertools.product(*grids)]
    rows = []
    for budget in budgets:
        fits = [(o, th) for o, th in tried if o["student_gflops"] <= budget + 1e-12]
        if fits:
            o, th = max(fits, key=lambda f: (f[0]["acc1"], -f[0]["student_gflops"]))
            rows.append({"budget": budget, "thresholds": list(th), "acc1": o["acc1"],
                         "student_gflops": o["student_gflops"], **headroom(bank, o)})
    return rows


def main(args: argparse.Namespace) -> dict:
    retriever = load(args.model, selector=False)
    student, method = retriever.model, retriever.raster_method
    rset = load_set(args.set, args.split, args.data)
    if args.limit:
        rset = replace(rset, sketches=rset.sketches[:args.limit], targets=rset.targets[:args.limit])
    build = partial(build_bank, student, photo_size=retriever.photo_size, raster_method=method, progress=False)
    own = build(rset)
    others = [build(replace(rset, sketches=redrawn(rset.sketches, method, args.strength, r)))
              for r in range(1, args.redraws + 1)]
    single = [{"redraw": r, **scored(own, oracle_actions(other)), "agreement": agreement(own, other)}
              for r, other in enumerate(others, 1)]
    # how often each canvas retrieves the sketch over its redraws; a selector that knew it would choose by it
    hit_rate = torch.stack([(o.ranks == 1).double() for o in others]).mean(0)
    cost = own.student_gflops.double()
    averaged = [{"lambda": lam, **scored(own, (hit_rate - lam * cost).argmax(1))} for lam in args.lambdas]
    cascades = best_margin_cascades(own, args.budgets)
    keys = ("acc1", "student_gflops", "captured", "random_acc1", "oracle_acc1_at_same_cost", "vs_best_fixed")
    mean = {k: mean_of([r[k] for r in single]) for k in keys}
    agree = [{"canvas": c, **{k: float(np.mean([r["agreement"][i][k] for r in single])) for k in ("agree", "chance")}}
             for i, c in enumerate(own.canvases)]
    result = {"command": "python benchmarks/redraw_oracle.py " + " ".join(
                  ["--model", args.model, "--set", args.set, "--split", args.split, "--redraws", str(args.redraws),
                   "--strength", args.strength, "--lambdas", *map(str, args.lambdas),
                   "--budgets", *map(str, args.budgets)]
                  + (["--limit", str(args.limit)] if args.limit else [])
                  + (["--out", args.out] if args.out else [])),
              "sketches": len(own), "fixed": {c: float((own.ranks[:, k] == 1).double().mean() * 100)
                                              for k, c in enumerate(own.canvases)},
              "oracle": scored(own, oracle_actions(own)), "one_redraw": mean, "redraw_rates": averaged,
              "margin_cascades": cascades,
              "agreement": agree, "redraws": single}
    print(f"{args.set}:{args.split}, {len(own)} sketches, student {args.model}; acc@1 at "
          + " / ".join(f"{c}: {v:.2f}" for c, v in result["fixed"].items()))
    print("| canvas chosen from | GFLOPs | acc@1 | best blind at that cost | best per-sketch at that cost | "
          "head-room captured | vs best fixed canvas of no more cost |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = [("the sketch itself (the tables' oracle)", result["oracle"]),
            (f"one redraw (mean of {args.redraws})", mean),
            *((f"its hit rate over {args.redraws} redraws, lambda {r['lambda']}", r) for r in averaged),
            *((f"top-1 margin cascade tuned on this split, within {r['budget']} GFLOPs", r) for r in cascades)]
    for name, r in rows:
        print(f"| {name} | {r['student_gflops']:.3f} | {r['acc1']:.2f} | {r['random_acc1']:.2f} | "
              f"{r['oracle_acc1_at_same_cost']:.2f} | {share(r['captured'])} | {signed(r['vs_best_fixed'])} |")
    print("\n| canvas | sketch and redraw agree on rank 1 | chance |\n|---:|---:|---:|")
    for a in agree:
        print(f"| {a['canvas']} | {100 * a['agree']:.1f}% | {100 * a['chance']:.1f}% |")
    if args.out:
        write_json(result, args.out)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
