"""Opt-in fast CPU kernels for the production LSTM / GRU, with the same weights.

On a CPU, stock `keras.layers.LSTM/GRU` run Keras' generic step loop: every
step multiplies the input by the kernel, calls a dozen small ops and lets TF
differentiate the `while_loop` (which stacks every intermediate). These kernels
do what cuDNN does on a GPU:

* the recurrent loops are XLA-compiled by default (`DEFAULT_JIT_COMPILE = True`:
  each step's gate arithmetic becomes one fused kernel); `jit_compile=False`
  gives plain TF-graph loops, which lost to XLA in every recurrent row of
  benchmarks/results.json (see benchmarks/README.md);
* for batches of at most `HOIST_MAX_BATCH` sequences the input projection
  `x @ W + b` of all steps is one big matmul, hoisted out of the loop; larger
  batches compute `x_t @ W + b` inside the loop, next to `h @ U`, which was
  faster at batch 64 in training and inference alike (see `_hoist`);
* the backward pass is written out (`tf.custom_gradient`): one loop that only
  propagates `dh`/`dc` through `U^T`, then the weight and input gradients of all
  steps as big matmuls (`X^T dZ`, `H^T dZ`, `dZ W^T`);
* outside XLA-compiled functions both loops are native ops
  (`zoo.layers.native`, C++ built on first use) that split each step's
  product across the cores, each keeping its slice of the kernels in its own
  cache, in inference and in training; the XLA loops run inside XLA-compiled
  callers and when no C++ compiler is found.

What stays the same as the stock layers: the variables (`kernel`,
`recurrent_kernel`, `bias`, same shapes, names and gate order), so a checkpoint
trained on either path loads into the other and gives the same outputs (to
float32 round-off); right-padded masks, `go_backwards`, `zero_output_for_mask`
(used by `Bidirectional`), `return_state`, initial states. On a machine with a
visible GPU, and for configurations the kernels do not cover (input dropout
while training, recurrent dropout, non-default activations, `use_bias=False`,
GRU `reset_after=False`, `unroll`), the layers fall back to the stock code,
which takes cuDNN on a GPU.

Two ways in, both opt-in (the zoo's builders keep the stock layers):

>>> from zoo.layers.fast_recurrent import FastLSTM, fast_cpu_model
>>> layer = FastLSTM(64, return_sequences=True)     # a drop-in for keras.layers.LSTM
>>> fast = fast_cpu_model(model)     # a copy of a model, same weights  # doctest: +SKIP

Which options won and by how much is measured by `make bench`
(`python -m benchmarks.run`, then `python -m benchmarks.report`; see
benchmarks/README.md).
"""

import functools

import keras
import tensorflow as tf

from zoo.layers import native
from zoo.layers.recurrent import cudnn_ineligibility, gate_ineligibility, iter_recurrent_layers

# XLA-compile the recurrent loops on CPU (the default of FastLSTM/FastGRU, fast_cpu_model
# and use_fast_kernels): it fuses each step's gate arithmetic into one kernel. In
# benchmarks/results.json the XLA loops beat the plain TF-graph loops in every row (LSTM and
# GRU, T=50 and 200, training, inference and batch-1 latency; benchmarks/README.md). XLA
# compiles once per input shape, so callers feeding many distinct shapes (unbucketed text)
# may pass jit_compile=False.
DEFAULT_JIT_COMPILE = True
# Batches up to this size (when known at trace time) hoist x @ W out of the loop; larger
# ones project per step. At batch 64 per step was 1.36-1.40x faster than hoisting for
# inference and 3-6% faster for training (benchmarks/README.md, "zoo fast, x@W hoisted"
# rows); batches between 2 and 64 are unmeasured.
HOIST_MAX_BATCH = 2


# --------------------------------------------------------------------------------------
# Small helpers shared by both kernels (time-major tensors: [T, B, ...]).
# --------------------------------------------------------------------------------------


def _loop(body, carry, steps, reverse=False):
    """`tf.while_loop` over `steps` time steps; `body(t, *carry) -> carry`.

    `maximum_iterations` gives XLA a static trip count for the TensorArrays.
    """
    start = steps - 1 if reverse else 0
    delta = -1 if reverse else 1

    def step(t, *state):
        return (t + delta, *body(t, *state))

    result = tf.while_loop(
        lambda t, *_: (t >= 0) if reverse else (t < steps),
        step,
        (tf.convert_to_tensor(start, tf.int32), *carry),
        maximum_iterations=steps,
    )
    return result[1:]


def _array(steps, dtype, element_shape=None):
    return tf.TensorArray(dtype, size=steps, element_shape=element_shape)


