"""Traced inference: a model's functions as `tf.function`s, built once and kept on the model.

Called eagerly, a Keras recurrent layer runs its loop one step at a time from
Python, so a model's plain `model(x)` call costs milliseconds per time step
(`python -m benchmarks.eager_calls` times it against `traced_call`: 2.4 s
against 20 ms for a 200-word review and `sentiment-bilstm-imdb`). The
zoo's inference methods (`classify`, `forecast`, `score`, `translate`,
`caption`) go through functions kept here instead: traced once for an input
signature whose batch and time dimensions are open, so inputs of any length
reuse one graph.
"""

import tensorflow as tf

_CACHE = "_zoo_traced_functions"


def traced(model, key, build):
    """The function `build()` kept on `model` under `key`, built on the first call.

    The cache is an attribute Keras does not track: it is not saved with the
    model, and a copy of the model (`from_config`) starts without it.
    """
    cache = getattr(model, _CACHE, None)
    if cache is None:
        cache = {}
        object.__setattr__(model, _CACHE, cache)
    if key not in cache:
        cache[key] = build()
    return cache[key]


def traced_call(model, spec):
    """`model(x, training=False)` as a `tf.function` of one input `spec` (a `tf.TensorSpec`).

    >>> classify = traced_call(model, tf.TensorSpec([None], tf.string))  # doctest: +SKIP
    >>> probabilities = classify(tf.constant(["a fine film"]))            # doctest: +SKIP
    """
    key = ("call", tuple(spec.shape.as_list()), spec.dtype.name)
    # autograph=False: a model call has no Python control flow to convert.
    return traced(model, key, lambda: tf.function(
        lambda x: model(x, training=False), input_signature=[spec], autograph=False))
