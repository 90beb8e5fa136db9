"""`sketchdown index`, `search` and `export-onnx` as a user runs them: subprocesses, exit codes, one-line errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sketchdown.cli import main
from sketchdown.retrieval import sheet

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
    r = sketchdown("index", str(root / "photos"), "-o", str(root / "cat.idx"), "--model", "mobilenet_v2", "--canvas", SIDE, "--photo-size", SIDE)
    assert r.returncode == 0, r.stderr
    assert "5 photos (0 reused, 5 encoded), fp16 search" in r.stdout
    found = sketchdown("search", str(root / "cat.idx"), str(test / "sketches" / "305.png"), "-k", "3", "--json")
    assert found.returncode == 0, found.stderr
    return root / "cat.idx", root / "photos", test / "sketches", json.loads(found.stdout)


def test_search_prints_ranks_scores_paths_and_json(catalogue):
    idx, photos, sketches, found = catalogue
    assert [r["rank"] for r in found["results"]] == [1, 2, 3] and found["canvas"] == int(SIDE)
    text = sketchdown("search", str(idx), str(sketches / "305.png"), "-k", "3")
    assert text.returncode == 0, text.stderr
    *lines, summary = text.stdout.splitlines()
    assert len(lines) == 3 and lines[0].split()[0] == "1" and Path(lines[0].split()[2]).parent == photos
    assert [r["path"] for r in found["results"]] == [line.split()[2] for line in lines]
    assert summary.split() == ["canvas", f"{SIDE},", "0.012", "GFLOPs,", "no", "confidence", "(the", "model",
                               "carries", "no", "calibration)"]  # zero-shot: nothing to calibrate against


def test_export_onnx_then_search_on_onnxruntime(catalogue, tmp_path, capsys):
    idx, _, sketches, found = catalogue
    onnx_file = tmp_path / "m.onnx"
    code, out, _ = in_process(capsys, "export-onnx", "--model", "mobilenet_v2", "--photo-size", SIDE, "-o",
                              str(onnx_file))
    assert code == 0 and "max |onnxruntime - torch|" in out and onnx_file.is_file()
    on = json.loads(sketchdown("search", str(idx), str(sketches / "305.png"), "-k", "3", "--engine", "onnx",
                               "--onnx", str(onnx_file), "--json").stdout)
    assert [x["path"] for x in on["results"]] == [x["path"] for x in found["results"]]


def test_index_on_onnxruntime_makes_the_vectors_torch_makes(catalogue, tmp_path, capsys):
    import numpy as np

    from sketchdown.retrieval import Index

    idx, photos, _, _ = catalogue
    code, out, _ = in_process(capsys, "index", str(photos), "-o", str(tmp_path / "onnx.idx"), "--model",
                              "mobilenet_v2", "--canvas", SIDE, "--photo-size", SIDE, "--engine", "onnx")
    assert code == 0 and "(0 reused, 5 encoded)" in out
    on, reference = Index.load(tmp_path / "onnx.idx"), Index.load(idx)
    assert on.model["identity"] == reference.model["identity"]
    assert (on.vectors * reference.vectors).sum(1).min() > 0.99  # cosine; torch's are bf16 where auto picks it


def test_rerun_reuses_and_mismatch_is_refused(catalogue, capsys):
    idx, photos, sketches, _ = catalogue
    code, out, _ = in_process(capsys, "index", str(photos), "-o", str(idx), "--model", "mobilenet_v2", "--canvas", SIDE, "--photo-size", SIDE)
    assert code == 0 and "(5 reused, 0 encoded)" in out
    code, _, err = in_process(capsys, "search", str(idx), str(sketches / "305.png"), "--model", "efficientnet_lite0")
    assert code == 2 and err.count("\n") == 1 and "search with a model of the photo encoder it was built with" in err


def test_bad_input_is_one_line_exit_2_and_writes_nothing(catalogue, tmp_path, capsys):
    idx, _, sketches, _ = catalogue
    r = sketchdown("search", str(tmp_path / "missing.idx"), str(sketches / "305.png"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "no such index file" in r.stderr
    (tmp_path / "notes.txt").write_text("a shoe")
    (tmp_path / "empty").mkdir()
    for args in (["search", str(idx), str(tmp_path / "notes.txt")],
                 ["search", str(tmp_path / "notes.txt"), str(sketches / "305.png")],
                 ["index", str(tmp_path / "empty"), "-o", str(tmp_path / "out.idx"), "--model", "mobilenet_v2"],
                 ["index", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out.idx"), "--model", "mobilenet_v2"],
                 ["export-onnx", "--model", "no-such-model", "-o", str(tmp_path / "m.onnx")]):
        code, _, err = in_process(capsys, *args)
        assert code == 2 and err.count("\n") == 1 and "error:" in err, (args, err)
    assert not (tmp_path / "out.idx").exists() and not (tmp_path / "m.onnx").exists()


def test_index_progress_lines_when_stderr_is_no_terminal_and_nothing_else_written(catalogue, tmp_path, capsys,
                                                                                   monkeypatch):
    _, photos, _, _ = catalogue
    monkeypatch.chdir(tmp_path)  # the working folder (a repository, say) gets nothing
    code, out, err = in_process(capsys, "index", str(photos), "-o", str(tmp_path / "new.idx"), "--model", "mobilenet_v2", "--canvas", SIDE,
                                "--photo-size", SIDE)
    assert code == 0 and "(0 reused, 5 encoded)" in out
    assert [line.split(" (")[0] for line in err.splitlines() if line.startswith("encoded")] == ["encoded 5/5 photos"]
    assert "photos/s)" in err and sorted(p.name for p in tmp_path.iterdir()) == ["new.idx"]


def test_search_several_sketches_a_folder_and_a_file(catalogue, tmp_path, capsys):
    idx, photos, sketches, found = catalogue
    folder = tmp_path / "queries"
    folder.mkdir()
    for name in ("306.png", "305.png"):
        shutil.copy(sketches / name, folder / name)
    (folder / "notes.txt").write_text("not a sketch: left out of the folder")
    code, out, err = in_process(capsys, "search", str(idx), str(folder), str(sketches / "307.png"), "-k", "3")
    assert code == 0 and err == ""
    blocks = [b.splitlines() for b in out.strip().split("\n\n")]
    assert [b[0] for b in blocks] == [str(folder / "305.png"), str(folder / "306.png"), str(sketches / "307.png")]
    assert all(len(b) == 5 and Path(b[1].split()[2]).parent == photos for b in blocks)
    assert [line.split()[2] for line in blocks[0][1:4]] == [r["path"] for r in found["results"]]
    code, out, _ = in_process(capsys, "search", str(idx), str(folder), str(sketches / "307.png"), "-k", "3", "--json")
    docs = json.loads(out)
    assert code == 0 and [d["sketch"] for d in docs] == [b[0] for b in blocks]
    assert docs[0]["results"] == found["results"] and all(len(d["results"]) == 3 for d in docs)


def test_search_a_bad_sketch_among_good_ones_is_one_line_and_exit_2(catalogue, tmp_path, capsys):
    idx, _, sketches, _ = catalogue
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code, out, err = in_process(capsys, "search", str(idx), str(sketches / "305.png"), str(broken),
                                str(sketches / "306.png"), "-k", "2", "--json")
    assert code == 2 and err.count("\n") == 1 and "error:" in err and str(broken) in err
    docs = json.loads(out)
    assert [len(d.get("results", ())) for d in docs] == [2, 0, 2] and docs[1]["sketch"] == str(broken)
    code, _, err = in_process(capsys, "search", str(idx), str(sketches / "305.png"), str(broken), "--key", "3")
    assert code == 2 and "--key" in err and err.count("\n") == 1


def test_search_sheet_writes_a_png_per_sketch(catalogue, tmp_path, capsys):
    idx, _, sketches, _ = catalogue
    size = (sheet.PAD + 4 * (sheet.CELL + sheet.PAD), 2 * sheet.PAD + sheet.CELL + sheet.CAPTION)
    code, out, _ = in_process(capsys, "search", str(idx), str(sketches / "305.png"), "-k", "3", "--sheet",
                              str(tmp_path / "top.png"))
    assert code == 0 and len(out.splitlines()) == 4  # 3 ranks and the canvas / confidence line
    assert Image.open(tmp_path / "top.png").size == size
    code, out, _ = in_process(capsys, "search", str(idx), str(sketches / "305.png"), str(sketches / "306.png"),
                              "-k", "3", "--sheet", str(tmp_path / "many.png"), "--json")
    assert code == 0 and [d["sheet"] for d in json.loads(out)] == [str(tmp_path / f"many-{n}.png") for n in (305, 306)]
    assert all(Image.open(tmp_path / f"many-{n}.png").size == size for n in (305, 306))
    assert not list(tmp_path.glob(".*.tmp"))
