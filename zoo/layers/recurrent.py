"""The recurrent toolkit: the cells the field teaches and the production stack.

Two families live here:

* **Teaching cells** (`ElmanCell`, `JordanCell`, `PeepholeLSTMCell`,
  `CoupledLSTMCell`, `LayerNormLSTMCell`): explicit implementations of the
  classic equations, wrapped in `keras.layers.RNN`. They are exact, readable and
  serializable, but they run the generic step loop: **no cuDNN kernel**.
* **The production path** (`rnn_layer`, `recurrent_stack`): stock
  `keras.layers.LSTM` / `keras.layers.GRU` built only with arguments that keep
  them cuDNN-eligible on a GPU. `cudnn_ineligibility` says why a layer is not.

Gate weights follow Keras' layout: one `kernel` [input_dim, n*units], one
`recurrent_kernel` [units, n*units] and one `bias` [n*units], gates in the
order i, f, c~, o (a checkpoint of a plain LSTM maps onto it directly).

Example:

>>> import keras
>>> from zoo.layers import PeepholeLSTMCell
>>> layer = keras.layers.RNN(PeepholeLSTMCell(16), return_sequences=True)
>>> layer(keras.random.normal((2, 5, 3))).shape
(2, 5, 16)
"""

import keras
from keras import ops

CELL_TYPES = ("lstm", "gru", "elman", "jordan", "peephole", "coupled", "layernorm")


def _sigmoid(x):
    return ops.sigmoid(x)


class _GatedCell(keras.layers.Layer):
    """Shared weight creation for cells with `num_gates` stacked gate blocks."""

    num_gates = 1

    def __init__(self, units, unit_forget_bias=True, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"`units` must be a positive int, got {units!r}")
        self.units = units
        self.unit_forget_bias = unit_forget_bias
        self.seed = seed

    def build(self, input_shape):
        input_dim = input_shape[-1]
        width = self.num_gates * self.units
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, width),
            initializer=keras.initializers.GlorotUniform(seed=self.seed),
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(self._recurrent_input_dim(), width),
            initializer=keras.initializers.Orthogonal(seed=self.seed),
        )
        self.bias = self.add_weight(name="bias", shape=(width,), initializer=self._bias_init)

    def _recurrent_input_dim(self):
        return self.units

    def _bias_init(self, shape, dtype=None):
        bias = ops.zeros(shape, dtype=dtype)
        if self.unit_forget_bias and self.num_gates >= 2:
            # Jozefowicz et al. 2015: a forget bias of 1 lets gradients flow early in training.
            u = self.units
            bias = ops.concatenate(
                [bias[:u], ops.ones((u,), dtype=dtype), bias[2 * u :]], axis=0
            )
        return bias

    def _preactivations(self, x, h):
        return ops.matmul(x, self.kernel) + ops.matmul(h, self.recurrent_kernel) + self.bias

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units, unit_forget_bias=self.unit_forget_bias, seed=self.seed
        )
        return config


@keras.saving.register_keras_serializable(package="zoo")
class ElmanCell(_GatedCell):
    """Elman network (the plain RNN): the hidden state is fed back.

        h_t = tanh(W x_t + U h_{t-1} + b)
        y_t = h_t

    The same computation as `keras.layers.SimpleRNNCell`, written out so that it
    can be read side by side with `JordanCell`.
    """

    def __init__(self, units, **kwargs):
        kwargs.setdefault("unit_forget_bias", False)
        super().__init__(units, **kwargs)
        self.state_size = units
        self.output_size = units

    def call(self, inputs, states, training=None):
        h = ops.tanh(self._preactivations(inputs, states[0]))
        return h, [h]


@keras.saving.register_keras_serializable(package="zoo")
class JordanCell(_GatedCell):
    """Jordan network: the previous *output* y_{t-1} is fed back, not the hidden state.

        h_t = tanh(W x_t + U y_{t-1} + b)
        y_t = act(V h_t + c)

    The state is y (size `output_units`), so what the network remembers is only
    what it has already said. `output_activation` defaults to tanh; use
    "softmax" for a classic Jordan tagger whose feedback is the previous
    prediction.
    """

    def __init__(self, units, output_units, output_activation="tanh", **kwargs):
        kwargs.setdefault("unit_forget_bias", False)
        super().__init__(units, **kwargs)
        self.output_units = output_units
        self.output_activation = keras.activations.get(output_activation)
        self.state_size = output_units
        self.output_size = output_units

    def _recurrent_input_dim(self):
        return self.output_units

    def build(self, input_shape):
        super().build(input_shape)
        self.output_kernel = self.add_weight(
            name="output_kernel",
            shape=(self.units, self.output_units),
            initializer=keras.initializers.GlorotUniform(seed=self.seed),
        )
        self.output_bias = self.add_weight(
            name="output_bias", shape=(self.output_units,), initializer="zeros"
        )

    def call(self, inputs, states, training=None):
        h = ops.tanh(self._preactivations(inputs, states[0]))
        y = self.output_activation(ops.matmul(h, self.output_kernel) + self.output_bias)
        return y, [y]

    def get_config(self):
        config = super().get_config()
        config.update(
            output_units=self.output_units,
            output_activation=keras.activations.serialize(self.output_activation),
        )
        return config