def _where(mask_t, new, old):
    """Keras' masking rule: a masked step keeps the previous value (no-op without a mask)."""
    return new if mask_t is None else tf.where(mask_t, new, old)


def _previous(sequence, first):
    """[first, s_0, ..., s_{T-2}]: the value each step started from."""
    return tf.concat([first[None], sequence[:-1]], axis=0)


def _flat_matmul(sequence, matrix, transpose_a=False, transpose_b=False):
    """matmul of a [T, B, n] sequence (flattened to [T*B, n]) with a matrix."""
    flat = tf.reshape(sequence, [-1, tf.shape(sequence)[-1]])
    return tf.matmul(flat, matrix, transpose_a=transpose_a, transpose_b=transpose_b)


def _bias_gradient(grads, columns):
    """sum over every step and row of `grads` ([..., columns]) as a `[1, N] @ [N, columns]`
    product: TF's CPU `reduce_sum` over the outer axis of a [3200, 1024] gradient took 1.96
    ms against 0.82 ms (a probe on an Intel Xeon; the LSTM T=50 batch-64 training step)."""
    flat = tf.reshape(grads, [-1, columns])
    return tf.matmul(tf.ones([1, tf.shape(flat)[0]], flat.dtype), flat)[0]


def _weight_gradient(inputs, grads):
    """sum_t inputs_t^T @ grads_t as one [n, m] matmul over all steps."""
    return _flat_matmul(inputs, tf.reshape(grads, [-1, tf.shape(grads)[-1]]), transpose_a=True)


def _recurrent_weight_gradient(hs, h0, grads):
    """sum_t h_{t-1}^T @ grads_t (h_{-1} = h0) of time-major `hs` and `grads`.

    As h0^T @ grads_0 plus one matmul of hs[:-1] with grads[1:]: those slices
    of the leading axis share their tensors' buffers, where the `_previous`
    sequence would copy every step's h (0.2-0.4 ms of a T=50 batch-64 step).
    """
    return (tf.matmul(h0, grads[0], transpose_a=True)
            + _weight_gradient(hs[:-1], grads[1:]))


_XLA_FUNCTIONS = {}


def _compiled(loop, jit_compile):
    """`loop` itself, or its XLA-compiled version (one per loop, shared by all layers).

    XLA compiles once per input shape; `reduce_retracing` keeps TF from also
    re-tracing the Python for every new shape. The compiled loop is called on
    `stop_gradient` inputs: its gradient is the hand-written one, and a tape
    watching it would make TF export the loop's TensorLists across the XLA
    boundary, which XLA does not support.
    """
    if not jit_compile:
        return loop
    if loop not in _XLA_FUNCTIONS:
        _XLA_FUNCTIONS[loop] = tf.function(loop, jit_compile=True, reduce_retracing=True,
                                           autograph=False)
    compiled = _XLA_FUNCTIONS[loop]

    def call(*args):
        return compiled(*(tf.stop_gradient(a) if tf.is_tensor(a) else a for a in args))

    return call


# What a forward loop keeps of every step: nothing but the final state (inference of
# a many-to-one layer), the outputs (inference of a sequence layer), or everything
# the backward pass needs (training). Gradients of an inference-mode call re-run the
# forward loop keeping everything: a rare path that inference does not pay for.
LSTM_KEEP = {"last": (), "outputs": ("h",), "all": ("h", "c", "gates")}
GRU_KEEP = {"last": (), "outputs": ("h",), "all": ("h", "gates")}


def _kept_arrays(names, steps, dtype):
    return {name: _array(steps, dtype) for name in names}


def _write(arrays, t, values):
    """Write this step's kept values; `values` maps names to zero-argument callables."""
    return {name: array.write(t, values[name]()) for name, array in arrays.items()}


def _stack(arrays):
    return {name: array.stack() for name, array in arrays.items()}


def _last_step_gradient(d_hs, d_h_last, hs):
    """Upstream gradient of every step's h, with the final state's added to the last step."""
    if d_h_last is None:
        return tf.zeros_like(hs) if d_hs is None else d_hs
    if d_hs is None:  # many-to-one: zeros but the last step, written in one pass
        return tf.pad(d_h_last[None], [[tf.shape(hs)[0] - 1, 0], [0, 0], [0, 0]])
    return tf.concat([d_hs[:-1], d_hs[-1:] + d_h_last[None]], axis=0)


def _project(inputs, kernel, bias):
    """x_t @ W + b for all steps as one [T*B, F] x [F, nU] matmul."""
    steps, batch = tf.shape(inputs)[0], tf.shape(inputs)[1]
    projected = tf.nn.bias_add(_flat_matmul(inputs, kernel), bias)  # fuses into the matmul
    return tf.reshape(projected, [steps, batch, tf.shape(kernel)[-1]])


