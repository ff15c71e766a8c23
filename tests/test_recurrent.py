"""Every cell's forward pass against a NumPy loop over its stated equations."""

import keras
import numpy as np
import pytest

from zoo.layers import (
    CoupledLSTMCell,
    ElmanCell,
    JordanCell,
    LayerNormLSTMCell,
    PeepholeLSTMCell,
    cudnn_ineligibility,
    iter_recurrent_layers,
    recurrent_stack,
    rnn_layer,
)

B, T, D, U = 3, 6, 4, 5
rng = np.random.default_rng(0)
X = rng.normal(size=(B, T, D)).astype("float32")


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def run_layer(layer, x=X):
    layer(x)  # build
    # Random (non-default) weights so that zero-initialized parts are exercised too.
    for w in layer.weights:
        w.assign(rng.normal(scale=0.5, size=w.shape).astype("float32"))
    return np.asarray(layer(x))


def test_elman_matches_equations():
    layer = keras.layers.RNN(ElmanCell(U), return_sequences=True)
    out = run_layer(layer)
    W, Uh, b = [np.asarray(w) for w in layer.cell.weights]
    h = np.zeros((B, U))
    for t in range(T):
        h = np.tanh(X[:, t] @ W + h @ Uh + b)
        np.testing.assert_allclose(out[:, t], h, atol=1e-5)


def test_jordan_feeds_back_the_output_not_the_hidden_state():
    cell = JordanCell(U, output_units=2, output_activation="softmax")
    layer = keras.layers.RNN(cell, return_sequences=True)
    out = run_layer(layer)
    W, Uy, b, V, c = (np.asarray(cell.kernel), np.asarray(cell.recurrent_kernel),
                      np.asarray(cell.bias), np.asarray(cell.output_kernel),
                      np.asarray(cell.output_bias))
    assert Uy.shape == (2, U)  # the recurrence is over y (2), not h (U)
    y = np.zeros((B, 2))
    for t in range(T):
        h = np.tanh(X[:, t] @ W + y @ Uy + b)
        z = h @ V + c
        y = np.exp(z - z.max(-1, keepdims=True))
        y /= y.sum(-1, keepdims=True)
        np.testing.assert_allclose(out[:, t], y, atol=1e-5)


def lstm_reference(x, W, Uh, b, gate_fn):
    h = np.zeros((B, U))
    c = np.zeros((B, U))
    outs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ W + h @ Uh + b
        h, c = gate_fn(z, c)
        outs.append(h)
    return np.stack(outs, 1)


