"""XLA-compiled decoding vs graph decoding for a shipped translator (an option that lost).

`translate` decodes in a `tf.function` graph. This measures the same greedy
and beam-5 search (alignment only, as `translate` runs them) compiled with
XLA: the compile time of one input shape and the time per call after it, on
the first sentences of Multi30k's test_2016_flickr, one batch:

    .venv/bin/python -m benchmarks.xla_decoding [--model NAME] [--sentences 64]

XLA compiles once per input shape (batch size x source length), and
`translate`'s batches differ in both, so a compile costs more than it saves
unless one shape is decoded many times.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from benchmarks import models
from zoo import decoding
from zoo.tasks import translation


def decode_ids(model, source_ids, beam_size):
    """Best hypothesis tokens [B, L] for source ids [B, S]: the search `translate` runs."""
    source, states = model._decoder_inputs(source_ids)
    start = tf.fill([tf.shape(source_ids)[0]], translation.START_ID)
    length = model.max_output_length
    step_fn = model._step_function(attention_weights=False)
    if beam_size == 1:
        return decoding.greedy_search(step_fn, states, start, translation.END_ID, length,
                                      pad_id=translation.PAD_ID, constants=source)["tokens"]
    result = decoding.beam_search(step_fn, states, start, translation.END_ID, beam_size, length,
                                  length_penalty=model.length_penalty, pad_id=translation.PAD_ID,
                                  constants=source, stopping=translation.BEAM_STOPPING)
    return result["tokens"][:, 0]


def seconds_per_call(function, source_ids, calls):
    start = time.perf_counter()
    for _ in range(calls):
        function(source_ids).numpy()
    return (time.perf_counter() - start) / calls


def main(argv=None):
    parser = models.translator_parser(__doc__.split("\n")[0], sentences=64)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args(argv)
    model, sentences = models.translator_and_sources(args)
    source_ids = model.source_tokenizer(tf.constant(sentences))
    print(f"{args.model}, {args.sentences} sentences, source ids {source_ids.shape.as_list()}")
    for beam_size in (1, 5):
        search = lambda ids, beam_size=beam_size: decode_ids(model, ids, beam_size)
        graph = tf.function(search, autograph=False)
        xla = tf.function(search, autograph=False, jit_compile=True)
        start = time.perf_counter()
        xla(source_ids).numpy()
        compile_seconds = time.perf_counter() - start
        graph(source_ids).numpy()
        graph_seconds = seconds_per_call(graph, source_ids, args.calls)
        xla_seconds = seconds_per_call(xla, source_ids, args.calls)
        name = "greedy" if beam_size == 1 else f"beam-{beam_size}"
        print(f"  {name:7s} graph {graph_seconds:.3f} s/call, XLA {xla_seconds:.3f} s/call "
              f"({graph_seconds / xla_seconds:.2f}x), XLA first call (compile) "
              f"{compile_seconds:.2f} s")


if __name__ == "__main__":
    main()
