"""Text classifiers: shapes, odd inputs, smoke recipes that learn, round trips."""

import json

import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.tasks import classification
from zoo.training import load_recipe, run_recipe

ODD_INPUTS = ["", "   ", " ".join(["word"] * 1_000), "Ünïcödé — 映画 ☃ !!!", "x"]


@pytest.mark.parametrize("variant", classification.KIM_VARIANTS)
def test_text_cnn_variants_build_and_predict(variant):
    model = zoo.create("text-cnn", vocabulary=["good", "bad"], num_classes=3, variant=variant,
                       embedding_dim=8, num_filters=4)
    probabilities = model.predict(ODD_INPUTS)
    assert probabilities.shape == (len(ODD_INPUTS), 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    embeddings = [w for w in model.trainable_weights if "embedding" in w.path]
    assert len(embeddings) == (0 if variant == "static" else 1)


def test_multichannel_filters_see_both_channels_with_shared_weights():
    model = zoo.create("text-cnn", vocabulary=["a"], num_classes=2, variant="multichannel",
                       embedding_dim=4, num_filters=2, filter_widths=[2])
    conv = model.get_layer("conv_w2")
    assert len(conv._inbound_nodes) == 2  # one Conv1D applied to both embedding channels


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_classifier_handles_odd_inputs(cell):
    model = zoo.create("rnn-classifier", vocabulary=["good", "bad"], class_names=["n", "p"],
                       cell=cell, units=4, embedding_dim=4, num_layers=2)
    probabilities = model.predict(ODD_INPUTS)
    assert np.isfinite(probabilities).all() and probabilities.shape == (5, 2)
    assert model.classify("good")[0][0] in ("n", "p")


def test_padding_does_not_change_predictions():
    model = zoo.create("rnn-classifier", vocabulary=["good", "bad"], class_names=["n", "p"],
                       units=4, embedding_dim=4)
    alone = model.predict(["good bad"])
    batched = model.predict(["good bad", "good good good good good good good"])[:1]
    np.testing.assert_allclose(alone, batched, atol=1e-6)


def test_classifier_rejects_non_text():
    model = zoo.create("rnn-classifier", vocabulary=[], num_classes=2, units=2, embedding_dim=2)
    with pytest.raises(TypeError, match="string"):
        model.classify([1, 2])


@pytest.mark.parametrize("recipe", ["textcnn_trec", "sentiment_bilstm_sst2"])
def test_smoke_recipe_learns_on_real_data(recipe, tmp_path):
    plot = tmp_path / "curves.png"
    card = run_recipe(load_recipe(recipe), ["--smoke", "--output", str(tmp_path), "--plot", str(plot)])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # learning curves were drawn
    saved = tmp_path / card["name"]
    assert json.loads((saved / "card.json").read_text())["smoke"] is True
    log = (tmp_path / "runs" / card["name"] / "history.csv").read_text().splitlines()
    header, first, last = log[0].split(","), log[1].split(","), log[-1].split(",")
    loss = header.index("loss")
    assert float(last[loss]) < float(first[loss])
    chance = {"textcnn-trec": 100 / 6, "sentiment-bilstm-sst2": 50.0}[card["name"]]
    assert card["metrics"]["accuracy"] > chance + 5


def test_saved_classifier_serves_strings_after_export(tmp_path):
    from zoo.export import export

    model = zoo.create("text-cnn", vocabulary=["good", "bad"], num_classes=2, embedding_dim=4,
                       num_filters=2)
    path = export(model, tmp_path / "exported")
    loaded = tf.saved_model.load(str(path))  # keep a reference: it owns the variables
    served = loaded.serve(tf.constant(["good film", ""]))
    np.testing.assert_allclose(served, model.predict(["good film", ""]), atol=1e-6)
