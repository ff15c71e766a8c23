"""The registry: listing, helpful errors, and the cuDNN invariant for every model."""

import pytest

import zoo
from zoo import registry
from zoo.layers import cudnn_ineligibility, iter_recurrent_layers


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="Did you mean: text-cnn"):
        zoo.create("text-cn")
    with pytest.raises(KeyError, match="Unknown model"):
        zoo.load("no-such-model-anywhere")


def test_list_models_rows_are_complete():
    for row in zoo.list_models():
        assert set(row) == {"name", "task", "dataset", "metric", "value", "trained"}
        spec = registry.get_pretrained(row["name"])
        assert (registry.REPO_ROOT / spec.recipe).exists(), f"{spec.name}: recipe missing"
    assert {a["name"] for a in zoo.list_architectures()} >= {"text-cnn", "rnn-classifier"}


def test_list_models_filters_by_task():
    for row in zoo.list_models(task="classification"):
        assert row["task"] == "classification"


def _models_to_check():
    for arch in registry.architectures():
        yield arch.name, lambda arch=arch: arch.build(**arch.demo_kwargs)
    for spec in registry.pretrained(trained_only=True):
        yield spec.name, lambda spec=spec: zoo.create(spec.name)


@pytest.mark.parametrize("name,build", list(_models_to_check()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_lstm_and_gru_is_cudnn_eligible(name, build):
    model = build()
    for layer in iter_recurrent_layers(model):
        assert cudnn_ineligibility(layer) == [], f"{name}/{layer.name}: {cudnn_ineligibility(layer)}"
