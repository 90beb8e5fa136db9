"""Numeric precision and memory format, chosen per backbone and per use from a committed measurement table.

On the reference CPU (a Xeon whose bf16 convolutions run on oneDNN's avx512_core_bf16 kernels) bf16 autocast makes batched VGG-16 and MobileNetV2 steps 2-5x faster, but a
batch-1 MobileNetV2 query 2-3x slower (depthwise convolutions), so no single setting is right: ``resolve`` turns
the user's ``auto`` / ``fp32`` / ``bf16`` and ``auto`` / ``contiguous`` / ``channels_last`` into a ``Precision``
for one (backbone, use). ``auto`` reads ``precision_table.json`` beside this file, which
``benchmarks/throughput.py`` writes from its measurements; a backbone it has not measured gets the fallback below.

bf16 is autocast: weights, optimiser state, losses and metrics stay fp32; only matmuls and convolutions run in bf16.
"""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
USES = ("train", "batch", "query")  # a training step; batched inference (photos, evaluation); one sketch
TABLE = Path(__file__).with_name("precision_table.json")


@dataclass(frozen=True)
class Precision:
    """How one forward (and backward) pass runs: bf16 autocast or fp32, channels_last or contiguous tensors."""

    dtype: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.dtype!r}")

    @property
    def name(self) -> str:
        return f"{self.dtype}{'+channels_last' if self.channels_last else ''}"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context a forward pass runs in (a no-op for fp32)."""
        if self.dtype == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, module: nn.Module) -> nn.Module:
        """Put ``module``'s 4-D weights in this memory format (in place; values are unchanged)."""
        return module.to(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16), where bf16 autocast can pay; without
    it bf16 is emulated and slower. Linux only (``/proc/cpuinfo``), False elsewhere."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(TABLE.read_text()).get("auto", {}) if TABLE.is_file() else {}


def fallback(use: str) -> Precision:
    """For a backbone the table has not measured: bf16 + channels_last for batches where bf16 is native, fp32
    for batch-1 queries (where bf16 lost on every backbone measured so far)."""
    if use == "query":
        return Precision("fp32", False)
    return Precision("bf16" if native_bf16() else "fp32", True)


def resolve(precision: str = "auto", memory_format: str = "auto", backbone: str = "", use: str = "batch") -> Precision:
    """The setting for ``backbone`` in ``use``; explicit values win. An ensemble (``a+b``) or an untied model with
    two backbones (``sketch/photo``) takes its first name's entry."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
    if use not in USES:
        raise ValueError(f"use must be one of {', '.join(USES)}, got {use!r}")
    entry = _table().get(backbone.split("+")[0].split("/")[0], {}).get(use)
    auto = Precision(entry["precision"], entry["channels_last"]) if entry else fallback(use)
    if auto.dtype == "bf16" and not native_bf16():
        auto = Precision("fp32", auto.channels_last)  # the table was measured on a CPU with native bf16
    dtype = auto.dtype if precision == "auto" else precision
    channels_last = auto.channels_last if memory_format == "auto" else memory_format == "channels_last"
    return Precision(dtype, channels_last)


def evaluation(precision: str = "auto", memory_format: str = "auto", backbone: str = "") -> Precision:
    """What a run's validation and test are measured at: the dtype its training step resolves to (weights trained
    in fp32 are measured in fp32, also where bf16 batches would be faster) and the batched memory format. Measured:
    a MobileNetV2 student trained in fp32 scored 36.52 acc@1 at 256 on the Shoe-V1 test in bf16 and 39.13 in fp32
    (`v1b-trace-c128` seed 0); measured in bf16, a run on a CPU with native bf16 is judged, and its best epoch
    chosen, at a precision it did not train in, and runs on CPUs with and without bf16 do not compare."""
    dtype = resolve(precision, memory_format, backbone, "train").dtype
    return Precision(dtype, resolve(precision, memory_format, backbone, "batch").channels_last)
