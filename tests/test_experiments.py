"""Every run of benchmarks/experiments.yaml is a command the CLI accepts: a typo in a flag should fail here, in
seconds, not an hour into a benchmark after the runs before it trained."""

import sys
from pathlib import Path

import pytest
import yaml

from sketchdown.cli import build_parser

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from fgsbir import record_path, run_command, run_record, train_missing  # noqa: E402

SPEC = yaml.safe_load((BENCHMARKS / "experiments.yaml").read_text())
RUNS = [(dataset, name) for dataset in SPEC["datasets"] for name, exp in SPEC["experiments"].items()
        if dataset in exp.get("only", [dataset])]


@pytest.mark.parametrize("dataset,name", RUNS, ids=[f"{d}-{n}" for d, n in RUNS])
def test_every_experiment_is_a_valid_command(dataset, name, tmp_path):
    exp = SPEC["experiments"][name]
    for seed in exp["seeds"]:
        argv = run_command(dataset, SPEC, exp, seed, tmp_path / dataset / f"{name}-s{seed}")
        args = build_parser().parse_args(argv[1:])
        assert args.command == argv[1] and str(args.out).endswith(f"{name}-s{seed}")
        assert "{" not in " ".join(argv)  # every placeholder filled in


def test_a_misspelt_flag_is_caught():
    exp = {"command": "train", "args": "--backbone mobilenet_v2 --epochz 3", "seeds": [0]}
    argv = run_command("chairs-v1", SPEC, exp, 0, Path("runs/x"))
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv[1:])


def test_a_finished_run_is_recorded_and_neither_lost_nor_trained_again_once_its_folder_is_gone(tmp_path):
    """runs/ is not committed: what a row needs of a run is kept in results/runs/, and the row and the skip of
    finished runs work from that record alone."""
    import argparse
    import json
    import shutil

    import torch

    args = argparse.Namespace(runs=tmp_path / "runs", results=tmp_path / "results", train_threads=None)
    run_dir = args.runs / "chairs-v1" / "x-s0"
    run_dir.mkdir(parents=True)
    test = [{"canvas": 256, "acc1": 61.86, "acc5": 90.0, "acc10": 95.0}]
    (run_dir / "test.json").write_text(json.dumps(test))
    (run_dir / "command.txt").write_text("/venv/bin/sketchdown train --seed 0 --out runs/chairs-v1/x-s0")
    (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "precision": "bf16+channels_last"}) + "\n")
    (run_dir / "wall_seconds.txt").write_text("480\n")
    torch.save({"model_config": {}, "state_dict": {}, "config": {"backbone": "mobilenet_v2"},
                "backbone_weights": "imagenet", "epoch": 7, "val": {"acc1": 65.0, "acc1@32": 50.0, "set": "val"}},
               run_dir / "best.pt")
    record = run_record(args, run_dir)
    assert record["validation"] == {"epoch": 7, "acc1": 65.0, "acc1@32": 50.0}
    assert record["test"] == test and record["command"].startswith("sketchdown train") and record["wall_seconds"] == 480
    assert record["precision"] == "bf16+channels_last" and record_path(args, run_dir).is_file()
    shutil.rmtree(args.runs)
    assert run_record(args, run_dir) == record
    spec = {"experiments": {"x": {"command": "train", "args": "--epochs 1", "seeds": [0]}}}
    train_missing(argparse.Namespace(**vars(args), dataset="chairs-v1"), spec, ["x"])  # would train: no sketchdown
    assert not run_dir.exists()
