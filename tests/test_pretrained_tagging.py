"""Shipped taggers, loaded fresh, meet their floors on the FULL official test splits."""

import pytest

import zoo
from zoo import registry
from zoo.saving import read_card

# model name -> {metric: floor}, metrics in percent on the official test split.
FLOORS = {
    "slots-bilstm-crf-atis": {"f1": 95.0, "intent_accuracy": 95.0},
    "slots-bilstm-crf-snips": {"f1": 88.0, "intent_accuracy": 96.5},
    "ner-bilstm-crf-conll03": {"f1": 85.0},
    "pos-bilstm-ud-lines": {"token_accuracy": 94.0},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_pretrained_tagger_meets_its_floor(name, trained_spec):
    spec = trained_spec(name)
    model = zoo.load(name)
    metrics = registry.get_task("tagging").evaluate(model, spec, "test")
    for metric, floor in FLOORS[name].items():
        assert metrics[metric] >= floor, f"{name}: {metric} {metrics[metric]} < {floor}"
    card = read_card(spec.directory)
    assert card["smoke"] is False
    # `zoo evaluate` reproduces the card's numbers exactly.
    assert {k: metrics[k] for k in card["metrics"]} == card["metrics"]
