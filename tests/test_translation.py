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
    source, states = model._decoder_inputs(model.source_tokenizer(tf.constant(texts)))
    start = tf.fill([len(texts)], START_ID)
    if beam_size is None:
        return decoding.greedy_search(model._step_function(), states, start, END_ID, 12,
                                      constants=source)
    return decoding.beam_search(model._step_function(), states, start, END_ID, beam_size, 12,
                                length_penalty=length_penalty, constants=source)


def test_decoder_steps_give_the_teacher_forced_log_probs(trained):
    """The decoders' step function, fed a target token by token, computes what the model
    computes on the whole target at once (padding and the start id never generated)."""
    sources, targets = SOURCES[:3], TARGETS[:3]
    logits = trained({"source": tf.constant(sources), "target": tf.constant(targets)},
                     training=False).numpy()
    never = np.zeros(logits.shape[-1], np.float32)
    never[list(translation._NEVER_GENERATED)] = -1e9
    expected = tf.nn.log_softmax(logits + never).numpy()
    labels = trained.target_labels(tf.constant(targets)).numpy()  # targets, then the end id
    inputs = np.concatenate([np.full([len(targets), 1], START_ID), labels[:, :-1]], axis=1)
    source, states = trained._decoder_inputs(trained.source_tokenizer(tf.constant(sources)))
    step_fn = trained._step_function(attention_weights=False)
    generated = np.setdiff1d(np.arange(logits.shape[-1]), translation._NEVER_GENERATED)
    for t in range(labels.shape[1]):
        log_probs, states, _ = step_fn(tf.constant(inputs[:, t]), states, source)
        real = labels[:, t] != 0
        np.testing.assert_allclose(log_probs.numpy()[real][:, generated],
                                   expected[real, t][:, generated], atol=1e-5)
        assert np.all(log_probs.numpy()[:, translation._NEVER_GENERATED] < -1e8)


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


def test_translate_passes_its_stopping_rule_to_beam_search(trained, monkeypatch):
    rules = []

    def spy(*args, stopping, n_best, **kwargs):
        rules.append(stopping)
        assert n_best == 1  # translate keeps the best hypothesis only: settle that one
        return beam_search(*args, stopping=stopping, n_best=n_best, **kwargs)

    beam_search = decoding.beam_search
    monkeypatch.setattr(decoding, "beam_search", spy)
    # An unused max_length, so that each call traces its decoder afresh.
    exact = trained.translate(SOURCES[:3], beam_size=3, max_length=11, stopping="exact")
    default = trained.translate(SOURCES[:3], beam_size=3, max_length=11)
    assert rules == ["exact", translation.BEAM_STOPPING] and exact == default == TARGETS[:3]
    with pytest.raises(ValueError, match="stopping"):
        trained.translate(SOURCES[:1], beam_size=3, max_length=11, stopping="early")


def test_length_sorted_batches_come_back_in_input_order(trained):
    texts = sorted(SOURCES, key=lambda t: len(t.split()), reverse=True)  # longest first
    assert len(texts[0].split()) > len(texts[-1].split())
    one_by_one = [trained.translate(text, beam_size=1) for text in texts]
    assert trained.translate(texts, beam_size=1, batch_size=2) == one_by_one


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
    alignment = tf.constant([[1, 0]])  # the OOV token attended most to source position 1
    words = model._replace_unknown(tokens, alignment, tf.constant([["▁A", "▁Zyzzyva"]]))
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


# -- Fine-tuning on a user's parallel text ------------------------------------------------

SUBJECTS = [("A man", "Ein Mann"), ("A woman", "Eine Frau"), ("A dog", "Ein Hund"),
            ("A child", "Ein Kind"), ("A boy", "Ein Junge")]
ACTIONS = [("is running", "läuft"), ("is sleeping", "schläft"), ("is eating", "isst"),
           ("is sitting", "sitzt"), ("is waiting", "wartet")]
PLACES = [("on the beach.", "am Strand."), ("in the park.", "im Park."),
          ("on the street.", "auf der Straße."), ("in the snow.", "im Schnee.")]
# 100 new sentences: every held-out one is a new combination of phrases seen in training.
DOMAIN = [(f"{s} {a} {p}", f"{ds} {da} {dp}") for s, ds in SUBJECTS for a, da in ACTIONS
          for p, dp in PLACES]


def _parallel_files(folder, pairs):
    source, target = folder / "mine.en", folder / "mine.de"
    source.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    target.write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return source, target


def _save_as_pretrained(model, folder):
    from zoo.saving import save_pretrained

    save_pretrained(model, folder, dict(task="translation", architecture="seq2seq-gru-attention",
                                        metrics={}, recipe="test", data="six pairs",
                                        trained_on="test", wall_time_s=0))
    return folder


