"""benchmarks/call_cost.py times one computation three ways: check that they agree.

No timings are taken; the probe's candidates are called once each.
"""

import shutil

import numpy as np
import pytest

from benchmarks import call_cost
from benchmarks import recurrent


@pytest.fixture(scope="module")
def runs():
    if shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the native op the probe times is unavailable")
    return call_cost.candidates(steps=3, with_torch=False)


def test_eager_and_graph_calls_of_the_native_op_agree(runs):
    eager = runs["native op, eager"]()
    graph = runs["native op, tf.function"]()
    assert eager.shape == (recurrent.Sizes.batch, recurrent.Sizes.units)
    assert np.abs(eager).max() > 0  # a real state, not zeros
    np.testing.assert_allclose(graph, eager, rtol=1e-6, atol=1e-6)


def test_fast_model_candidate_returns_the_heads_logits(runs):
    logits = runs["fast model, tf.function"]()
    assert logits.shape == (recurrent.Sizes.batch, recurrent.CLASSES)
    assert np.isfinite(logits).all()

