"""benchmarks/decoding_profile.py groups profiled ops into a translator's parts: check it.

The names are those TF's profiler gave `translate`'s ops (TF 2.21); no profile is taken.
"""

import pytest

from benchmarks import decoding_profile as profile

STEP = "while/body/_164/while/decoder_step/"


@pytest.mark.parametrize("op, part", [
    ("encoder_bigru_0_1/forward_encoder_gru_0_1/while/body/_1/encoder_bigru_0_1/"
     "forward_encoder_gru_0_1/while/gru_cell_1/BiasAdd:_MklNativeFusedMatMul", "encoder"),
    ("source_embedding_1/GatherV2:GatherV2", "encoder"),
    (STEP + "logits/BiasAdd:_MklNativeFusedMatMul", "output projection"),
    (STEP + "LogSoftmax:LogSoftmax", "log-softmax"),
    (STEP + "attentional_1/BiasAdd:_MklNativeFusedMatMul", "attentional layer"),
    (STEP + "attention_1/Tanh:Tanh", "attention"),
    ("key_projection_1/Tensordot/MatMul:_MklMatMul", "attention"),
    (STEP + "gru_cell_1/Sigmoid:Sigmoid", "decoder GRU"),
    (STEP + "GatherV2:GatherV2", "rest of the decoder step"),
    ("StaticRegexReplace:StaticRegexReplace", "text processing"),
    ("while/body/_164/while/TopKV2_1:TopKV2", profile.SEARCH),
    ("while/body/_164/while/cond/then/_587/while/cond/GatherV2_15:GatherV2", profile.SEARCH),
])
def test_ops_are_grouped_by_the_part_that_runs_them(op, part):
    assert profile.part_of(op) == part


def test_parts_add_up_op_times_and_executor_events_are_not_ops():
    assert profile._is_op(STEP + "LogSoftmax:LogSoftmax")
    assert not profile._is_op("ExecutorState::Process") and not profile._is_op("ParallelFor")
    times = {STEP + "LogSoftmax:LogSoftmax": 2.0, STEP + "LogSoftmax_1:LogSoftmax": 1.5,
             "while/body/_164/while/TopKV2:TopKV2": 4.0}
    parts = profile.by_part(times)
    assert list(parts)[-1] == profile.SEARCH and len(parts) == len(profile.PARTS) + 1
    assert parts["log-softmax"] == 3.5 and parts[profile.SEARCH] == 4.0
    assert sum(parts.values()) == 7.5
