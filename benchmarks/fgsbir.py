"""Train (if not done yet) and tabulate the FG-SBIR models of one dataset: teacher, direct baselines, paper VGG-16,
SketchyNetV1 and its ablations, as listed in benchmarks/experiments.yaml.

Every run is a plain ``sketchdown train|distill ... --out runs/<dataset>/<name>-s<seed>`` command (printed and
stored in the row); finished runs are reused. What a row needs of a finished run (its test figures, config,
command, training precision and wall time) is also written to results/runs/<dataset>/<name>-s<seed>.json, which is
committed: rows are rebuilt from those records once runs/ is gone, and a recorded run is not trained again. Rows:
test acc@1/5/10 (mean over seeds, std of acc@1), the backbone's params and GFLOPs in the paper's accounting at the
canvas, and batch-1 CPU latency of the sketch branch.
Writes results/<dataset>.json, then re-renders results/<dataset>.md and the README block ``results:<dataset>``
(``tables.render``). Latency is measured after all training, in its own step, and flagged when the machine was busy.

    python benchmarks/fgsbir.py --dataset shoes-v1              # everything for one dataset
    python benchmarks/fgsbir.py --dataset chairs-v1 --only teacher direct
    python benchmarks/fgsbir.py --dataset shoes-v1 --table-only  # re-tabulate finished runs
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import yaml

from sketchdown.eval.flops import backbone_cost, measure_latency
from sketchdown.eval.results import update_rows
from sketchdown.files import write_json
from sketchdown.models.canvas_norm import CanvasBatchNorm2d, last_downsample
from sketchdown.models.embed import EmbeddingNet, ModelConfig, read_checkpoint
from sketchdown.models.precision import resolve
from sketchdown.models.registry import create_backbone
from tables import render

SKETCHDOWN = str(Path(sys.executable).with_name("sketchdown"))  # the CLI of this environment


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="a dataset key of the experiments file")
    p.add_argument("--experiments", type=Path, default=Path(__file__).with_name("experiments.yaml"))
    p.add_argument("--only", nargs="+", help="experiment names to run/tabulate (default: all)")
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--table-only", action="store_true", help="do not train; tabulate the finished runs")
    p.add_argument("--train-only", action="store_true", help="train missing runs; no table (latency needs a quiet "
                                                             "machine)")
    p.add_argument("--train-threads", type=int, default=None, help="OMP threads of each training run")
    p.add_argument("--latency-threads", type=int, default=None, help="torch threads for the latency column")
    p.add_argument("--repeats", type=int, default=30, help="timed batch-1 passes per latency figure")
    return p


def run_command(dataset: str, spec: dict, exp: dict, seed: int, run_dir: Path) -> list[str]:
    """The CLI call of one run; ``{teacher}``, ``{seed}``, ``{runs}`` and ``{epochs}`` (the experiment's own
    mapping, else the file's) in the flags are filled in."""
    command, flags = per_dataset(exp["command"], dataset), per_dataset(exp["args"], dataset)
    flags = (flags + " " + exp.get("dataset_args", {}).get(dataset, "")).format(
        teacher=run_dir.parent / "teacher-s0", seed=seed, runs=run_dir.parent,
        epochs={**spec.get("epochs", {}), **exp.get("epochs", {})}.get(dataset, ""))
    if command == "ensemble":  # combines finished runs: no data flags, no seed of its own
        return [SKETCHDOWN, "ensemble", *shlex.split(flags), "--out", str(run_dir)]
    return [SKETCHDOWN, command, *shlex.split(spec["datasets"][dataset] + " " + flags), "--seed", str(seed),
            "--out", str(run_dir)]


def per_dataset(value: str | dict, dataset: str) -> str:
    """An experiment field may be one value or a mapping dataset -> value (e.g. a teacher chosen per dataset)."""
    return value[dataset] if isinstance(value, dict) else value


def record_path(args: argparse.Namespace, run_dir: Path) -> Path:
    return args.results / "runs" / run_dir.parent.name / f"{run_dir.name}.json"


def best_validation(ckpt: dict) -> dict | None:
    """The validation figures that chose ``best.pt`` and its epoch (counted from 0, as metrics.jsonl does), so a
    choice made on validation can be checked after the run folder is gone; None for a checkpoint without them."""
    if "val" not in ckpt:
        return None
    return {"epoch": ckpt.get("epoch"), **{k: v for k, v in ckpt["val"].items() if isinstance(v, (int, float))}}


def run_record(args: argparse.Namespace, run_dir: Path) -> dict | None:
    """What a table row needs of a finished run: from its folder (and then written to ``record_path``) while the
    folder is there, else from the committed record; None if it never finished."""
    path = record_path(args, run_dir)
    if not (run_dir / "test.json").is_file():
        return json.loads(path.read_text()) if path.is_file() else None
    ckpt = read_checkpoint(run_dir / "best.pt")
    argv = shlex.split((run_dir / "command.txt").read_text())
    wall = run_dir / "wall_seconds.txt"
    record = {"run": str(run_dir), "test": json.loads((run_dir / "test.json").read_text()), "config": ckpt["config"],
              "backbone_weights": ckpt.get("backbone_weights"), "command": shlex.join([Path(argv[0]).name, *argv[1:]]),
              "precision": trained_precision(run_dir, ckpt["config"]),
              "wall_seconds": float(wall.read_text()) if wall.is_file() else None,
              "validation": best_validation(ckpt)}
    write_json(record, path)
    return record


def train_missing(args: argparse.Namespace, spec: dict, names: list[str]) -> None:
    for name in names:
        exp = spec["experiments"][name]
        for seed in exp["seeds"]:
            run_dir = args.runs / args.dataset / f"{exp.get('folder', name)}-s{seed}"
            if (run_dir / "test.json").is_file() or record_path(args, run_dir).is_file():
                continue
            cmd = run_command(args.dataset, spec, exp, seed, run_dir)
            resume = (run_dir / "last.pt").is_file()
            if resume:
                cmd = [SKETCHDOWN, per_dataset(exp["command"], args.dataset), "--resume", str(run_dir)]
            print("$", shlex.join(cmd), flush=True)
            env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.train_threads)} if args.train_threads else {}))
            t0 = time.time()
            subprocess.run(cmd, check=True, env=env)
            (run_dir / "wall_seconds.txt").write_text(f"{time.time() - t0:.0f}\n")


