"""Shared fixtures: the shipped data folder, and no network for model hubs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from sketchdown.data.datasets import data_root  # noqa: E402

DATA = data_root()


@pytest.fixture(scope="session")
def data() -> Path:
    if not (DATA / "qmul-v1" / "pairs.csv").is_file():
        pytest.skip(f"shared data not found at {DATA} (set SKETCHDOWN_DATA)")
    return DATA


@pytest.fixture(scope="session")
def chair_pickle(data: Path) -> Path:
    return data / "chair-v2-strokes" / "ChairV2_Coordinate"


@pytest.fixture
def one_thread():
    """Tiny CPU steps are fastest (and never oversubscribed) on one torch thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
