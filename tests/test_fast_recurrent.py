"""The fast CPU kernels equal the stock Keras LSTM/GRU: outputs, states and gradients.

No timings here (benchmarks/ measures speed); only numerical equality to 1e-5
on the same weights, with right-padded masks, and the fallbacks.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.layers import fast_recurrent, iter_recurrent_layers, recurrent_stack, rnn_layer
from zoo.layers.fast_recurrent import FastGRU, FastLSTM, fast_cpu_model, fast_kernel_unsupported

B, T, D, U = 4, 7, 5, 6
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
STOCK = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
FAST = {"lstm": FastLSTM, "gru": FastGRU}


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, T, D)).astype("float32")


def _right_padded_mask(lengths=(7, 4, 1, 2)):
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def _randomize(layer, seed=1):
    """Non-default weights (random biases too), so every term of the equations matters."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32"))


def _pair(cell, jit_compile, **kwargs):
    """A stock layer and a fast layer with the same weights."""
    stock, fast = STOCK[cell](U, **kwargs), FAST[cell](U, jit_compile=jit_compile, **kwargs)
    stock(_inputs()), fast(_inputs())
    _randomize(stock)
    fast.set_weights(stock.get_weights())
    return stock, fast


def _outputs_and_gradients(layer, x, mask=None, initial_state=None, training=False):
    """Outputs (and states) plus d(weighted sum of outputs)/d(inputs, weights)."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        kwargs = {} if initial_state is None else {"initial_state": initial_state}
        outputs = layer(x, mask=None if mask is None else tf.constant(mask), training=training,
                        **kwargs)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        # Distinct weights per element, so that a gradient routed to the wrong step shows.
        loss = sum(tf.reduce_sum(o * tf.reshape(tf.sin(tf.range(tf.size(o), dtype=o.dtype)),
                                                tf.shape(o))) for o in outputs)
    gradients = tape.gradient(loss, [x] + layer.trainable_weights)
    return [o.numpy() for o in outputs], [tf.convert_to_tensor(g).numpy() for g in gradients]


def _assert_same(stock, fast, **call_kwargs):
    stock_out, stock_grads = _outputs_and_gradients(stock, _inputs(), **call_kwargs)
    fast_out, fast_grads = _outputs_and_gradients(fast, _inputs(), **call_kwargs)
    for expected, actual in zip(stock_out + stock_grads, fast_out + fast_grads):
        np.testing.assert_allclose(actual, expected, **TOLERANCE)


LAYER_CONFIGS = [
    {"return_sequences": True},
    {"return_sequences": False},
    {"return_sequences": True, "go_backwards": True},
    {"return_sequences": False, "go_backwards": True},
    {"return_sequences": True, "zero_output_for_mask": True},
    {"return_sequences": False, "zero_output_for_mask": True},
    {"return_sequences": True, "return_state": True},
]


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("config", LAYER_CONFIGS, ids=lambda c: "-".join(sorted(c)))
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_equal_to_stock_forward_and_gradients(cell, config, masked, training):
    """training=True keeps the gates for the backward pass; False recomputes them."""
    stock, fast = _pair(cell, False, **config)
    _assert_same(stock, fast, mask=_right_padded_mask() if masked else None, training=training)


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("config", LAYER_CONFIGS[:4], ids=lambda c: "-".join(sorted(c)))
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_xla_compiled_loops_equal_stock(cell, config, training):
    """The same kernels, XLA-compiled (a few configurations: each one compiles)."""
    stock, fast = _pair(cell, True, **config)
    _assert_same(stock, fast, mask=_right_padded_mask(), training=training)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_batch_of_one(cell, training, jit_compile):
    """Tiny inference batches hoist x @ W out of the loop; larger ones project per step."""
    stock, fast = _pair(cell, jit_compile, return_sequences=True, go_backwards=True)
    x = tf.constant(_inputs()[:1])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        stock_out, fast_out = stock(x, training=training), fast(x, training=training)
    np.testing.assert_allclose(fast_out.numpy(), stock_out.numpy(), **TOLERANCE)
    for expected, actual in zip(tape.gradient(stock_out, [x] + stock.trainable_weights),
                                tape.gradient(fast_out, [x] + fast.trainable_weights)):
        np.testing.assert_allclose(actual.numpy(), expected.numpy(), **TOLERANCE)


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_only_tiny_batches_hoist_the_input_projection(training):
    """The measured rule (benchmarks/README.md): per-step x @ W unless the batch is tiny."""
    plan = lambda batch, batch_major=False: fast_recurrent._loop_plan(
        tf.TensorSpec([batch, T, D] if batch_major else [T, batch, D]), batch_major, training,
        return_sequences=True, hoist=None)
    assert plan(1)[1] and plan(fast_recurrent.HOIST_MAX_BATCH)[1] and plan(1, True)[1]
    assert not plan(64)[1] and not plan(None)[1]  # None: batch unknown at trace time
    assert not plan(64, True)[1]
    assert plan(64)[0] == ("all" if training else "outputs")


@pytest.mark.parametrize("hoist", [False, True], ids=["per-step", "hoisted"])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forced_input_projection_placement(cell, training, hoist):
    """Either placement of x @ W (the benchmark measures both) equals the stock layer."""
    stock, fast = _pair(cell, False, return_sequences=True)
    fast.inner_loop = functools.partial(fast_recurrent._run_fast, fast, jit_compile=False,
                                        hoist=hoist)
    _assert_same(stock, fast, mask=_right_padded_mask(), training=training)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_initial_state_with_mask_and_go_backwards(cell):
    """A nonzero initial state with leading masked steps: Keras outputs zeros there."""
    stock, fast = _pair(cell, False, return_sequences=True, go_backwards=True, return_state=True)
    rng = np.random.default_rng(3)
    states = [tf.constant(rng.normal(size=(B, U)).astype("float32"))
              for _ in range(2 if cell == "lstm" else 1)]
    _assert_same(stock, fast, mask=_right_padded_mask(), initial_state=states)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_any_mask_pattern(cell):
    """Not only right padding: the kernels apply Keras' per-step masking rule."""
    stock, fast = _pair(cell, False, return_sequences=True)
    mask = np.random.default_rng(4).random((B, T)) > 0.4
    _assert_same(stock, fast, mask=mask)


