"""The native decoding kernels (log-softmax, top-k, attention, GRU cell) against TF's ops."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from zoo import decoding
from zoo.layers import native
from zoo.layers.fast_recurrent import gru_cell_step


@pytest.fixture(scope="module")
def ops():
    library = native.ops()
    assert library is not None, native.unavailable_reason()
    return library


def _rows(rows, columns, seed=0, scale=3.0):
    return tf.constant(np.random.default_rng(seed).normal(size=(rows, columns)) * scale,
                       tf.float32)


@pytest.mark.parametrize("shape", [(320, 5633), (3, 17), (1, 1), (0, 40)])
def test_log_softmax_matches_tf(ops, shape):
    logits = _rows(*shape)
    np.testing.assert_allclose(ops.zoo_log_softmax(logits), tf.nn.log_softmax(logits),
                               rtol=1e-6, atol=1e-5)


def test_log_softmax_keeps_ruled_out_ids_and_huge_logits_finite(ops):
    """The -1e9 that `output_log_probs` gives banned ids, and logits far from 0."""
    logits = tf.constant([[-1e9, 0.0, 1.0, 2.0], [1e4, 1e4 - 1.0, -1e9, 1e4 + 3.0]])
    got = ops.zoo_log_softmax(logits).numpy()
    np.testing.assert_allclose(got, tf.nn.log_softmax(logits), rtol=1e-6, atol=1e-5)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(np.exp(got).sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 6, 33])
def test_top_k_gives_tf_top_k_values_and_indices(ops, k):
    x = _rows(50, 1000, seed=k)
    got, expected = ops.zoo_top_k(x, k=k), tf.math.top_k(x, k=k)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("columns", [6, 16, 37, 5633])
def test_top_k_breaks_ties_like_tf_towards_the_lower_index(ops, columns):
    """Rows of few distinct values (and -inf): many equal candidates at every rank."""
    values = np.random.default_rng(columns).integers(0, 4, size=(64, columns)).astype("float32")
    values[::3, ::2] = -np.inf
    x = tf.constant(values)
    got, expected = ops.zoo_top_k(x, k=6), tf.math.top_k(x, k=6)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("shape, k", [((320, 5633), 6), ((7, 37), 1), ((5, 6), 6), ((0, 9), 2)])
def test_fused_log_softmax_top_k_gives_the_two_ops_values_exactly(ops, shape, k):
    logits = _rows(*shape, seed=k)
    log_probs = ops.zoo_log_softmax(logits)
    values, ids, shifts, log_sums = ops.zoo_log_softmax_top_k(logits, k=k)
    expected = ops.zoo_top_k(log_probs, k=k)
    np.testing.assert_array_equal(values, expected[0])
    np.testing.assert_array_equal(ids, expected[1])
    # Any column's log-probability, from the row's shift and log-sum, is the op's too.
    np.testing.assert_array_equal((logits - shifts[:, None]) - log_sums[:, None], log_probs)


def test_fused_log_softmax_top_k_breaks_ties_like_tf(ops):
    values = np.random.default_rng(1).integers(0, 4, size=(64, 300)).astype("float32")
    values[::3, ::2] = -1e9  # ruled-out ids
    got = ops.zoo_log_softmax_top_k(tf.constant(values), k=6)
    expected = tf.math.top_k(tf.nn.log_softmax(values), k=6)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least k = 5 columns"):
        ops.zoo_log_softmax_top_k(tf.zeros([2, 4]), k=5)


def test_top_k_rejects_rows_shorter_than_k_and_other_ranks(ops):
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least k = 5 columns"):
        ops.zoo_top_k(tf.zeros([2, 4]), k=5)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="rank 2|\\[rows"):
        ops.zoo_top_k(tf.zeros([2, 4, 3]), k=1)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="rank 2|\\[rows"):
        ops.zoo_log_softmax(tf.zeros([7]))


def test_decoding_uses_the_kernels_and_left_out_falls_back_to_tf(ops):
    """`zoo.decoding`'s log-softmax and top-k run the native ops, or TF's inside `left_out`."""
    x = _rows(320, 5633, seed=3)

    def op_types(function):
        graph = tf.function(function).get_concrete_function(x).graph
        return {op.type for op in graph.get_operations()}

    native_ops = op_types(lambda x: (decoding.log_softmax(x), decoding._top_k(x, 6)))
    assert {"ZooLogSoftmax", "ZooTopK"} <= native_ops
    with native.left_out():
        tf_ops = op_types(lambda x: (decoding.log_softmax(x), decoding._top_k(x, 6)))
        fallback = decoding._top_k(x, 6)
    assert not {op for op in tf_ops if op.startswith("Zoo")}
    assert {"LogSoftmax", "TopKV2"} <= tf_ops
    native_top = decoding._top_k(x, 6)
    np.testing.assert_array_equal(native_top[0], fallback[0])
    np.testing.assert_array_equal(native_top[1], fallback[1])


@pytest.mark.parametrize("search", ["beam", "greedy"])
def test_decoders_find_the_same_hypotheses_with_and_without_the_kernels(search):
    """A toy decoder with a 3,000-token output: same tokens, scores to float round-off.

    Eagerly the decoders take the top k of ZooLogSoftmax's output by ZooTopK;
    traced, by one ZooLogSoftmaxTopK over the logits (the same values exactly,
    as the op's own test shows).
    """
    vocabulary, units, batch = 3000, 16, 6
    rng = np.random.default_rng(7)
    embeddings = tf.constant(rng.normal(size=(vocabulary, units)), tf.float32)
    output = tf.constant(rng.normal(size=(units, vocabulary)) * 2, tf.float32)

    def step_fn(ids, state, constants):
        hidden = tf.tanh(state + tf.gather(embeddings, ids) + constants)
        return decoding.log_softmax(hidden @ output), hidden

    initial = tf.constant(rng.normal(size=(batch, units)), tf.float32)
    constants = tf.constant(rng.normal(size=(batch, units)), tf.float32)
    start = tf.zeros([batch], tf.int32)
    if search == "beam":
        decode = lambda: decoding.beam_search(step_fn, initial, start, end_id=1, beam_size=5,
                                              max_length=12, length_penalty=0.6,
                                              constants=constants)
    else:
        decode = lambda: decoding.greedy_search(step_fn, initial, start, end_id=1,
                                                max_length=12, constants=constants)
    traced = tf.function(decode)
    assert "ZooLogSoftmaxTopK" in {op.type for op in _while_body_ops(traced)}
    with_kernels, fused = decode(), traced()
    with native.left_out():
        without = decode()
    np.testing.assert_array_equal(with_kernels["tokens"], without["tokens"])
    np.testing.assert_allclose(with_kernels["scores"], without["scores"], rtol=1e-5)
    for key in ("tokens", "lengths"):
        np.testing.assert_array_equal(fused[key], with_kernels[key])
    # Grappler may fuse the toy model's ops in the traced function: round-off apart.
    np.testing.assert_allclose(fused["scores"], with_kernels["scores"], rtol=1e-6)


def _while_body_ops(function):
    """The ops of the body of the one `tf.while_loop` in a traced `function`."""
    graph = function.get_concrete_function().graph
    (loop,) = [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]
    body = graph._functions[loop.get_attr("body").name.decode()
                            if isinstance(loop.get_attr("body").name, bytes)
                            else loop.get_attr("body").name]
    return body.graph.get_operations()


# -- Additive attention, one decoding step ---------------------------------------------


def _attention_inputs(batch=5, steps=7, units=37, width=11, query_size=13, seed=0):
    """A built AdditiveAttention layer, a step's query, encoder outputs and a ragged mask."""
    from zoo.layers.attention import AdditiveAttention

    rng = np.random.default_rng(seed)
    layer = AdditiveAttention(units)
    layer.build((batch, query_size), (batch, steps, width))
    query = tf.constant(rng.normal(size=(batch, query_size)), tf.float32)
    values = tf.constant(rng.normal(size=(batch, steps, width)), tf.float32)
    lengths = np.array([steps, 1, 3, 0, steps - 1])[:batch]  # a source with no real step
    mask = tf.constant(np.arange(steps)[None] < lengths[:, None])
    return layer, query, values, mask


@pytest.mark.parametrize("units", [37, 256])
@pytest.mark.parametrize("masked", [True, False])
def test_attention_step_kernel_matches_the_layers_tf_ops(ops, units, masked):
    layer, query, values, mask = _attention_inputs(units=units)
    mask = mask if masked else None
    keys = layer.precompute_keys(values)
    fused = layer(query, values, mask=mask, keys=keys)
    with native.left_out():
        reference = layer(query, values, mask=mask, keys=keys)
    for got, expected in zip(fused, reference):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    if masked:  # exactly 0 on padding; a source without real steps gets no weight at all
        np.testing.assert_array_equal(tf.where(mask, 1.0, fused[1]), tf.where(mask, 1.0, 0.0))
        np.testing.assert_array_equal(fused[0][3], np.zeros(values.shape[-1]))


def test_attention_step_runs_the_kernel_only_where_it_can(ops):
    layer, query, values, mask = _attention_inputs()
    keys = layer.precompute_keys(values)

    def op_types(function):
        graph = tf.function(function).get_concrete_function().graph
        return {op.type for op in graph.get_operations()}

    assert "ZooAdditiveAttention" in op_types(lambda: layer(query, values, mask=mask, keys=keys))
    with native.left_out():
        assert "ZooAdditiveAttention" not in op_types(
            lambda: layer(query, values, mask=mask, keys=keys))
    teacher_forced = op_types(lambda: layer(query[:, None], values, mask=mask))
    assert "ZooAdditiveAttention" not in teacher_forced  # [B, Tq, H] queries: TF ops


@pytest.mark.parametrize("masked", [True, False])
def test_attention_kernel_reads_each_source_once_for_its_group_of_queries(ops, masked):
    layer, query, values, mask = _attention_inputs(seed=2)
    mask = mask if masked else None
    keys = layer.precompute_keys(values)
    group = 3
    rows = tf.constant(np.random.default_rng(5).normal(size=(5 * group, 13)), tf.float32)
    grouped = layer(rows, values, mask=mask, keys=keys)
    tile = lambda x: None if x is None else tf.repeat(x, group, axis=0)
    tiled = layer(rows, tile(values), mask=tile(mask), keys=tile(keys))  # one source per row
    with native.left_out():
        reference = layer(rows, values, mask=mask, keys=keys)
    assert grouped[0].shape == (5 * group, 11) and grouped[1].shape == (5 * group, 7)
    for got, same_kernel, tf_ops in zip(grouped, tiled, reference):
        np.testing.assert_array_equal(got, same_kernel)
        np.testing.assert_allclose(got, tf_ops, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("in_graph", [False, True])
@pytest.mark.parametrize("rows_per_source", [1, 2])
def test_attention_step_gradients_match_the_layers_tf_ops(ops, in_graph, rows_per_source):
    layer, query, values, mask = _attention_inputs(seed=4)
    query = tf.reshape(tf.stack([query, tf.reverse(query, [1])][:rows_per_source], 1), [-1, 13])

    def gradients():
        with tf.GradientTape() as tape:
            tape.watch([query, values])
            context, weights = layer(query, values, mask=mask)
            loss = tf.reduce_sum(context ** 2) + tf.reduce_sum(weights * tf.range(7.0))
        return tape.gradient(loss, [query, values, *layer.trainable_variables])

    run = tf.function(gradients) if in_graph else gradients
    fused = run()
    with native.left_out():
        reference = (tf.function(gradients) if in_graph else gradients)()
    assert len(fused) == 5
    for got, expected in zip(fused, reference):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_attention_kernel_rejects_mismatched_shapes(ops):
    with pytest.raises(tf.errors.InvalidArgumentError, match="shapes do not match"):
        ops.zoo_additive_attention(tf.zeros([2, 4]), tf.zeros([2, 3, 4]), tf.zeros([5]),
                                   tf.zeros([0, 0], tf.bool), tf.zeros([2, 3, 6]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiple of B"):  # 3 rows, 2 sources
        ops.zoo_additive_attention(tf.zeros([3, 4]), tf.zeros([2, 3, 4]), tf.zeros([4]),
                                   tf.zeros([0, 0], tf.bool), tf.zeros([2, 3, 6]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="mask must be"):
        ops.zoo_additive_attention(tf.zeros([2, 4]), tf.zeros([2, 3, 4]), tf.zeros([4]),
                                   tf.zeros([2, 2], tf.bool), tf.zeros([2, 3, 6]))


# -- The kernels' narrower code: AVX2 and scalar builds -------------------------------

TESTS = Path(__file__).parent


def _gru_cell(units, seed=0, **config):
    import keras

    cell = keras.layers.GRUCell(units, **config)
    cell.build((None, 9))
    rng = np.random.default_rng(seed)
    for variable in cell.weights:  # biases too, and products large enough to saturate gates
        variable.assign(rng.normal(size=variable.shape).astype("float32"))
    return cell


@pytest.mark.parametrize("units, rows", [(256, 320), (24, 5), (7, 3), (1, 2), (16, 0)])
def test_gru_cell_kernel_matches_the_keras_cell(ops, units, rows):
    """Units of whole 16- and 8-lane blocks and a scalar tail; saturated gates included."""
    cell = _gru_cell(units, seed=units)
    inputs, state = _rows(rows, 9, seed=1), _rows(rows, units, seed=2, scale=1.0)
    expected = cell(inputs, [state], training=False)[0]
    graph = tf.function(lambda x, h: gru_cell_step(cell, x, h)).get_concrete_function(
        inputs, state).graph
    assert "ZooGruCell" in {op.type for op in graph.get_operations()}
    np.testing.assert_allclose(gru_cell_step(cell, inputs, state), expected, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("config", [{"reset_after": False}, {"activation": "relu"},
                                    {"recurrent_activation": "hard_sigmoid"}])
def test_gru_cell_step_runs_other_cells_and_left_out_through_keras(ops, config):
    cell, plain = _gru_cell(8, **config), _gru_cell(8)
    inputs, state = _rows(4, 9, seed=3), _rows(4, 8, seed=4, scale=1.0)

    def op_types(cell):
        graph = tf.function(lambda x, h: gru_cell_step(cell, x, h)).get_concrete_function(
            inputs, state).graph
        return {op.type for op in graph.get_operations()}

    assert "ZooGruCell" not in op_types(cell)
    np.testing.assert_allclose(gru_cell_step(cell, inputs, state),
                               cell(inputs, [state], training=False)[0], rtol=1e-6)
    with native.left_out():
        assert "ZooGruCell" not in op_types(plain)


def test_gru_cell_kernel_rejects_mismatched_shapes(ops):
    with pytest.raises(tf.errors.InvalidArgumentError, match="do not match"):
        ops.zoo_gru_cell(_rows(4, 24), _rows(4, 24), _rows(4, 7))
    with pytest.raises(tf.errors.InvalidArgumentError, match="do not match"):
        ops.zoo_gru_cell(_rows(3, 24), _rows(4, 24), _rows(4, 8))
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        ops.zoo_gru_cell(_rows(4, 24), _rows(4, 24), tf.zeros([4, 8, 1]))


def test_the_build_target_follows_zoo_native_march(monkeypatch):
    import shutil

    monkeypatch.setenv(native.TARGET, "x86-64-v3")
    flags = native._target_flags(shutil.which("g++"))
    assert "-march=x86-64-v3" in flags and "-march=native" not in flags


@pytest.mark.parametrize("march, files", [
    ("x86-64-v3", ["test_native_decoding.py", "test_native_recurrent.py"]),  # AVX2
    ("x86-64", ["test_native_decoding.py"]),  # no vector extensions: the scalar code
])
def test_kernels_built_for_narrower_cpus_pass_the_same_tests(tmp_path, march, files):
    """This machine's build takes the AVX-512 paths; a child process builds for `march`."""
    env = dict(os.environ, **{native.TARGET: march}, ZOO_CACHE_DIR=str(tmp_path),
               CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
         "not narrower_cpus", *(str(TESTS / name) for name in files)],
        env=env, cwd=TESTS.parent, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
    assert list((tmp_path / "native").glob("zoo_kernels-*.so")), "built in the child's cache"
