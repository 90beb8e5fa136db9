"""SketchyNetV2 on each data set: the lambda_F trade-off of the canvas policy and the real CPU speed it buys.

For each set and its trained student (SketchyNetV1): the student's banks (train / validation / test, cached), a
policy trained per lambda_F (REINFORCE on train), lambda_F chosen on validation (highest acc@1 within
--budget-gflops, else the cheapest), that policy retrained over --seeds and tested once. On the same axes: every
fixed canvas, the oracle (per sketch the cheapest canvas ranking the true photo as well as 256 does) and a random
policy with the learned policy's canvas mix. Speed: batch-1 CPU wall clock per sketch of the teacher at 256,
SketchyNetV1 at 256 and SketchyNetV2 (selector + chosen canvas), interleaved in one run, from a decoded sketch
to its embedding (drawing the canvas included), so FLOPs that do not turn into time show.

Writes results/selector-<set>.json, results/selector-curve.png (a panel per set with a selector-*.json), the
rows sketchynet-v2, selector-oracle and selector-random of results/<set>.json (other rows kept), and the table
between the selector markers in README.md.

    python benchmarks/selector.py --sets shoes-v1 chairs-v1 \\
        --students runs/distill-shoes runs/distill-chairs --teachers runs/teacher-shoes runs/teacher-chairs
    python benchmarks/selector.py --sets chairs-v1 --limit 24 --epochs 20 --lambdas 0 0.5 --seeds 0 \\
        --results /tmp/sel --readme /tmp/README.md          # smoke run: zero-shot students, a few sketches
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from matplotlib.figure import Figure

from sketchdown.data.datasets import load_sketch
from sketchdown.data.render import REFERENCE_CANVAS
from sketchdown.files import write_json
from sketchdown.eval.flops import backbone_cost
from sketchdown.eval.results import update_rows
from sketchdown.retrieval.encoder import Retriever, load
from sketchdown.select.policy import POLICIES, CanvasPolicy
from sketchdown.select.reinforce import SelectConfig, oracle_acc1_at, report
from sketchdown.select.runner import banks_for, fit_policy, split_sets
from tables import render, replace_block

ROWS = ("sketchynet-v2", "selector-oracle", "selector-random")
KEYS = ("acc1", "acc5", "acc10", "gflops", "selector_gflops", "canvas_share")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["shoes-v1", "chairs-v1"])
    p.add_argument("--students", nargs="+", default=["mobilenet_v2"],
                   help="per set (or one for all): run folder, checkpoint or backbone name (zero-shot)")
    p.add_argument("--teachers", nargs="+", default=["vgg16"], help="per set (or one for all); timed only")
    p.add_argument("--policy", choices=POLICIES, default="raster")
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="policy seeds at the chosen lambda_F")
    p.add_argument("--budget-gflops", type=float, default=0.25, help="validation cost budget for choosing lambda_F")
    p.add_argument("--epochs", type=int, default=SelectConfig.epochs)
    p.add_argument("--limit", type=int, default=None, help="only the first N sketches of each split (smoke runs)")
    p.add_argument("--data", default=None, help="data root (default ../shared/data)")
    p.add_argument("--speed-sketches", type=int, default=50, help="test sketches timed")
    p.add_argument("--speed-repeats", type=int, default=3, help="timed passes per sketch and model (median)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--banks", type=Path, default=Path("runs/banks"), help="cache of the students' banks")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    return p


def slug(spec: str) -> str:
    return Path(spec).stem if Path(spec).exists() else spec


def per_set(values: list[str], sets: list[str], what: str) -> list[str]:
    if len(values) not in (1, len(sets)):
        raise SystemExit(f"give one {what} or one per set ({len(sets)})")
    return values * len(sets) if len(values) == 1 else values


def pick(result: dict) -> dict:
    return {k: result[k] for k in KEYS if k in result}


def choose_lambda(sweep: list[dict], budget: float) -> dict:
    """Highest validation acc@1 among the points within budget (cheaper on ties); else the cheapest point."""
    within = [s for s in sweep if s["val"]["gflops"] <= budget]
    if within:
        return max(within, key=lambda s: (s["val"]["acc1"], -s["val"]["gflops"]))
    return min(sweep, key=lambda s: s["val"]["gflops"])


def median_ms(fn, sketch, repeats: int) -> float:
    """Median wall clock (ms) of ``repeats`` calls of ``fn(sketch)``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(sketch)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure_speed(models: dict[str, Retriever], policy: CanvasPolicy, sketches: list, repeats: int) -> dict:
    """Mean over sketches of each model's per-sketch median, interleaved model by model on each sketch."""
    for enc in models.values():  # warm-up, every canvas the selector may pick included
        for c in policy.config.canvases:
            Retriever(enc.model, canvas=c).encode_sketch(sketches[0])
        enc.encode_sketch(sketches[0])
    fns = {**{name: enc.encode_sketch for name, enc in models.items()}, "selector": policy.choose}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for s in sketches:
        for name, fn in fns.items():
            times[name].append(median_ms(fn, s, repeats))
    return {name: {"mean_ms": statistics.fmean(t), "median_ms": statistics.median(t)} for name, t in times.items()}