def test_fine_tuning_from_a_saved_folder_on_parallel_files(trained, tmp_path):
    """`zoo train --from FOLDER --data a.en,a.de`: new words are learned, held-out BLEU rises."""
    from zoo.saving import load_pretrained
    from zoo.training import run_fine_tune

    base = _save_as_pretrained(trained, tmp_path / "base")
    source, target = _parallel_files(tmp_path, DOMAIN)
    keras.utils.set_random_seed(0)
    card = run_fine_tune(["--from", str(base), "--data", f"{source},{target}", "--epochs", "25",
                          "--learning-rate", "1e-2", "--extend-vocabulary",
                          "--output", str(tmp_path / "models")])
    metrics = card["metrics"]
    assert (metrics["train_pairs"], metrics["holdout_pairs"]) == (80, 20)
    assert metrics["holdout_bleu"] > metrics["holdout_bleu_before"] + 20
    tuned = load_pretrained(tmp_path / "models" / "base-finetuned")
    old = trained.target_vocabulary
    assert tuned.target_vocabulary[: len(old)] == old and "▁Frau" in tuned.target_vocabulary
    assert card["base_model"] == str(base.resolve()) and card["config"]["epochs"] == 25


def test_extended_vocabulary_keeps_the_trained_rows(trained):
    bigger = translation.extend_vocabulary(trained, [s for s, _ in DOMAIN],
                                           [t for _, t in DOMAIN])
    assert "▁Frau" in bigger.target_vocabulary[len(trained.target_vocabulary):]
    assert "▁woman" in bigger.source_vocabulary[len(trained.source_vocabulary):]
    for name in ("source_embedding", "target_embedding"):
        old = trained.get_layer(name).get_weights()[0]
        np.testing.assert_array_equal(bigger.get_layer(name).get_weights()[0][: len(old)], old)
    # Known words score exactly as before; the new ones start below every old word.
    inputs = {"source": tf.constant(SOURCES), "target": tf.constant(TARGETS)}
    old_logits = trained(inputs, training=False).numpy()
    new_logits = bigger(inputs, training=False).numpy()
    np.testing.assert_allclose(new_logits[..., : old_logits.shape[-1]], old_logits, atol=1e-5)
    assert trained.translate(SOURCES[:3], beam_size=3) == bigger.translate(SOURCES[:3],
                                                                            beam_size=3)


def test_freeze_encoder_trains_only_the_decoder_side(tmp_path):
    source, target = _parallel_files(tmp_path, DOMAIN[:20])
    model = tiny_model()
    frozen = {name: [w.copy() for w in model.get_layer(name).get_weights()]
              for name in ("source_embedding", "encoder_bigru_0", "logits")}
    model, metrics = translation.fine_tune(model, f"{source},{target}", tmp_path / "run",
                                           epochs=1, learning_rate=1e-2, freeze_encoder=True)
    for name in ("source_embedding", "encoder_bigru_0"):
        for before, after in zip(frozen[name], model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(before, after)
    assert not np.allclose(frozen["logits"][0], model.get_layer("logits").get_weights()[0])
    assert metrics["holdout_pairs"] == 4 and "holdout_bleu_before" in metrics


def test_parallel_data_formats_and_clear_errors(tmp_path):
    source, target = _parallel_files(tmp_path, PAIRS)
    assert translation.read_parallel_data(f"{source},{target}") == (SOURCES, TARGETS)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS) + "\n", encoding="utf-8")
    assert translation.read_parallel_data(tsv) == (SOURCES, TARGETS)

    short = tmp_path / "short.de"
    short.write_text("Ein Mann.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has 6 lines but .*short.de has 1"):
        translation.read_parallel_data(f"{source},{short}")
    with pytest.raises(FileNotFoundError, match="missing.de"):
        translation.read_parallel_data(f"{source},{tmp_path / 'missing.de'}")
    tsv.write_text("A man.\tEin Mann.\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs.tsv:2: expected source<TAB>target"):
        translation.read_parallel_data(tsv)
    target.write_text("\n".join(["", *TARGETS[1:]]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: one side is blank"):
        translation.read_parallel_data(f"{source},{target}")


def test_cli_fine_tuning_reports_bad_data_without_a_traceback(trained, tmp_path, capsys):
    from zoo import cli

    base = _save_as_pretrained(trained, tmp_path / "base")
    code = cli.main(["train", "--from", str(base), "--data", f"{tmp_path / 'nope.en'},x.de",
                     "--output", str(tmp_path / "models")])
    assert code == 1
    assert "Translation data file not found" in capsys.readouterr().err


def test_default_model_learns_to_copy_random_sequences():
    """Regression: with a tanh attentional layer and uniform(+-0.05) embeddings, Adam drove
    the decoder to a constant output and the loss stayed at the unigram entropy (log 21)."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(20)]
    texts = [" ".join(rng.choice(words, 6)) for _ in range(1000)]
    keras.utils.set_random_seed(0)
    model = tiny_model(source_vocabulary=["▁" + w for w in words],
                       target_vocabulary=["▁" + w for w in words], embedding_dim=32, units=32,
                       dropout=0.0)
    translation.compile_model(model, learning_rate=1e-3, label_smoothing=0.0)
    history = model.fit(translation.translation_batches(model, texts, texts, 32, shuffle=True),
                        epochs=4, verbose=0)
    assert history.history["loss"][-1] < 1.5  # log(21) = 3.04: the source is being used
