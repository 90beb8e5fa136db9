"""Speed of every registered backbone in every precision and memory format, for each use, in one run.

Uses: a training step (forward + backward + AdamW on a batch; images/s), batched inference (photo indexing,
evaluation; images/s) and a batch-1 query (ms). Settings: fp32 / bf16 autocast x contiguous / channels_last, at
canvases 32/64/128/256. Training and batched figures are the best of a few repeats (the least disturbed one); the
query figure is the median with its spread, flagged when the machine was busy. Writes results/throughput.json and
.md, the README block ``throughput``, and the package's ``precision_table.json``: per backbone and use, the fastest
setting (at 256 for training and batches, over all canvases for a query), which ``--precision auto`` then uses.

    python benchmarks/throughput.py                       # every backbone (about 15 minutes on 2 cores)
    python benchmarks/throughput.py --backbones mobilenet_v2 vgg16 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from sketchdown.files import write_json
from sketchdown.eval.flops import measure_latency
from sketchdown.models.precision import TABLE, Precision
from sketchdown.models.registry import create_backbone, list_backbones
from tables import replace_block

SETTINGS = (Precision("fp32", False), Precision("fp32", True), Precision("bf16", False), Precision("bf16", True))
CANVASES = (32, 64, 128, 256)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=None, help="default: every registered backbone")
    p.add_argument("--canvases", type=int, nargs="+", default=list(CANVASES))
    p.add_argument("--train-batch", type=int, default=16, help="the training runs' batch (default 16)")
    p.add_argument("--batch", type=int, default=16, help="batch of the batched-inference figure")
    p.add_argument("--repeats", type=int, default=3, help="timed training/batched steps (best is kept)")
    p.add_argument("--query-repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--table", type=Path, default=TABLE, help="where the auto-precision table goes")
    p.add_argument("--render-only", action="store_true", help="measure nothing: choose and render again from "
                                                              "results/throughput.json")
    return p


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks and caches its kernels on the first call of a shape
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def train_rate(net: torch.nn.Module, p: Precision, canvas: int, batch: int, repeats: int) -> float:
    """Images/s of forward + backward + AdamW step (loss on the pooled features, as an embedding step has)."""
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-6)
    x = p.inputs(torch.rand(batch, 3, canvas, canvas))

    def step() -> None:
        with p.autocast():
            loss = net(x).float().mean(dim=(2, 3)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / best_seconds(step, repeats)


def batch_rate(net: torch.nn.Module, p: Precision, canvas: int, batch: int, repeats: int) -> float:
    net.eval()
    x = p.inputs(torch.rand(batch, 3, canvas, canvas))

    @torch.inference_mode()
    def run() -> None:
        with p.autocast():
            net(x)

    return batch / best_seconds(run, repeats)


def bf16_conv_kernel() -> str:
    """The oneDNN implementation a bf16 convolution runs on here (``ONEDNN_VERBOSE`` names its ISA, e.g.
    ``brg_conv_fwd:avx512_core_amx`` on AMX, ``...:avx512_core_bf16`` on AVX512-BF16)."""
    code = ("import torch; c = torch.nn.Conv2d(64, 64, 3).to(memory_format=torch.channels_last); "
            "x = torch.rand(8, 64, 56, 56).contiguous(memory_format=torch.channels_last)\n"
            "with torch.autocast('cpu', dtype=torch.bfloat16): c(x)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, ONEDNN_VERBOSE="1"), timeout=120)
    for line in (out.stdout + out.stderr).splitlines():
        parts = line.split(",")
        if len(parts) > 6 and parts[3] == "exec" and parts[5] == "convolution":
            return parts[6]
    return "unknown"


# The canvases each use is judged at: a training step and batched inference spend most of their time on 256 px
# photos (and the 256 sketch canvas); a query may be drawn at any canvas, so it is judged over all of them.
JUDGED_AT = {"train": (256,), "batch": (256,), "query": None}
KEYS = {"train": "train_img_s", "batch": "batch_img_s", "query": "query_ms"}


def choose(rows: list[dict]) -> dict:
    """Per backbone and use, the setting with the best speed-up over fp32 (geometric mean over the judged
    canvases)."""
    return {b: {use: _as_entry(max(SETTINGS, key=lambda s: _ratio(rows, b, s.name, use))) for use in KEYS}
            for b in sorted({r["backbone"] for r in rows})}


def _as_entry(p: Precision) -> dict:
    return {"precision": p.dtype, "channels_last": p.channels_last}


def _ratio(rows: list[dict], backbone: str, setting: str, use: str) -> float:
    """Geometric mean, over the canvases ``use`` is judged at, of this setting's speed-up over fp32 contiguous."""
    key, judged = KEYS[use], JUDGED_AT[use]
    logs = []
    for r in rows:
        if r["backbone"] == backbone and r["setting"] == setting and (judged is None or r["canvas"] in judged):
            base = next(b for b in rows if b["backbone"] == backbone and b["canvas"] == r["canvas"]
                        and b["setting"] == "fp32")
            logs.append(math.log(base[key] / r[key] if use == "query" else r[key] / base[key]))
    return math.exp(sum(logs) / len(logs)) if logs else 0.0


