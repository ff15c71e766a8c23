"""Recurrent-layer workloads: the zoo's LSTM/GRU, its faster CPU paths and PyTorch, same sizes.

Every implementation runs the same many-to-one network, built the way the
zoo builds its models:

    x [B, T, 128] -> LSTM/GRU(256, return_sequences=False) -> Dense(10) -> logits

* training: one SGD step on a cross-entropy loss (forward, backward, update);
* inference: the forward pass at batch 64 (`training=False` / `inference_mode`);
* latency: the forward pass of one sequence (batch 1).

FLOPs count only the gate matmuls, 2 * (inputs + units) * gates * units per
token (gates: 4 LSTM, 3 GRU), and 3x that for a training step (forward,
gradient w.r.t. activations, gradient w.r.t. weights).
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from benchmarks import options
from zoo.layers import fast_recurrent, rnn_layer

GATES = {"lstm": 4, "gru": 3}
CLASSES = 10
LEARNING_RATE = 1e-3


@dataclasses.dataclass(frozen=True)
class Sizes:
    batch: int = 64
    inputs: int = 128
    units: int = 256


def flops_per_token(cell, sizes, training):
    forward = 2 * (sizes.inputs + sizes.units) * GATES[cell] * sizes.units
    return forward * (3 if training else 1)


# --------------------------------------------------------------------------------------
# Keras: the zoo's stock layer and its alternatives, all from one set of weights.
# --------------------------------------------------------------------------------------


def stock_model(cell, steps, sizes):
    """The production layer exactly as `zoo.layers.rnn_layer` builds it, plus a head."""
    inputs = keras.Input((steps, sizes.inputs))
    hidden = rnn_layer(cell, sizes.units, return_sequences=False, name=cell)(inputs)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="head")(hidden))


def keras_variants(stock, cell, mode="training"):
    """{name: (model, jit_compile of the whole step)}: every Keras path that is measured.

    Each variant is a copy with the stock model's weights (`fast_cpu_model`
    and the options copy through `get_config`/`set_weights`). The
    always-hoisted fast kernel differs from the default only at batch >
    `fast_recurrent.HOIST_MAX_BATCH`, so the latency mode (batch 1) omits it.
    "zoo fast + XLA" runs the fast kernels inside a whole-step XLA function,
    as `keras stock + XLA` does for the stock layer. The default runs the
    native loops (`zoo.layers.native`: inference, and the forward pass of
    training at batch 64); "XLA loops only", "no XLA" (TF-graph loops) and
    the hoisted row never do. Latency also times the default model through
    its ConcreteFunction (`CONCRETE_FAST`), the same graph without
    `tf.function`'s dispatch.
    """
    variants = {
        "keras stock": (stock, False),
        "keras stock + XLA": (stock, True),
        "zoo fast (default)": (fast_recurrent.fast_cpu_model(stock, jit_compile=True), False),
        "zoo fast + XLA": (fast_recurrent.fast_cpu_model(stock, jit_compile=True), True),
        "zoo fast (no XLA)": (options.loops_only(stock, jit_compile=False), False),
        "hoisted x@W + TF autodiff": (options.hoisted_autodiff(stock), False),
    }
    variants["zoo fast, XLA loops only"] = (options.loops_only(stock, jit_compile=True), False)
    if mode == "latency":
        variants[CONCRETE_FAST] = (variants["zoo fast (default)"][0], False)
    else:
        variants["zoo fast, x@W hoisted (XLA loops)"] = (options.hoisted_fast(stock), False)
    if cell == "lstm":
        variants["TF fused BlockLSTMV2"] = (options.fused_block_lstm(stock), False)
    return variants


# The default fast model at batch 1, called as the ConcreteFunction of its input signature
# rather than through `tf.function`'s per-call dispatch (which matches the arguments to a
# trace: about 0.16 ms of a 0.71 ms LSTM T=50 call in a probe).
CONCRETE_FAST = "zoo fast (default), ConcreteFunction"


def keras_inference(model, x, jit_compile, concrete=False):
    forward = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)
    if concrete:
        forward = forward.get_concrete_function(x)
    return lambda: forward(x).numpy()


def keras_training(model, x, y, jit_compile):
    """One SGD step as `model.fit` takes it: forward, loss, gradients, update."""
    optimizer = keras.optimizers.SGD(LEARNING_RATE)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    return lambda: step(x, y).numpy()


# --------------------------------------------------------------------------------------
# PyTorch (CPU): the peer.
# --------------------------------------------------------------------------------------


def torch_model(cell, sizes):
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            rnn = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
            self.rnn = rnn(sizes.inputs, sizes.units, batch_first=True)
            self.head = torch.nn.Linear(sizes.units, CLASSES)

        def forward(self, x):
            _, state = self.rnn(x)
            last = state[0] if isinstance(state, tuple) else state
            return self.head(last[-1])

    return Net()


def torch_inference(net, x):
    import torch

    def run():
        with torch.inference_mode():
            return net(x)

    return run


def torch_training(net, x, y):
    import torch

    optimizer = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


# --------------------------------------------------------------------------------------
# One comparison = one (cell, steps, mode) with every implementation.
# --------------------------------------------------------------------------------------


def _data(batch, steps, sizes, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, sizes.inputs), dtype=np.float32)
    y = rng.integers(0, CLASSES, size=batch)
    return x, y


def candidates(cell, steps, mode, sizes, with_torch=True):
    """{name: callable} for one comparison; mode is "training", "inference" or "latency"."""
    batch = 1 if mode == "latency" else sizes.batch
    x, y = _data(batch, steps, sizes)
    stock = stock_model(cell, steps, sizes)
    runs = {}
    tx, ty = tf.constant(x), tf.constant(y)
    for name, (model, jit) in keras_variants(stock, cell, mode).items():
        runs[name] = (keras_training(model, tx, ty, jit) if mode == "training"
                      else keras_inference(model, tx, jit, concrete=name == CONCRETE_FAST))
    if with_torch:
        import torch

        net = torch_model(cell, sizes)
        px, py = torch.from_numpy(x), torch.from_numpy(y)
        runs["torch"] = (torch_training(net, px, py) if mode == "training"
                         else torch_inference(net, px))
    return runs
