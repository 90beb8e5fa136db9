"""benchmarks/paired.py: per-sketch hits of two shipped models on the Shoe-V1 validation split, their paired
difference equal to the difference of their acc@1, and an interval around it resampled by photo."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from paired import main  # noqa: E402


def test_paired_difference_on_validation_photos(data, tmp_path):
    out = tmp_path / "paired.json"
    rows = main(Namespace(sets=["shoes-v1", "shoes-v1-extra"], models=["sketchynet-v1-shoes", "teacher-shoes"],
                          canvas=[256], test=False, resamples=2000, data=str(data), out=str(out)))
    assert [r["canvas"] for r in rows] == ["@256", "mean"] and {r["split"] for r in rows} == {"validation"}
    r = rows[0]
    assert (r["groups"], r["queries"]) == (46, 184)  # 46 validation photos, 4 sketches each
    assert r["diff"] == pytest.approx(r["challenger_acc1"] - r["incumbent_acc1"])
    assert r["lo"] <= r["diff"] <= r["hi"] and r["hi"] - r["lo"] > 2  # 46 photos cannot pin it to a point
    assert rows[1]["diff"] == pytest.approx(r["diff"])  # one canvas: the mean is that canvas
    assert out.is_file() and "--models sketchynet-v1-shoes teacher-shoes" in out.read_text()