class _LSTMFamilyCell(_GatedCell):
    """State (h, c); subclasses define how the gates combine."""

    num_gates = 4

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        self.state_size = [units, units]
        self.output_size = units

    def _split(self, z):
        return ops.split(z, self.num_gates, axis=-1)


@keras.saving.register_keras_serializable(package="zoo")
class PeepholeLSTMCell(_LSTMFamilyCell):
    """LSTM with peephole connections (Gers & Schmidhuber 2000): gates see the cell.

        i_t = sigmoid(W_i x_t + U_i h_{t-1} + p_i * c_{t-1} + b_i)
        f_t = sigmoid(W_f x_t + U_f h_{t-1} + p_f * c_{t-1} + b_f)
        c_t = f_t * c_{t-1} + i_t * tanh(W_c x_t + U_c h_{t-1} + b_c)
        o_t = sigmoid(W_o x_t + U_o h_{t-1} + p_o * c_t + b_o)
        h_t = o_t * tanh(c_t)

    p_i, p_f, p_o are diagonal (element-wise) peephole weights. Not cuDNN.
    """

    def build(self, input_shape):
        super().build(input_shape)
        self.peephole_weights = self.add_weight(
            name="peephole_weights", shape=(3, self.units), initializer="zeros"
        )

    def call(self, inputs, states, training=None):
        h_prev, c_prev = states
        z_i, z_f, z_c, z_o = self._split(self._preactivations(inputs, h_prev))
        p_i, p_f, p_o = self.peephole_weights[0], self.peephole_weights[1], self.peephole_weights[2]
        i = _sigmoid(z_i + p_i * c_prev)
        f = _sigmoid(z_f + p_f * c_prev)
        c = f * c_prev + i * ops.tanh(z_c)
        o = _sigmoid(z_o + p_o * c)
        h = o * ops.tanh(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="zoo")
class CoupledLSTMCell(_LSTMFamilyCell):
    """LSTM with coupled input and forget gates (CIFG, Greff et al. 2017).

        f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f)
        i_t = 1 - f_t
        c_t = f_t * c_{t-1} + i_t * tanh(W_c x_t + U_c h_{t-1} + b_c)
        o_t = sigmoid(W_o x_t + U_o h_{t-1} + b_o)
        h_t = o_t * tanh(c_t)

    One gate fewer than the LSTM (weights for f, c~, o only); the cell forgets
    exactly as much as it writes. Not cuDNN.
    """

    num_gates = 3

    def _bias_init(self, shape, dtype=None):
        # Gate order here is f, c~, o: the forget bias is the first block.
        bias = ops.zeros(shape, dtype=dtype)
        if self.unit_forget_bias:
            u = self.units
            bias = ops.concatenate([ops.ones((u,), dtype=dtype), bias[u:]], axis=0)
        return bias

    def call(self, inputs, states, training=None):
        h_prev, c_prev = states
        z_f, z_c, z_o = self._split(self._preactivations(inputs, h_prev))
        f = _sigmoid(z_f)
        c = f * c_prev + (1.0 - f) * ops.tanh(z_c)
        o = _sigmoid(z_o)
        h = o * ops.tanh(c)
        return h, [h, c]


