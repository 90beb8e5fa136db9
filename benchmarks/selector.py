"""SketchyNetV2 on each data set: three canvas selectors on one accuracy/cost plot, trained on rewards the student
did not memorise.

Per set and its SketchyNetV1 student:
1. Banks (``select.bank``, cached): the student's own training sketches, the cross-fitted training sketches (each
   fold scored by the run that left it out: ``--crossfit`` run folders), validation and test.
2. Reward statistics before and after cross-fitting: per canvas acc@1, the share of sketches whose cheapest
   canvas as good as 256 is each canvas (the oracle's choice), and how well the search's top-1 margin tells a right
   top-1 from a wrong one (ROC AUC: what a cascade can see). On its own training sketches a student ranks the true
   photo first almost everywhere, so no canvas is better than another there: that is why a policy trained on
   those rewards learned a constant.
3. Selectors, each fitted on the cross-fitted bank (or, with ``--crossfit val`` for a set that has no cross-fitting
   runs, on the sketches of half its validation photos, choosing on the other half) over a lambda_F sweep,
   every policy seed (--seeds) at each lambda_F, lambda_F chosen on the seeds' mean validation figures (highest
   acc@1 within --budget-gflops, else the cheapest; with --choose-on oof on their out-of-fold figures over the
   train bank's sketches instead) and the shipped seed the best of them there: the paper's vector
   policy (GRU over strokes; QMUL's raster sketches are traced into strokes, without their drawing order), the
   raster policy (tiny CNN on the 32 px canvas), and the cascade (32 px first, stop heads on the search's
   similarities). The test figures are the chosen lambda_F's seeds (mean and spread); the cascade is deterministic
   given its bank. The fits run in --workers processes of one thread each (the same figures as one process), and
   each point of a sweep is kept under --runs/<set>/points, so a run cut short resumes (--fresh fits all again).
4. On the test split beside each: every fixed canvas, the oracle, the best blind (random) policy at the same cost,
   the best fixed canvas that costs no more, and the share of the oracle's head-room over random captured.
SketchyNetV2 is the selector best on validation (or out of fold). Writes results/selector-<set>.json,
results/selector-curve.png, the selector runs (runs/selector/<set>/<kind>/best.pt, for ``sketchdown export
--selector``), the rows sketchynet-v2, sketchynet-v2-<kind>, selector-oracle and selector-random of
results/<set>.json, and the README block ``selector`` (with ``--candidate TAG``, a student or setting that does not
ship: results/candidates/selector-<set>-TAG.json and runs/selector-TAG only). Speed is measured by ``sketchdown
bench`` (end to end over 5,000 photos).

    python benchmarks/selector.py --sets chairs-v1 shoes-v1 --students S_CHAIRS S_SHOES \\
        --crossfit "runs/chairs-v1/v1b-fold-s*" "runs/shoes-v1/v1b-fold2-s*"
    python benchmarks/selector.py --sets shoes-v1 --students runs/shoes-v1/v1b-trace-s0 \\
        --crossfit "runs/shoes-v1/v1b-fold2-s*" --rewards-only     # step 2 alone
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing
import statistics
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import torch
from matplotlib.figure import Figure
from scipy.stats import mannwhitneyu

from sketchdown.eval.results import update_rows
from sketchdown.files import digest, write_json
from sketchdown.models.artifact import load_model
from sketchdown.models.embed import read_checkpoint
from sketchdown.select.bank import Bank, cached_bank
from sketchdown.select.policy import policy_from_checkpoint, save_policy
from sketchdown.select.reinforce import (Decisions, SelectConfig, decide, headroom, oracle_acc1_at, oracle_actions,
                                        outcome, random_at, references, report)
from sketchdown.select.runner import banks_for, fit_policy, split_sets, with_student_settings
from sketchdown.train.configs import FOLD_GALLERIES
from tables import render, rewards_table, selector_results

KINDS = ("vector", "raster", "cascade")
CHOOSE_ON = {"val": "validation", "oof": "out-of-fold"}  # what lambda_F, the kind and the shipped seed are chosen on
KEYS = ("acc1", "acc5", "acc10", "gflops", "student_gflops", "selector_gflops", "canvas_share")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["chairs-v1", "shoes-v1"])
    p.add_argument("--students", nargs="+", required=True, help="per set: the SketchyNetV1 (run folder or artifact)")
    p.add_argument("--crossfit", nargs="+", required=True, help="per set: a glob of its cross-fitting runs, or `val`: "
                   "fit on the sketches of half the validation photos, choose on the other half")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="policy seeds at every lambda_F")
    p.add_argument("--canvases", type=int, nargs="+", default=list(SelectConfig.canvases),
                   help="the canvases the selectors choose from (a raster policy reads the smallest; give a --banks "
                        "folder of its own: the banks are made at these canvases)")
    p.add_argument("--crossfit-gallery", choices=FOLD_GALLERIES, default="pool",
                   help="what the cross-fitting runs rank their held-out sketches among: every training photo "
                        "(pool) or only the photos the run never trained on (unseen); give a --banks folder of its own")
    p.add_argument("--val-gallery", choices=FOLD_GALLERIES, default="pool",
                   help="what the validation sketches are ranked among: every training photo (pool) or the "
                        "validation photos alone (unseen)")
    p.add_argument("--choose-on", choices=list(CHOOSE_ON), default="val",
                   help="choose lambda_F, the kind and the shipped seed on the validation bank (val), or on the "
                        "train bank's sketches scored by selectors fitted without their fold (oof: --oof-folds "
                        "refits a selector; 170 Chair-V1 sketches instead of 30, each policy's epoch still picked on "
                        "validation)")
    p.add_argument("--oof-folds", type=int, default=3, help="folds of the train bank's photos for --choose-on oof")
    p.add_argument("--fresh", action="store_true", help="fit every point of the sweeps again (by default a point "
                   "fitted before on the same banks and settings, kept under --runs/<set>/points, is read back: an "
                   "interrupted run resumes)")
    p.add_argument("--workers", type=int, default=2, help="processes fitting selectors at once, one thread each (1: "
                                                          "here, on torch's threads)")
    p.add_argument("--budget-gflops", type=float, default=0.26, help="validation cost budget for choosing lambda_F "
                                                                     "(a third of MobileNetV2 at 256)")
    p.add_argument("--epochs", type=int, default=SelectConfig.epochs)
    p.add_argument("--rewards-only", action="store_true", help="only the reward statistics (step 2), written to "
                   "results/rewards-<set>.json and printed; no selector is fitted and nothing else is written")
    p.add_argument("--limit", type=int, default=None, help="only the first N sketches of each split (smoke runs)")
    p.add_argument("--data", default=None, help="data root (default ../shared/data)")
    p.add_argument("--banks", type=Path, default=Path("runs/banks"), help="cache of the students' banks")
    p.add_argument("--runs", type=Path, default=None, help="where the chosen selectors are saved (default "
                   "runs/selector, or runs/selector-TAG for a --candidate)")
    p.add_argument("--candidate", metavar="TAG", default=None, help="a selector over a student that does not ship: "
                   "write results/candidates/selector-<set>-TAG.json only, leaving the shipped selector's results, "
                   "rows, curve and README block as they are")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    return p


def per_set(values: list[str], sets: list[str], what: str) -> list[str]:
    if len(values) != len(sets):
        raise SystemExit(f"give one {what} per set ({len(sets)})")
    return values


def pick(result: dict) -> dict:
    return {k: result[k] for k in KEYS if k in result}


def margin_auc(bank: Bank, i: int) -> float | None:
    """How well the search's own confidence at canvas ``i`` (top-1 minus top-2 similarity, what a cascade stops
    on) tells a right top-1 photo from a wrong one: the ROC AUC, 0.5 being chance; None if all are right or wrong."""
    right = (bank.ranks[:, i] == 1).numpy()
    margin = (bank.top_scores[:, i, 0] - bank.top_scores[:, i, 1]).numpy()
    if right.all() or not right.any():
        return None
    return float(mannwhitneyu(margin[right], margin[~right]).statistic / (right.sum() * (~right).sum()))


def statistics_of(bank: Bank) -> dict:
    """Per canvas acc@1, where the oracle sends the sketches and how much the search's margin says about being
    right: the reward landscape a selector learns from, and whether a selector can see it."""
    k = len(bank.canvases)
    oracle = torch.bincount(oracle_actions(bank), minlength=k).double() / len(bank)
    first = (bank.ranks == 1).double().mean(0)
    return {"sketches": len(bank), "gallery": bank.gallery,
            "acc1": {c: 100 * float(first[i]) for i, c in enumerate(bank.canvases)},
            "oracle_share": {c: float(oracle[i]) for i, c in enumerate(bank.canvases)},
            "margin_auc": {c: margin_auc(bank, i) for i, c in enumerate(bank.canvases)},
            "mean_rank": {c: float(bank.ranks[:, i].double().mean()) for i, c in enumerate(bank.canvases)},
            "choice_matters": float((bank.ranks != bank.ranks[:, -1:]).any(1).double().mean())}


def choose(sweep: list[dict], budget: float, on: str = "val") -> dict:
    """Highest acc@1 in the ``on`` figures among the points within budget there (cheaper on ties); else the
    cheapest point."""
    within = [s for s in sweep if s[on]["gflops"] <= budget]
    if within:
        return max(within, key=lambda s: (s[on]["acc1"], -s[on]["gflops"]))
    return min(sweep, key=lambda s: s[on]["gflops"])


def mean_of(results: list[dict]) -> dict:
    """The policy seeds' mean of each figure (canvas shares canvas by canvas)."""
    out = {k: statistics.fmean(r[k] for r in results) for k in KEYS if k != "canvas_share" and k in results[0]}
    if "canvas_share" in results[0]:
        out["canvas_share"] = {c: statistics.fmean(r["canvas_share"][c] for r in results)
                               for c in results[0]["canvas_share"]}
    return out


