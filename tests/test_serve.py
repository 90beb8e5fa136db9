"""The search server's API: valid searches by strokes and by uploaded files, every kind of bad input answered
with a 4xx and one line (never a 500), the body limit, thumbnails by index number only, concurrent searches, and a
clean shutdown of the real server on SIGTERM."""

from __future__ import annotations

import io
import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchdown.data.datasets import load_set
from sketchdown.retrieval import Index, load

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from sketchdown.serve import Catalogue, create_app  # noqa: E402
from sketchdown.serve.process import free_port, start_server  # noqa: E402

SIDE = 64
STROKES = {"width": 200, "height": 100, "strokes": [[[10, 10], [190, 20], [150, 90]], [[20, 80], [100, 50]]]}


@pytest.fixture(scope="module")
def client(data, tmp_path_factory):
    shoes = load_set("shoes-v1", "test", data)
    model = load("mobilenet_v2", canvas=SIDE, photo_size=SIDE)  # zero-shot weights: the API, not accuracy
    shoes_cat = Catalogue("shoes", Index.build(model, shoes.photos[:8]))
    chairs_cat = Catalogue("chairs", Index.build(model, load_set("chairs-v1", "test", data).photos[:5]))
    with TestClient(create_app([shoes_cat, chairs_cat], max_body=200_000), raise_server_exceptions=False) as c:
        c.sketch_png = Path(shoes.sketches[0])
        c.folder = tmp_path_factory.mktemp("uploads")
        yield c


