"""The native (C++) loops equal the XLA loops and the stock layers; fallbacks work.

No timings (benchmarks/ measures speed): numerical equality to 1e-5, that the
fast layers take the native path where they should and only there, the
errors on bad input, and what happens without a compiler.
"""

import shutil
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.layers import fast_recurrent, native
from zoo.layers.fast_recurrent import FastGRU, FastLSTM

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
GATES = {"lstm": 4, "gru": 3}
T, F = 9, 5


@pytest.fixture(scope="module")
def ops():
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the zoo runs the XLA loops instead (tested elsewhere)")
    library = native.ops()
    assert library is not None, native.unavailable_reason()
    return library


def _weights(cell, units, batch, seed=0):
    rng = np.random.default_rng(seed)
    normal = lambda *shape: tf.constant(rng.normal(scale=0.4, size=shape).astype("float32"))
    gates = GATES[cell]
    return {"inputs": normal(T, batch, F), "kernel": normal(F, gates * units),
            "bias": normal(gates * units), "recurrent_kernel": normal(units, gates * units),
            "recurrent_bias": normal(gates * units), "h0": normal(batch, units),
            "c0": normal(batch, units),
            "mask": tf.constant(rng.random((T, batch, 1)) > 0.3)}


def _comparable(kept, mask):
    """Kept values in name order; gates of masked steps (never read) zeroed."""
    if "gates" in kept and mask is not None:
        kept = {**kept, "gates": tf.where(mask, kept["gates"], 0.0)}
    return [kept[name] for name in sorted(kept)]


def _assert_native_equals_xla(ops, cell, w, keep, mask, hoist=True, batch_major=False):
    """The native op's h_last, [c_last] and kept values equal the XLA loop's.

    With `batch_major` the native op reads the inputs as [B, T, F].
    """
    native_inputs = tf.transpose(w["inputs"], [1, 0, 2]) if batch_major else w["inputs"]
    if cell == "lstm":
        args = (w["kernel"], w["bias"], mask, w["h0"], w["c0"], w["recurrent_kernel"])
        h, c, kept = fast_recurrent._compiled(fast_recurrent._lstm_forward, True)(
            w["inputs"], *args, keep, hoist)
        nh, nc, nkept = fast_recurrent._native_lstm_forward(ops, native_inputs, *args, keep,
                                                            hoist, batch_major)
        expected, actual = [h, c], [nh, nc]
    else:
        args = (w["kernel"], w["bias"], mask, w["h0"], w["recurrent_kernel"],
                w["recurrent_bias"])
        h, kept = fast_recurrent._compiled(fast_recurrent._gru_forward, True)(
            w["inputs"], *args, keep, hoist)
        nh, nkept = fast_recurrent._native_gru_forward(ops, native_inputs, *args, keep, hoist,
                                                       batch_major)
        expected, actual = [h], [nh]
    assert sorted(kept) == sorted(nkept)
    for e, a in zip(expected + _comparable(kept, mask), actual + _comparable(nkept, mask)):
        np.testing.assert_allclose(a.numpy(), e.numpy(), **TOLERANCE)


