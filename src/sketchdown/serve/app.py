"""The search server: a JSON API and the draw-and-search page over one or more catalogues (ASGI, FastAPI).

Every catalogue is an ``Index`` with its retriever attached, loaded once and shared read-only by all requests;
a lock per catalogue runs one search at a time on it (the model's threads already use the cores, and the torch
engine switches memory format on first use). Bad input never reaches a traceback: a body over ``MAX_BODY`` bytes
is 413 before it is read in full, a sketch over the point or stroke limits is 413, malformed JSON, an empty sketch
or an undecodable file is 400, and each answer carries one line in ``detail``. Photos are served by their number
in the index only, so no request names a path the server opens.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

from ..data.io import SKETCH_SUFFIXES, read_sketch, read_stroke_json
from ..errors import InputError, SketchdownError
from ..limits import LimitError
from ..retrieval.index import Index

MAX_BODY = 2_000_000  # bytes of one request: a drawn sketch is a few kB, a sketch image well under this
MAX_POINTS, MAX_STROKES = 20_000, 2_000  # of one sketch: a drawing in the page has hundreds of points
MAX_K = 50
THUMB = 192  # thumbnail side in pixels
STATIC = Path(__file__).with_name("static")
log = logging.getLogger("sketchdown.serve")


@dataclass
class Catalogue:
    """One searchable index and the lock that serialises searches on it."""

    name: str
    index: Index
    lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> dict:
        enc = self.index.encoder
        selector = enc.selector
        return {"name": self.name, "photos": len(self.index), "model": enc.info.get("name") or enc.source,
                "dataset": enc.info.get("dataset"),
                "selector": None if selector is None else getattr(selector.config, "kind", type(selector).__name__),
                "canvas": enc.canvas, "engine": enc.engine.name}


class Hit(BaseModel):
    rank: int
    id: int
    name: str
    score: float


class SearchResult(BaseModel):
    catalogue: str
    results: list[Hit]
    canvas: int
    canvases: list[int]
    gflops: float | None
    ms: float
    confidence: float | None
    in_domain: bool | None


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413, from its Content-Length when it has
    one, else as soon as the streamed body passes the limit (nothing more is read)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(send, self.limit)
        seen, started = 0, False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body over {limit:,} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:500]


def _upload_sketch(data: bytes, filename: str):
    """A sketch from an uploaded file's bytes, read by the same hardened readers as files on disk. Only the
    upload's suffix is taken from the request (checked against the known ones); the file is the server's own
    temporary copy, and errors name the upload, not that copy."""
    suffix = Path(filename or "").suffix.lower()
    if suffix not in SKETCH_SUFFIXES:
        raise InputError(filename or "upload", f"unknown sketch file type {suffix or '(no suffix)'!r}; expected "
                                               f"one of {', '.join(sorted(SKETCH_SUFFIXES))}")
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            return read_sketch(tmp.name)
        except InputError as err:
            raise InputError(filename, str(err).replace(tmp.name, "").lstrip(": ")) from None


def create_app(catalogues: list[Catalogue], max_body: int = MAX_BODY) -> FastAPI:
    """The ASGI app over ``catalogues`` (the first is the default)."""
    if not catalogues:
        raise SketchdownError("the server needs at least one catalogue")
    by_name = {c.name: c for c in catalogues}
    if len(by_name) != len(catalogues):
        raise SketchdownError("two catalogues have the same name")
    app = FastAPI(title="sketchdown", version="1", summary="Search product photos with a sketch",
                  description="Fine-grained sketch-based image retrieval. Draw in the page at `/`, or POST a "
                              "sketch to `/search`.", docs_url=None, redoc_url=None)
    # The API page is Swagger UI from the swagger-ui-bundle wheel, served here: nothing loads from a CDN. That
    # Swagger UI (4.15) reads OpenAPI 3.0 documents.
    app.openapi_version = "3.0.3"
    app.add_middleware(BodyLimit, limit=max_body)

    @app.exception_handler(LimitError)
    async def too_big(request: Request, err: LimitError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(err)}, status_code=413)

    @app.exception_handler(InputError)
    async def bad_input(request: Request, err: InputError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(err)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse({"detail": _one_line(f"{where}: {first.get('msg', 'invalid request')}")}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:
        log.exception("error serving %s", request.url.path)
        return JSONResponse({"detail": f"internal error ({type(err).__name__})"}, status_code=500)

    def catalogue(name: object) -> Catalogue:
        if name is None:
            return catalogues[0]
        if not isinstance(name, str) or name not in by_name:
            raise InputError(name, f"no such catalogue; served: {', '.join(by_name)}")
        return by_name[name]

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health", summary="Liveness: the server is up and its catalogues are loaded")
    def health() -> dict:
        return {"status": "ok", "catalogues": len(catalogues)}

    @app.get("/catalogues", summary="The catalogues served, with their model and size")
    def list_catalogues() -> list[dict]:
        return [c.describe() for c in catalogues]

    @app.post("/search", response_model=SearchResult, summary="Rank a catalogue's photos for a sketch",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"type": "object", "required": ["strokes"], "properties": {
                      "strokes": {"type": "array", "description": "strokes, each a list of [x, y] points "
                                                                  "(or the Quick, Draw! form)"},
                      "width": {"type": "number", "description": "drawing area width (default 256)"},
                      "height": {"type": "number", "description": "drawing area height (default 256)"},
                      "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10},
                      "catalogue": {"type": "string"}}}},
                  "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                      "file": {"type": "string", "format": "binary",
                               "description": "a PNG/JPG image, SVG or stroke JSON file"},
                      "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10},
                      "catalogue": {"type": "string"}}}}}}})
    async def search(request: Request) -> SearchResult:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise InputError("upload", "the form needs a 'file' field with the sketch")
            sketch = _upload_sketch(await upload.read(), upload.filename or "upload")
            fields: dict[str, Any] = {k: form.get(k) for k in ("k", "catalogue")}
        elif kind in ("application/json", ""):
            try:
                doc = json.loads(await request.body())
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
                raise InputError("request", f"not valid JSON ({err})") from None
            if not isinstance(doc, dict) or "strokes" not in doc:
                raise InputError("request", 'expected a JSON object with "strokes" (and optionally "width", '
                                            '"height", "k", "catalogue")')
            fields = {k: doc.pop(k, None) for k in ("k", "catalogue")}
            sketch = read_stroke_json(doc)
        else:
            raise InputError("request", f"content type {kind!r}: send application/json or multipart/form-data")
        if sketch.is_vector and (sketch.num_points > MAX_POINTS or len(sketch.strokes) > MAX_STROKES):
            raise LimitError("request", f"a sketch of {sketch.num_points:,} points in {len(sketch.strokes):,} "
                                        f"strokes; this server takes at most {MAX_POINTS:,} points and "
                                        f"{MAX_STROKES:,} strokes")
        k = _k(fields.get("k"))
        cat = catalogue(fields.get("catalogue"))
        return await _run_search(cat, sketch, k)

    async def _run_search(cat: Catalogue, sketch, k: int) -> SearchResult:
        from starlette.concurrency import run_in_threadpool

        def work() -> SearchResult:
            with cat.lock:
                t0 = time.perf_counter()
                hits = cat.index.search(sketch, k)
                ms = (time.perf_counter() - t0) * 1e3
            return SearchResult(catalogue=cat.name, results=[
                Hit(rank=r, id=i, name=cat.index.paths[i], score=round(h.score, 5))
                for r, (i, h) in enumerate(zip(hits.ids, hits), 1)], canvas=hits.canvas, canvases=list(hits.canvases),
                gflops=hits.gflops, ms=round(ms, 2), confidence=hits.confidence, in_domain=hits.in_domain)

        return await run_in_threadpool(work)

    @app.get("/photos/{i}", summary="A thumbnail of the indexed photo number i (JPEG)",
             responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no such photo"}})
    def photo(i: int, catalogue_name: str | None = Query(None, alias="catalogue")) -> Response:
        cat = catalogue(catalogue_name)
        if not 0 <= i < len(cat.index):
            return JSONResponse({"detail": f"no photo {i}; the catalogue has {len(cat.index)}"}, status_code=404)
        try:
            data = _thumbnail(str(cat.index.photo(i)))
        except OSError:
            return JSONResponse({"detail": f"photo {i} cannot be read"}, status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/docs", include_in_schema=False)
    def api_page() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="sketchdown API",
                                   swagger_js_url="/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/swagger/swagger-ui.css", swagger_favicon_url="data:,")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")
    return app


def _k(value: object) -> int:
    if value is None or value == "":
        return 10
    if isinstance(value, bool):
        raise InputError("k", f"must be a whole number from 1 to {MAX_K}, got {value!r}")
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise InputError("k", f"must be a whole number from 1 to {MAX_K}, got {value!r}") from None
    if not 1 <= k <= MAX_K or isinstance(value, float) and value != k:
        raise InputError("k", f"must be a whole number from 1 to {MAX_K}, got {value!r}")
    return k


@lru_cache(maxsize=4096)
def _thumbnail(path: str) -> bytes:
    with Image.open(path) as img:
        img = img.convert("RGB")
        img.thumbnail((THUMB, THUMB))
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=85)
    return out.getvalue()
