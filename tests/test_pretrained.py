"""The shipped retrievers: each loads offline by name and reproduces the test acc@1 its manifest records, and a
sketch of another domain gets a lower confidence than the model's own sketches."""

import numpy as np
import pytest

import sketchdown
from sketchdown import pretrained
from sketchdown.data.datasets import load_set
from sketchdown.errors import InputError
from sketchdown.eval.evaluate import evaluate_canvases


@pytest.mark.parametrize("name", sorted(pretrained.MODELS))
def test_a_shipped_model_reproduces_its_recorded_test_accuracy(name, data):
    # by name, from the committed weights, nothing downloaded; in fp32, as recorded (on a CPU with native bf16, auto
    # encodes a catalogue's photos in bf16, which flips near-ties: README, "Speed")
    retriever = sketchdown.load(name, precision="fp32")
    assert retriever.info["name"] == name and retriever.source == name
    test = load_set(retriever.info["dataset"], "test", data)
    if retriever.selector is not None:  # SketchyNetV2: through the product's own search, selector included
        from sketchdown.retrieval.export import selector_test

        recorded = retriever.info["test_selector"]
        measured = selector_test(retriever, test)
        assert abs(measured["acc1"] - recorded["acc1"]) <= 0.5 and abs(measured["gflops"] - recorded["gflops"]) < 1e-3
        assert measured["gflops"] < retriever.gflops(256)  # the selector spends less than the student at 256
        return
    assert pretrained.MODELS[name].selector or retriever.canvas == pretrained.MODELS[name].canvas
    recorded = {t["canvas"]: t for t in retriever.info["test"]}
    measured = evaluate_canvases(retriever.model, test, sorted(recorded), retriever.photo_size,
                                 raster_method=retriever.raster_method)  # fp32, as recorded
    for m in measured:
        assert abs(m["acc1"] - recorded[m["canvas"]]["acc1"]) <= 0.5, (name, m["canvas"], m["acc1"])


def test_models_are_listed_and_unknown_names_refused():
    rows = {r["name"]: r for r in pretrained.describe()}
    assert set(rows) == set(pretrained.MODELS) and all(r["present"] and r["test_acc1"] for r in rows.values())
    assert sum({r["folder"]: r["size_mb"] for r in rows.values()}.values()) <= 80  # the shipped set, each folder once
    with pytest.raises(InputError, match="not a shipped model"):
        pretrained.locate("teacher-mars")


def test_another_domain_gets_a_lower_confidence(data):
    retriever = sketchdown.load("direct-chairs")
    chairs, shoes = load_set("chairs-v1", "test", data), load_set("shoes-v1", "test", data)
    index = sketchdown.Index.build(retriever, chairs.photos[:40])
    own = [index.search(s, 1) for s in chairs.sketches[:40]]
    other = [index.search(s, 1) for s in shoes.sketches[:40]]
    assert np.median([r.confidence for r in other]) < np.median([r.confidence for r in own]) - 0.1
    assert np.mean([not r.in_domain for r in other]) > np.mean([not r.in_domain for r in own])


def test_the_models_command_lists_every_shipped_name(capsys):
    from sketchdown import cli

    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in pretrained.MODELS) and "test acc@1" in out
