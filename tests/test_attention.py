"""Tests of the additive (Bahdanau) and multiplicative (Luong) attention layers."""

import keras
import numpy as np
import pytest

from zoo.layers.attention import AdditiveAttention, MultiplicativeAttention

BATCH, TARGET_STEPS, SOURCE_STEPS, QUERY_DIM, VALUE_DIM = 3, 4, 6, 5, 7
SOURCE_LENGTHS = np.array([6, 3, 1])  # right-padded, never empty


def make_inputs(seed=0):
    rng = np.random.default_rng(seed)
    query = rng.normal(size=(BATCH, TARGET_STEPS, QUERY_DIM)).astype("float32")
    values = rng.normal(size=(BATCH, SOURCE_STEPS, VALUE_DIM)).astype("float32")
    mask = np.arange(SOURCE_STEPS)[None, :] < SOURCE_LENGTHS[:, None]
    return query, values, mask


LAYERS = {
    "additive": lambda **kw: AdditiveAttention(units=8, **kw),
    "multiplicative": lambda **kw: MultiplicativeAttention(**kw),
    "multiplicative_scaled": lambda **kw: MultiplicativeAttention(use_scale=True, **kw),
}


def built_layer(name, **kwargs):
    layer = LAYERS[name](**kwargs)
    layer.build((None, TARGET_STEPS, QUERY_DIM), (None, SOURCE_STEPS, VALUE_DIM))
    if name == "multiplicative_scaled":
        layer.scale.assign(1.7)  # not the initial 1, so the scale is exercised
    return layer


def reference_scores(layer, query, values):
    """NumPy scores of the equations in the docstrings, [B, Tq, Ts]."""
    if isinstance(layer, AdditiveAttention):
        w_q = layer.query_projection.kernel.numpy()
        w_k = layer.key_projection.kernel.numpy()
        v = layer.score_projection.kernel.numpy()[:, 0]
        hidden = np.tanh((query @ w_q)[:, :, None, :] + (values @ w_k)[:, None, :, :])
        return hidden @ v
    w = layer.key_projection.kernel.numpy()  # [D, H]
    scores = np.einsum("bqh,bsh->bqs", query, values @ w)
    if layer.use_scale:
        scores = scores * float(layer.scale.numpy())
    return scores


def reference_attention(layer, query, values, mask):
    scores = reference_scores(layer, query.astype("float64"), values.astype("float64"))
    scores = np.where(mask[:, None, :], scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    return weights @ values, weights


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("single_step", [False, True], ids=["all_steps", "one_step"])
def test_matches_numpy_reference_and_masks_padding(name, single_step):
    query, values, mask = make_inputs()
    layer = built_layer(name)
    expected_context, expected_weights = reference_attention(layer, query, values, mask)
    if single_step:
        query, expected_context, expected_weights = (
            query[:, 0],
            expected_context[:, 0],
            expected_weights[:, 0],
        )
    context, weights = layer(query, values, mask=mask)
    context, weights = keras.ops.convert_to_numpy(context), keras.ops.convert_to_numpy(weights)

    assert context.shape == expected_context.shape
    assert weights.shape == expected_weights.shape
    np.testing.assert_allclose(context, expected_context, atol=1e-5)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    padding = ~mask if single_step else np.broadcast_to(~mask[:, None], weights.shape)
    assert np.all(weights[padding] == 0.0)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_precomputed_keys_and_single_steps_agree_with_teacher_forcing(name):
    query, values, mask = make_inputs(seed=1)
    layer = built_layer(name)
    context, weights = layer(query, values, mask=mask)
    keys = layer.precompute_keys(values)
    for t in range(TARGET_STEPS):
        step_context, step_weights = layer(query[:, t], values, mask=mask, keys=keys)
        np.testing.assert_allclose(step_context, context[:, t], atol=1e-5)
        np.testing.assert_allclose(step_weights, weights[:, t], atol=1e-6)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_step_queries_may_hold_several_consecutive_rows_per_source(name):
    """Beam search's layout: the TARGET_STEPS query rows of each source are consecutive."""
    query, values, mask = make_inputs(seed=2)
    layer = built_layer(name)
    expected_context, expected_weights = reference_attention(layer, query, values, mask)
    rows = query.reshape(BATCH * TARGET_STEPS, QUERY_DIM)
    context, weights = layer(rows, values, mask=mask, keys=layer.precompute_keys(values))
    np.testing.assert_allclose(context, expected_context.reshape(BATCH * TARGET_STEPS, -1),
                               atol=1e-5)
    np.testing.assert_allclose(weights, expected_weights.reshape(BATCH * TARGET_STEPS, -1),
                               atol=1e-5)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_without_mask_attends_everywhere(name):
    query, values, _ = make_inputs(seed=2)
    layer = built_layer(name)
    context = layer(query, values, return_attention_scores=False)
    expected, _ = reference_attention(layer, query, values, np.ones((BATCH, SOURCE_STEPS), bool))
    np.testing.assert_allclose(context, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["additive", "multiplicative"])
def test_float16_softmax_sums_to_one_without_nans(name):
    query, values, mask = make_inputs(seed=3)
    layer = built_layer(name, dtype="mixed_float16")
    context, weights = layer(query * 30.0, values * 30.0, mask=mask)  # large scores
    assert context.dtype == "float16" and weights.dtype == "float16"
    weights = keras.ops.convert_to_numpy(weights).astype("float32")
    assert np.all(np.isfinite(weights)) and np.all(np.isfinite(context))
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=2e-3)
    assert np.all(weights[np.broadcast_to(~mask[:, None], weights.shape)] == 0.0)


def test_fully_masked_row_gives_zero_weights_not_nans():
    query, values, mask = make_inputs(seed=4)
    mask[1] = False
    context, weights = built_layer("additive")(query, values, mask=mask)
    assert np.all(keras.ops.convert_to_numpy(weights)[1] == 0.0)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(context)))


def test_output_keeps_the_query_mask():
    query, values, mask = make_inputs(seed=5)
    masked_query = keras.layers.Masking(mask_value=0.0)(np.where(query > 3, 0.0, query))
    context, _ = built_layer("multiplicative")(masked_query, values, mask=mask)
    assert context._keras_mask is not None


def test_precompute_keys_needs_a_built_layer():
    with pytest.raises(ValueError, match="built"):
        AdditiveAttention(units=4).precompute_keys(make_inputs()[1])


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_config_round_trip(name):
    layer = LAYERS[name](kernel_initializer="he_normal", name="attention")
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


def test_saved_model_round_trip(tmp_path):
    query = keras.Input((None, QUERY_DIM))
    values = keras.Input((SOURCE_STEPS, VALUE_DIM))
    mask = keras.Input((SOURCE_STEPS,), dtype="bool")
    additive_context, _ = AdditiveAttention(units=8)(query, values, mask=mask)
    context, weights = MultiplicativeAttention(use_scale=True)(query, values, mask=mask)
    model = keras.Model([query, values, mask], [additive_context, context, weights])
    path = str(tmp_path / "attention.keras")
    model.save(path)
    restored = keras.models.load_model(path, safe_mode=True)
    inputs = list(make_inputs(seed=6))
    for expected, actual in zip(model(inputs), restored(inputs)):
        np.testing.assert_allclose(actual, expected, atol=1e-6)
