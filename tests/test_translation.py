"""Translation: attention masking, decoding, odd inputs, tokenization, export, smoke recipe, saving."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import decoding, registry
from zoo.layers import ReversibleTokenizer, cudnn_ineligibility, iter_recurrent_layers
from zoo.layers.reversible import END_ID, START_ID
from zoo.tasks import translation

PAIRS = [
    ("A man rides a bike.", "Ein Mann fährt Fahrrad."),
    ("Two dogs are playing in the snow.", "Zwei Hunde spielen im Schnee."),
    ("A girl, in a red dress, is smiling.", "Ein Mädchen, in einem roten Kleid, lächelt."),
    ("A man is playing a guitar.", "Ein Mann spielt Gitarre."),
    ("Two men are sitting on a bench.", "Zwei Männer sitzen auf einer Bank."),
    ("A dog runs on the beach.", "Ein Hund läuft am Strand."),
]
SOURCES = [s for s, _ in PAIRS]
TARGETS = [t for _, t in PAIRS]
ODD_INPUTS = ["", "   ", "Zyzzyva qwxz ünïcödé ☃", " ".join(["dog"] * 300), "A  man\trides"]


def tiny_model(**overrides):
    kwargs = dict(source_vocabulary=translation.token_vocabulary(SOURCES, 1),
                  target_vocabulary=translation.token_vocabulary(TARGETS, 1),
                  embedding_dim=16, units=16, max_output_length=12)
    kwargs.update(overrides)
    return zoo.create("seq2seq-gru-attention", **kwargs)


@pytest.fixture(scope="module")
def trained():
    """A tiny model fitted on six pairs, so its translations are not all empty."""
    keras.utils.set_random_seed(0)
    model = translation.compile_model(tiny_model(), learning_rate=2e-2, label_smoothing=0.0)
    batches = translation.translation_batches(model, SOURCES, TARGETS, 6, shuffle=False)
    model.fit(batches.repeat(40), epochs=1, verbose=0)
    return model


def test_attention_is_a_distribution_over_real_source_steps():
    model = tiny_model(attention="additive")
    weights = model.attention_weights(["a dog", "A man rides a bike."],
                                      ["Ein Hund", "Ein Mann fährt"]).numpy()
    source_lengths = [2, 6]  # "▁a ▁dog" and "▁A ▁man ▁rides ▁a ▁bike ."
    assert weights.shape == (2, 4, 6)  # [START] + 3 target tokens; 6 source steps
    for row, length in enumerate(source_lengths):
        np.testing.assert_allclose(weights[row, :, :length].sum(-1), 1.0, atol=1e-5)
        assert np.all(weights[row, :, length:] == 0.0)


def test_recurrent_layers_are_cudnn_eligible():
    layers = list(iter_recurrent_layers(tiny_model()))
    assert len(layers) == 3  # forward, backward, decoder
    assert all(cudnn_ineligibility(layer) == [] for layer in layers)


def _decode_directly(model, texts, beam_size, length_penalty):
    """Greedy or beam search through the model's own step function."""
    ids = model.source_tokenizer(tf.constant(texts))
    encoded, mask, states = model._encode(ids)
    keys = model.get_layer("attention").precompute_keys(encoded)
    start = tf.fill([len(texts)], START_ID)
    if beam_size is None:
        return decoding.greedy_search(model._step_function(encoded, mask, keys), states, start,
                                      END_ID, 12)
    step_fn = model._step_function(*decoding.tile_beams((encoded, mask, keys), beam_size))
    return decoding.beam_search(step_fn, states, start, END_ID, beam_size, 12,
                                length_penalty=length_penalty)


def test_beam_size_one_equals_greedy(trained):
    greedy = _decode_directly(trained, SOURCES, None, 0.0)
    beam = _decode_directly(trained, SOURCES, 1, 0.0)
    np.testing.assert_array_equal(beam["tokens"][:, 0], greedy["tokens"])
    np.testing.assert_allclose(beam["log_probs"][:, 0], greedy["scores"], atol=1e-4)
    detokenized = trained.target_tokenizer.detokenize(greedy["tokens"]).numpy()
    assert trained.translate(SOURCES, beam_size=1) == [t.decode() for t in detokenized]


