"""The fuzz suite in CI: a few dozen generated hostile cases per reader (the 10,000-case run is
``python benchmarks/fuzz.py``), and the harness's own bounds shown to catch what they exist for."""

from __future__ import annotations

import time

import pytest
from hypothesis import strategies as st

from sketchdown import fuzz

CASES = 40  # per target: about 15 s for all of them on one core


def test_every_reader_ends_each_case_in_a_result_or_the_projects_error():
    report = fuzz.fuzz(CASES, seed=1)
    assert set(report.outcomes) == {"raster sketch", "photo", "svg", "stroke json", "ndjson", "sketchx pickle",
                                    "stroke-3 npz", "pairs csv", "index"}
    assert report.findings == []
    assert all(sum(c.values()) >= 5 for c in report.outcomes.values())
    assert report.slowest < fuzz.SECONDS


@pytest.mark.parametrize("run,outcome", [(lambda p: time.sleep(5), "timeout"),
                                         (lambda p: bytearray(3 << 30), "memory"),
                                         (lambda p: {}["x"], "exception:KeyError"),
                                         (lambda p: __import__("os").system("true"), "code-executed")])
def test_the_harness_reports_what_it_bounds(tmp_path, monkeypatch, run, outcome):
    monkeypatch.setattr(fuzz, "SECONDS", 0.3)
    target = fuzz.Target(".bin", st.just(b"x"), run)
    monkeypatch.setattr(fuzz, "targets", lambda folder: {"probe": target})
    report = fuzz.fuzz(1)
    assert [f["outcome"] for f in report.findings] == [outcome]