def _input_projection(inputs, kernel, bias, hoist):
    """t -> x_t @ W + b, hoisted out of the loop (one big matmul) or computed per step.

    Hoisting turns T small products into one big one; computing it per step
    keeps the [B, nU] working set in cache instead of streaming a [T, B, nU]
    tensor through memory. Which one `_hoist` picks is a heuristic; the
    benchmark compares both for inference (benchmarks/README.md).
    """
    if hoist:
        projected = _project(inputs, kernel, bias)
        return lambda t: projected[t]  # x[t] of a time-major tensor: no copy
    return lambda t: tf.nn.bias_add(tf.matmul(inputs[t], kernel), bias)


def _projection_gradients(inputs, kernel, d_projected, batch_major=False):
    """(d_inputs, d_kernel, d_bias) of x_t @ W + b for all steps, as big matmuls.

    `inputs` and `d_projected` are time-major; d_inputs is [B, T, F] with `batch_major`.
    """
    d_inputs = tf.reshape(_flat_matmul(d_projected, kernel, transpose_b=True), tf.shape(inputs))
    d_inputs = _swap_time_and_batch(d_inputs) if batch_major else d_inputs
    d_bias = _bias_gradient(d_projected, tf.shape(kernel)[-1])
    return d_inputs, _weight_gradient(inputs, d_projected), d_bias


def _native_ops(tensors):
    """The native op library if this forward pass can run it, else None.

    The native loops (`zoo.layers.native`) run in float32 outside XLA-compiled
    functions, forward and backward (`native.ops_for`).
    """
    return native.ops_for(*(t for t in tensors if t is not None))


def _native_mask(mask):
    """[T, B] bool for the native ops; empty (every step valid) without a mask."""
    return tf.zeros([0, 0], tf.bool) if mask is None else mask[:, :, 0]


def _native_lstm_forward(ops, inputs, kernel, bias, mask, h0, c0, recurrent_kernel, keep, hoist,
                         batch_major=False):
    """`_lstm_forward` by the native op: (h_last, c_last, kept).

    With `hoist` the op computes x @ W + b of all steps before its loop (each
    thread its own gate columns); otherwise x_t @ W inside each step. With
    `batch_major` it reads [B, T, F] inputs (no transpose); what it returns
    is time-major either way.
    """
    hs, h, c, cs, gates = ops.zoo_lstm_sequence(
        inputs, kernel, bias, recurrent_kernel, h0, c0, _native_mask(mask),
        return_sequences=keep == "outputs", keep_all=keep == "all", hoist_inputs=hoist,
        batch_major=batch_major)
    return h, c, {"last": {}, "outputs": {"h": hs}, "all": {"h": hs, "c": cs, "gates": gates}}[keep]


def _native_gru_forward(ops, inputs, kernel, input_bias, mask, h0, recurrent_kernel,
                        recurrent_bias, keep, hoist, batch_major=False):
    """`_gru_forward` by the native op: (h_last, kept), as `_native_lstm_forward`."""
    hs, h, gates = ops.zoo_gru_sequence(
        inputs, kernel, input_bias, recurrent_kernel, recurrent_bias, h0, _native_mask(mask),
        return_sequences=keep == "outputs", keep_all=keep == "all", hoist_inputs=hoist,
        batch_major=batch_major)
    return h, {"last": {}, "outputs": {"h": hs}, "all": {"h": hs, "gates": gates}}[keep]


def _native_lstm_backward(ops, mask, h0, c0, recurrent_kernel, hs, cs, gates, d_hs, d_c_last):
    """`_lstm_backward` by the native op: the loop natively, H^T dZ as one matmul."""
    dz, dh0, dc0 = ops.zoo_lstm_backward(recurrent_kernel, c0, cs, gates, d_hs, d_c_last,
                                         _native_mask(mask))
    return dz, dh0, dc0, _recurrent_weight_gradient(hs, h0, dz)


def _native_gru_backward(ops, mask, h0, recurrent_kernel, hs, gates, d_hs):
    """`_gru_backward` by the native op: the loop natively, H^T dZ as one matmul."""
    d_hr, d_xw, dh0 = ops.zoo_gru_backward(recurrent_kernel, h0, hs, gates, d_hs,
                                           _native_mask(mask))
    d_recurrent_bias = _bias_gradient(d_hr, tf.shape(recurrent_kernel)[-1])
    return d_xw, dh0, _recurrent_weight_gradient(hs, h0, d_hr), d_recurrent_bias