def one_line(response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    return detail


def test_health_and_catalogues(client):
    assert client.get("/health").json() == {"status": "ok", "catalogues": 2}
    cats = client.get("/catalogues").json()
    assert [c["name"] for c in cats] == ["shoes", "chairs"] and cats[0]["photos"] == 8 and cats[0]["canvas"] == SIDE
    assert cats[0]["engine"] == "torch"
    assert client.get("/").status_code == 200 and "sketchdown" in client.get("/").text
    assert client.get("/static/app.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/search", "/photos/{i}", "/health"} <= set(paths)


def test_search_by_strokes_returns_ranked_photos_with_cost_and_time(client):
    r = client.post("/search", json={**STROKES, "k": 5})
    assert r.status_code == 200
    doc = r.json()
    assert [h["rank"] for h in doc["results"]] == [1, 2, 3, 4, 5] and doc["catalogue"] == "shoes"
    scores = [h["score"] for h in doc["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= h["id"] < 8 for h in doc["results"])
    assert doc["canvas"] == SIDE and doc["canvases"] == [SIDE] and doc["gflops"] > 0 and doc["ms"] > 0
    other = client.post("/search", json={**STROKES, "catalogue": "chairs"}).json()
    assert other["catalogue"] == "chairs" and len(other["results"]) == 5  # k is capped by the catalogue's size


def test_search_by_uploaded_files(client):
    png = client.sketch_png.read_bytes()
    r = client.post("/search", files={"file": ("mine.png", png, "image/png")}, data={"k": "3"})
    assert r.status_code == 200 and len(r.json()["results"]) == 3
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><path d="M10 10 L90 90 L10 90"/></svg>'
    assert client.post("/search", files={"file": ("a.svg", svg)}).status_code == 200
    assert client.post("/search", files={"file": ("a.json", json.dumps(STROKES).encode())},
                       data={"catalogue": "chairs"}).json()["catalogue"] == "chairs"


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("kwargs, status, words", [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"json": [1, 2, 3]}, 400, "strokes"),
    ({"json": {"strokes": []}}, 400, "no strokes"),
    ({"json": {"strokes": [[["a", "b"]]]}}, 400, "numbers"),
    ({"content": b'{"strokes": [[[0, 0], [1e400, 1]]]}', "headers": {"content-type": "application/json"}}, 400,
     "finite"),
    ({"json": {**STROKES, "k": 0}}, 400, "k"),
    ({"json": {**STROKES, "k": 10_000}}, 400, "k"),
    ({"json": {**STROKES, "k": "many"}}, 400, "k"),
    ({"json": {**STROKES, "k": True}}, 400, "k"),
    ({"json": {**STROKES, "catalogue": "boats"}}, 400, "no such catalogue"),
    ({"json": {**STROKES, "catalogue": ["shoes"]}}, 400, "no such catalogue"),
    ({"content": b"[" * 100_000, "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"content": b"strokes", "headers": {"content-type": "text/plain"}}, 400, "content type"),
    ({"files": {"file": ("x.png", b"\x89PNG\r\n\x1a\nbroken")}}, 400, "x.png"),
    ({"files": {"file": ("x.png", _png(np.full((32, 32), 255, np.uint8)))}}, 400, "blank"),
    ({"files": {"file": ("x.exe", b"MZ")}}, 400, "unknown sketch file type"),
    ({"files": {"file": ("x.svg", b"<svg><path d='M 0 0 L")}}, 400, "x.svg"),
    ({"data": {"k": "3"}, "files": {"other": ("a.png", b"1")}}, 400, "file"),
    ({"json": {"strokes": [[[i, i] for i in range(300_000)]]}}, 413, "bytes"),
    ({"json": {"strokes": [[[i % 10, i % 10] for i in range(10_500)]] * 2}}, 413, "points"),
    ({"json": {"strokes": [[[i % 200, i % 100]] for i in range(2_500)]}}, 413, "strokes"),
])
def test_bad_input_is_a_4xx_with_one_line(client, kwargs, status, words):
    r = client.post("/search", **kwargs)
    assert r.status_code == status, r.text
    assert words in one_line(r)


def test_a_streamed_body_over_the_limit_is_refused_without_reading_it_all(client):
    def chunks():
        for _ in range(100):
            yield b" " * 10_000  # 1 MB in all, no Content-Length

    r = client.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "bytes" in one_line(r)


def test_photos_are_served_by_number_only(client):
    r = client.get("/photos/0")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(r.content)).size) <= 192
    assert client.get("/photos/4", params={"catalogue": "chairs"}).status_code == 200
    for bad in ("/photos/8", "/photos/-1", "/photos/5?catalogue=chairs"):
        assert client.get(bad).status_code == 404 and one_line(client.get(bad))
    assert client.get("/photos/abc").status_code == 422 and one_line(client.get("/photos/abc"))
    assert client.get("/photos/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert client.get("/photos/0", params={"catalogue": "../x"}).status_code == 400


def test_concurrent_searches_share_the_model_safely(client):
    def one(i: int) -> tuple[int, list[int]]:
        r = client.post("/search", json={**STROKES, "k": 3, "catalogue": ["shoes", "chairs"][i % 2]})
        return r.status_code, [h["id"] for h in r.json()["results"]]

    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(one, range(32)))
    assert all(code == 200 for code, _ in out)
    assert len({tuple(ids) for code, ids in out[::2]}) == 1  # the same sketch ranks alike under load


@pytest.mark.slow
def test_the_server_stops_cleanly_on_sigterm_and_sigint(data, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in load_set("chairs-v1", "test", data).photos[:3]:
        (photos / p.name).write_bytes(p.read_bytes())
    for sig in (signal.SIGTERM, signal.SIGINT):
        port = free_port()
        proc = start_server(["--index", str(photos), "--model", "mobilenet_v2"], port, threads=1)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in out, out
        assert "Shutting down" in out or "Finished server process" in out


def test_serve_refuses_what_it_cannot_serve(tmp_path, capsys):
    from sketchdown import cli

    assert cli.main(["serve", "--index", str(tmp_path / "none.idx")]) == 2
    assert "no such index file" in capsys.readouterr().err
    assert cli.main(["serve", "--index", str(tmp_path)]) == 2
    assert "give a model" in capsys.readouterr().err