# Tiny batches, x @ W + b of all steps before the loop: T * B rows of one row block (9)
# and of two with a remainder (18); units: one thread's slice (6, no whole 8-float
# block), two slices of whole panels and partial ones (72), slices that end mid-block (70).
@pytest.mark.parametrize("units", [6, 70, 72])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("keep", ["all", "outputs", "last"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_native_loop_equals_xla_loop(ops, cell, keep, masked, batch, units):
    w = _weights(cell, units, batch)
    _assert_native_equals_xla(ops, cell, w, keep, w["mask"] if masked else None)


# The batched loops (x_t @ W inside the step): batches of one row block and of several
# with a remainder (17 = 14 + 3 with AVX-512), units giving one slice with a partly zero
# panel (6) and two slices (70, 72), and the three things a loop keeps.
@pytest.mark.parametrize("units", [6, 70, 72])
@pytest.mark.parametrize("batch", [3, 17])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("keep", ["all", "outputs", "last"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_batched_native_loop_equals_xla_loop(ops, cell, keep, masked, batch, units):
    w = _weights(cell, units, batch)
    _assert_native_equals_xla(ops, cell, w, keep, w["mask"] if masked else None, hoist=False)


# Batch-major inputs ([B, T, F], as Keras layers get them: no transpose), both placements
# of x @ W; the outputs stay time-major.
@pytest.mark.parametrize("batch, hoist", [(2, True), (17, False)], ids=["hoisted", "per-step"])
@pytest.mark.parametrize("keep", ["all", "last"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_native_loop_reads_batch_major_inputs(ops, cell, keep, batch, hoist):
    w = _weights(cell, 70, batch)
    _assert_native_equals_xla(ops, cell, w, keep, w["mask"], hoist, batch_major=True)


# The native backward loops against the XLA ones, from the same kept forward values
# (units 256: the LSTM's dz rows are 4 KB apart, which the loop reads from padded rows).
@pytest.mark.parametrize("units", [6, 70, 72, 256])
@pytest.mark.parametrize("batch", [1, 17])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_native_backward_equals_xla_backward(ops, cell, masked, batch, units):
    w = _weights(cell, units, batch)
    mask = w["mask"] if masked else None
    rng = np.random.default_rng(5)
    d_hs = tf.constant(rng.normal(size=(T, batch, units)).astype("float32"))
    if cell == "lstm":
        _, _, kept = fast_recurrent._native_lstm_forward(
            ops, w["inputs"], w["kernel"], w["bias"], mask, w["h0"], w["c0"],
            w["recurrent_kernel"], "all", False)
        d_c_last = tf.constant(rng.normal(size=(batch, units)).astype("float32"))
        args = (mask, w["h0"], w["c0"], w["recurrent_kernel"], kept["h"], kept["c"],
                kept["gates"], d_hs, d_c_last)
        xla, native = fast_recurrent._lstm_backward, fast_recurrent._native_lstm_backward
    else:
        _, kept = fast_recurrent._native_gru_forward(
            ops, w["inputs"], w["kernel"], w["bias"], mask, w["h0"], w["recurrent_kernel"],
            w["recurrent_bias"], "all", False)
        args = (mask, w["h0"], w["recurrent_kernel"], kept["h"], kept["gates"], d_hs)
        xla, native = fast_recurrent._gru_backward, fast_recurrent._native_gru_backward
    expected = fast_recurrent._compiled(xla, True)(*args)
    for e, a in zip(expected, native(ops, *args)):
        # float32 round-off of sums over up to 4U terms, in another order than XLA's
        scale = max(1.0, float(np.abs(e.numpy()).max()))
        np.testing.assert_allclose(a.numpy(), e.numpy(), rtol=1e-5, atol=2e-5 * scale)


def _layer_pair(cell, units=40, **kwargs):
    stock_type = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
    stock, fast = stock_type(units, **kwargs), {"lstm": FastLSTM, "gru": FastGRU}[cell](
        units, **kwargs)
    x = tf.zeros([1, T, F])
    stock(x), fast(x)
    rng = np.random.default_rng(1)
    stock.set_weights([rng.normal(scale=0.4, size=v.shape).astype("float32")
                       for v in stock.get_weights()])
    fast.set_weights(stock.get_weights())
    return stock, fast


def _count_native_calls(monkeypatch, cell):
    calls = []
    name = f"_native_{cell}_forward"
    original = getattr(fast_recurrent, name)
    monkeypatch.setattr(fast_recurrent, name,
                        lambda *args: calls.append(1) or original(*args))
    return calls


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fast_layers_run_native_in_inference(ops, cell, monkeypatch):
    stock, fast = _layer_pair(cell, return_sequences=True, go_backwards=True)
    calls = _count_native_calls(monkeypatch, cell)
    x = tf.constant(np.random.default_rng(2).normal(size=(1, T, F)).astype("float32"))
    mask = tf.constant([[True] * 6 + [False] * 3])
    np.testing.assert_allclose(fast(x, mask=mask).numpy(), stock(x, mask=mask).numpy(),
                               **TOLERANCE)
    assert calls, "a batch of one in inference should take the native loop"
    calls.clear()
    batch = tf.concat([x] * 8, axis=0)  # larger batches: x_t @ W inside the native step
    np.testing.assert_allclose(fast(batch).numpy(), stock(batch).numpy(), **TOLERANCE)
    assert calls


@pytest.mark.parametrize("batch", [1, 8], ids=["hoisted", "per-step"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layers_train_on_the_native_forward_pass(ops, cell, batch, monkeypatch):
    """Training runs the native forward pass and the XLA backward: stock gradients."""
    stock, fast = _layer_pair(cell, return_sequences=True)
    calls = _count_native_calls(monkeypatch, cell)
    x = tf.constant(np.random.default_rng(6).normal(size=(batch, T, F)).astype("float32"))
    mask = tf.constant(np.random.default_rng(7).random((batch, T)) > 0.3)
    grads = []
    for layer in (stock, fast):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, mask=mask, training=True) ** 2)
        grads.append(tape.gradient(loss, [x] + layer.trainable_weights))
    assert calls
    for expected, actual in zip(*grads):
        np.testing.assert_allclose(tf.convert_to_tensor(actual).numpy(),
                                   tf.convert_to_tensor(expected).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradient_of_a_native_inference_call(ops, cell):
    """An inference-mode call under a tape still differentiates (through the XLA loop)."""
    stock, fast = _layer_pair(cell)
    x = tf.constant(np.random.default_rng(3).normal(size=(1, T, F)).astype("float32"))
    grads = []
    for layer in (stock, fast):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, training=False)
        grads.append(tape.gradient(out, [x] + layer.trainable_weights))
    for expected, actual in zip(*grads):
        np.testing.assert_allclose(tf.convert_to_tensor(actual).numpy(),
                                   tf.convert_to_tensor(expected).numpy(), **TOLERANCE)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_xla_compiled_callers_get_the_xla_loop(ops, cell, monkeypatch):
    """A custom op cannot be XLA-compiled: inside jit_compile the layer keeps its XLA loop."""
    stock, fast = _layer_pair(cell)
    calls = _count_native_calls(monkeypatch, cell)
    x = tf.constant(np.random.default_rng(4).normal(size=(1, T, F)).astype("float32"))
    compiled = tf.function(lambda x: fast(x), jit_compile=True)
    np.testing.assert_allclose(compiled(x).numpy(), stock(x).numpy(), **TOLERANCE)
    assert not calls


def test_concurrent_calls_give_the_same_results(ops):
    """Recurrences from several threads (a Bidirectional layer's two directions, say)."""
    w = _weights("lstm", 72, 1)
    no_mask = tf.zeros([0, 0], tf.bool)
    run = lambda: ops.zoo_lstm_sequence(w["inputs"], w["kernel"], w["bias"],
                                        w["recurrent_kernel"], w["h0"], w["c0"], no_mask,
                                        hoist_inputs=True)[0].numpy()
    expected, results = run(), []
    threads = [threading.Thread(target=lambda: results.extend(run() for _ in range(20)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80
    for result in results:
        np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("batch", [1, 8], ids=["hoisted", "per-step"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_inference_follows_weight_updates(ops, cell, batch):
    """An inference op reuses its packed kernels only while its kernels are unchanged:
    after set_weights, in-place assign_add and an optimizer step it gives the new
    weights' outputs, in a tf.function and eagerly."""
    stock, fast = _layer_pair(cell, return_sequences=True)
    x = tf.constant(np.random.default_rng(8).normal(size=(batch, T, F)).astype("float32"))
    compiled = tf.function(lambda x: fast(x, training=False))
    optimizers = {id(layer): keras.optimizers.SGD(0.5) for layer in (stock, fast)}
    rng = np.random.default_rng(9)

    def update_in_place(how):
        deltas = [rng.normal(scale=0.2, size=v.shape).astype("float32")
                  for v in stock.trainable_weights]
        for layer in (stock, fast):
            if how == "set_weights":
                layer.set_weights([w + d for w, d in zip(layer.get_weights(), deltas)])
            elif how == "assign_add":
                for variable, delta in zip(layer.trainable_weights, deltas):
                    variable.assign_add(delta)
            else:
                optimizers[id(layer)].apply([tf.constant(d) for d in deltas],
                                            layer.trainable_weights)

    previous = compiled(x).numpy()
    for how in ["set_weights", "assign_add", "optimizer"]:
        update_in_place(how)
        expected = stock(x).numpy()
        for actual in (compiled(x).numpy(), fast(x, training=False).numpy()):
            np.testing.assert_allclose(actual, expected, **TOLERANCE)
        assert not np.allclose(expected, previous), f"{how} should change the outputs"
        previous = expected


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_new_kernel_tensors_are_repacked(ops, cell):
    """Kernels that are new tensors each call (freed ones' memory reused) are packed anew."""
    w = _weights(cell, 72, 1)
    rng = np.random.default_rng(10)
    for _ in range(5):
        w = {**w, "kernel": tf.constant(rng.normal(scale=0.4, size=w["kernel"].shape)
                                        .astype("float32")),
             "recurrent_kernel": tf.constant(rng.normal(scale=0.4,
                                                        size=w["recurrent_kernel"].shape)
                                             .astype("float32"))}
        _assert_native_equals_xla(ops, cell, w, "last", None)


def test_bad_shapes_are_clear_errors(ops):
    w = _weights("lstm", 8, 1)
    no_mask = tf.zeros([0, 0], tf.bool)
    lstm = (w["inputs"], w["kernel"], w["bias"], w["recurrent_kernel"], w["h0"], w["c0"])
    with pytest.raises(tf.errors.InvalidArgumentError, match="inconsistent recurrent shapes"):
        ops.zoo_lstm_sequence(*lstm[:3], w["recurrent_kernel"][:, :8], *lstm[4:], no_mask)
    with pytest.raises(tf.errors.InvalidArgumentError, match="inconsistent recurrent shapes"):
        ops.zoo_lstm_sequence(*lstm[:2], w["bias"][:-1], *lstm[3:], no_mask)
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask must be"):
        ops.zoo_lstm_sequence(*lstm, tf.ones([2, 1], tf.bool), hoist_inputs=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected inputs"):
        ops.zoo_lstm_sequence(w["inputs"][0], *lstm[1:], no_mask)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\(batch_major\)"):
        ops.zoo_lstm_sequence(tf.zeros([2, T, F]), *lstm[1:], no_mask, batch_major=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="h0 and c0"):
        ops.zoo_lstm_sequence(*lstm[:5], w["c0"][:, :4], no_mask)
    kept = (tf.zeros([T, 1, 8]), tf.zeros([T, 1, 32]), tf.zeros([T, 1, 8]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="inconsistent recurrent shapes"):
        ops.zoo_lstm_backward(w["recurrent_kernel"], w["c0"], kept[0], kept[1][..., :24],
                              kept[2], w["c0"], no_mask)
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask must be"):
        ops.zoo_gru_backward(w["recurrent_kernel"][:, :24], w["h0"], *kept,
                             tf.ones([T, 2], tf.bool))
    gru = _weights("gru", 8, 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="recurrent_bias"):
        ops.zoo_gru_sequence(gru["inputs"], gru["kernel"], gru["bias"], gru["recurrent_kernel"],
                             gru["recurrent_bias"][:-1], gru["h0"], no_mask)


@pytest.fixture
def fresh_library_state():
    """`ops` caches its answer; tests that change the environment start afresh."""
    native._library.cache_clear()
    yield
    native._library.cache_clear()


def test_switched_off_by_environment(monkeypatch, fresh_library_state):
    monkeypatch.setenv(native.SWITCH, "0")
    assert native.ops() is None
    assert native.SWITCH in native.unavailable_reason()


def test_no_compiler_means_xla_loops(monkeypatch, fresh_library_state):
    monkeypatch.setenv("CXX", "no-such-compiler-zoo")
    assert native.ops() is None
    assert "no C++ compiler" in native.unavailable_reason()
    stock, fast = _layer_pair("lstm")
    x = tf.constant(np.random.default_rng(5).normal(size=(1, T, F)).astype("float32"))
    np.testing.assert_allclose(fast(x).numpy(), stock(x).numpy(), **TOLERANCE)


def test_a_failed_build_says_why(monkeypatch, tmp_path, fresh_library_state):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that exits 1
    assert native.ops() is None
    assert "failed" in native.unavailable_reason()


def test_optional_flags_are_kept_only_where_the_compiler_accepts_them(monkeypatch):
    compiler = shutil.which("g++")
    monkeypatch.setattr(native, "OPTIONAL_FLAGS", ["-mno-avx512fp16", "-mno-such-flag-zoo"])
    native.compiler_flags.cache_clear()
    try:
        flags = native.compiler_flags(compiler)
    finally:
        native.compiler_flags.cache_clear()
    assert flags[: len(native.CXX_FLAGS)] == native.CXX_FLAGS
    # g++ >= 12 knows -mno-avx512fp16, which the AVX512-FP16 CPUs' Eigen headers need.
    assert flags[len(native.CXX_FLAGS):] == ["-mno-avx512fp16"]
