"""Shipped LM and forecasters, loaded fresh, meet their floors on the FULL test splits."""

import json

import numpy as np
import pytest

import zoo
from zoo import registry
from zoo.saving import read_card

FORECASTERS = ["forecast-lstm-melbourne-temp", "forecast-lstm-beijing-pm25"]


def _load(spec):
    return spec, zoo.load(spec.name), read_card(spec.directory)


def _assert_card_reproduced(card, metrics):
    """`zoo evaluate` gives the card's numbers (the card also holds validation metrics)."""
    shared = {k: metrics[k] for k in card["metrics"] if k in metrics}
    assert shared, "no metric in common with the card"
    for key, value in shared.items():
        assert value == pytest.approx(card["metrics"][key], rel=1e-3, abs=1e-3), key


@pytest.mark.slow
def test_pretrained_language_model_meets_its_perplexity_floor(trained_spec):
    spec, model, card = _load(trained_spec("lm-lstm-ptb"))
    metrics = registry.get_task("language_model").evaluate(model, spec, "test")
    assert metrics["test_tokens"] == 82_429  # every token after the first, state carried
    assert metrics["test_perplexity"] <= 120.0
    assert card["smoke"] is False
    _assert_card_reproduced(card, metrics)
    # The end-to-end model: raw strings in, sensible numbers and words out.
    fluent, scrambled = model.score(["the company said it expects to report a loss",
                                     "loss a report to expects it said company the"])
    assert fluent < scrambled
    assert model.generate("the stock", max_length=8, top_k=1) == \
        model.generate("the stock", max_length=8, top_k=1, seed=123)


@pytest.mark.slow
@pytest.mark.parametrize("name", FORECASTERS)
def test_pretrained_forecaster_beats_persistence(name, trained_spec):
    spec, model, card = _load(trained_spec(name))
    metrics = registry.get_task("forecasting").evaluate(model, spec, "test")
    assert metrics["mae"] < metrics["persistence_mae"], json.dumps(metrics)
    assert card["smoke"] is False and card["metrics"]["beats_persistence"]
    _assert_card_reproduced(card, metrics)


@pytest.mark.slow
@pytest.mark.parametrize("name", FORECASTERS)
def test_pretrained_forecaster_predicts_its_example_csv(name, tmp_path, trained_spec):
    spec, model, _ = _load(trained_spec(name))
    handler = registry.get_task("forecasting")
    (path,) = handler.examples(spec)
    lines = handler.render(model, [path], plot=str(tmp_path / "forecast.png"))
    assert any("forecast" in line for line in lines)
    assert (tmp_path / "forecast.png").exists()
    assert np.isfinite(model.forecast(np.zeros((1, model.window, model.num_features)))).all()