def test_beam_hypotheses_sorted_by_penalized_score(trained):
    result = _decode_directly(trained, SOURCES, 4, 0.6)
    scores = result["scores"].numpy()
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    penalty = decoding.gnmt_length_penalty(result["lengths"], 0.6).numpy()
    np.testing.assert_allclose(scores, result["log_probs"].numpy() / penalty, rtol=1e-5)


def test_model_learns_and_translates(trained):
    assert trained.translate(SOURCES[:3], beam_size=3) == TARGETS[:3]


@pytest.mark.parametrize("beam_size", [1, 5])
def test_odd_inputs_return_strings(trained, beam_size):
    outputs = trained.translate(ODD_INPUTS, beam_size=beam_size)
    assert len(outputs) == len(ODD_INPUTS) and all(isinstance(o, str) for o in outputs)
    details = trained.translate("", beam_size=beam_size, details=True)
    assert details["attention"].shape[0] == len(details["target_tokens"])


def test_unknown_word_is_copied_from_the_source():
    """An OOV prediction becomes the most attended source token (names, numbers)."""
    model = tiny_model()
    tokens = tf.constant([[translation.OOV_ID, END_ID]])
    attention = tf.constant([[[0.1, 0.9], [1.0, 0.0]]])
    words = model._replace_unknown(tokens, attention, tf.constant([["▁A", "▁Zyzzyva"]]))
    assert words.numpy().tolist() == [[b"\xe2\x96\x81Zyzzyva", b""]]


def test_detokenization_round_trips_raw_text():
    texts = [s for pair in PAIRS for s in pair] + [
        'He said: "Don\'t!" (3.5 km)', "  Spaces   collapse\t", "Öl über Straße – 100 % ", ""]
    vocabulary = translation.token_vocabulary(texts, 1)
    tokenizer = ReversibleTokenizer(vocabulary)
    restored = tokenizer.detokenize(tokenizer(tf.constant(texts), add_end=True))
    assert [t.decode() for t in restored.numpy()] == [" ".join(t.split()) for t in texts]


def test_smoke_recipe_learns(tmp_path):
    from zoo.training import load_recipe, run_recipe

    config = load_recipe("translate_gru_attention_multi30k_en_de")
    card = run_recipe(config, ["--smoke", "--output", str(tmp_path)])
    losses = card["train_loss_history"]
    assert losses[-1] < losses[0] * 0.95
    assert (tmp_path / config["name"] / "model.keras").exists()


def test_saved_and_exported_models_match_in_fresh_processes(trained, tmp_path):
    """The .keras file (safe_mode) and the SavedModel give the Keras model's translations."""
    from zoo.export import export

    trained.save(tmp_path / "model.keras")
    export(trained, tmp_path / "exported")
    expected = trained.translate(SOURCES + ODD_INPUTS, beam_size=5)
    script = textwrap.dedent(f"""
        import json, sys
        import tensorflow as tf
        texts = {json.dumps(SOURCES + ODD_INPUTS)}
        served = tf.saved_model.load({str(tmp_path / "exported")!r})
        assert "zoo" not in sys.modules
        exported = [t.decode() for t in served.serve(tf.constant(texts))["translations"].numpy()]
        import keras, zoo
        model = keras.saving.load_model({str(tmp_path / "model.keras")!r}, safe_mode=True)
        print(json.dumps(dict(exported=exported, loaded=model.translate(texts, beam_size=5))))
    """)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=240, env=env, cwd=registry.REPO_ROOT, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = json.loads(result.stdout.strip().splitlines()[-1])
    assert outputs["exported"] == expected
    assert outputs["loaded"] == expected


def test_hypermodel_builds_a_compiled_model():
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    hp.Fixed("units", 16)
    hypermodel = translation.Seq2SeqHyperModel(
        translation.token_vocabulary(SOURCES, 1), translation.token_vocabulary(TARGETS, 1),
        embedding_dim=8)
    model = hypermodel.build(hp)
    assert model.units == 16 and model.attention in translation.ATTENTION_TYPES
    assert model.optimizer is not None
