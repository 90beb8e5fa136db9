"""Data-parallel training under torchrun on this CPU: 2 processes x 4 triplets train the same weights as one
process x 8 (same global batch: one permutation per epoch, in-batch negatives gathered across ranks, gradients
averaged, batch-norm statistics over both ranks), only rank 0 writes the run folder, and an interrupted run
resumes to the weights it would have had; ``select`` shares the reward banks' student passes over the ranks and
fits the selector that one process fits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sketchdown.models.embed import load_model, read_checkpoint
from sketchdown.select.bank import Bank
from sketchdown.train.configs import TrainConfig

from sketchdown.serve.process import free_port

pytestmark = pytest.mark.slow
# From ImageNet weights (a randomly initialised MobileNetV2 is chaotic: a 1e-7 change of its input moves its
# gradients by 1%, so no two float summation orders agree there), after 3 AdamW steps the two runs' unit
# embeddings agree within this (measured: 1.4e-3, cosine 0.99997), and their losses within 1e-4; the three
# steps move the embeddings 10x as far or more (measured: 0.22).
TOLERANCE = 5e-3


def tiny(data: Path, batch: int, out: Path, *extra: str) -> list[str]:
    return ["train", "--train-sets", "chairs-v1", "--data", str(data), "--photo-size", "64",
            "--canvases", "32", "64", "--eval-canvas", "64", "--epochs", "1", "--steps-per-epoch", "3",
            "--batch-size", str(batch), "--lr", "1e-4", "--mining", "semihard", "--precision", "fp32",
            "--memory-format", "contiguous", "--out", str(out), *extra]


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
            str(free_port())]


def outputs(model) -> torch.Tensor:
    """A model's unit embeddings (eval mode) of fixed inputs, through both towers.

    The models' outputs, not their weights, are compared: AdamW turns a gradient that is zero up to float noise
    (a bias that a following batch norm cancels) into a full-size step of either sign, which moves a weight but
    not what the model computes.
    """
    x = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.eval()
        return torch.cat([model.encode_sketch(x), model.encode_photo(x)])


def gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def run(args: list[str], nproc: int = 1) -> subprocess.CompletedProcess:
    launch = torchrun(nproc) if nproc > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([*launch, "-m", "sketchdown", *args], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def kill_every_process_of(out: Path) -> None:
    """SIGKILL every process whose command line names the run folder ``out`` (the agent and its workers)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(out) in cmdline.read_bytes().decode(errors="replace"):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass  # gone already


def test_two_ranks_train_what_one_process_trains_on_the_same_global_batch(data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run(tiny(data, 8, one))
    launched = run(tiny(data, 4, two), nproc=2)
    assert launched.stdout.count("best epoch 1") == 1  # rank 0 reports; rank 1 stays quiet
    a, b = (outputs(load_model(p / "last.pt")) for p in (one, two))
    start = outputs(TrainConfig(train_sets=("chairs-v1",), data=str(data), canvases=(32, 64)).build_model())
    assert gap(a, b) < TOLERANCE < gap(a, start) / 10  # the same model, and training moved it far more than that
    loss_one, loss_two = (json.loads((p / "metrics.jsonl").read_text().splitlines()[0])["train_loss"] for p in (one, two))
    assert loss_two == pytest.approx(loss_one, rel=1e-4)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())  # one run folder
    for name in ("config.yaml", "command.txt"):
        assert (two / name).is_file()
    assert torch.equal(b, outputs(load_model(two / "best.pt")))  # best.pt: the last (only) epoch's weights


def test_an_interrupted_distributed_run_resumes_to_the_same_weights(data, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run(tiny(data, 4, whole, "--epochs", "3"), nproc=2)
    launch = [*torchrun(2), "-m", "sketchdown", *tiny(data, 4, cut, "--epochs", "3")]
    proc = subprocess.Popen(launch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # stop it once the first epoch is checkpointed
        if (cut / "last.pt").is_file() and read_checkpoint(cut / "last.pt")["epoch"] == 0:
            kill_every_process_of(cut)  # torchrun's workers run in sessions of their own: the agent's group alone
            os.killpg(proc.pid, signal.SIGKILL)  # would leave them training on beside the resumed run
            break
        time.sleep(0.05)
    proc.wait()
    assert read_checkpoint(cut / "last.pt")["epoch"] < 2, "the run ended before it could be interrupted"
    run(["train", "--resume", str(cut)], nproc=2)
    assert gap(*(outputs(load_model(p / "last.pt")) for p in (whole, cut))) < TOLERANCE
    assert len((cut / "metrics.jsonl").read_text().splitlines()) == 3


def test_select_shares_the_reward_banks_over_ranks_and_fits_the_same_selector(data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["select", "--student", "mobilenet_v2", "--set", "chairs-v1", "--data", str(data), "--limit", "5",
            "--photo-size", "64", "--epochs", "2", "--lambda-flops", "0.3", "--policy", "vector"]
    run([*args, "--out", str(one)])
    launched = run([*args, "--out", str(two)], nproc=2)
    assert launched.stdout.count("test chairs-v1:test") == 1  # rank 0 reports
    for split in ("train", "val", "test"):  # 5 sketches: each rank encoded and traced 2 or 3 of them
        a, b = (Bank.load(p / "banks" / f"{split}.pt") for p in (one, two))
        assert a.key == b.key and torch.equal(a.ranks, b.ranks) and torch.equal(a.rasters, b.rasters)
        assert torch.allclose(a.top_scores, b.top_scores, atol=1e-5) and len(a.points) == len(b.points) == len(a)
        assert all(np.array_equal(p, q) for p, q in zip(a.points, b.points))
    tests = [json.loads((p / "test.json").read_text()) for p in (one, two)]
    assert tests[0]["policy"] == tests[1]["policy"]  # the same banks fit the same selector
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
