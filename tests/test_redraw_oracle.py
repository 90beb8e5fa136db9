"""benchmarks/redraw_oracle.py: redraws are seeded per sketch and redraw, a bank agrees with itself everywhere, and
on a few Chair-V1 sketches the oracle that sees the sketch itself is never beaten by one that sees a redraw."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from redraw_oracle import agreement, main, margin_cascade, redrawn  # noqa: E402

from sketchdown.data.datasets import load_set  # noqa: E402


def test_redraws_are_seeded_per_sketch_and_redraw(data):
    sketches = load_set("chairs-v1", "test", data).sketches[:3]
    one, again, two = (redrawn(sketches, "trace", "standard", r) for r in (1, 1, 2))
    assert all(a.to_points().tobytes() == b.to_points().tobytes() for a, b in zip(one, again))
    assert any(a.to_points().tobytes() != b.to_points().tobytes() for a, b in zip(one, two))
    assert one[0].source.endswith("#redraw1")


def test_oracle_from_the_sketch_bounds_the_one_from_a_redraw(data, tmp_path):
    out = tmp_path / "redraw.json"
    r = main(Namespace(model="sketchynet-v1-chairs", set="chairs-v1", split="test", redraws=2, strength="standard",
                       lambdas=[0.0, 1.0], budgets=[0.1, 0.26], limit=12, data=str(data), out=str(out)))
    assert r["sketches"] == 12 and len(r["redraws"]) == 2 and [x["lambda"] for x in r["redraw_rates"]] == [0.0, 1.0]
    ceiling = r["oracle"]["oracle_acc1_at_same_cost"]
    assert all(c["student_gflops"] <= c["budget"] + 1e-9 for c in r["margin_cascades"])
    for x in [*r["redraws"], *r["redraw_rates"], *r["margin_cascades"]]:
        assert 0 <= x["acc1"] <= x["oracle_acc1_at_same_cost"] + 1e-9
    assert r["oracle"]["acc1"] <= ceiling + 1e-9
    assert all(0 <= a["agree"] <= 1 and 0 <= a["chance"] <= 1 for a in r["agreement"])
    assert out.is_file() and "--limit 12" in out.read_text()


def test_a_bank_agrees_with_itself_and_a_cascade_pays_for_what_it_computes():
    import torch

    from sketchdown.select.bank import Bank

    ranks = torch.tensor([[1, 2], [3, 1], [1, 1]])
    top = torch.zeros(3, 2, 10)
    top[:, 0, 0] = torch.tensor([0.9, 0.5, 0.7])  # 32 px margins over a second-best of 0: 0.9, 0.5, 0.7
    bank = Bank(name="b", key="k", canvases=(32, 64), targets=torch.arange(3), ranks=ranks,
                triplet=torch.zeros(3, 2), top_scores=top, gallery=3,
                student_gflops=torch.tensor([0.01, 0.05]), student_params_m=1.0,
                rasters=torch.zeros(3, 32, 32, dtype=torch.uint8))
    assert [a["agree"] for a in agreement(bank, bank)] == [1.0, 1.0]
    d = margin_cascade(bank, (0.6,))
    assert d.final.tolist() == [0, 1, 0]  # the second sketch is not sure enough at 32 px and goes on to 64
    assert torch.allclose(d.student_gflops, torch.tensor([0.01, 0.06, 0.01], dtype=torch.float64))
