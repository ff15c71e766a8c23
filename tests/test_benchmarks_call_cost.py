"""benchmarks/call_cost.py times one computation three ways: check that they agree.

No timings are taken; the probe's callables are called once each.
"""

import shutil

import numpy as np
import pytest

from benchmarks import call_cost, recurrent

STEPS = 3


@pytest.fixture(scope="module", autouse=True)
def _needs_a_compiler():
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the native op the probe times is unavailable")


def test_the_timed_op_computes_the_models_lstm_state():
    fast, op, x = call_cost.native_op(STEPS, recurrent.Sizes())
    expected = fast.get_layer("lstm")(x, training=False)
    state = op().numpy()
    assert np.abs(state).max() > 0  # a real state, not zeros
    np.testing.assert_allclose(state, expected, rtol=1e-5, atol=1e-5)


def test_eager_and_graph_calls_agree_and_the_model_returns_logits():
    runs = call_cost.candidates(STEPS, with_torch=False)
    eager = runs["native op, eager"]()
    np.testing.assert_allclose(runs["native op, tf.function"](), eager, rtol=1e-6, atol=1e-6)
    logits = runs["fast model, tf.function"]()
    assert logits.shape == (recurrent.Sizes.batch, recurrent.CLASSES)
    assert np.isfinite(logits).all()