def test_stock_lstm_matches_equations():
    layer = rnn_layer("lstm", U, return_sequences=True)
    out = run_layer(layer)
    W, Uh, b = [np.asarray(w) for w in layer.weights]

    def gates(z, c):
        i, f, g, o = np.split(z, 4, -1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c

    np.testing.assert_allclose(out, lstm_reference(X, W, Uh, b, gates), atol=1e-5)


def test_stock_gru_matches_the_seeds_equations():
    """r, z = sigmoid(.), h~ = tanh(W_x x + r * (W_h h + b_h) + b_x), h = z h + (1 - z) h~."""
    layer = rnn_layer("gru", U, return_sequences=True)
    out = run_layer(layer)
    W, Uh, b = [np.asarray(w) for w in layer.weights]  # b: [2, 3U] input and recurrent biases
    h = np.zeros((B, U))
    for t in range(T):
        xz, xr, xh = np.split(X[:, t] @ W + b[0], 3, -1)
        hz, hr, hh = np.split(h @ Uh + b[1], 3, -1)
        z, r = sigmoid(xz + hz), sigmoid(xr + hr)
        h = z * h + (1 - z) * np.tanh(xh + r * hh)
        np.testing.assert_allclose(out[:, t], h, atol=1e-5)


def test_peephole_lstm_matches_equations():
    cell = PeepholeLSTMCell(U)
    out = run_layer(keras.layers.RNN(cell, return_sequences=True))
    W, Uh, b, P = (np.asarray(w) for w in (cell.kernel, cell.recurrent_kernel, cell.bias,
                                            cell.peephole_weights))

    def gates(z, c_prev):
        zi, zf, zc, zo = np.split(z, 4, -1)
        i = sigmoid(zi + P[0] * c_prev)
        f = sigmoid(zf + P[1] * c_prev)
        c = f * c_prev + i * np.tanh(zc)
        o = sigmoid(zo + P[2] * c)  # the output gate peeks at the *new* cell
        return o * np.tanh(c), c

    np.testing.assert_allclose(out, lstm_reference(X, W, Uh, b, gates), atol=1e-5)


def test_coupled_gate_lstm_writes_exactly_what_it_forgets():
    cell = CoupledLSTMCell(U)
    out = run_layer(keras.layers.RNN(cell, return_sequences=True))
    W, Uh, b = (np.asarray(w) for w in (cell.kernel, cell.recurrent_kernel, cell.bias))
    assert W.shape == (D, 3 * U)

    def gates(z, c_prev):
        zf, zc, zo = np.split(z, 3, -1)
        f = sigmoid(zf)
        c = f * c_prev + (1 - f) * np.tanh(zc)
        return sigmoid(zo) * np.tanh(c), c

    np.testing.assert_allclose(out, lstm_reference(X, W, Uh, b, gates), atol=1e-5)


def test_layer_norm_lstm_matches_equations():
    cell = LayerNormLSTMCell(U)
    out = run_layer(keras.layers.RNN(cell, return_sequences=True))
    get = lambda w: np.asarray(w)  # noqa: E731
    W, Uh, b = get(cell.kernel), get(cell.recurrent_kernel), get(cell.bias)
    gx, gh, gc, bc = get(cell.input_gamma), get(cell.recurrent_gamma), get(cell.cell_gamma), get(
        cell.cell_beta)

    def ln(a, g, beta):
        return g * (a - a.mean(-1, keepdims=True)) / np.sqrt(a.var(-1, keepdims=True) + 1e-5) + beta

    h, c = np.zeros((B, U)), np.zeros((B, U))
    for t in range(T):
        z = ln(X[:, t] @ W, gx, 0) + ln(h @ Uh, gh, 0) + b
        i, f, g, o = np.split(z, 4, -1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(ln(c, gc, bc))
        np.testing.assert_allclose(out[:, t], h, atol=1e-5)


def test_forget_gate_bias_starts_at_one():
    for cell, block in ((PeepholeLSTMCell(U), slice(U, 2 * U)), (CoupledLSTMCell(U), slice(0, U))):
        keras.layers.RNN(cell)(X)
        bias = np.asarray(cell.bias)
        np.testing.assert_array_equal(bias[block], 1.0)
        assert np.count_nonzero(bias) == U


@pytest.mark.parametrize("cell", ["elman", "peephole", "coupled", "layernorm", "lstm", "gru"])
def test_cells_learn_a_sequence_task(cell):
    """Gradients flow: each cell learns "is the first element positive?" (needs memory)."""
    keras.utils.set_random_seed(1)
    x = np.random.default_rng(1).normal(size=(256, 8, 1)).astype("float32")
    y = (x[:, 0, 0] > 0).astype("float32")
    model = keras.Sequential([keras.Input((8, 1)), rnn_layer(cell, 8, return_sequences=False),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.03), "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=25, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9


@pytest.mark.parametrize("cell_cls", [ElmanCell, PeepholeLSTMCell, CoupledLSTMCell,
                                      LayerNormLSTMCell])
def test_cells_round_trip_through_config(cell_cls):
    layer = keras.layers.RNN(cell_cls(U), return_sequences=True)
    out = run_layer(layer)
    clone = keras.layers.RNN.from_config(layer.get_config())
    clone(X)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(X)), out, atol=1e-6)


def test_recurrent_stack_is_cudnn_eligible_and_masked():
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True)(inputs)
    x = recurrent_stack(x, 6, num_layers=2, cell="gru", bidirectional=True, dropout=0.2,
                        return_sequences=False)
    model = keras.Model(inputs, x)
    layers = list(iter_recurrent_layers(model))
    assert len(layers) == 4  # 2 layers x 2 directions
    assert all(cudnn_ineligibility(layer) == [] for layer in layers)
    ids = np.array([[3, 4, 0, 0], [5, 0, 0, 0]])
    np.testing.assert_allclose(model(ids), model(ids[:, :2]), atol=1e-6)  # padding is ignored


def test_rnn_layer_refuses_arguments_that_lose_cudnn():
    with pytest.raises(ValueError, match="cuDNN"):
        rnn_layer("lstm", 4, recurrent_dropout=0.1)
    with pytest.raises(ValueError, match="Unknown cell"):
        rnn_layer("transformer", 4)


def test_cudnn_ineligibility_names_the_reason():
    assert "recurrent_dropout is not 0" in cudnn_ineligibility(
        keras.layers.LSTM(4, recurrent_dropout=0.1))
    assert "GRU reset_after is False" in cudnn_ineligibility(keras.layers.GRU(4, reset_after=False))
    assert "activation is not tanh" in cudnn_ineligibility(keras.layers.LSTM(4, activation="relu"))
