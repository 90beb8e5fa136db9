"""The command line as a user runs it: subprocesses, exit codes, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def sketchdown(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sketchdown.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_help_teaches_the_commands():
    out = sketchdown("--help").stdout
    for command in ("train", "evaluate", "flops", "render", "weights", "backbones"):
        assert command in out
    assert "typical use" in out


def test_flops_prints_the_paper_figures():
    vgg = sketchdown("flops", "--backbone", "vgg16", "--canvas", "256")
    assert vgg.returncode == 0 and "40.089 GFLOPs" in vgg.stdout and "14.71M" in vgg.stdout
    mbv2 = sketchdown("flops", "--backbone", "mobilenet_v2", "--canvas", "256", "--json")
    row = json.loads(mbv2.stdout)[0]
    assert 0.78 <= row["gflops"] <= 0.84 and round(row["params_m"], 2) == 2.22


def test_render_a_chair_v2_stroke_sketch(tmp_path, chair_pickle):
    r = sketchdown("render", str(chair_pickle), "--key", "/test/9910-02-carbon_1", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for c in (32, 64, 128, 256):
        img = np.asarray(Image.open(tmp_path / f"test_9910-02-carbon_1_{c}.png"))
        assert img.shape == (c, c) and img.min() < 128


def test_evaluate_writes_json(tmp_path, data):
    pairs = tmp_path / "pairs.csv"
    rows = ["split,sketch,photo,id"] + [
        f"test,{data}/qmul-v1/chairs/test/sketches/{i}.png,{data}/qmul-v1/chairs/test/images/{i}.jpg,{i}"
        for i in range(201, 209)]
    pairs.write_text("\n".join(rows) + "\n")
    out = tmp_path / "m.json"
    r = sketchdown("evaluate", "--set", str(pairs), "--split", "test", "--canvas", "64", "--photo-size", "64",
                   "--out", str(out))
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())[0]
    assert m["queries"] == 8 and m["gallery"] == 8 and 0 <= m["acc1"] <= m["acc5"] <= m["acc10"] == 100.0


def test_evaluate_on_the_validation_split_training_held_out(tmp_path, data):
    from sketchdown.train.configs import TrainConfig
    from sketchdown.train.triplet import build_sets

    out = tmp_path / "m.json"
    r = sketchdown("evaluate", "--model", "sketchynet-v1-chairs", "--set", "chairs-v1", "--split", "val", "--canvas",
                   "64", "--photo-size", "64", "--precision", "fp32", "--data", str(data), "--out", str(out))
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())[0]
    val = build_sets(TrainConfig(train_sets=("chairs-v1",), data=str(data)))[1]  # what every run validates on
    assert (m["queries"], m["gallery"]) == (len(val.sketches), len(val.photos)) == (30, 30)
    assert m["raster_method"] == "trace"  # the artifact's own, not the default
    both = sketchdown("evaluate", "--set", "chairs-v1", "shoes-v1", "--split", "test")
    assert both.returncode == 2 and "several only with --split val" in both.stderr
    bad = sketchdown("evaluate", "--set", "chairs-v1", "--split", "val", "--val-fraction", "2")
    assert bad.returncode == 2 and "val_fraction must be above 0 and at most 1" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "empty.json").write_text("[]")
    for args in (["render", str(tmp_path / "missing.svg")], ["render", str(tmp_path / "broken.png")],
                 ["render", str(tmp_path / "empty.json")], ["evaluate", "--checkpoint", str(tmp_path / "no.pt")],
                 ["flops", "--backbone", "nope"]):
        r = sketchdown(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and "error:" in r.stderr


def test_python_m_sketchdown_and_the_parser_imports_no_torch():
    r = subprocess.run([sys.executable, "-m", "sketchdown", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "typical use" in r.stdout and r.stdout.startswith("usage: sketchdown")
    check = ("import sys; from sketchdown.cli import build_parser; build_parser(); "
             "heavy = {'torch', 'faiss', 'timm'} & set(sys.modules); assert not heavy, sorted(heavy)")
    r = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