def out_of_fold(cfg: SelectConfig, banks: dict[str, Bank], folds: int) -> dict:
    """The selector's figures on the train bank's sketches, each scored by a selector fitted without its fold (the
    sketches of every ``folds``-th of the bank's photos, in a fixed shuffled order; a photo's sketches stay
    together): a choice on 170 Chair-V1 sketches instead of 30 validation ones."""
    train = banks["train"]
    photos = train.targets.unique()
    order = photos[torch.randperm(len(photos), generator=torch.Generator().manual_seed(0))]
    final, student, own = torch.zeros(len(train), dtype=torch.long), *torch.zeros(2, len(train), dtype=torch.float64)
    for f in range(folds):
        held = torch.isin(train.targets, order[f::folds])
        selector = fit_policy(cfg, {**banks, "train": train.subset(~held, f"{train.name}:without{f}")})[0]
        fold = decide(selector, train.subset(held, f"{train.name}:fold{f}"))
        final[held], student[held], own[held] = fold.final, fold.student_gflops, fold.selector_gflops
    return pick(outcome(train, Decisions(final, student, own)))


BANKS: dict[str, Bank] = {}  # the banks every fit of this process reads (a worker's: given once, at its start)


def use_banks(banks: dict[str, Bank]) -> None:
    BANKS.clear()
    BANKS.update(banks)