def run_set(spec: str, student_spec: str, teacher_spec: str, args: argparse.Namespace, command: str) -> dict:
    cfg = SelectConfig(student=student_spec, set=spec, data=args.data, policy=args.policy, epochs=args.epochs,
                       limit=args.limit)
    student = load(student_spec).model
    banks = banks_for(cfg, student, args.banks / slug(spec))
    sweep, first_seed = [], {}
    for lf in args.lambdas:
        policy = first_seed[lf] = fit_policy(replace(cfg, lambda_flops=lf, seed=args.seeds[0]), banks)[0]
        test = report(policy, banks["test"])
        sweep.append({"lambda_flops": lf, "val": pick(report(policy, banks["val"])["policy"]),
                      "test": pick(test["policy"]), "random_same_mix": pick(test["random"])})
        print(f"{spec} lambda_F {lf:<5} val acc@1 {sweep[-1]['val']['acc1']:6.2f} at {sweep[-1]['val']['gflops']:.3f} "
              f"GFLOPs | test {test['policy']['acc1']:6.2f} at {test['policy']['gflops']:.3f}", flush=True)
    chosen = choose_lambda(sweep, args.budget_gflops)
    op_cfg = replace(cfg, lambda_flops=chosen["lambda_flops"])
    seeds = {s: fit_policy(replace(op_cfg, seed=s), banks)[0] for s in args.seeds[1:]}
    seeds[args.seeds[0]] = first_seed[chosen["lambda_flops"]]
    reports = {s: report(p, banks["test"]) for s, p in seeds.items()}
    policy, test = seeds[args.seeds[0]], reports[args.seeds[0]]
    sketches = [load_sketch(x) for x in split_sets(cfg)["test"].sketches[: args.speed_sketches]]
    models = {"teacher@256": load(teacher_spec, canvas=REFERENCE_CANVAS),
              "sketchynet-v1@256": Retriever(student, canvas=REFERENCE_CANVAS),
              "sketchynet-v2": Retriever(student, selector=policy)}
    speed = measure_speed(models, policy, sketches, args.speed_repeats)
    v2_ms = speed["sketchynet-v2"]["mean_ms"]
    teacher = models["teacher@256"].model
    teacher_gflops = sum(backbone_cost(m.sketch_tower.backbone, REFERENCE_CANVAS).gflops  # an ensemble: all members
                         for m in getattr(teacher, "members", [teacher]))
    v1 = test["fixed"][REFERENCE_CANVAS]
    speed["ratios"] = {"teacher_over_v2_time": speed["teacher@256"]["mean_ms"] / v2_ms,
                       "v1_over_v2_time": speed["sketchynet-v1@256"]["mean_ms"] / v2_ms,
                       "teacher_over_v2_gflops": teacher_gflops / test["policy"]["gflops"],
                       "v1_over_v2_gflops": v1["gflops"] / test["policy"]["gflops"]}
    acc = {k: [reports[s]["policy"][k] for s in args.seeds] for k in ("acc1", "acc5", "acc10", "gflops")}
    g = banks["test"].student_gflops.double()
    budgets = torch.logspace(g[0].log10().item(), g[-1].log10().item(), 40).tolist()
    return {
        "set": spec, "student": student_spec, "backbone": student.config.backbone, "teacher": teacher_spec,
        "policy": args.policy,
        "selector_params_m": test["selector_params_m"], "student_params_m": banks["test"].student_params_m,
        "teacher_gflops": teacher_gflops, "budget_gflops": args.budget_gflops,
        "chosen_lambda_flops": chosen["lambda_flops"], "sweep": sweep,
        "operating_point": {"seeds": args.seeds, **{k: statistics.fmean(v) for k, v in acc.items()},
                            "acc1_std": statistics.pstdev(acc["acc1"]), "per_seed": acc,
                            "canvas_share": test["policy"]["canvas_share"]},
        "fixed": {c: pick(m) for c, m in test["fixed"].items()}, "oracle": pick(test["oracle"]),
        "oracle_frontier": [{"gflops": b, "acc1": oracle_acc1_at(banks["test"], b)} for b in budgets],
        "random_same_mix": pick(test["random"]), "headroom": test["headroom"],
        "speed": {"sketches": len(sketches), "repeats": args.speed_repeats, "threads": torch.get_num_threads(),
                  "cpu": platform.processor() or platform.machine(), **speed},
        "command": command,
    }


