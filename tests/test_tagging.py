"""Sequence taggers: shapes, masking, odd inputs, alignment, a smoke recipe that learns, saving."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.layers import CharIds, cudnn_ineligibility, iter_recurrent_layers
from zoo.tasks import tagging
from zoo.training import run_recipe

VOCAB = ["show", "flights", "from", "boston", "to", "denver"]
TAGS = [tagging.UNK_LABEL, "O", "B-fromloc", "B-toloc", "I-toloc"]
INTENTS = [tagging.UNK_LABEL, "flight", "fare"]
CHARS = list("abcdefghijklmnopqrstuvwxyz")
ODD_INPUTS = ["", "   ", "boston", "Zyzzyva qwxz ünïcödé ☃", " ".join(["to"] * 500),
              "show  flights\tfrom\nboston"]


def small_tagger(**overrides):
    kwargs = dict(vocabulary=VOCAB, tag_names=TAGS, intent_names=INTENTS, characters=CHARS,
                  units=8, embedding_dim=8, char_filters=4, char_units=4)
    kwargs.update(overrides)
    return zoo.create("rnn-tagger", **kwargs)


def outputs(model, texts):
    return {key: value.numpy() for key, value in model(tf.constant(texts)).items()}


@pytest.mark.parametrize("options", [
    dict(head="crf", char_encoder="cnn"),
    dict(head="softmax", char_encoder="lstm", cell="gru", num_layers=2),
    dict(head="crf", char_encoder=None, bidirectional=False, intent_names=None),
], ids=["crf-charcnn", "softmax-charlstm-gru", "crf-words-only-unidirectional"])
def test_output_shapes(options):
    model = small_tagger(**options)
    out = outputs(model, ["show flights to denver", "boston"])
    assert out["potentials"].shape == (2, 4, len(TAGS))
    if model.intent_names:
        assert out["intent"].shape == (2, len(INTENTS))
        np.testing.assert_allclose(out["intent"].sum(-1), 1.0, atol=1e-5)
    else:
        assert "intent" not in out


@pytest.mark.parametrize("char_encoder", ["cnn", "lstm"])
def test_padding_changes_nothing(char_encoder):
    """Masking: a sentence scores the same alone and next to a longer one."""
    model = small_tagger(char_encoder=char_encoder)
    alone = outputs(model, ["show flights"])
    batched = outputs(model, ["show flights", "show flights from boston to denver and back"])
    np.testing.assert_allclose(alone["potentials"][0], batched["potentials"][0, :2], atol=1e-5)
    np.testing.assert_allclose(alone["intent"][0], batched["intent"][0], atol=1e-5)
    assert model.tag(["show flights"])[0] == model.tag(["show flights", "a b c d e f g"])[0]


def test_recurrent_layers_are_cudnn_eligible():
    model = small_tagger(char_encoder="lstm", cell="lstm", num_layers=2)
    layers = list(iter_recurrent_layers(model))
    assert len(layers) == 6  # 2 encoder layers x 2 directions + the char BiLSTM
    assert all(cudnn_ineligibility(layer) == [] for layer in layers)


@pytest.mark.parametrize("head", ["crf", "softmax"])
def test_odd_inputs_align_with_their_own_tokens(head):
    model = small_tagger(head=head)
    results = model.tag(ODD_INPUTS)
    for text, result in zip(ODD_INPUTS, results):
        assert result["tokens"] == text.split()
        assert len(result["tags"]) == len(result["tokens"])
        assert set(result["tags"]) <= set(TAGS) - {tagging.UNK_LABEL}
        assert result["intent"] in INTENTS[1:] and 0 <= result["intent_probability"] <= 1
        for entity in result["entities"]:
            assert entity["text"] == " ".join(result["tokens"][entity["start"]:entity["end"]])
    assert results[0]["tokens"] == [] and results[0]["entities"] == []
    assert len(results[4]["tags"]) == 500
    # Batches of one step only (Viterbi over a single position) and of empty texts.
    assert [len(r["tags"]) for r in model.tag(["boston", "denver"])] == [1, 1]
    assert model.tag("")[0]["tags"] == []


def test_case_is_kept_for_characters_not_for_words():
    chars = CharIds(["B", "b"])(tf.constant([["Bb", ""]])).numpy()
    assert chars.tolist() == [[[2, 3], [0, 0]]]
    model = small_tagger()
    lower, upper = outputs(model, ["boston"]), outputs(model, ["BOSTON"])
    assert not np.allclose(lower["potentials"], upper["potentials"])  # the char CNN sees case
    words_only = small_tagger(char_encoder=None)
    np.testing.assert_allclose(outputs(words_only, ["boston"])["potentials"],
                               outputs(words_only, ["BOSTON"])["potentials"], atol=1e-6)


def test_bio_spans_and_unknown_labels():
    assert tagging.label_vocabulary(["O", "B-x", "O"]) == [tagging.UNK_LABEL, "O", "B-x"]
    model = small_tagger()
    result = model._result({"tokens": np.array([[b"from", b"new", b"york"]]),
                            "lengths": np.array([3]), "tag_ids": np.array([[1, 3, 4]]),
                            "intent": np.array([[0.0, 0.9, 0.1]])}, 0)
    assert result["entities"] == [dict(type="toloc", start=1, end=3, text="new york")]
    assert result["intent"] == "flight"


def test_read_conll(tmp_path):
    path = tmp_path / "toy.conll"
    path.write_text("-DOCSTART- -X- O\n\nJohn NNP I-PER\nSmith NNP I-PER\nruns VBZ O\n\n"
                    "# a comment\nParis NNP I-LOC\n")
    sentences = tagging.read_conll(path, scheme="IOB1")
    assert [s["tokens"] for s in sentences] == [["John", "Smith", "runs"], ["Paris"]]
    assert sentences[0]["tags"] == ["B-PER", "I-PER", "O"] and sentences[1]["tags"] == ["B-LOC"]
    assert tagging.read_conll(path, tag_column=1)[0]["tags"] == ["NNP", "NNP", "VBZ"]


def test_smoke_recipe_learns_on_real_atis(tmp_path):
    """CRF head + intent head, a few epochs on 600 real ATIS sentences: loss falls, tags appear."""
    from recipes.slots_bilstm_crf_atis import CONFIG

    card = run_recipe(CONFIG, ["--smoke", "--output", str(tmp_path)])
    history = (tmp_path / "runs" / CONFIG["name"] / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    losses = [float(row.split(",")[header.index("loss")]) for row in history[1:]]
    assert losses[-1] < 0.7 * losses[0], losses
    assert card["metrics"]["f1"] > 30 and card["metrics"]["intent_accuracy"] > 60
    on_disk = json.loads((tmp_path / CONFIG["name"] / "card.json").read_text())
    assert on_disk["metrics"] == card["metrics"] and on_disk["smoke"] is True


def test_save_load_round_trip_with_safe_mode(tmp_path):
    model = small_tagger(char_encoder="lstm")
    model.crf.transitions.assign(np.random.default_rng(0).normal(size=(len(TAGS), len(TAGS))))
    path = tmp_path / "tagger.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    texts = ["show flights from boston to denver", "", "Zyzzyva"]
    assert restored.tag(texts) == model.tag(texts)
    np.testing.assert_array_equal(restored.crf.transitions.numpy(), model.crf.transitions.numpy())
    assert restored.get_config() == model.get_config()


def test_hypermodel_builds_a_compiled_tagger():
    import keras_tuner

    sentences = [{"tokens": ["to", "boston"], "tags": ["O", "B-toloc"], "intent": "flight"}]
    hypermodel = tagging.TaggerHyperModel(sentences, fixed={"head": "softmax"})
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert isinstance(model, tagging.RNNTagger) and model.optimizer is not None
    assert set(hp.values) == set(tagging.SEARCH_SPACE)  # units, layers, dropout, ... lr


def test_fine_tune_on_a_conll_file(tmp_path):
    path = tmp_path / "mine.conll"
    path.write_text("".join(f"show O\nflights O\nto O\n{city} B-toloc\n\n"
                            for city in ["boston", "denver", "austin", "dallas"] * 3))
    model, metrics = tagging.fine_tune(small_tagger(), path, tmp_path / "run", epochs=1,
                                       learning_rate=1e-2, holdout=0.25, extend=True)
    assert metrics["train_sentences"] == 9 and metrics["holdout_sentences"] == 3
    assert {"austin", "dallas"} <= set(model.vocabulary)  # seen twice in the training part
    assert 0 <= metrics["holdout_f1"] <= 100
    (tmp_path / "bad.conll").write_text("paris B-city\n")
    with pytest.raises(ValueError, match="not tags of this model"):
        tagging.fine_tune(small_tagger(), tmp_path / "bad.conll", tmp_path / "run2")


def test_recipe_on_a_users_conll_files(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("".join(f"{a} B-PER\n{b} I-PER\nwins O\n\n"
                            for a, b in [("Ann", "Lee"), ("Bo", "Chan"), ("Cy", "Diaz")] * 4))
    config = dict(task="tagging", data_files={"train": path, "validation": path},
                  model=dict(units=8, embedding_dim=8, char_filters=4), epochs=1)
    result = tagging.train(config, run_dir=tmp_path / "run")
    assert result.model.tag("Ann Lee wins")[0]["tokens"] == ["Ann", "Lee", "wins"]
    assert "f1" in result.metrics and "val_f1" in result.validation
