"""How many decoder rows `translate` runs: greedy search against beam 5 under each stopping rule.

Decoding cost follows the rows `step_fn` is run on, summed over steps. This
counts them (and the `step_fn` calls) while `translate` decodes a
translator's first test sentences in its batches of 64; beam 5 runs 5 rows per
sentence, so its rows over 5 against greedy's is how many more steps a
sentence stays in the batch. No timing is taken:

    .venv/bin/python -m benchmarks.decoding_rows [--model NAME] [--sentences 256]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from benchmarks import models
from zoo import decoding

SEARCHES = {"greedy": {"beam_size": 1},
            "beam 5, exact": {"stopping": "exact"},
            "beam 5, heuristic": {"stopping": "heuristic"}}


def counting_steps(rows, calls):
    """A `decoding._call_step` that also adds its rows and one call to two variables."""
    call_step = decoding._call_step

    def counted(step_fn, token_ids, state, constants=None):
        outputs = call_step(step_fn, token_ids, state, constants)
        with tf.control_dependencies([rows.assign_add(tf.shape(token_ids, tf.int64)[0]),
                                      calls.assign_add(1)]):
            return tf.nest.map_structure(tf.identity, outputs)

    return counted


def main(argv=None):
    args = models.translator_parser(__doc__.split("\n")[0], sentences=256).parse_args(argv)
    model, texts = models.translator_and_sources(args)
    rows, calls = tf.Variable(0, dtype=tf.int64), tf.Variable(0, dtype=tf.int64)
    saved, decoding._call_step = decoding._call_step, counting_steps(rows, calls)
    try:
        counts = {}
        for name, options in SEARCHES.items():
            rows.assign(0), calls.assign(0)
            model.translate(texts, **options)  # its first call: traced with the counting step
            counts[name] = int(rows.numpy()), int(calls.numpy())
    finally:
        decoding._call_step = saved
    print(f"{args.model}, {len(texts)} sentences in batches of 64:")
    greedy_rows = counts["greedy"][0]
    for name, (row_count, call_count) in counts.items():
        per_sentence = row_count / (1 if name == "greedy" else 5) / greedy_rows
        print(f"  {name:18s} {call_count:4d} steps  {row_count:6d} rows  "
              f"{per_sentence:5.2f}x greedy's steps per sentence")


if __name__ == "__main__":
    main()