def per_canvas_params_m(config: dict) -> float:
    """Millions of parameters that a batch-norm scale and shift per canvas (``--canvas-affine``) adds to the sketch
    tower's backbone beyond the shared ones (none fold into FLOPs)."""
    if not config.get("canvas_affine"):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tower = EmbeddingNet(ModelConfig(backbone=config.get("sketch_backbone") or config["backbone"], weights="none",
                                         canvas_stats=tuple(config["canvases"]), canvas_affine=True,
                                         canvas_affine_residual=config.get("canvas_affine_residual", False)))
    return sum(sum(p.numel() for p in n.parameters(recurse=False)) - 2 * n.num_features
               for n in tower.modules() if isinstance(n, CanvasBatchNorm2d) and n.per_canvas_affine) / 1e6


def tabulate(args: argparse.Namespace, spec: dict, names: list[str]) -> list[dict]:
    rows, latency = [], {}
    for name in names:
        exp = spec["experiments"][name]
        runs = [run_record(args, args.runs / args.dataset / f"{exp.get('folder', name)}-s{s}") for s in exp["seeds"]]
        runs = [r for r in runs if r is not None]
        if not runs:
            print(f"{name}: no finished run yet, skipped", flush=True)
            continue
        tests = [{m["canvas"]: m for m in r["test"]} for r in runs]
        config, command = runs[0]["config"], runs[0]["command"]
        backbone = config["backbone"]
        members = config.get("members", [config])
        extra_params = per_canvas_params_m(config)
        for canvas in exp["canvases"]:
            # what a query pays: the sketch tower of every member (an ensemble costs all its members)
            parts = [m.get("sketch_backbone") or m["backbone"] for m in members]
            # a sketch tower trained with --canvas-unstride runs its last downsampling at stride 1 there
            keys = [(part, canvas, canvas in config.get("canvas_unstride", ())) for part in parts]
            for key in keys:
                if key not in latency:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        net = create_backbone(key[0], "none")
                    if key[2]:
                        last_downsample(net).stride = (1, 1)
                    lat = measure_latency(net, canvas, repeats=args.repeats, threads=args.latency_threads,
                                          precision=resolve(backbone=key[0], use="query"))
                    latency[key] = (backbone_cost(net, canvas), lat)
            gflops = sum(latency[k][0].gflops for k in keys)
            params = sum(latency[k][0].params_m for k in keys) + extra_params
            ms = sum(latency[k][1].median_ms for k in keys)
            busy = any(latency[k][1].busy for k in keys)
            acc = {k: [t[canvas][k] for t in tests] for k in ("acc1", "acc5", "acc10")}
            wall = [r["wall_seconds"] for r in runs if r["wall_seconds"] is not None]
            rows.append({"name": name, "backbone": backbone, "canvas": canvas, "params_m": round(params, 3),
                         "gflops": round(gflops, 4), "cpu_ms": round(ms, 2), "cpu_busy": busy,
                         "cpu_precision": latency[keys[0]][1].precision,
                         "branches": "+".join(sorted({m.get("branches", "shared") for m in members})),
                         "precision": runs[0]["precision"],
                         **{k: round(statistics.mean(v), 2) for k, v in acc.items()},
                         "acc1_std": round(statistics.stdev(acc["acc1"]), 2) if len(runs) > 1 else None,
                         "seeds": len(runs), "command": command + (f"  (seeds {exp['seeds']})" if len(runs) > 1 else ""),
                         "init_weights": runs[0]["backbone_weights"],
                         "train_minutes": round(statistics.mean(wall) / 60, 1) if wall else None})
            print(f"{name:<16} {canvas:>4}  acc@1 {rows[-1]['acc1']:6.2f}  acc@10 {rows[-1]['acc10']:6.2f}  "
                  f"{gflops:7.3f} GFLOPs  {ms:7.2f} ms", flush=True)
    return rows