def summary(rows: list[dict], auto: dict, meta: dict) -> str:
    """The README's table: per backbone and use, the fp32 figure at 256 and each setting's speed-up."""
    names = [s.name for s in SETTINGS[1:]]
    lines = ["| backbone | use | fp32 at 256 | " + " | ".join(f"{n} x" for n in names) + " | auto |",
             "|---|---|---:|" + "---:|" * len(names) + "---|"]
    for b, uses in auto.items():
        for use, unit in (("train", "img/s"), ("batch", "img/s"), ("query", "ms")):
            at = next(r for r in rows if r["backbone"] == b and r["setting"] == "fp32" and r["canvas"] == 256)
            chosen = uses[use]
            lines.append(f"| {b} | {use} | {at[KEYS[use]]:.1f} {unit} | "
                         + " | ".join(f"{_ratio(rows, b, n, use):.2f}" for n in names)
                         + f" | {chosen['precision']}{'+channels_last' if chosen['channels_last'] else ''} |")
    lines.append(f"\n`x` = speed-up over fp32 contiguous (below 1: slower): at 256 for train and batched (where "
                 f"their time goes: photos are 256), geometric mean over canvases {meta['canvases']} for a query. "
                 f"Train = forward + backward + AdamW, batch {meta['train_batch']}; batched = inference, batch "
                 f"{meta['batch']}; query = batch 1, median. {meta['cpu']}, {meta['threads']} threads, torch "
                 f"{meta['torch']}, bf16 convolutions run on oneDNN `{meta['bf16_conv_kernel']}`. Per canvas: "
                 f"`results/throughput.md`. Command: `{meta['command']}`")
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    """Every measurement, with its ratio to fp32 contiguous at the same canvas."""
    lines = ["| backbone | canvas | setting | train img/s | x fp32 | batched img/s | x fp32 | query ms (spread) | "
             "x fp32 |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = next(b for b in rows if b["backbone"] == r["backbone"] and b["canvas"] == r["canvas"]
                    and b["setting"] == "fp32")
        flag = "*" if r["query_busy"] else ""
        lines.append(f"| {r['backbone']} | {r['canvas']} | {r['setting']} | {r['train_img_s']:.1f} | "
                     f"{r['train_img_s'] / base['train_img_s']:.2f} | {r['batch_img_s']:.1f} | "
                     f"{r['batch_img_s'] / base['batch_img_s']:.2f} | {r['query_ms']:.2f}{flag} "
                     f"({r['query_spread']:.2f}) | {base['query_ms'] / r['query_ms']:.2f} |")
    lines.append("\nspread = (p90 - p10) / median of the query repeats; \\* = timed while another process used the "
                 "cores (not trusted).")
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> tuple[list[dict], dict]:
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.backbones or list(list_backbones()):
        for p in SETTINGS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # missing pretrained weights: speed does not depend on them
                net = create_backbone(name, "none")
            p.prepare(net)
            for c in args.canvases:
                lat = measure_latency(net, c, repeats=args.query_repeats, warmup=3, precision=p)
                rows.append({"backbone": name, "canvas": c, "setting": p.name,
                             "train_img_s": round(train_rate(net, p, c, args.train_batch, args.repeats), 2),
                             "batch_img_s": round(batch_rate(net, p, c, args.batch, args.repeats), 2),
                             "query_ms": round(lat.median_ms, 3), "query_spread": lat.spread,
                             "query_busy": lat.busy})
                r = rows[-1]
                print(f"{name:<18} {c:>4} {p.name:<20} train {r['train_img_s']:8.1f} img/s  batched "
                      f"{r['batch_img_s']:8.1f} img/s  query {r['query_ms']:8.2f} ms", flush=True)
    meta = {"command": "python " + " ".join(sys.argv), "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "bf16_conv_kernel": bf16_conv_kernel(), "train_batch": args.train_batch, "batch": args.batch,
            "canvases": args.canvases}
    return rows, meta


def main(args: argparse.Namespace) -> None:
    if args.render_only:
        data = json.loads((args.results / "throughput.json").read_text())
        rows, meta = data["rows"], {k: v for k, v in data.items() if k not in ("rows", "auto")}
    else:
        rows, meta = measure(args)
    auto = choose(rows)
    write_json({**meta, "rows": rows, "auto": auto}, args.results / "throughput.json")
    write_json({"measured_by": meta["command"], "cpu": meta["cpu"], "threads": meta["threads"], "auto": auto},
               args.table)
    table = summary(rows, auto, meta)
    (args.results / "throughput.md").write_text(f"# Throughput\n\n{table}\n\n{markdown(rows)}\n")
    replace_block(args.readme, "throughput", table)
    print(table)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
