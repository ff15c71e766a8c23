"""Candidate CPU kernels measured side by side with `zoo.layers.fast_recurrent`'s default.

They live here, not in `zoo/`, so that the benchmark can keep showing by how
much they lose (or win). Each one patches the `inner_loop` of the LSTM/GRU
layers of a *copy* of a model (same weights), like
`fast_recurrent.use_fast_kernels`; the fused and autodiff options cover only
what the benchmark feeds them: unmasked, forward-in-time sequences.
"""

import functools

import keras
import tensorflow as tf

from zoo.layers import fast_recurrent as fr
from zoo.layers.recurrent import iter_recurrent_layers


def _copy_with_inner_loop(model, inner_loop):
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    for layer in iter_recurrent_layers(copy):
        layer.inner_loop = functools.partial(inner_loop, layer)
    return copy


def _check_covered(layer, mask):
    if mask is not None or layer.go_backwards:
        raise NotImplementedError("benchmark options cover unmasked forward sequences only")


def _block_lstm(inputs, h0, c0, weights, bias):
    """TF's fused CPU LSTM (`BlockLSTMV2`) over [T, B, F] inputs -> h of every step.

    TF registers the V1 gradient (other gate order) for BlockLSTMV2, which
    gives wrong gradients, so the V2 gradient op is wired up by hand.
    """
    units = tf.shape(h0)[-1]
    zeros = tf.zeros([units], inputs.dtype)
    steps = tf.cast(tf.shape(inputs)[0], tf.int64)
    peepholes = {"wci": zeros, "wcf": zeros, "wco": zeros}

    @tf.custom_gradient
    def run(inputs, h0, c0, weights, bias):
        out = tf.raw_ops.BlockLSTMV2(seq_len_max=steps, x=inputs, cs_prev=c0, h_prev=h0, w=weights,
                                     b=bias, cell_clip=-1.0, use_peephole=False, **peepholes)

        def grad(d_h, d_c):
            g = tf.raw_ops.BlockLSTMGradV2(
                seq_len_max=steps, x=inputs, cs_prev=c0, h_prev=h0, w=weights, b=bias,
                i=out.i, cs=out.cs, f=out.f, o=out.o, ci=out.ci, co=out.co, h=out.h,
                cs_grad=d_c, h_grad=d_h, use_peephole=False, **peepholes)
            return g.x_grad, g.h_prev_grad, g.cs_prev_grad, g.w_grad, g.b_grad

        return (out.h, out.cs), grad

    return run(inputs, h0, c0, weights, bias)


def _fused_lstm_inner_loop(layer, sequences, initial_state, mask, training=False):
    _check_covered(layer, mask)
    cell = layer.cell
    weights = tf.concat([cell.kernel, cell.recurrent_kernel], axis=0)  # gates i, f, c~, o as Keras
    hs, cs = _block_lstm(tf.transpose(sequences, [1, 0, 2]), *initial_state, weights, cell.bias)
    outputs = tf.transpose(hs, [1, 0, 2]) if layer.return_sequences else hs[-1][:, None]
    return hs[-1], outputs, [hs[-1], cs[-1]]


def fused_block_lstm(model):
    """Copy of `model` whose LSTMs run `tf.raw_ops.BlockLSTMV2` (x @ W stays inside the loop)."""
    return _copy_with_inner_loop(model, _fused_lstm_inner_loop)


def _autodiff_inner_loop(layer, sequences, initial_state, mask, training=False):
    """The fast kernels' hoisted forward loop, but differentiated by TF's while_loop autodiff."""
    _check_covered(layer, mask)
    cell = layer.cell
    inputs = tf.transpose(sequences, [1, 0, 2])
    recurrent_kernel = tf.convert_to_tensor(cell.recurrent_kernel)
    kernel = tf.convert_to_tensor(cell.kernel)
    if isinstance(layer, keras.layers.LSTM):
        h, c, kept = fr._lstm_forward(inputs, kernel, tf.convert_to_tensor(cell.bias), None,
                                      *initial_state, recurrent_kernel, "outputs", hoist=True)
        states = [h, c]
    else:
        input_bias, recurrent_bias = tf.unstack(tf.convert_to_tensor(cell.bias))
        h, kept = fr._gru_forward(inputs, kernel, input_bias, None, initial_state[0],
                                  recurrent_kernel, recurrent_bias, "outputs", hoist=True)
        states = [h]
    return fr._keras_result(layer, None, kept["h"], states[0], states)


def hoisted_autodiff(model):
    """Copy of `model` with x @ W hoisted out of the loop but TF's automatic backward pass."""
    return _copy_with_inner_loop(model, _autodiff_inner_loop)


def hoisted_fast(model):
    """Copy of `model` on the fast kernel (XLA loops), x @ W hoisted at any batch size.

    The default hoists only for tiny batches (`fast_recurrent.HOIST_MAX_BATCH`);
    this copy measures the alternative.
    """
    return _copy_with_inner_loop(model, functools.partial(
        fr.fast_inner_loop, jit_compile=True, hoist=True, use_native=False))


def loops_only(model, jit_compile):
    """Copy of `model` on the fast kernel's XLA (or TF-graph) loops, never the native op.

    By default the forward loop runs natively (`zoo.layers.native`) outside
    XLA-compiled functions; this copy measures what the loops alone give.
    """
    return _copy_with_inner_loop(model, functools.partial(
        fr.fast_inner_loop, jit_compile=jit_compile, use_native=False))