def start_worker(banks: dict[str, Bank]) -> None:
    torch.set_num_threads(1)
    use_banks(banks)


@contextmanager
def fitting(banks: dict[str, Bank], workers: int) -> Iterator[Callable]:
    """``fit_point`` mapped over its arguments' lists, results in order: in ``workers`` spawned processes of one
    thread each, or here (on torch's threads) for one. A policy's fit is a chain of small steps (a GRU over up to 128
    points), which a second thread speeds up little: two Shoe-V1 vector fits took 115 s in two workers against 143 s
    one after the other on two threads, on this 2-core machine (the same figures either way; a one-off timing, not a
    committed benchmark)."""
    if workers <= 1:
        use_banks(banks)
        yield partial(map, fit_point)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=start_worker,
                             initargs=(banks,)) as pool:
        yield partial(pool.map, fit_point)


def fit_point(cfg: SelectConfig, folds: int | None, cache: Path | None = None) -> dict:
    """One policy seed at one lambda_F on ``BANKS``: fitted on the train bank and reported on validation and test,
    and with ``folds`` refitted without each fold of it for its out-of-fold figures. With a ``cache`` folder, a point
    fitted before on the same banks with the same settings is read back (``weights_only``) instead of fitted again:
    a sweep cut short resumes where it stopped."""
    path = None
    if cache is not None:
        key = digest([json.dumps(asdict(cfg), sort_keys=True), str(folds), *(BANKS[k].key for k in sorted(BANKS))], 32)
        path = cache / f"{cfg.policy}-{key}.pt"
        if path.is_file():
            kept = read_checkpoint(path, required=("policy_config", "state_dict", "point"))
            return {"selector": policy_from_checkpoint(kept, path), **kept["point"]}
    selector = fit_policy(cfg, BANKS)[0]
    point = {"report": report(selector, BANKS["test"]), "val": pick(report(selector, BANKS["val"])["policy"])}
    if folds:
        point["oof"] = out_of_fold(cfg, BANKS, folds)
    if path is not None:
        save_policy(path, selector, point=point)
    return {"selector": selector, **point}


