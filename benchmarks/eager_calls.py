"""A pretrained model's eager call against its traced one (`zoo.tracing.traced_call`).

Keras runs a recurrent layer that is called eagerly one time step at a time from
Python. This times `model(x, training=False)` eagerly and through
`traced_call` on one input for every pretrained classifier, language model and
forecaster: a text of at least `--words` words, built by repeating the task's
first shipped example, or one observation window. The calls are interleaved,
and the output is the median ms per call:

    .venv/bin/python -m benchmarks.eager_calls [--words 200] [--repetitions 3]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse

import tensorflow as tf

import zoo
from benchmarks import models, timing
from zoo import registry
from zoo.tracing import traced_call

TASKS = ("classification", "language_model", "forecasting")


def long_text(spec, words):
    """The task's first example, repeated until it has at least `words` words."""
    example = str(registry.get_task(spec.task).examples(spec)[0])
    copies = -(-words // len(example.split()))
    return " ".join([example] * copies)


def model_input(spec, model, words):
    """One input in the form `model(x)` takes, and its `tf.TensorSpec` with open dimensions."""
    if spec.task == "classification":
        return tf.constant([long_text(spec, words)]), tf.TensorSpec([None], tf.string)
    if spec.task == "language_model":
        ids = model.encode([long_text(spec, words)]).to_tensor()[:, :-1]
        return ids, tf.TensorSpec([None, None], ids.dtype)
    window = tf.constant(models._forecast_windows(model, 1))
    return window, tf.TensorSpec([None, *window.shape[1:]], tf.float32)


def describe(spec, x):
    if spec.task == "classification":
        return f"{len(x.numpy()[0].split())} words"
    return f"{x.shape[1]} tokens" if spec.task == "language_model" else "1 window"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--words", type=int, default=200)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{'model':45s} {'input':>12s} {'eager ms':>9s} {'traced ms':>10s}  eager / traced")
    for spec in models.trained_specs():
        if spec.task not in TASKS:
            continue
        model = zoo.load(spec.name)
        x, signature = model_input(spec, model, args.words)
        traced = traced_call(model, signature)
        seconds = timing.interleaved(
            {"eager": lambda: model(x, training=False).numpy(), "traced": lambda: traced(x).numpy()},
            args.repetitions, min_seconds=0.0)
        eager, fast = (seconds[name]["seconds"] * 1e3 for name in ("eager", "traced"))
        print(f"{spec.name:45s} {describe(spec, x):>12s} {eager:9.1f} {fast:10.1f}  "
              f"{eager / fast:8.1f}x", flush=True)


if __name__ == "__main__":
    main()
