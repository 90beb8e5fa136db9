"""Load test of ``sketchdown serve``: concurrent clients searching the shared Shoe-V1 catalogue over HTTP.

Starts the real server (uvicorn, its own process) on a free local port with a shipped model over the 115 Shoe-V1
test photos, then --clients threads each send --requests searches (the test sketches traced into strokes and
posted as stroke JSON, as the page sends them, cycled), and reports errors, throughput and latency percentiles as
the clients saw them (and the server's own search time). The server is stopped with SIGTERM and must exit
cleanly. Once per --engines engine (the server's ``--engine``), one after the other. Writes
results/serve-load.json and .md, and the README block ``serve-load`` (``tables.render``).

    python benchmarks/serve_load.py --clients 8 --requests 100 --engines torch onnx
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from sketchdown.data import io
from sketchdown.data.datasets import data_root, load_set
from sketchdown.data.strokes import trace
from sketchdown.serve.process import free_port, start_server
from tables import publish, serve_load_table


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sketchynet-v1-shoes", help="shipped model (or artifact) the server uses")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=100, help="searches per client")
    p.add_argument("--engines", nargs="+", choices=("torch", "onnx"), default=["torch", "onnx"])
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    return p


def load_test(bodies: list[str], photos: Path, engine: str, args: argparse.Namespace) -> dict:
    """One server on ``engine`` over ``photos``, --clients threads of --requests searches each, then SIGTERM."""
    port = free_port()
    proc = start_server(["--index", str(photos), "--model", args.model, "--name", "shoes-v1-test", "--engine", engine],
                        port)
    url = f"http://127.0.0.1:{port}/search"
    latency: list[float] = []
    server_ms: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(c: int) -> None:
        with httpx.Client(timeout=60) as http:
            for i in range(args.requests):
                body = bodies[(c * args.requests + i) % len(bodies)]
                t0 = time.perf_counter()
                try:
                    r = http.post(url, content=body, headers={"content-type": "application/json"})
                    code = r.status_code
                    ms = r.json().get("ms") if code == 200 else None
                except httpx.HTTPError:
                    code, ms = -1, None
                with lock:
                    latency.append((time.perf_counter() - t0) * 1e3)
                    statuses[code] = statuses.get(code, 0) + 1
                    if ms is not None:
                        server_ms.append(ms)

    httpx.post(url, content=bodies[0], headers={"content-type": "application/json"}, timeout=60)  # warm-up
    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    total = args.clients * args.requests
    lat = np.array(latency)
    return {"engine": engine, "errors": total - statuses.get(200, 0), "statuses": statuses, "wall_s": wall,
            "throughput_rps": total / wall,
            "latency_ms": {p: float(np.percentile(lat, q)) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))},
            "server_search_ms": {p: float(np.percentile(server_ms, q)) for p, q in (("p50", 50), ("p95", 95))},
            "clean_shutdown": proc.returncode == 0 and "Traceback" not in out}


def main(args: argparse.Namespace) -> dict:
    root = args.data or data_root()
    test = load_set("shoes-v1", "test", root)
    bodies = []
    for path in test.sketches:
        s = trace(io.read_sketch(path))
        bodies.append(json.dumps({"width": s.width, "height": s.height, "k": args.k,
                                  "strokes": [x.round(1).tolist() for x in s.strokes]}))
    rows = [load_test(bodies, root / "qmul-v1" / "shoes" / "test" / "images", engine, args) for engine in args.engines]
    result = {"rows": rows,
              "meta": {"model": args.model, "photos": len(test.photos), "sketches": len(bodies), "k": args.k,
                       "clients": args.clients, "requests": args.clients * args.requests,
                       "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "command": f"python {' '.join(sys.argv)}"}}
    return publish(result, "serve-load", serve_load_table, args.results, args.readme)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