def run_kind(kind: str, cfg: SelectConfig, fit: Callable, args: argparse.Namespace, out: Path,
             test_bank: Bank) -> dict:
    """Every policy seed at every lambda_F; lambda_F chosen on the seeds' MEAN validation figures (one seed's 30
    validation sketches chose a lambda_F whose other seeds learned another policy), the shipped seed the best of
    them on validation (``--choose-on oof``: on their out-of-fold figures instead). The test figures are the chosen
    lambda_F's seeds, mean and spread. ``fit``: ``fit_point`` over lists of arguments (``fitting``)."""
    on = args.choose_on
    cfg = replace(cfg, policy=kind)
    seeds = [args.seeds[0]] if kind == "cascade" else args.seeds  # the cascade has no random init or sampling
    grid = [(lf, s) for lf in args.lambdas for s in seeds]
    points = fit([replace(cfg, lambda_flops=lf, seed=s) for lf, s in grid],
                 [args.oof_folds if on == "oof" else None] * len(grid),
                 [None if args.fresh else out / "points"] * len(grid))
    sweep, fitted, tested = [], {}, {}
    for lf in args.lambdas:
        per_seed = []
        for s in seeds:
            point = next(points)
            fitted[lf, s], tested[lf, s] = point["selector"], point["report"]
            per_seed.append({"seed": s, "val": point["val"], "test": pick(tested[lf, s]["policy"]),
                             **({"oof": point["oof"]} if "oof" in point else {})})
        sweep.append({"lambda_flops": lf, **{k: mean_of([p[k] for p in per_seed]) for k in per_seed[0] if k != "seed"},
                      "per_seed": per_seed})
        figures = " | ".join(f"{k} acc@1 {sweep[-1][k]['acc1']:6.2f} at {sweep[-1][k]['gflops']:.3f}"
                             for k in ("oof", "val", "test") if k in sweep[-1])
        print(f"{cfg.set} {kind:<7} lambda_F {lf:<5} {figures} GFLOPs (mean of {len(seeds)} seeds)", flush=True)
    chosen = choose(sweep, args.budget_gflops, on)
    lf = chosen["lambda_flops"]
    shipped = choose(chosen["per_seed"], args.budget_gflops, on)
    on_test = tested[lf, shipped["seed"]]
    save_policy(out / kind / "best.pt", fitted[lf, shipped["seed"]],
                config=asdict(replace(cfg, lambda_flops=lf, seed=shipped["seed"])), best={"val": shipped["val"]})
    acc = {k: [p["test"][k] for p in chosen["per_seed"]] for k in ("acc1", "acc5", "acc10", "gflops", "student_gflops")}
    mean = {k: chosen["test"][k] for k in acc}  # the seeds' mean, as the sweep holds it
    return {"kind": kind, "lambda_flops": lf, "chosen_on": on, "val": chosen["val"],
            **({"oof": chosen["oof"]} if on == "oof" else {}), "sweep": sweep, "seeds": seeds,
            "shipped_seed": shipped["seed"],
            "test": {**mean, "acc1_std": statistics.pstdev(acc["acc1"]), "per_seed": acc,
                     "canvas_share": on_test["policy"]["canvas_share"],  # of the seed saved and shipped
                     "shipped": pick(on_test["policy"]), "selector_gflops": on_test["policy"]["selector_gflops"]},
            "selector_params_m": on_test["selector_params_m"], "headroom": headroom(test_bank, mean),
            "random": pick(random_at(test_bank, mean["student_gflops"])), "selector": str(out / kind)}