def trained_precision(run: Path, config: dict) -> str:
    """What the run's training steps resolved to (logged per epoch); an ensemble's members' settings; runs from
    before the precision switch logged none and were fp32."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    names = {r["precision"] for r in records if "precision" in r}
    if not names and "members" in config:
        names = {m.get("precision", "fp32") for m in config["members"]}
    return "+".join(sorted(names)) or "fp32"


def main(args: argparse.Namespace) -> None:
    spec = yaml.safe_load(args.experiments.read_text())
    if args.dataset not in spec["datasets"]:
        sys.exit(f"unknown dataset {args.dataset!r}; the experiments file has {', '.join(spec['datasets'])}")
    names = args.only or list(spec["experiments"])
    unknown = set(names) - set(spec["experiments"])
    if unknown:
        sys.exit(f"unknown experiments {sorted(unknown)}")
    # an experiment may be limited to some datasets (`only:`), e.g. ensembles of runs that exist only there
    names = [n for n in names if args.dataset in spec["experiments"][n].get("only", [args.dataset])]
    if not args.table_only:
        train_missing(args, spec, names)
    if args.train_only:
        return
    rows = tabulate(args, spec, [n for n in names if spec["experiments"][n].get("row", True)])
    path = args.results / f"{args.dataset}.json"
    update_rows(path, rows, dataset=args.dataset, command=f"python benchmarks/fgsbir.py --dataset {args.dataset}")
    for md in render(args.results, args.readme):
        print("wrote", md)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