def _zoo_style_model(cell):
    """Token ids with right padding -> Embedding(mask_zero) -> 2-layer BiRNN -> pooled logits."""
    ids = keras.Input((T,), dtype="int32")
    x = keras.layers.Embedding(20, D, mask_zero=True)(ids)
    x = recurrent_stack(x, U, num_layers=2, cell=cell, bidirectional=True, dropout=0.1,
                        return_sequences=False)
    model = keras.Model(ids, keras.layers.Dense(3)(x))
    for layer in iter_recurrent_layers(model):
        _randomize(layer, seed=len(layer.name))
    return model


def _token_ids():
    ids = np.random.default_rng(5).integers(1, 20, size=(B, T))
    return np.where(_right_padded_mask(), ids, 0).astype("int32")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fast_cpu_model_equals_stock_model(cell):
    model = _zoo_style_model(cell)
    fast = fast_cpu_model(model)
    ids = tf.constant(_token_ids())
    np.testing.assert_allclose(fast(ids).numpy(), model(ids).numpy(), **TOLERANCE)
    with tf.GradientTape(persistent=True) as tape:
        stock_loss = tf.reduce_sum(tf.sin(model(ids)))
        fast_loss = tf.reduce_sum(tf.sin(fast(ids)))
    for expected, actual in zip(tape.gradient(stock_loss, model.trainable_weights),
                                tape.gradient(fast_loss, fast.trainable_weights)):
        np.testing.assert_allclose(tf.convert_to_tensor(actual).numpy(),  # embedding's are
                                   tf.convert_to_tensor(expected).numpy(),  # IndexedSlices
                                   **TOLERANCE)


def test_fast_cpu_model_leaves_the_original_stock():
    model = _zoo_style_model("lstm")
    fast_cpu_model(model)
    for layer in iter_recurrent_layers(model):
        assert "inner_loop" not in layer.__dict__
        assert type(layer) is keras.layers.LSTM
    assert type(rnn_layer("lstm", 4)) is keras.layers.LSTM  # the zoo's builders stay stock


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_checkpoints_are_interchangeable(cell, tmp_path):
    """Weights trained on either path load into the other: same variables, same file."""
    stock, fast = _pair(cell, False, return_sequences=True)
    assert [w.path.split("/")[-1] for w in fast.weights] == \
        [w.path.split("/")[-1] for w in stock.weights]
    model = keras.Sequential([keras.Input((T, D)), fast])
    path = tmp_path / "fast.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)  # FastLSTM/FastGRU are registered serializables
    assert type(reloaded.layers[0]) is FAST[cell]
    np.testing.assert_allclose(reloaded(_inputs()).numpy(), stock(_inputs()).numpy(), **TOLERANCE)


def test_fallback_to_stock_when_a_gpu_is_visible(monkeypatch):
    """With a GPU the stock code runs (and takes cuDNN there); the fast kernel is not called."""
    monkeypatch.setattr(fast_recurrent, "_gpu_visible", lambda: True)

    def fail(*args, **kwargs):
        raise AssertionError("fast kernel used although a GPU is visible")

    monkeypatch.setattr(fast_recurrent, "_run_fast", fail)
    stock, fast = _pair("lstm", False, return_sequences=True)
    np.testing.assert_allclose(fast(_inputs()).numpy(), stock(_inputs()).numpy(), **TOLERANCE)


def test_unsupported_configurations_are_named():
    assert fast_kernel_unsupported(keras.layers.LSTM(4)) == []
    assert fast_kernel_unsupported(keras.layers.GRU(4)) == []
    assert "input dropout while training" in fast_kernel_unsupported(
        keras.layers.LSTM(4, dropout=0.2), training=True)
    assert fast_kernel_unsupported(keras.layers.LSTM(4, dropout=0.2), training=False) == []
    assert "GRU reset_after is False" in fast_kernel_unsupported(
        keras.layers.GRU(4, reset_after=False))
    assert "activation is not tanh" in fast_kernel_unsupported(
        keras.layers.LSTM(4, activation="relu"))


def test_unsupported_configuration_runs_stock_code():
    """reset_after=False GRU: the fast layer quietly computes what the stock layer does."""
    stock, fast = _pair("gru", False, return_sequences=True, reset_after=False)
    _assert_same(stock, fast, mask=_right_padded_mask())