def run_set(spec: str, student_spec: str, pattern: str, args: argparse.Namespace) -> dict:
    val_rewards = pattern == "val"  # no cross-fitting runs: half the validation photos' sketches train the selector
    folds = () if val_rewards else tuple(sorted(glob.glob(pattern)))
    if not folds and not val_rewards:
        raise SystemExit(f"{spec}: no cross-fitting runs match {pattern!r}")
    cfg = with_student_settings(SelectConfig(student=student_spec, set=spec, data=args.data, crossfit=folds,
                                             val_rewards=val_rewards, epochs=args.epochs, limit=args.limit,
                                             canvases=tuple(args.canvases), crossfit_gallery=args.crossfit_gallery,
                                             val_gallery=args.val_gallery))
    student = load_model(student_spec)
    folder = args.banks / spec
    banks = banks_for(cfg, student, folder)
    own = cached_bank(folder / "own-train.pt", student, split_sets(replace(cfg, val_rewards=False))["train"],
                      tuple(cfg.canvases), cfg.photo_size, cfg.raster_method)
    fitted, chosen = ("validation, fitting half", "validation, choosing half") if val_rewards else \
        ("cross-fitted", "validation")
    stats = {"own training sketches (before)": statistics_of(own), f"{fitted} (after)": statistics_of(banks["train"]),
             chosen: statistics_of(banks["val"]), "test": statistics_of(banks["test"])}
    if args.rewards_only:
        return {"set": spec, "student": student_spec, "crossfit": list(folds), "reward_statistics": stats,
                "command": "python " + " ".join(sys.argv)}
    with fitting(banks, args.workers) as fit:
        kinds = {kind: run_kind(kind, cfg, fit, args, args.runs / spec, banks["test"]) for kind in args.kinds}
    on = args.choose_on
    best = choose([{"kind": k, on: r[on]} for k, r in kinds.items()], args.budget_gflops, on)["kind"]
    test = references(banks["test"])
    g = banks["test"].student_gflops.double()
    budgets = torch.logspace(g[0].log10().item(), g[-1].log10().item(), 40).tolist()
    return {"set": spec, "student": student_spec, "backbone": student.config.backbone, "crossfit": list(folds),
            "rewards": "validation halves" if val_rewards else "cross-fitting",
            "student_params_m": banks["test"].student_params_m, "budget_gflops": args.budget_gflops,
            "reward_statistics": stats, "kinds": kinds, "best": best, "chosen_on": on,
            "fixed": {c: pick(m) for c, m in test["fixed"].items()}, "oracle": pick(test["oracle"]),
            "oracle_frontier": [{"gflops": b, "acc1": oracle_acc1_at(banks["test"], b)} for b in budgets],
            "command": "python " + " ".join(sys.argv)}


