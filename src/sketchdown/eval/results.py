"""The results tables every benchmark writes: ``results/<dataset>.json`` rows and their Markdown.

Schema (one row per model and canvas): name, backbone, canvas (int or "selector"), params_m, gflops, cpu_ms,
acc1, acc5, acc10 (percent, mean over seeds), acc1_std, seeds (a count, or the list of seeds), command; optional:
branches (shared/untied), precision (what training ran in), train_minutes, init_weights, cpu_busy (the latency
was measured on a busy machine). Several benchmarks own different rows of the same file, so writing replaces only
the named rows and keeps the others. Rendering into README.md is the benchmark scripts' job
(``benchmarks/tables.py``), never the library's.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..files import write_json

COLUMNS = ("name", "backbone", "canvas", "params_m", "gflops", "cpu_ms", "acc1", "acc5", "acc10", "acc1_std",
           "seeds", "command")
HEADLINE = ("teacher", "direct", "direct-multi", "sketchynet-v1", "sketchynet-v2")


def read_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    return json.loads(path.read_text())["rows"] if path.is_file() else []


def seed_count(row: dict) -> int:
    """``seeds`` is a count (training rows) or the list of seeds (selector rows; empty for oracle rows)."""
    seeds = row.get("seeds", 1)
    return len(seeds) if isinstance(seeds, list) else int(seeds or 0)


def _order(r: dict) -> tuple:
    head = HEADLINE.index(r["name"]) if r["name"] in HEADLINE else len(HEADLINE)
    return head, r["name"], -1 if r["canvas"] == "selector" else -int(r["canvas"])


def update_rows(path: str | Path, rows: list[dict], **meta) -> list[dict]:
    """Replace the rows with the same (name, canvas) as ``rows`` (others stay); headline rows first."""
    keys = {(r["name"], str(r["canvas"])) for r in rows}
    merged = sorted([r for r in read_rows(path) if (r["name"], str(r["canvas"])) not in keys] + rows, key=_order)
    old = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
    write_json({**old, **meta, "rows": merged}, path)
    return merged


def _fmt(v, digits: int = 2) -> str:
    return "" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(rows: list[dict]) -> str:
    """The table the README shows; acc@1 as mean ± std when there are several seeds; a latency measured on a busy
    machine is marked with an asterisk."""
    lines = ["| model | backbone | towers | canvas | params (M) | GFLOPs | CPU ms/sketch | acc@1 | acc@5 | acc@10 | "
             "seeds | trained in | train min |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in sorted(rows, key=_order):
        n = seed_count(r)
        acc1 = _fmt(r["acc1"]) + (f" ± {r['acc1_std']:.2f}" if n > 1 and r.get("acc1_std") is not None else "")
        ms = _fmt(r["cpu_ms"]) + ("*" if r.get("cpu_busy") else "")
        lines.append(f"| {r['name']} | {r['backbone']} | {r.get('branches', '')} | {r['canvas']} | "
                     f"{_fmt(r['params_m'])} | {_fmt(r['gflops'], 3)} | {ms} | {acc1} | {_fmt(r['acc5'])} | "
                     f"{_fmt(r['acc10'])} | {n or ''} | {r.get('precision', '')} | {_fmt(r.get('train_minutes'), 1)} |")
    notes = []
    if any(r.get("cpu_busy") for r in rows):
        notes.append("\\* latency measured while another process was using the cores (flagged, not trusted).")
    starts = sorted({(r["backbone"], r["init_weights"]) for r in rows
                     if r.get("init_weights") and not str(r["init_weights"]).startswith(("imagenet", "ensemble"))})
    if starts:
        notes.append("Starting weights other than ImageNet: " + "; ".join(f"{b}: {w}" for b, w in starts) + ".")
    return "\n".join(lines + ([""] + notes if notes else []))
