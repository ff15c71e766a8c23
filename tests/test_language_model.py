"""The word-level LM: truncated-BPTT batching, state carrying, clipping, perplexity, sampling."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.metrics import Perplexity
from zoo.saving import load_pretrained, save_pretrained
from zoo.tasks import language_model as lm

VOCAB = ["the", "market", "fell", "rose", "N", "%", "shares", lm.EOS]


def tiny_model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    kwargs = {"units": 8, "num_layers": 2, "init_scale": 0.5, **kwargs}
    return lm.LanguageModel(VOCAB, **kwargs)


def test_bptt_batches_continue_every_stream_from_window_to_window():
    tokens = np.arange(1000)  # token value = position in the corpus
    batches = lm.bptt_batches(tokens, batch_size=4, window=7)
    stream_length = 1000 // 4
    for k, (inputs, targets) in enumerate(batches):
        assert inputs.shape == targets.shape == (4, 7)
        np.testing.assert_array_equal(targets, inputs + 1)  # next token of the same stream
        for b in range(4):
            assert inputs[b, 0] == b * stream_length + 7 * k
        if k + 1 < len(batches):  # window k's end continues into window k + 1
            np.testing.assert_array_equal(batches[k + 1][0][:, 0], inputs[:, -1] + 1)
    # Without drop_remainder every target of every stream is covered exactly once.
    covered = np.concatenate([t for _, t in lm.bptt_batches(tokens, 4, 7, drop_remainder=False)],
                             axis=1)
    np.testing.assert_array_equal(covered, lm.bptt_streams(tokens, 4)[:, 1:])


def test_stateful_model_carries_state_across_windows_and_resets():
    model = tiny_model(stateful_batch_size=2)
    stateless = model.stateless()
    ids = np.random.default_rng(0).integers(1, len(VOCAB) + 2, size=(2, 12)).astype("int32")
    first, second = ids[:, :5], ids[:, 5:]
    model(first)
    carried = model(second).numpy()
    np.testing.assert_allclose(carried, stateless(ids).numpy()[:, 5:], atol=1e-5)
    callback = lm.ResetStatesEachEpoch()
    callback.set_model(model)
    callback.on_epoch_begin(0)
    np.testing.assert_allclose(model(second).numpy(), stateless(second).numpy(), atol=1e-5)


def test_global_norm_clipping_bounds_the_update():
    optimizer = lm.make_optimizer({"optimizer": "sgd", "learning_rate": 1.0, "clipnorm": 5.0})
    weights = [keras.Variable(np.zeros(3, "float32")), keras.Variable(np.zeros((2, 2), "float32"))]
    gradients = [tf.constant([30.0, -40.0, 50.0]), tf.constant([[60.0, 0.0], [0.0, -70.0]])]
    optimizer.apply_gradients(zip(gradients, weights))
    update = np.concatenate([np.ravel(w.numpy()) for w in weights])
    assert np.linalg.norm(update) == pytest.approx(5.0, rel=1e-5)
    # The direction is kept: every gradient is scaled by the same factor.
    raw = np.concatenate([np.ravel(g.numpy()) for g in gradients])
    np.testing.assert_allclose(-update, raw * 5.0 / np.linalg.norm(raw), rtol=1e-5)


def test_perplexity_is_exp_of_mean_cross_entropy_on_a_hand_made_case():
    # Probabilities of the true tokens: 1/2, 1/4, 1/8 -> mean CE = 2 ln 2 -> perplexity 4.
    probabilities = np.array([[[0.5, 0.5, 0.0], [0.25, 0.0, 0.75], [0.875, 0.0, 0.125]]])
    labels = np.array([[1, 0, 2]])
    metric = Perplexity(from_logits=False, mask_token_id=None)
    metric.update_state(labels, probabilities)
    assert float(metric.result()) == pytest.approx(4.0, rel=1e-5)


def test_score_and_stream_perplexity_match_numpy_cross_entropy():
    model = tiny_model()
    text = "the market fell 5.5 %"
    ids = model.encode([text])[0].numpy()
    assert model.decode(ids) == "<eos> the market fell N % <eos>"
    log_probs = tf.nn.log_softmax(model(ids[None, :-1])).numpy()[0]
    cross_entropy = -log_probs[np.arange(len(ids) - 1), ids[1:]]
    assert model.score([text])[0] == pytest.approx(math.exp(cross_entropy.mean()), rel=1e-4)
    # Streaming over windows with the state carried gives the same number.
    value, count = lm.stream_perplexity(model, ids, batch_size=1, window=2)
    assert count == len(ids) - 1
    assert value == pytest.approx(math.exp(cross_entropy.mean()), rel=1e-4)


def test_raw_text_is_normalized_like_ptb():
    tokens = lm.normalize_text(["The company's sales didn't rise 5.5%, Mr. Lee said.", "",
                                "It cost $10"]).to_list()
    assert [[t.decode() for t in row] for row in tokens] == [
        ["the", "company", "'s", "sales", "did", "n't", "rise", "N", "%", "mr.", "lee", "said"],
        [], ["it", "cost", "$", "N"]]


def test_empty_and_unknown_text_score_finite():
    scores = tiny_model().score(["", "zebra crossing", "The Market"])
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_generate_with_top_k_1_is_deterministic_and_greedy():
    model = tiny_model(seed=3)
    outputs = {model.generate("the market", max_length=6, top_k=1, seed=s) for s in range(4)}
    assert len(outputs) == 1
    # Greedy by hand: argmax over words (never padding or <unk>) until <eos>.
    ids = list(model.encode(["the market"])[0, :-1].numpy())
    for _ in range(6):
        logits = model(np.array([ids]))[0, -1].numpy()
        logits[[lm.PAD_ID, lm.UNK_ID]] = -np.inf
        ids.append(int(logits.argmax()))
        if ids[-1] == model.eos_id:
            break
    words = [w for w in model.decode(ids[1:]).split() if w != lm.EOS]
    assert outputs.pop() == " ".join(words)


def test_saved_model_round_trip_scores_identically(tmp_path):
    model = tiny_model(stateful_batch_size=3).stateless()
    card = dict(metrics={}, recipe="test", data="none", trained_on="test", wall_time_s=0)
    save_pretrained(model, tmp_path, card)
    loaded = load_pretrained(tmp_path)
    assert isinstance(loaded, lm.LanguageModel) and loaded.stateful_batch_size is None
    np.testing.assert_allclose(loaded.score(["the market rose"]), model.score(["the market rose"]),
                               rtol=1e-6)


def test_smoke_recipe_trains_saves_and_loads(tmp_path):
    from zoo.training import load_recipe, run_recipe

    config = load_recipe("lm_lstm_ptb")
    config["smoke"] = dict(config["smoke"], train_tokens=6_000, validation_tokens=6_000,
                           eval_tokens=500)
    card = run_recipe(config, ["--smoke", "--output", str(tmp_path)])
    assert card["metrics"]["test_tokens"] == 499
    assert 1 < card["metrics"]["test_perplexity"] < 20_000
    loaded = load_pretrained(tmp_path / "lm-lstm-ptb")
    assert isinstance(loaded.generate("the company", max_length=3, top_k=5, seed=0), str)
