"""``sketchdown serve`` in a child process on a free local port, for scripts, load tests and tests that need the
real server (uvicorn, its signals) rather than the app in-process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from ..errors import SketchdownError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: list[str], port: int, timeout: float = 300, threads: int | None = None) -> subprocess.Popen:
    """Start ``sketchdown serve ARGS --port PORT`` and return it once ``/health`` answers (its output is piped;
    an exit or a timeout before that is an error carrying what it printed)."""
    import httpx

    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    proc = subprocess.Popen([sys.executable, "-m", "sketchdown", "serve", *args, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SketchdownError(f"the server exited: {proc.stdout.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SketchdownError(f"the server did not answer /health within {timeout:.0f} s")
