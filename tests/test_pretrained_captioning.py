"""The shipped captioner, loaded fresh, meets its floors on the FULL Flickr8k test split."""

import pytest

import zoo
from zoo.saving import read_card
from zoo.tasks import captioning

NAME = "caption-mobilenetv2-lstm-attention-flickr8k"
# Beam 3, percent, 1,000 official test images x 5 references (Xu et al. 2015 soft attention:
# BLEU-1 67, BLEU-4 19.5; Show and Tell BLEU-1 63).
FLOORS = {"bleu_1": 60.0, "bleu_4": 17.0}


@pytest.mark.slow
def test_pretrained_captioner_meets_its_floors(trained_spec):
    spec = trained_spec(NAME)
    model = zoo.load(NAME)
    metrics = captioning.evaluate(model, "test", beam_sizes=(3,))
    assert metrics["images"] == 1000
    for metric, floor in FLOORS.items():
        assert metrics[metric] >= floor, f"{NAME}: {metric} {metrics[metric]} < {floor}"
    card = read_card(spec.directory)
    assert card["smoke"] is False
    # Re-evaluation reproduces the card's beam-3 BLEU (batching may move the last digit).
    for metric in ("bleu_1", "bleu_2", "bleu_3", "bleu_4"):
        assert abs(metrics[metric] - card["metrics"][metric]) <= 0.05, metric


@pytest.mark.slow
def test_pretrained_captioner_describes_the_examples(trained_spec):
    trained_spec(NAME)
    captions = zoo.load(NAME).caption(captioning.examples(), beam_size=3)
    assert all(captions) and any("dog" in c for c in captions)
