"""The results tables every benchmark writes: ``results/<dataset>.json`` rows, their Markdown, the README block.

Schema (one row per model and canvas): name, backbone, canvas (int or "selector"), params_m, gflops, cpu_ms,
acc1, acc5, acc10 (percent, mean over seeds), acc1_std, seeds, command. Several benchmarks own different rows of
the same file, so writing replaces only the named rows and keeps the others.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .evaluate import write_json

COLUMNS = ("name", "backbone", "canvas", "params_m", "gflops", "cpu_ms", "acc1", "acc5", "acc10", "acc1_std",
           "seeds", "command")
HEADLINE = ("teacher", "direct", "sketchynet-v1", "sketchynet-v2")


def read_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    return json.loads(path.read_text())["rows"] if path.is_file() else []


def update_rows(path: str | Path, rows: list[dict], **meta) -> list[dict]:
    """Replace the rows with the same (name, canvas) as ``rows`` (others stay); headline rows first."""
    keys = {(r["name"], str(r["canvas"])) for r in rows}
    kept = [r for r in read_rows(path) if (r["name"], str(r["canvas"])) not in keys]
    merged = kept + rows

    def order(r: dict) -> tuple:
        head = HEADLINE.index(r["name"]) if r["name"] in HEADLINE else len(HEADLINE)
        return head, r["name"], -1 if r["canvas"] == "selector" else -int(r["canvas"])

    merged.sort(key=order)
    old = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
    write_json({**old, **meta, "rows": merged}, path)
    return merged


def _fmt(v, digits: int = 2) -> str:
    return "" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(rows: list[dict]) -> str:
    """The table the README shows; acc@1 as mean ± std when there are several seeds."""
    lines = ["| model | backbone | canvas | params (M) | GFLOPs | CPU ms/sketch | acc@1 | acc@5 | acc@10 | seeds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        acc1 = _fmt(r["acc1"]) + (f" ± {r['acc1_std']:.2f}" if r.get("seeds", 1) > 1 and r.get("acc1_std") is not None
                                  else "")
        lines.append(f"| {r['name']} | {r['backbone']} | {r['canvas']} | {_fmt(r['params_m'])} | "
                     f"{_fmt(r['gflops'], 3)} | {_fmt(r['cpu_ms'])} | {acc1} | {_fmt(r['acc5'])} | "
                     f"{_fmt(r['acc10'])} | {r.get('seeds', '')} |")
    starts = sorted({(r["backbone"], r["init_weights"]) for r in rows
                     if r.get("init_weights") and not str(r["init_weights"]).startswith("imagenet")})
    if starts:
        lines.append("\nStarting weights other than ImageNet: " + "; ".join(f"{b}: {w}" for b, w in starts) + ".")
    return "\n".join(lines)


def replace_block(path: str | Path, key: str, text: str) -> bool:
    """Put ``text`` between ``<!-- key:start -->`` and ``<!-- key:end -->`` in ``path``; False if no markers."""
    path = Path(path)
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    content = path.read_text() if path.is_file() else ""
    if start not in content or end not in content:
        return False
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    path.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", content))
    return True
