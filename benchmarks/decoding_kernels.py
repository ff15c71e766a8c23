"""A decoding step's log-softmax and top-k: TF's CPU ops against the zoo's native kernels.

Times, side by side (`benchmarks.timing.interleaved`) and back to back (as a
decoding loop calls them), each as one `tf.function` call on random
`[rows, vocabulary]` logits:

* log-softmax: `tf.nn.log_softmax` against `zoo_log_softmax`;
* top-k (k = 6, what beam 5 takes of each row): `tf.math.top_k`, the chunked
  two-pass top-k that `zoo.decoding` runs in TF ops, and `zoo_top_k`.

Shapes: greedy's 64 rows and beam 5's 320 (64 sentences per call), with the
translators' 5,633-token output vocabulary by default:

    .venv/bin/python -m benchmarks.decoding_kernels [--rows 64,320] [--vocabulary 5633]

With `--translate`, it times `translate` instead (beam 5 and greedy, in its
batches of 64) on a translator's test sentences, with the native kernels
(additive attention, log-softmax, top-k) and with TF's own ops (the same
model, traced inside `zoo.layers.native.left_out()`), interleaved, and
prints how many translations agree and their BLEU:

    .venv/bin/python -m benchmarks.decoding_kernels --translate [--model NAME] [--sentences 1000]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

K = 6


def candidates(rows, vocabulary, seed=0):
    """{name: callable} for one [rows, vocabulary] shape."""
    import numpy as np
    import tensorflow as tf

    from zoo import decoding
    from zoo.layers import native

    ops = native.ops()
    if ops is None:
        raise SystemExit(f"the native kernels are unavailable: {native.unavailable_reason()}")
    logits = tf.constant(np.random.default_rng(seed).normal(size=(rows, vocabulary)) * 3,
                         tf.float32)
    with native.left_out():
        chunked = tf.function(lambda x: decoding._top_k(x, K))
        chunked.get_concrete_function(logits)  # traced here, so with TF ops only
    functions = {
        "log-softmax, TF": tf.function(tf.nn.log_softmax),
        "log-softmax, native": tf.function(ops.zoo_log_softmax),
        "top-6, tf.math.top_k": tf.function(lambda x: tf.math.top_k(x, K)),
        "top-6, chunked TF ops": chunked,
        "top-6, native": tf.function(lambda x: ops.zoo_top_k(x, k=K)),
    }
    return {name: (lambda f=f: tf.nest.map_structure(lambda t: t.numpy(), f(logits)))
            for name, f in functions.items()}


def compare_translate(args):
    """`translate` with the native kernels and with TF's ops, side by side."""
    import zoo
    from benchmarks import models
    from zoo import registry
    from zoo.layers import native
    from zoo.tasks import translation

    spec = registry.get_pretrained(args.model)
    sources, references = translation.load_pairs(spec.dataset, "test",
                                                 *translation.languages(spec))
    sources, references = sources[: args.sentences], references[: args.sentences]
    with_kernels, with_tf_ops = zoo.load(args.model), zoo.load(args.model)
    with native.left_out():  # traced here; later calls reuse these graphs
        for beam_size in (5, 1):
            with_tf_ops.translate(sources[:2], beam_size=beam_size)
    runs = {"beam 5, native kernels": lambda texts: with_kernels.translate(texts),
            "beam 5, TF ops": lambda texts: with_tf_ops.translate(texts),
            "greedy, native kernels": lambda texts: with_kernels.translate(texts, beam_size=1),
            "greedy, TF ops": lambda texts: with_tf_ops.translate(texts, beam_size=1)}
    seconds = models.compare_translations(args.model, runs, sources, args.repetitions,
                                          references)
    for kind in ("native kernels", "TF ops"):
        print(f"beam 5 over greedy, {kind}: "
              f"{seconds[f'beam 5, {kind}'] / seconds[f'greedy, {kind}']:.2f}x")


def main(argv=None):
    from benchmarks import timing

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="64,320")
    parser.add_argument("--vocabulary", type=int, default=5633)
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--translate", action="store_true",
                        help="time translate with and without the kernels instead")
    parser.add_argument("--model", default="translate-gru-attention-multi30k-en-de")
    parser.add_argument("--sentences", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.translate:
        return compare_translate(args)
    for rows in map(int, args.rows.split(",")):
        # Back to back, as a decoding loop calls them: no pause for threads to idle.
        results = timing.interleaved(candidates(rows, args.vocabulary), args.repetitions,
                                     settle_seconds=0.0)
        print(f"[{rows}, {args.vocabulary}], median ms per call (interleaved, back to back):")
        for name, result in results.items():
            print(f"  {name:24s} {result['seconds'] * 1e3:7.3f}")


if __name__ == "__main__":
    main()