def rows(res: dict) -> list[dict]:
    """The rows of results/<set>.json this benchmark owns."""
    op, params = res["operating_point"], res["student_params_m"]
    base = {"backbone": res["backbone"], "canvas": "selector", "command": res["command"]}

    def row(name: str, m: dict, params_m: float, cpu_ms: float | None, std: float | None, seeds: list) -> dict:
        return {"name": name, **base, "params_m": params_m, "gflops": m["gflops"], "cpu_ms": cpu_ms,
                "acc1": m["acc1"], "acc5": m["acc5"], "acc10": m["acc10"], "acc1_std": std, "seeds": seeds}

    return [row(ROWS[0], op, params + res["selector_params_m"], res["speed"]["sketchynet-v2"]["mean_ms"],
                op["acc1_std"], op["seeds"]),
            row(ROWS[1], res["oracle"], params, None, None, []),
            row(ROWS[2], res["random_same_mix"], params, None, None, [])]


def plot(results: list[dict], path: Path) -> None:
    """acc@1 against mean GFLOPs per sketch, a panel per set."""
    fig = Figure(figsize=(6 * len(results), 4.5))
    axes = fig.subplots(1, len(results), squeeze=False)
    for ax, res in zip(axes[0], results):
        fixed = sorted((int(c), m) for c, m in res["fixed"].items())
        ax.plot([m["gflops"] for _, m in fixed], [m["acc1"] for _, m in fixed], "s-", color="grey",
                label="fixed canvas (SketchyNetV1)")
        for c, m in fixed:
            ax.annotate(str(c), (m["gflops"], m["acc1"]), textcoords="offset points", xytext=(4, -10), fontsize=8)
        sweep = sorted(res["sweep"], key=lambda s: s["test"]["gflops"])
        ax.plot([s["test"]["gflops"] for s in sweep], [s["test"]["acc1"] for s in sweep], "o-", color="C0",
                label="learned policy (lambda_F sweep)")
        ax.plot([s["random_same_mix"]["gflops"] for s in sweep], [s["random_same_mix"]["acc1"] for s in sweep],
                "o", mfc="none", color="C1", label="random, same canvas mix")
        ax.plot([f["gflops"] for f in res["oracle_frontier"]], [f["acc1"] for f in res["oracle_frontier"]], "--",
                color="C2", lw=1, label="best per-sketch choice at each cost")
        ax.plot(res["oracle"]["gflops"], res["oracle"]["acc1"], "*", ms=14, color="C2",
                label="oracle (cheapest canvas as good as 256)")
        op = res["operating_point"]
        ax.errorbar(op["gflops"], op["acc1"], yerr=op["acc1_std"], fmt="D", ms=8, color="C3", capsize=3,
                    label=f"SketchyNetV2 (lambda_F {res['chosen_lambda_flops']}, {len(op['seeds'])} seeds)")
        ax.axvline(res["budget_gflops"], ls=":", color="k", lw=0.8)
        ax.set(xscale="log", xlabel="mean GFLOPs per sketch (selector included)", ylabel="acc@1 (%)",
               title=f"{res['set']} test ({res['student']})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def markdown(results: list[dict]) -> str:
    lines = ["| set | model | canvas | GFLOPs/sketch | acc@1 | acc@10 | CPU ms/sketch |",
             "|---|---|---|---:|---:|---:|---:|"]
    for res in results:
        sp, op = res["speed"], res["operating_point"]
        v1 = res["fixed"][str(REFERENCE_CANVAS)]  # read back from JSON: string keys
        lines += [
            f"| {res['set']} | teacher ({res['teacher']}) | 256 | {res['teacher_gflops']:.3f} | | | "
            f"{sp['teacher@256']['mean_ms']:.1f} |",
            f"| {res['set']} | SketchyNetV1 | 256 | {v1['gflops']:.3f} | {v1['acc1']:.2f} | {v1['acc10']:.2f} | "
            f"{sp['sketchynet-v1@256']['mean_ms']:.1f} |",
            f"| {res['set']} | **SketchyNetV2** (lambda_F {res['chosen_lambda_flops']}) | selector | "
            f"{op['gflops']:.3f} | {op['acc1']:.2f} ± {op['acc1_std']:.2f} | {op['acc10']:.2f} | "
            f"{sp['sketchynet-v2']['mean_ms']:.1f} |",
            f"| {res['set']} | oracle canvas | per sketch | {res['oracle']['gflops']:.3f} | "
            f"{res['oracle']['acc1']:.2f} | {res['oracle']['acc10']:.2f} | |",
            f"| {res['set']} | random, same canvas mix | per sketch | {res['random_same_mix']['gflops']:.3f} | "
            f"{res['random_same_mix']['acc1']:.2f} | {res['random_same_mix']['acc10']:.2f} | |"]
    lines.append("")
    for res in results:
        r, h, sp = res["speed"]["ratios"], res["headroom"], res["speed"]
        captured = "n/a" if h["captured"] is None else f"{100 * h['captured']:.0f}%"
        lines.append(f"- {res['set']}: SketchyNetV2 is {r['v1_over_v2_time']:.2f}x faster than SketchyNetV1@256 "
                     f"on the CPU for {r['v1_over_v2_gflops']:.1f}x fewer FLOPs, {r['teacher_over_v2_time']:.1f}x "
                     f"faster than the teacher for {r['teacher_over_v2_gflops']:.0f}x fewer FLOPs (selector "
                     f"{sp['selector']['mean_ms']:.2f} of {sp['sketchynet-v2']['mean_ms']:.1f} ms). At its cost a "
                     f"random policy with its canvas mix gets acc@1 {h['random_acc1']:.2f} and the best per-sketch "
                     f"choice {h['oracle_acc1_at_same_cost']:.2f}: the policy captures {captured} of that head-room "
                     f"(seed {res['operating_point']['seeds'][0]}). The oracle canvas is "
                     f"{h['oracle_acc1_vs_largest']:+.2f} acc@1 from 256, the policy {h['acc1_vs_largest']:+.2f}.")
    meta = results[0]["speed"]
    lines.append(f"\n_{meta['cpu']}, {meta['threads']} threads, batch 1, mean over {meta['sketches']} test sketches "
                 f"of the median of {meta['repeats']} runs, from a decoded sketch to its embedding; command: "
                 f"`{results[0]['command']}`_\n\n![acc@1 against mean GFLOPs per sketch](results/selector-curve.png)")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    command = "python " + " ".join(sys.argv)
    students = per_set(args.students, args.sets, "student")
    teachers = per_set(args.teachers, args.sets, "teacher")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero-shot teachers warn about their weights
        for spec, student, teacher in zip(args.sets, students, teachers):
            res = run_set(spec, student, teacher, args, command)
            write_json(res, args.results / f"selector-{slug(spec)}.json")
            update_rows(args.results / f"{slug(spec)}.json", rows(res), dataset=slug(spec))
    results = [json.loads(p.read_text()) for p in sorted(args.results.glob("selector-*.json"))]
    plot(results, args.results / "selector-curve.png")
    replace_block(args.readme, "selector", markdown(results))
    render(args.results, args.readme)  # the dataset tables carry the selector rows too


if __name__ == "__main__":
    main(get_args_parser().parse_args())