def _layer_norm(x, gamma, beta, epsilon):
    mean = ops.mean(x, axis=-1, keepdims=True)
    variance = ops.mean(ops.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * ops.rsqrt(variance + epsilon) * gamma + beta


@keras.saving.register_keras_serializable(package="zoo")
class LayerNormLSTMCell(_LSTMFamilyCell):
    """Layer-normalized LSTM (Ba, Kiros & Hinton 2016).

        [z_i, z_f, z_c, z_o] = LN(W x_t; g_x, 0) + LN(U h_{t-1}; g_h, 0) + b
        i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o)
        c_t = f * c_{t-1} + i * tanh(z_c)
        h_t = o * tanh(LN(c_t; g_c, b_c))

    LN(a; g, b) = g * (a - mean(a)) / sqrt(var(a) + eps) + b over the feature
    axis (each of the two projections is normalized as a whole). Normalizing
    per step keeps the pre-activations well scaled on long sequences, where
    batch normalization would need per-step statistics. Not cuDNN.
    """

    def __init__(self, units, epsilon=1e-5, **kwargs):
        super().__init__(units, **kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        super().build(input_shape)
        width = self.num_gates * self.units
        self.input_gamma = self.add_weight(name="input_gamma", shape=(width,), initializer="ones")
        self.recurrent_gamma = self.add_weight(
            name="recurrent_gamma", shape=(width,), initializer="ones"
        )
        self.cell_gamma = self.add_weight(name="cell_gamma", shape=(self.units,), initializer="ones")
        self.cell_beta = self.add_weight(name="cell_beta", shape=(self.units,), initializer="zeros")

    def call(self, inputs, states, training=None):
        h_prev, c_prev = states
        eps = self.epsilon
        z = (
            _layer_norm(ops.matmul(inputs, self.kernel), self.input_gamma, 0.0, eps)
            + _layer_norm(ops.matmul(h_prev, self.recurrent_kernel), self.recurrent_gamma, 0.0, eps)
            + self.bias
        )
        z_i, z_f, z_c, z_o = self._split(z)
        c = _sigmoid(z_f) * c_prev + _sigmoid(z_i) * ops.tanh(z_c)
        h = _sigmoid(z_o) * ops.tanh(_layer_norm(c, self.cell_gamma, self.cell_beta, eps))
        return h, [h, c]

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config


# --------------------------------------------------------------------------------------
# The production path: stock cuDNN-eligible LSTM / GRU.
# --------------------------------------------------------------------------------------

_VARIANT_CELLS = {
    "elman": ElmanCell,
    "peephole": PeepholeLSTMCell,
    "coupled": CoupledLSTMCell,
    "layernorm": LayerNormLSTMCell,
}


def rnn_layer(cell, units, return_sequences=True, name=None, **kwargs):
    """One recurrent layer. "lstm"/"gru" are stock Keras layers that take cuDNN on a GPU.

    The stock layers are built with Keras' defaults for every argument that
    decides cuDNN eligibility (tanh, sigmoid, use_bias, no unroll, no recurrent
    dropout, GRU reset_after), and passing any of those raises instead of
    silently losing the fast kernel. The teaching cells ("elman", "peephole",
    "coupled", "layernorm"; "jordan" needs `output_units`, so build it with
    `keras.layers.RNN(JordanCell(...))`) are wrapped in `keras.layers.RNN`.
    """
    forbidden = {"activation", "recurrent_activation", "use_bias", "unroll",
                 "recurrent_dropout", "reset_after"} & set(kwargs)
    if forbidden:
        raise ValueError(
            f"rnn_layer() keeps LSTM/GRU cuDNN-eligible; do not pass {sorted(forbidden)}."
        )
    if cell == "lstm":
        return keras.layers.LSTM(units, return_sequences=return_sequences, name=name, **kwargs)
    if cell == "gru":
        return keras.layers.GRU(units, return_sequences=return_sequences, name=name, **kwargs)
    if cell in _VARIANT_CELLS:
        return keras.layers.RNN(
            _VARIANT_CELLS[cell](units), return_sequences=return_sequences, name=name, **kwargs
        )
    raise ValueError(f"Unknown cell {cell!r}; choose one of {CELL_TYPES[:2] + tuple(_VARIANT_CELLS)}")


def recurrent_stack(
    x,
    units,
    num_layers=1,
    cell="lstm",
    bidirectional=False,
    dropout=0.0,
    return_sequences=True,
    name="rnn",
):
    """Apply a stack of (bi)directional recurrent layers to a functional tensor.

    Dropout is applied to each layer's *input* (Zaremba et al. 2014: dropout on
    the non-recurrent connections only), as a separate layer so the recurrent
    layers stay cuDNN-eligible. Masks from an `Embedding(mask_zero=True)`
    propagate through. Only the last layer honours `return_sequences=False`.

    Returns the output tensor.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    for depth in range(num_layers):
        last = depth == num_layers - 1
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{name}_dropout_{depth}")(x)
        layer = rnn_layer(cell, units, return_sequences=return_sequences or not last,
                          name=f"{name}_{cell}_{depth}")
        if bidirectional:
            layer = keras.layers.Bidirectional(layer, name=f"{name}_bi{cell}_{depth}")
        x = layer(x)
    return x


def gate_ineligibility(cell):
    """Reasons an LSTM/GRU cell's inference step is not the one cuDNN (and the zoo's
    native kernels) compute: tanh and sigmoid, biases, GRU reset_after ([] when it is)."""
    reasons = []
    if keras.activations.serialize(cell.activation) != "tanh":
        reasons.append("activation is not tanh")
    if keras.activations.serialize(cell.recurrent_activation) != "sigmoid":
        reasons.append("recurrent_activation is not sigmoid")
    if not cell.use_bias:
        reasons.append("use_bias is False")
    if isinstance(cell, keras.layers.GRUCell) and not cell.reset_after:
        reasons.append("GRU reset_after is False")
    return reasons


def cudnn_ineligibility(layer):
    """Reasons a stock LSTM/GRU layer would miss the cuDNN kernel ([] when eligible)."""
    reasons = gate_ineligibility(layer.cell)
    if layer.unroll:
        reasons.append("unroll is True")
    if layer.cell.recurrent_dropout:
        reasons.append("recurrent_dropout is not 0")
    if getattr(layer, "use_cudnn", "auto") is False:
        reasons.append("use_cudnn is False")
    return reasons


def iter_recurrent_layers(model):
    """Every stock LSTM/GRU in a model, looking inside Bidirectional wrappers."""
    seen = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        inner = [layer]
        if isinstance(layer, keras.layers.Bidirectional):
            inner = [layer.forward_layer, layer.backward_layer]
        for candidate in inner:
            if isinstance(candidate, (keras.layers.LSTM, keras.layers.GRU)) and id(candidate) not in seen:
                seen.add(id(candidate))
                yield candidate
