"""Every run of benchmarks/experiments.yaml is a command the CLI accepts: a typo in a flag should fail here, in
seconds, not an hour into a benchmark after the runs before it trained."""

import sys
from pathlib import Path

import pytest
import yaml

from sketchdown.cli import build_parser

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from fgsbir import run_command  # noqa: E402

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