def rows(res: dict) -> list[dict]:
    """The rows of results/<set>.json this benchmark owns."""
    base = {"backbone": res["backbone"], "canvas": "selector", "command": res["command"], "cpu_ms": None,
            "branches": "untied", "precision": "fp32"}

    def row(name: str, m: dict, params_m: float, std: float | None, seeds: list) -> dict:
        return {"name": name, **base, "params_m": params_m, "gflops": m["gflops"], "acc1": m["acc1"],
                "acc5": m["acc5"], "acc10": m["acc10"], "acc1_std": std, "seeds": seeds}

    out = []
    for kind, r in res["kinds"].items():
        params = res["student_params_m"] + r["selector_params_m"]
        out.append(row(f"sketchynet-v2-{kind}", r["test"], params, r["test"]["acc1_std"], r["seeds"]))
    best = res["kinds"][res["best"]]
    out.append({**out[list(res["kinds"]).index(res["best"])], "name": "sketchynet-v2"})
    out.append(row("selector-oracle", res["oracle"], res["student_params_m"], None, []))
    out.append(row("selector-random", best["random"], res["student_params_m"], None, []))
    return out


def plot(results: list[dict], path: Path) -> None:
    """Test acc@1 against mean GFLOPs per sketch (selector included), a panel per set."""
    fig = Figure(figsize=(6.5 * len(results), 4.8))
    axes = fig.subplots(1, len(results), squeeze=False)
    for ax, res in zip(axes[0], results):
        fixed = sorted((int(c), m) for c, m in res["fixed"].items())
        ax.plot([m["gflops"] for _, m in fixed], [m["acc1"] for _, m in fixed], "s-", color="grey",
                label="fixed canvas (SketchyNetV1); the line: random mixtures")
        for c, m in fixed:
            ax.annotate(str(c), (m["gflops"], m["acc1"]), textcoords="offset points", xytext=(4, -10), fontsize=8)
        ax.plot([f["gflops"] for f in res["oracle_frontier"]], [f["acc1"] for f in res["oracle_frontier"]], "--",
                color="C2", lw=1, label="best per-sketch choice at each cost")
        ax.plot(res["oracle"]["gflops"], res["oracle"]["acc1"], "*", ms=14, color="C2",
                label="oracle (cheapest canvas as good as 256)")
        for i, (kind, r) in enumerate(res["kinds"].items()):
            sweep = sorted(r["sweep"], key=lambda s: s["test"]["gflops"])
            ax.plot([s["test"]["gflops"] for s in sweep], [s["test"]["acc1"] for s in sweep], "o-", ms=3, lw=1,
                    color=f"C{i}", alpha=0.6)
            t, seeds = r["test"], "" if kind == "cascade" else f", {len(r['seeds'])} seeds"
            ax.errorbar(t["gflops"], t["acc1"], yerr=t["acc1_std"], fmt="D", ms=7, color=f"C{i}", capsize=3,
                        label=f"{kind} (lambda_F {r['lambda_flops']}, chosen on "
                              f"{CHOOSE_ON[r.get('chosen_on', 'val')]}{seeds})")
        ax.axvline(res["budget_gflops"], ls=":", color="k", lw=0.8)
        ax.set(xscale="log", xlabel="mean GFLOPs per sketch (selector included)", ylabel="test acc@1 (%)",
               title=f"{res['set']}: SketchyNetV2 = {res['best']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(args: argparse.Namespace) -> None:
    if args.runs is None:
        args.runs = Path("runs/selector" + (f"-{args.candidate}" if args.candidate else ""))
    students = per_set(args.students, args.sets, "student")
    patterns = per_set(args.crossfit, args.sets, "cross-fitting glob")
    for spec, student, pattern in zip(args.sets, students, patterns):
        res = run_set(spec, student, pattern, args)
        if args.rewards_only:
            write_json(res, args.results / f"rewards-{spec}.json")
            print(rewards_table(res))
            continue
        if args.candidate:
            write_json(res, args.results / "candidates" / f"selector-{spec}-{args.candidate}.json")
            continue
        write_json(res, args.results / f"selector-{spec}.json")
        update_rows(args.results / f"{spec}.json", rows(res), dataset=spec)
    if args.rewards_only or args.candidate:
        return
    plot(selector_results(args.results), args.results / "selector-curve.png")
    render(args.results, args.readme)  # the selector block, and the dataset tables that carry its rows


if __name__ == "__main__":
    main(get_args_parser().parse_args())