# --------------------------------------------------------------------------------------
# LSTM: gates i, f, c~, o (Keras order).
# --------------------------------------------------------------------------------------


def _lstm_gates(z):
    """Activated gates from pre-activations [..., 4U]: sigmoid except tanh for c~."""
    i, f, g, o = tf.split(z, 4, axis=-1)
    return tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)


def _lstm_forward(inputs, kernel, bias, mask, h0, c0, recurrent_kernel, keep, hoist):
    """The recurrent loop: (h_last, c_last, {kept name: [T, B, n]}), see `LSTM_KEEP`."""
    steps = tf.shape(inputs)[0]
    step_input = _input_projection(inputs, kernel, bias, hoist)

    def body(t, h, c, arrays):
        i, f, g, o = _lstm_gates(step_input(t) + tf.matmul(h, recurrent_kernel))
        new_c = f * c + i * g
        new_h = o * tf.tanh(new_c)
        mask_t = None if mask is None else mask[t]
        h, c = _where(mask_t, new_h, h), _where(mask_t, new_c, c)
        arrays = _write(arrays, t, {"h": lambda: h, "c": lambda: c,
                                    "gates": lambda: tf.concat([i, f, g, o], axis=-1)})
        return h, c, arrays

    h, c, arrays = _loop(body, (h0, c0, _kept_arrays(LSTM_KEEP[keep], steps, h0.dtype)), steps)
    return h, c, _stack(arrays)


def _lstm_backward(mask, h0, c0, recurrent_kernel, hs, cs, gates, d_hs, d_c_last):
    """Gradients (d_z of x_t @ W + b, d_h0, d_c0, d_recurrent_kernel) of the loop above.

    `d_hs` is the upstream gradient of every step's h. The loop carries dh, dc
    through U^T and derives each step's gate derivatives from the kept
    forward values inside the step, where they are in cache, instead of
    precomputing five [T, B, U] factor tensors for all steps (1-4% faster per
    LSTM training step, and less memory); the weight gradient is one big
    matmul after the loop.
    """
    steps = tf.shape(hs)[0]
    recurrent_transposed = tf.transpose(recurrent_kernel)

    def body(t, dh, dc, dzs):
        i, f, g, o = tf.split(gates[t], 4, axis=-1)
        c_prev = tf.where(t > 0, cs[tf.maximum(t - 1, 0)], c0)
        tanh_c = tf.tanh(cs[t])
        dh = dh + d_hs[t]
        step_dc = dc + dh * o * (1 - tanh_c * tanh_c)
        dz = tf.concat([step_dc * g * i * (1 - i), step_dc * c_prev * f * (1 - f),
                        step_dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], axis=-1)
        mask_t = None if mask is None else mask[t]
        if mask_t is not None:  # a masked step passed h, c through unchanged
            dz = tf.where(mask_t, dz, tf.zeros_like(dz))
        new_dh = _where(mask_t, tf.matmul(dz, recurrent_transposed), dh)
        new_dc = _where(mask_t, step_dc * f, dc)
        return new_dh, new_dc, dzs.write(t, dz)

    dh0, dc0, dzs = _loop(body, (tf.zeros_like(h0), d_c_last, _array(steps, hs.dtype)), steps,
                          reverse=True)
    dz = dzs.stack()
    return dz, dh0, dc0, _recurrent_weight_gradient(hs, h0, dz)


