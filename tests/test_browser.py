"""The draw-and-search page in a real headless Chromium (Debian's package, driven by Playwright): a real Shoe-V1
sketch, traced into strokes, is drawn with the mouse; live results arrive while drawing and the true photo is in
the top 10 with a shipped model; undo, clear and upload work; the API page renders; nothing loads from anywhere
but the server; screenshots at desktop and phone widths go to docs/screenshots/ for the README."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sketchdown.data import io
from sketchdown.data.datasets import load_set
from sketchdown.data.strokes import trace

from sketchdown.serve.process import free_port, start_server

MODEL = "sketchynet-v1-shoes"  # the shipped Shoe-V1 retriever the README serves
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: "
                                                   "apt-get install chromium; setup.sh does it where it can)")]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


@pytest.fixture(scope="module")
def server(data):
    import httpx

    port = free_port()
    proc = start_server(["--index", str(data / "qmul-v1" / "shoes" / "test" / "images"), "--model", MODEL,
                         "--name", "shoes-v1-test"], port, threads=1)
    url = f"http://127.0.0.1:{port}"
    # a test sketch whose traced strokes the model ranks near the top (the page must then keep it in the top 10)
    for path in load_set("shoes-v1", "test", data).sketches[:30]:
        strokes = trace(io.read_sketch(path))
        doc = {"width": strokes.width, "height": strokes.height, "strokes": [s.tolist() for s in strokes.strokes]}
        names = [h["name"] for h in httpx.post(f"{url}/search", json=doc, timeout=60).json()["results"]]
        if f"{Path(path).stem}.jpg" in names[:3]:
            break
    else:
        raise AssertionError("no traced test sketch ranks its photo in the top 3")
    yield {"url": url, "sketch": Path(path), "strokes": strokes}
    proc.terminate()
    proc.wait(timeout=30)


def draw(page, strokes) -> None:
    """Replay the strokes (drawn on a strokes.width x strokes.height frame) on the canvas with the mouse."""
    box = page.locator("#pad").bounding_box()
    scale = min(box["width"] / strokes.width, box["height"] / strokes.height)
    for stroke in strokes.strokes:
        points = [(box["x"] + x * scale, box["y"] + y * scale) for x, y in stroke.tolist()]
        page.mouse.move(*points[0])
        page.mouse.down()
        for p in points[1:]:
            page.mouse.move(*p)
        page.mouse.up()


def settle(page) -> None:
    """Wait for the debounced search after the last stroke to come back."""
    page.wait_for_timeout(400)
    page.wait_for_function("document.body.dataset.state === 'done'", timeout=60_000)


def names(page) -> list[str]:
    return page.eval_on_selector_all("#results .hit", "els => els.map(e => e.dataset.name)")


def test_draw_search_undo_clear_upload_in_chromium(server):
    from playwright.sync_api import sync_playwright

    true_photo = f"{server['sketch'].stem}.jpg"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors, elsewhere = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: elsewhere.append(r.url)
                if not r.url.startswith((server["url"], "data:")) else None)
        page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}")
                if not r.url.endswith("/search") else None)  # a cancelled stale search is expected
        page.goto(server["url"])
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator("#catalogue option").count() == 1
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll

        draw(page, server["strokes"])
        settle(page)
        assert int(page.get_attribute("body", "data-searches")) >= 2  # results came while drawing, not only at the end
        top = names(page)
        assert len(top) == 10 and true_photo in top, (true_photo, top)
        assert "canvas" in page.inner_text("#cost") and "GFLOPs" in page.inner_text("#cost")
        page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete && "
                               "i.naturalWidth > 0)")
        page.screenshot(path=str(SHOTS / "serve-desktop.png"))

        before = int(page.get_attribute("body", "data-searches"))
        page.click("#undo")
        page.wait_for_function(f"Number(document.body.dataset.searches) > {before}")
        settle(page)
        assert len(names(page)) == 10

        page.click("#clear")
        assert page.locator("#results .hit").count() == 0 and page.get_attribute("body", "data-state") == "idle"

        page.set_input_files("#file", str(server["sketch"]))
        settle(page)
        assert true_photo in names(page)

        page.set_input_files("#file", {"name": "broken.png", "mimeType": "image/png", "buffer": b"not a png"})
        page.wait_for_function("document.body.dataset.state === 'error'")
        assert "broken.png" in page.inner_text("#status")
        assert not errors, errors

        page.goto(f"{server['url']}/docs")  # the OpenAPI page, its assets served locally
        page.wait_for_selector("text=/search", timeout=30_000)
        assert page.locator(".opblock").count() >= 4
        assert not elsewhere, f"the page loaded from elsewhere: {elsewhere}"

        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, has_touch=True)
        phone.goto(server["url"])
        phone.wait_for_selector("body[data-ready='1']")
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        draw(phone, server["strokes"])
        settle(phone)
        assert true_photo in names(phone)
        phone.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete)")
        phone.screenshot(path=str(SHOTS / "serve-phone.png"), full_page=True)
        browser.close()
