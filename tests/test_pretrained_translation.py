"""Shipped translation models, loaded fresh, meet their floors on the FULL test_2016_flickr."""

import pytest

import zoo
from zoo.saving import read_card
from zoo.tasks import translation

# Cased, detokenized sacreBLEU (13a), beam 5, on the 1,000 test_2016_flickr sentences.
FLOORS = {
    "translate-gru-attention-multi30k-en-de": 33.0,
    "translate-gru-attention-multi30k-de-en": 33.0,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FLOORS))
def test_pretrained_translator_meets_its_floor(name, trained_spec):
    spec = trained_spec(name)
    model = zoo.load(name)
    card = read_card(spec.directory)
    assert card["smoke"] is False
    assert (spec.directory / "model.keras").stat().st_size <= 25 * 2**20
    sources, references = translation.load_pairs("multi30k", "test", *translation.languages(spec))
    assert len(sources) == 1000
    scores, hypotheses = translation.bleu_scores(model, sources, references, beam_size=5)
    # The shipped card's number is reproduced by loading the saved file.
    assert scores["bleu"] == pytest.approx(card["metrics"]["bleu"], abs=0.05)
    assert all(isinstance(h, str) for h in hypotheses)
    assert scores["bleu"] >= FLOORS[name], f"{name}: BLEU {scores['bleu']} < {FLOORS[name]}"
