"""Tests for the linear-chain CRF (zoo/layers/crf.py).

The forward algorithm and Viterbi are checked against brute-force enumeration
of every tag sequence on tiny inputs, so each check is exact, not statistical.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.layers.crf import CRF, crf_log_likelihood, crf_loss, crf_viterbi_decode

NUM_TAGS = 3
MAX_LEN = 4
LENGTHS = [4, 3, 1, 2]  # one row per length, right-padded to MAX_LEN


def random_problem(seed=0):
    rng = np.random.default_rng(seed)
    batch = len(LENGTHS)
    return {
        "potentials": rng.normal(size=(batch, MAX_LEN, NUM_TAGS)).astype("float32"),
        "mask": np.arange(MAX_LEN)[None] < np.array(LENGTHS)[:, None],
        "transitions": rng.normal(size=(NUM_TAGS, NUM_TAGS)).astype("float32"),
        "start": rng.normal(size=(NUM_TAGS,)).astype("float32"),
        "end": rng.normal(size=(NUM_TAGS,)).astype("float32"),
    }


def brute_force_score(p, row, tags):
    """score(x, y) straight from the definition, for one row."""
    score = p["start"][tags[0]] + p["end"][tags[-1]]
    for t, tag in enumerate(tags):
        score += p["potentials"][row, t, tag]
        if t > 0:
            score += p["transitions"][tags[t - 1], tag]
    return score


def all_scores(p, row):
    """Every tag sequence of the row's true length with its score."""
    length = LENGTHS[row]
    sequences = list(itertools.product(range(NUM_TAGS), repeat=length))
    scores = np.array([brute_force_score(p, row, seq) for seq in sequences])
    return sequences, scores


def log_sum_exp(values):
    top = values.max()
    return top + np.log(np.exp(values - top).sum())


def params(p):
    return p["transitions"], p["start"], p["end"]


def pad(sequence):
    return list(sequence) + [0] * (MAX_LEN - len(sequence))


def test_log_likelihood_matches_brute_force_and_normalizes():
    p = random_problem()
    for row in range(len(LENGTHS)):
        sequences, scores = all_scores(p, row)
        log_z = log_sum_exp(scores)
        tags = np.array([pad(seq) for seq in sequences], dtype="int32")
        batch = len(sequences)
        log_likelihood = crf_log_likelihood(
            np.repeat(p["potentials"][row : row + 1], batch, axis=0),
            tags,
            np.repeat(p["mask"][row : row + 1], batch, axis=0),
            *params(p),
        ).numpy()
        np.testing.assert_allclose(log_likelihood, scores - log_z, atol=1e-4)
        # The probabilities of all sequences of the row's length sum to one.
        np.testing.assert_allclose(np.exp(log_likelihood).sum(), 1.0, atol=1e-4)


def test_padded_tag_values_are_ignored():
    p = random_problem()
    tags = np.zeros((len(LENGTHS), MAX_LEN), dtype="int32")
    noisy_tags = np.where(p["mask"], tags, -1)  # e.g. an ignore label
    args = (p["potentials"], tags, p["mask"], *params(p))
    noisy_args = (p["potentials"], noisy_tags, p["mask"], *params(p))
    np.testing.assert_allclose(
        crf_log_likelihood(*args), crf_log_likelihood(*noisy_args), atol=1e-6
    )


def test_viterbi_matches_brute_force_argmax():
    p = random_problem(seed=1)
    best_tags, best_score = crf_viterbi_decode(p["potentials"], p["mask"], *params(p))
    assert best_tags.dtype == tf.int32
    for row in range(len(LENGTHS)):
        sequences, scores = all_scores(p, row)
        assert list(best_tags[row].numpy()) == pad(sequences[scores.argmax()])
        np.testing.assert_allclose(best_score[row], scores.max(), atol=1e-4)


def test_single_step_and_zero_length_rows_stay_finite():
    p = random_problem()
    # A time axis of one step exercises the empty scans.
    tags, score = crf_viterbi_decode(p["potentials"][:, :1], p["mask"][:, :1], *params(p))
    assert tags.shape == (len(LENGTHS), 1)
    np.testing.assert_allclose(
        score, (p["start"] + p["potentials"][:, 0] + p["end"]).max(axis=1), atol=1e-5
    )
    # An all-padding row scores start + end only; never NaN.
    empty = np.zeros_like(p["mask"])
    log_likelihood = crf_log_likelihood(
        p["potentials"], np.zeros(empty.shape, "int32"), empty, *params(p)
    )
    tags, score = crf_viterbi_decode(p["potentials"], empty, *params(p))
    assert np.all(np.isfinite(log_likelihood)) and np.all(log_likelihood <= 0)
    assert np.all(tags.numpy() == 0)
    np.testing.assert_allclose(score, (p["start"] + p["end"]).max(), atol=1e-5)


def test_mask_none_means_no_padding():
    p = random_problem()
    full = np.ones_like(p["mask"])
    tags = np.ones(full.shape, "int32")
    np.testing.assert_allclose(
        crf_log_likelihood(p["potentials"], tags, None, *params(p)),
        crf_log_likelihood(p["potentials"], tags, full, *params(p)),
    )


