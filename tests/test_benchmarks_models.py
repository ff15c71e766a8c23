"""benchmarks/models.py times each pretrained model through its public API: check its inputs.

No timings are taken and no model is loaded: a recorder stands in for the model.
"""

from benchmarks import models
from zoo import registry
from zoo.tasks import translation

NAME = "translate-gru-attention-multi30k-de-en"


class TranslationRecorder:
    """Records what `translate` is called with."""

    def __init__(self):
        self.calls = []

    def translate(self, texts, **kwargs):
        self.calls.append((list(texts), kwargs))
        return list(texts)


def test_translators_are_timed_on_their_test_sentences():
    spec = registry.get_pretrained(NAME)
    sources, _ = translation.load_pairs("multi30k", "test", "de", "en")
    texts = models.translation_sources(spec, len(sources) + 3)
    assert texts == sources + sources[:3]  # in file order, cycled past the end
    assert sources[0] not in translation.examples(spec)


def test_translation_workloads_call_translate_as_users_do():
    spec = registry.get_pretrained(NAME)
    sources, _ = translation.load_pairs("multi30k", "test", "de", "en")
    runs = models.workloads(spec, model=None, count=40)
    assert set(runs) == {"greedy", "beam-5", "greedy, batch 1", "beam-5, batch 1"}
    recorder = TranslationRecorder()
    for call, items in runs.values():
        call(recorder)
    calls = dict(zip(runs, recorder.calls))
    assert calls["greedy"] == (sources[:40], {"beam_size": 1})
    assert calls["beam-5"] == (sources[:40], {"beam_size": 5})
    one_by_one = sources[:models.ONE_BY_ONE_ITEMS]
    assert calls["beam-5, batch 1"] == (one_by_one, {"beam_size": 5, "batch_size": 1})
    assert {name: items for name, (_, items) in runs.items()} == {
        "greedy": 40, "beam-5": 40, "greedy, batch 1": len(one_by_one),
        "beam-5, batch 1": len(one_by_one)}


def test_compared_translations_are_counted_against_the_first_run(capsys):
    texts = ["a dog runs on the beach", "two men play chess in a park", "a girl reads a book"]
    references = [text.upper() for text in texts]
    runs = {"base": lambda t: [s.upper() for s in t],
            "one differs": lambda t: [s.upper() for s in t[:2]] + ["X"]}
    seconds = models.compare_translations("toy", runs, texts, repetitions=1,
                                          references=references)
    assert set(seconds) == set(runs) and all(value > 0 for value in seconds.values())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "toy, 3 sentences:"
    assert "3 of 3 as 'base'" in lines[1] and "BLEU 100.00" in lines[1]
    assert "2 of 3 as 'base'" in lines[2] and "BLEU 100.00" not in lines[2]
