"""`sketchdown index`, `search` and `export-onnx` as a user runs them: subprocesses, exit codes, one-line errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sketchdown.cli import main

SIDE = "32"


def sketchdown(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sketchdown.cli", *args], capture_output=True, text=True, timeout=600)


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI's own main() in this process: the same code path without paying Python's start-up again."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, data):
    """Five Shoe-V1 test photos indexed by the CLI: (index file, photo folder, sketch folder, the --json search
    result for sketch 305 on torch). Every call starts Python and imports torch, so the tests share these."""
    root = tmp_path_factory.mktemp("cli")
    test = data / "qmul-v1" / "shoes" / "test"
    (root / "photos").mkdir()
    for p in sorted((test / "images").glob("*.jpg"))[:5]:
        shutil.copy(p, root / "photos" / p.name)
    r = sketchdown("index", str(root / "photos"), "-o", str(root / "cat.idx"), "--canvas", SIDE, "--photo-size", SIDE)
    assert r.returncode == 0, r.stderr
    assert "5 photos (0 reused, 5 encoded), exact search" in r.stdout
    found = sketchdown("search", str(root / "cat.idx"), str(test / "sketches" / "305.png"), "-k", "3", "--json")
    assert found.returncode == 0, found.stderr
    return root / "cat.idx", root / "photos", test / "sketches", json.loads(found.stdout)


def test_search_prints_ranks_scores_paths_and_json(catalogue):
    idx, photos, sketches, found = catalogue
    assert [r["rank"] for r in found["results"]] == [1, 2, 3] and found["canvas"] == int(SIDE)
    text = sketchdown("search", str(idx), str(sketches / "305.png"), "-k", "3")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 3 and lines[0].split()[0] == "1" and Path(lines[0].split()[2]).parent == photos
    assert [r["path"] for r in found["results"]] == [line.split()[2] for line in lines]


def test_export_onnx_then_search_on_onnxruntime(catalogue, tmp_path, capsys):
    idx, _, sketches, found = catalogue
    onnx_file = tmp_path / "m.onnx"
    code, out, _ = in_process(capsys, "export-onnx", "--model", "mobilenet_v2", "--photo-size", SIDE, "-o",
                              str(onnx_file))
    assert code == 0 and "max |onnxruntime - torch|" in out and onnx_file.is_file()
    on = json.loads(sketchdown("search", str(idx), str(sketches / "305.png"), "-k", "3", "--engine", "onnx",
                               "--onnx", str(onnx_file), "--json").stdout)
    assert [x["path"] for x in on["results"]] == [x["path"] for x in found["results"]]


def test_rerun_reuses_and_mismatch_is_refused(catalogue, capsys):
    idx, photos, sketches, _ = catalogue
    code, out, _ = in_process(capsys, "index", str(photos), "-o", str(idx), "--canvas", SIDE, "--photo-size", SIDE)
    assert code == 0 and "(5 reused, 0 encoded)" in out
    code, _, err = in_process(capsys, "search", str(idx), str(sketches / "305.png"), "--model", "efficientnet_lite0")
    assert code == 2 and err.count("\n") == 1 and "search with the model it was built with" in err


def test_bad_input_is_one_line_exit_2_and_writes_nothing(catalogue, tmp_path, capsys):
    idx, _, sketches, _ = catalogue
    r = sketchdown("search", str(tmp_path / "missing.idx"), str(sketches / "305.png"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "no such index file" in r.stderr
    (tmp_path / "notes.txt").write_text("a shoe")
    (tmp_path / "empty").mkdir()
    for args in (["search", str(idx), str(tmp_path / "notes.txt")],
                 ["search", str(tmp_path / "notes.txt"), str(sketches / "305.png")],
                 ["index", str(tmp_path / "empty"), "-o", str(tmp_path / "out.idx")],
                 ["index", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out.idx")],
                 ["export-onnx", "--model", "no-such-model", "-o", str(tmp_path / "m.onnx")]):
        code, _, err = in_process(capsys, *args)
        assert code == 2 and err.count("\n") == 1 and "error:" in err, (args, err)
    assert not (tmp_path / "out.idx").exists() and not (tmp_path / "m.onnx").exists()