def test_gradients_reach_potentials_and_transitions():
    p = random_problem()
    crf = CRF(NUM_TAGS)
    potentials = tf.Variable(p["potentials"])
    tags = np.random.default_rng(0).integers(0, NUM_TAGS, (len(LENGTHS), MAX_LEN))
    with tf.GradientTape() as tape:
        loss = crf_loss(potentials, tags, p["mask"], crf)
    sources = [potentials, *crf.trainable_variables]
    grads = tape.gradient(loss, sources)
    assert len(crf.trainable_variables) == 3
    for grad in grads:
        assert grad is not None and np.all(np.isfinite(grad))
        assert np.abs(grad).sum() > 0
    # Padded steps get no gradient.
    padded = ~p["mask"]
    assert np.all(grads[0].numpy()[padded] == 0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_potentials_are_computed_in_float32(dtype):
    p = random_problem()
    crf = CRF(NUM_TAGS)
    tags = np.zeros(p["mask"].shape, "int32")
    half = tf.cast(p["potentials"], dtype)
    reference = crf.log_likelihood(tf.cast(half, "float32"), tags, p["mask"])
    log_likelihood = crf.log_likelihood(half, tags, p["mask"])
    assert log_likelihood.dtype == tf.float32
    np.testing.assert_allclose(log_likelihood, reference, atol=1e-5)
    decoded = crf.decode(half, p["mask"])[0]
    np.testing.assert_array_equal(decoded, crf(tf.cast(half, "float32"), p["mask"]))


def test_works_inside_tf_function_with_dynamic_shapes():
    p = random_problem()
    crf = CRF(NUM_TAGS)
    tags = np.ones(p["mask"].shape, "int32")
    signature = [
        tf.TensorSpec([None, None, NUM_TAGS], tf.float32),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None], tf.bool),
    ]

    @tf.function(input_signature=signature)
    def graph_fn(potentials, tags, mask):
        return crf.log_likelihood(potentials, tags, mask), crf.decode(potentials, mask)

    graph_ll, (graph_tags, graph_score) = graph_fn(p["potentials"], tags, p["mask"])
    eager_tags, eager_score = crf.decode(p["potentials"], p["mask"])
    np.testing.assert_allclose(
        graph_ll, crf.log_likelihood(p["potentials"], tags, p["mask"]), atol=1e-6
    )
    np.testing.assert_array_equal(graph_tags, eager_tags)
    np.testing.assert_allclose(graph_score, eager_score, atol=1e-6)


def test_rejects_potentials_with_wrong_number_of_tags():
    with pytest.raises(ValueError, match="num_tags=3"):
        CRF(NUM_TAGS).decode(np.zeros((1, 2, 4), "float32"))


# --- Training: the right tag depends on the previous tag. -------------------
#
# Words are 0 ("outside") or 1 ("entity"). Tags: O=0, B=1, I=2, where an entity
# word is B after O (or at the start) and I after B/I. A per-token classifier
# cannot tell B from I; the CRF's transitions can (O->I and B/I->B never occur).


def chunk_task(num_sequences=256, max_len=8, seed=0):
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2, size=(num_sequences, max_len))
    lengths = rng.integers(2, max_len + 1, size=num_sequences)
    mask = np.arange(max_len)[None] < lengths[:, None]
    tags = np.zeros_like(words)
    for t in range(max_len):
        previous_is_entity = words[:, t - 1] == 1 if t > 0 else False
        tags[:, t] = np.where(words[:, t] == 1, np.where(previous_is_entity, 2, 1), 0)
    features = np.eye(2, dtype="float32")[words] * mask[..., None]
    return features, np.where(mask, tags, 0).astype("int32"), mask


class TinyCRFTagger(keras.Model):
    """Dense potentials + CRF, trained with `crf_loss` from `compute_loss`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(3)
        self.crf = CRF(3)

    def call(self, inputs):
        return self.dense(inputs["features"])

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
        return crf_loss(y_pred, y, x["mask"], self.crf, sample_weight)


def test_joint_training_learns_transition_dependent_task():
    keras.utils.set_random_seed(0)
    features, tags, mask = chunk_task()
    model = TinyCRFTagger()
    model.compile(optimizer=keras.optimizers.Adam(0.1))  # graph mode by default
    history = model.fit(
        {"features": features, "mask": mask}, tags, batch_size=64, epochs=15, verbose=0
    )
    losses = history.history["loss"]
    assert losses[-1] < 0.2 * losses[0]

    potentials = model({"features": features, "mask": mask})
    decoded = model.crf.decode(potentials, mask)[0].numpy()
    accuracy = (decoded == tags)[mask].mean()
    assert accuracy > 0.99
    # B vs I is only learnable through transitions: check those tokens too.
    entity = mask & (tags > 0)
    assert (decoded == tags)[entity].mean() > 0.99


# --- Serialization. ----------------------------------------------------------


def test_get_config_round_trip():
    crf = CRF(5, transitions_initializer="zeros", name="slots_crf")
    clone = CRF.from_config(crf.get_config())
    assert clone.get_config() == crf.get_config()
    assert clone.num_tags == 5 and clone.name == "slots_crf"
    assert clone.variable_dtype == "float32"


def test_model_save_and_safe_load_give_identical_tags(tmp_path):
    keras.utils.set_random_seed(1)
    token_ids = keras.Input((None,), dtype="int32")
    hidden = keras.layers.Embedding(20, 8, mask_zero=True)(token_ids)
    potentials = keras.layers.Dense(4)(hidden)
    tags = CRF(4)(potentials)  # the Embedding's mask reaches the CRF
    model = keras.Model(token_ids, tags)
    # Non-trivial transitions, so a lost weight would change the decoding.
    crf = model.layers[-1]
    crf.transitions.assign(np.random.default_rng(0).normal(size=(4, 4)) * 3)

    inputs = np.array([[3, 5, 7, 0, 0], [1, 2, 3, 4, 5], [9, 0, 0, 0, 0]])
    expected = model.predict(inputs, verbose=0)
    assert expected.dtype == np.int32
    assert np.all(expected[inputs == 0] == 0)

    path = tmp_path / "tagger.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(restored.predict(inputs, verbose=0), expected)
    np.testing.assert_allclose(restored.layers[-1].transitions.numpy(), crf.transitions.numpy())