def lstm_sequence(inputs, kernel, bias, mask, h0, c0, recurrent_kernel, return_sequences=True,
                  training=False, jit_compile=False, hoist=None, use_native=True,
                  batch_major=False):
    """LSTM over a sequence, with a hand-written gradient.

    Args:
        inputs: [T, B, F] ([B, T, F] with `batch_major`); kernel: [F, 4U]; bias: [4U].
        mask: [T, B, 1] bool or None; a False step keeps the previous state.
        h0, c0: [B, U] initial states.
        recurrent_kernel: [U, 4U].
        return_sequences: return h of every step (else only the final states).
        training: keep what the backward pass needs during the forward pass.
        jit_compile: XLA-compile the forward and the backward loop (separately,
            so that only dense tensors cross the XLA boundary).
        hoist: compute `x @ kernel + bias` for all steps before the loop (True)
            or inside it (False); None: `_hoist`'s rule.
        use_native: run the forward and the backward loop natively
            (`zoo.layers.native`) where they can: float32, outside XLA-compiled
            functions.
        batch_major: `inputs` are [B, T, F]. The native loop reads them as
            they are; the XLA loops (and the backward pass) transpose them.

    Returns:
        (hs, h_last, c_last): h of every step [T, B, U] (None unless
        `return_sequences`) and the final states [B, U].
    """
    forward = _compiled(_lstm_forward, jit_compile)
    backward = _compiled(_lstm_backward, jit_compile)
    ops = use_native and _native_ops((inputs, kernel, bias, h0, c0, recurrent_kernel))
    if batch_major and not ops:
        inputs, batch_major = _swap_time_and_batch(inputs), False
    keep, hoist = _loop_plan(inputs, batch_major, training, return_sequences, hoist)

    @tf.custom_gradient
    def run(inputs, kernel, bias, h0, c0, recurrent_kernel):
        loop_args = (inputs, kernel, bias, mask, h0, c0, recurrent_kernel)
        if not ops:
            h_last, c_last, kept = forward(*loop_args, keep, hoist)
        else:
            h_last, c_last, kept = _native_lstm_forward(ops, *loop_args, keep, hoist, batch_major)

        def grad(*upstream):
            d_hs, d_h_last, d_c_last = upstream if return_sequences else (None, *upstream)
            time_major = _swap_time_and_batch(inputs) if batch_major else inputs
            if keep != "all":
                kept.update(forward(time_major, *loop_args[1:], "all", True)[2])
            d_hs = _last_step_gradient(d_hs, d_h_last, kept["h"])
            d_c_last = tf.zeros_like(c_last) if d_c_last is None else d_c_last
            backward_args = (mask, h0, c0, recurrent_kernel, kept["h"], kept["c"],
                             kept["gates"], d_hs, d_c_last)
            dz, dh0, dc0, d_recurrent = (_native_lstm_backward(ops, *backward_args) if ops
                                         else backward(*backward_args))
            return (*_projection_gradients(time_major, kernel, dz, batch_major), dh0, dc0,
                    d_recurrent)

        outputs = (kept["h"], h_last, c_last) if return_sequences else (h_last, c_last)
        return outputs, grad

    outputs = run(inputs, kernel, bias, h0, c0, recurrent_kernel)
    return tuple(outputs) if return_sequences else (None, *outputs)


def _swap_time_and_batch(sequence):
    """[T, B, ...] <-> [B, T, ...]."""
    return tf.transpose(sequence, [1, 0, 2])


def _loop_plan(inputs, batch_major, training, return_sequences, hoist):
    """(what the loop keeps, whether x @ W is hoisted), shared by the LSTM and GRU kernels."""
    keep = "all" if training else "outputs" if return_sequences else "last"
    batch = inputs.shape[0 if batch_major else 1]
    return keep, _hoist(batch) if hoist is None else bool(hoist)


def _hoist(batch):
    """Hoist x @ W out of the loop for batches known to be tiny.

    A batch of one then gets one [T, F] x [F, nU] product instead of T
    vector-matrix products. Other batches (and a batch size unknown at trace
    time) compute x_t @ W per step, next to h @ U, which keeps the step's
    working set in cache instead of streaming a [T, B, nU] tensor through
    memory; it was measured faster at batch 64 (see HOIST_MAX_BATCH).
    """
    return batch is not None and batch <= HOIST_MAX_BATCH


# --------------------------------------------------------------------------------------
# GRU (reset_after=True, Keras order z, r, h~).
# --------------------------------------------------------------------------------------


