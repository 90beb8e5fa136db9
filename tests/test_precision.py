"""Precision and memory format: resolution rules, bf16 close to fp32 on a real image, a bf16 step that learns, and
latency that notices a busy machine."""

import json
import subprocess
import sys

import pytest
import torch

from sketchdown.data.datasets import load_photo
from sketchdown.data.transforms import photo_to_tensor
from sketchdown.eval.flops import measure_latency
from sketchdown.models import precision as precision_module
from sketchdown.models.embed import create_model
from sketchdown.models.precision import Precision, evaluation, fallback, resolve
from sketchdown.models.registry import create_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


def test_explicit_settings_win_and_bad_ones_are_refused():
    assert resolve("fp32", "contiguous", "mobilenet_v2", "train") == Precision("fp32", False)
    assert resolve("bf16", "channels_last", "vgg16", "query") == Precision("bf16", True)
    for bad in (dict(precision="fp16"), dict(memory_format="nhwc"), dict(use="serve")):
        with pytest.raises(ValueError):
            resolve(**bad)


def test_auto_reads_the_measured_table(tmp_path, monkeypatch):
    table = tmp_path / "precision_table.json"
    table.write_text(json.dumps({"auto": {"vgg16": {"train": {"precision": "bf16", "channels_last": True},
                                                    "batch": {"precision": "bf16", "channels_last": False},
                                                    "query": {"precision": "fp32", "channels_last": True}}}}))
    monkeypatch.setattr(precision_module, "TABLE", table)
    monkeypatch.setattr(precision_module, "native_bf16", lambda: True)
    precision_module._table.cache_clear()
    try:
        assert resolve(backbone="vgg16", use="query") == Precision("fp32", True)
        assert resolve(backbone="vgg16+vgg16", use="batch") == Precision("bf16", False)  # ensembles: first member
        assert resolve("fp32", backbone="vgg16", use="train") == Precision("fp32", True)  # only dtype overridden
        assert resolve(backbone="unmeasured", use="train") == fallback("train") == Precision("bf16", True)
        monkeypatch.setattr(precision_module, "native_bf16", lambda: False)  # a CPU without native bf16
        assert resolve(backbone="vgg16", use="train") == Precision("fp32", True)
    finally:
        precision_module._table.cache_clear()


def test_runs_are_measured_in_the_dtype_they_trained_in(tmp_path, monkeypatch):
    table = tmp_path / "precision_table.json"  # as measured for mobilenet_v2: fp32 steps, bf16 batches
    table.write_text(json.dumps({"auto": {"mobilenet_v2": {"train": {"precision": "fp32", "channels_last": True},
                                                           "batch": {"precision": "bf16", "channels_last": True}}}}))
    monkeypatch.setattr(precision_module, "TABLE", table)
    monkeypatch.setattr(precision_module, "native_bf16", lambda: True)
    precision_module._table.cache_clear()
    try:
        assert resolve(backbone="mobilenet_v2", use="batch") == Precision("bf16", True)  # fast for a catalogue
        assert evaluation(backbone="mobilenet_v2") == Precision("fp32", True)  # but it trained in fp32
        assert evaluation("bf16", backbone="mobilenet_v2") == Precision("bf16", True)  # a bf16 run: in bf16
        assert evaluation("auto", "contiguous", "mobilenet_v2") == Precision("fp32", False)
    finally:
        precision_module._table.cache_clear()


def test_bf16_forward_stays_close_to_fp32_on_a_real_image(data):
    photo = photo_to_tensor(load_photo(data / "qmul-v1" / "chairs" / "test" / "images" / "201.jpg"))[None]
    model = create_model("mobilenet_v2").eval()
    with torch.inference_mode():
        ref = model.encode_photo(photo)
        p = Precision("bf16", True)
        p.prepare(model)
        with p.autocast():
            low = model.encode_photo(p.inputs(photo)).float()
    assert low.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(ref, low).item() > 0.99
    assert (ref - low).abs().max().item() < 0.05  # unit vectors of 1280 components


def test_a_bf16_step_runs_in_bf16_keeps_fp32_weights_and_lowers_the_loss():
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", weights="none", embed_dim=16, branches="untied")
    p = Precision("bf16", True)
    p.prepare(model.train())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sketches, photos = torch.rand(4, 3, 64, 64), torch.rand(4, 3, 64, 64)
    losses = []
    for _ in range(8):
        with p.autocast():
            s, ph = model.encode_sketch(sketches), model.encode_photo(photos)
            assert s.dtype == torch.float32 and s.norm(dim=1).sub(1).abs().max() < 1e-5  # unit length in fp32
            assert model.sketch.backbone(sketches).dtype == torch.bfloat16  # the convolutions ran in bf16
            loss = (s.float() - ph.float()).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(q.dtype == torch.float32 for q in model.parameters())  # master weights stay fp32
    assert losses[-1] < 0.5 * losses[0]


def test_latency_flags_a_busy_machine():
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 20: pass"])
    try:
        import time
        time.sleep(0.5)
        lat = measure_latency(create_backbone("mobilenet_v2", "none"), 64, repeats=40, warmup=3, threads=1, tries=1)
    finally:
        spinner.kill()
    assert lat.busy and lat.others > 0.5
    assert lat.precision == "fp32" and lat.threads == 1
