"""zoo.tracing: inference through one kept `tf.function` per model and input signature."""

import keras
import numpy as np
import tensorflow as tf

import zoo
from zoo.tracing import traced, traced_call

TEXTS = ["good", "good bad good bad", " ".join(["bad"] * 40)]


def small_classifier():
    return zoo.create("rnn-classifier", vocabulary=["good", "bad"], class_names=["n", "p"],
                      cell="gru", units=4, embedding_dim=4, num_layers=2)


def test_traced_builds_each_key_once_and_keeps_it_per_model():
    model, other = small_classifier(), small_classifier()
    built = []
    build = lambda: built.append(1) or object()
    first = traced(model, "key", build)
    assert traced(model, "key", build) is first and len(built) == 1
    assert traced(model, "other key", build) is not first and len(built) == 2
    assert traced(other, "key", build) is not first and len(built) == 3


def test_one_trace_serves_every_batch_and_length_and_matches_the_eager_call():
    model = small_classifier()
    call = traced_call(model, tf.TensorSpec([None], tf.string))
    for texts in (TEXTS[:1], TEXTS, TEXTS[2:]):
        np.testing.assert_allclose(call(tf.constant(texts)).numpy(),
                                   model(tf.constant(texts), training=False).numpy(), atol=1e-6)
    assert call.experimental_get_tracing_count() == 1
    assert traced_call(model, tf.TensorSpec([None], tf.string)) is call


def test_classify_runs_the_kept_trace_and_the_model_still_saves(tmp_path):
    model = small_classifier()
    expected = model(tf.constant(TEXTS), training=False).numpy()
    np.testing.assert_allclose(model.predict_proba(TEXTS, batch_size=2), expected, atol=1e-6)
    model.classify(TEXTS[2])
    assert traced_call(model, tf.TensorSpec([None], tf.string)).experimental_get_tracing_count() == 1
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), expected, atol=1e-6)


def test_forecasts_of_any_count_run_one_trace_and_match_the_eager_call():
    from zoo.tasks.forecasting import Forecaster

    model = Forecaster(num_features=3, window=6, horizon=2, cell="lstm", units=5)
    windows = np.random.default_rng(0).normal(size=(5, 6, 3)).astype("float32")
    np.testing.assert_allclose(model.forecast(windows, batch_size=2),
                               model(windows, training=False).numpy(), atol=1e-6)
    model.forecast(windows[:1])
    spec = tf.TensorSpec([None, 6, 3], tf.float32)
    assert traced_call(model, spec).experimental_get_tracing_count() == 1


def test_scores_of_any_length_run_one_trace_and_equal_the_eager_perplexity():
    from zoo.tasks import language_model as lm

    model = lm.LanguageModel(["the", "market", "fell", "rose", lm.EOS], units=4, num_layers=1)
    texts = ["the market fell", "the market rose the market fell the market rose"]
    scores = model.score(texts)
    for text, score in zip(texts, scores):
        ids = model.encode([text]).to_tensor()
        logits = model(ids[:, :-1], training=False)
        cross_entropy = keras.ops.sparse_categorical_crossentropy(ids[:, 1:], logits,
                                                                  from_logits=True)
        np.testing.assert_allclose(score, np.exp(np.mean(cross_entropy)), rtol=1e-5)
    spec = tf.TensorSpec([None, None], model.encode(texts[:1]).dtype)
    assert traced_call(model, spec).experimental_get_tracing_count() == 1