def _gru_gates(xw, hr):
    """z, r, h~ and the recurrent h~ term from the input and recurrent projections.

    hr = h @ U + b_recurrent; the reset gate scales hr's h~ block (reset_after).
    """
    x_zr, x_h = tf.split(xw, [-1, tf.shape(hr)[-1] // 3], axis=-1)
    hr_zr, hr_h = tf.split(hr, [-1, tf.shape(hr)[-1] // 3], axis=-1)
    z, r = tf.split(tf.sigmoid(x_zr + hr_zr), 2, axis=-1)
    return z, r, tf.tanh(x_h + r * hr_h), hr_h


def _gru_forward(inputs, kernel, input_bias, mask, h0, recurrent_kernel, recurrent_bias, keep,
                 hoist):
    """The recurrent loop: (h_last, {kept name: [T, B, n]}); gates are [z, r, h~, hr_h]."""
    steps = tf.shape(inputs)[0]
    step_input = _input_projection(inputs, kernel, input_bias, hoist)

    def body(t, h, arrays):
        gates = _gru_gates(step_input(t), tf.matmul(h, recurrent_kernel) + recurrent_bias)
        z, _, hh, _ = gates
        new_h = z * h + (1 - z) * hh
        h = _where(None if mask is None else mask[t], new_h, h)
        arrays = _write(arrays, t, {"h": lambda: h, "gates": lambda: tf.concat(gates, axis=-1)})
        return h, arrays

    h, arrays = _loop(body, (h0, _kept_arrays(GRU_KEEP[keep], steps, h0.dtype)), steps)
    return h, _stack(arrays)


def _gru_backward(mask, h0, recurrent_kernel, hs, gates, d_hs):
    """Gradients (d of x_t @ W + b, d_h0, d_recurrent_kernel, d_recurrent_bias) of the loop.

    Every pre-activation gradient of a step is dh_t times a factor known from
    the forward values, so the loop only carries dh; the factors and the
    weight gradients are computed for all steps at once.
    """
    steps = tf.shape(hs)[0]
    h_prev = _previous(hs, h0)
    z, r, hh, hr_h = tf.split(gates, 4, axis=-1)
    d_zpre = (h_prev - hh) * z * (1 - z)
    d_hpre = (1 - z) * (1 - hh * hh)
    d_rpre = d_hpre * hr_h * r * (1 - r)
    recurrent_factors = tf.concat([d_zpre, d_rpre, d_hpre * r], axis=-1)

    def body(t, dh, dhs):
        dh = dh + d_hs[t]
        mask_t = None if mask is None else mask[t]
        step_dh = dh if mask_t is None else tf.where(mask_t, dh, tf.zeros_like(dh))
        d_rec = tf.tile(step_dh, [1, 3]) * recurrent_factors[t]
        through = step_dh * z[t] + tf.matmul(d_rec, recurrent_kernel, transpose_b=True)
        return _where(mask_t, through, dh), dhs.write(t, step_dh)

    dh0, dhs = _loop(body, (tf.zeros_like(h0), _array(steps, hs.dtype)), steps, reverse=True)
    dh_tiled = tf.tile(dhs.stack(), [1, 1, 3])
    d_recurrent = dh_tiled * recurrent_factors
    d_xw = dh_tiled * tf.concat([d_zpre, d_rpre, d_hpre], axis=-1)
    d_recurrent_bias = _bias_gradient(d_recurrent, tf.shape(recurrent_kernel)[-1])
    return d_xw, dh0, _weight_gradient(h_prev, d_recurrent), d_recurrent_bias


def gru_sequence(inputs, kernel, input_bias, mask, h0, recurrent_kernel, recurrent_bias,
                 return_sequences=True, training=False, jit_compile=False, hoist=None,
                 use_native=True, batch_major=False):
    """GRU (reset_after) over a sequence, with a hand-written gradient.

    Args:
        inputs: [T, B, F] ([B, T, F] with `batch_major`); kernel: [F, 3U]; input_bias: [3U].
        mask: [T, B, 1] bool or None; a False step keeps the previous state.
        h0: [B, U] initial state.
        recurrent_kernel: [U, 3U]; recurrent_bias: [3U].
        return_sequences, training, jit_compile, hoist, use_native, batch_major: as for
            `lstm_sequence`.

    Returns:
        (hs, h_last): h of every step [T, B, U] (None unless `return_sequences`)
        and the final state [B, U].
    """
    forward = _compiled(_gru_forward, jit_compile)
    backward = _compiled(_gru_backward, jit_compile)
    ops = use_native and _native_ops(
        (inputs, kernel, input_bias, h0, recurrent_kernel, recurrent_bias))
    if batch_major and not ops:
        inputs, batch_major = _swap_time_and_batch(inputs), False
    keep, hoist = _loop_plan(inputs, batch_major, training, return_sequences, hoist)

    @tf.custom_gradient
    def run(inputs, kernel, input_bias, h0, recurrent_kernel, recurrent_bias):
        loop_args = (inputs, kernel, input_bias, mask, h0, recurrent_kernel, recurrent_bias)
        if not ops:
            h_last, kept = forward(*loop_args, keep, hoist)
        else:
            h_last, kept = _native_gru_forward(ops, *loop_args, keep, hoist, batch_major)

        def grad(*upstream):
            d_hs, d_h_last = upstream if return_sequences else (None, *upstream)
            time_major = _swap_time_and_batch(inputs) if batch_major else inputs
            if keep != "all":
                kept.update(forward(time_major, *loop_args[1:], "all", True)[1])
            d_hs = _last_step_gradient(d_hs, d_h_last, kept["h"])
            backward_args = (mask, h0, recurrent_kernel, kept["h"], kept["gates"], d_hs)
            d_xw, dh0, d_recurrent, d_recurrent_bias = (
                _native_gru_backward(ops, *backward_args) if ops else backward(*backward_args))
            d_inputs, d_kernel, d_input_bias = _projection_gradients(time_major, kernel, d_xw,
                                                                     batch_major)
            return d_inputs, d_kernel, d_input_bias, dh0, d_recurrent, d_recurrent_bias

        return ((kept["h"], h_last) if return_sequences else h_last), grad

    outputs = run(inputs, kernel, input_bias, h0, recurrent_kernel, recurrent_bias)
    return tuple(outputs) if return_sequences else (None, outputs)


# --------------------------------------------------------------------------------------
# Keras glue: what `RNN.inner_loop` must return, built from the kernels.
# --------------------------------------------------------------------------------------


def _ordered_inputs(sequences, mask, go_backwards):
    """Inputs [B, T, F] and a time-major mask [T, B, 1] in processing order.

    The inputs stay batch-major: the native loops read them as they are, and
    the kernels transpose them where they need time-major ones.
    """
    if mask is not None:
        mask = tf.transpose(tf.cast(mask, tf.bool), [1, 0])[:, :, None]
    if go_backwards:  # Keras reverses the padded sequence as a whole, padding first
        sequences = tf.reverse(sequences, [1])
        mask = None if mask is None else tf.reverse(mask, [0])
    return sequences, mask


def _masked_outputs(hs, mask, zero_output_for_mask):
    """Keras' outputs from the per-step states.

    A masked step outputs zeros (`zero_output_for_mask`) or the previous
    output, which is the carried state once any step has been unmasked and
    zeros before that.
    """
    if mask is None:
        return hs
    if zero_output_for_mask:
        keep = mask
    else:
        keep = tf.cumsum(tf.cast(mask, tf.int32), axis=0) > 0
    return tf.where(keep, hs, tf.zeros_like(hs))


def _last_output(h_last, mask, zero_output_for_mask):
    """Keras' last output (the masked output of the last step) from the final state."""
    if mask is None:
        return h_last
    keep = mask[-1] if zero_output_for_mask else tf.reduce_any(mask, axis=0)
    return tf.where(keep, h_last, tf.zeros_like(h_last))


def _keras_result(layer, mask, hs, h_last, states):
    """(last_output, outputs, states) as `RNN.inner_loop` returns them."""
    if not layer.return_sequences:
        last_output = _last_output(h_last, mask, layer.zero_output_for_mask)
        return last_output, last_output[:, None], states
    outputs = _masked_outputs(hs, mask, layer.zero_output_for_mask)
    return outputs[-1], tf.transpose(outputs, [1, 0, 2]), states


def _run_lstm(layer, sequences, initial_state, mask, training, jit_compile, hoist=None,
              use_native=True):
    cell = layer.cell
    inputs, mask = _ordered_inputs(sequences, mask, layer.go_backwards)
    h0, c0 = initial_state
    hs, h_last, c_last = lstm_sequence(
        inputs, tf.convert_to_tensor(cell.kernel), tf.convert_to_tensor(cell.bias), mask, h0, c0,
        tf.convert_to_tensor(cell.recurrent_kernel),
        return_sequences=layer.return_sequences, training=bool(training), jit_compile=jit_compile,
        hoist=hoist, use_native=use_native, batch_major=True)
    return _keras_result(layer, mask, hs, h_last, [h_last, c_last])


def _run_gru(layer, sequences, initial_state, mask, training, jit_compile, hoist=None,
             use_native=True):
    cell = layer.cell
    inputs, mask = _ordered_inputs(sequences, mask, layer.go_backwards)
    input_bias, recurrent_bias = tf.unstack(tf.convert_to_tensor(cell.bias))
    hs, h_last = gru_sequence(
        inputs, tf.convert_to_tensor(cell.kernel), input_bias, mask, initial_state[0],
        tf.convert_to_tensor(cell.recurrent_kernel), recurrent_bias,
        return_sequences=layer.return_sequences, training=bool(training), jit_compile=jit_compile,
        hoist=hoist, use_native=use_native, batch_major=True)
    return _keras_result(layer, mask, hs, h_last, [h_last])


def _gpu_visible():
    return bool(tf.config.list_logical_devices("GPU"))


def fast_kernel_unsupported(layer, training=False):
    """Why `layer` would run the stock code instead of the fast CPU kernel ([] if it won't)."""
    cell = layer.cell
    reasons = []
    if keras.backend.backend() != "tensorflow":
        reasons.append("backend is not tensorflow")
    if _gpu_visible():
        reasons.append("a GPU is visible (stock code takes cuDNN)")
    # The fast kernel computes exactly what cuDNN computes, so it has the same preconditions.
    reasons += [r for r in cudnn_ineligibility(layer) if "use_cudnn" not in r]
    if training and cell.dropout:
        reasons.append("input dropout while training")
    return reasons


def _run_fast(layer, sequences, initial_state, mask, training, jit_compile, hoist=None,
              use_native=True):
    """The fast kernel for a stock-configured LSTM/GRU layer (`hoist`, `use_native`: see
    `lstm_sequence`)."""
    run = _run_lstm if isinstance(layer, keras.layers.LSTM) else _run_gru
    if isinstance(mask, (list, tuple)):
        mask = mask[0]
    if not isinstance(initial_state, (list, tuple)):
        initial_state = [initial_state]
    return run(layer, sequences, list(initial_state), mask, training, jit_compile, hoist,
               use_native)


def fast_inner_loop(layer, sequences, initial_state, mask, training=False, jit_compile=None,
                    **settings):
    """`RNN.inner_loop` for a stock LSTM/GRU: the fast kernel where supported, else stock.

    `settings` (`hoist`, `use_native`) override the kernel's defaults; the
    benchmark's options use them.
    """
    jit_compile = DEFAULT_JIT_COMPILE if jit_compile is None else jit_compile
    if fast_kernel_unsupported(layer, training):
        return type(layer).inner_loop(layer, sequences, initial_state, mask, training)
    return _run_fast(layer, sequences, initial_state, mask, training, jit_compile, **settings)


# --------------------------------------------------------------------------------------
# Public entry points.
# --------------------------------------------------------------------------------------


class _FastCPUMixin:
    """Dispatch to the fast CPU kernel; everything else (weights, config) is the stock layer's."""

    def __init__(self, *args, jit_compile=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fast_jit_compile = jit_compile

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if fast_kernel_unsupported(self, training):
            return super().inner_loop(sequences, initial_state, mask, training)
        jit = DEFAULT_JIT_COMPILE if self.fast_jit_compile is None else self.fast_jit_compile
        return _run_fast(self, sequences, initial_state, mask, training, jit)

    def get_config(self):
        return {**super().get_config(), "jit_compile": self.fast_jit_compile}


@keras.saving.register_keras_serializable(package="zoo")
class FastLSTM(_FastCPUMixin, keras.layers.LSTM):
    """`keras.layers.LSTM` that runs the fast kernel on a CPU and cuDNN on a GPU.

    Same arguments and variables as `keras.layers.LSTM`, plus `jit_compile`
    (None: `DEFAULT_JIT_COMPILE`) for the CPU kernel.
    """


@keras.saving.register_keras_serializable(package="zoo")
class FastGRU(_FastCPUMixin, keras.layers.GRU):
    """`keras.layers.GRU` that runs the fast kernel on a CPU and cuDNN on a GPU.

    Same arguments and variables as `keras.layers.GRU`, plus `jit_compile`.
    """


def gru_cell_step(cell, inputs, state):
    """One inference step of a `keras.layers.GRUCell`: its new state `[N, U]`.

    A decoder's step function calls its cell on `[N, F]` inputs once per
    step. Where the native kernels can run (`native.ops_for`) and the cell
    has the stock configuration, the two products (with their biases, which
    TF fuses into them) are TF's and the gates one pass of `zoo_gru_cell`
    instead of a dozen element-wise ops; the same values to float32 round-off.
    Otherwise the cell itself runs.
    """
    native_gates = isinstance(cell, keras.layers.GRUCell) and not gate_ineligibility(cell)
    ops = native.ops_for(inputs, state) if native_gates else None
    if ops is None:
        return cell(inputs, [state], training=False)[0]
    with tf.name_scope("gru_cell"):  # as the cell's own ops are named (in profiles)
        input_bias, recurrent_bias = tf.unstack(tf.convert_to_tensor(cell.bias))
        x_projected = tf.nn.bias_add(tf.matmul(inputs, cell.kernel), input_bias)
        h_projected = tf.nn.bias_add(tf.matmul(state, cell.recurrent_kernel), recurrent_bias)
        return ops.zoo_gru_cell(x_projected, h_projected, state)


def use_fast_kernels(model, jit_compile=None):
    """Route every stock LSTM/GRU of `model` (in place) through the fast CPU kernel.

    Only these layer *instances* change: the classes, the saved config and the
    weights stay stock, so `model.save` writes the same file as before. Call it
    before the model's first call (traced functions keep what they traced).
    Returns the list of layers routed.
    """
    layers = list(iter_recurrent_layers(model))
    for layer in layers:
        layer.inner_loop = functools.partial(fast_inner_loop, layer, jit_compile=jit_compile)
    return layers


def fast_cpu_model(model, jit_compile=None):
    """A copy of `model` (same class, config and weights) whose LSTM/GRU run the fast kernels.

    The original model is not touched. Works for any model that round-trips
    through `get_config`/`from_config`, which every zoo model does.
    """
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    use_fast_kernels(copy, jit_compile)
    return copy
