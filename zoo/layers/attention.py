"""Additive (Bahdanau) and multiplicative (Luong) attention for RNN decoders.

Both layers share one calling convention:

    context, weights = layer(query, values, mask=None)

* `query`: decoder state(s), `[B, H]` for one decoding step or `[B, Tq, H]`
  for all target steps at once (teacher forcing). A step's query may also
  hold several rows per source, `[N, H]` with `N // B` consecutive rows for
  each source (beam search's hypotheses of one sentence), which then share
  that source's `values`, `mask` and keys instead of copies of them.
* `values`: encoder outputs (or image regions), `[B, Ts, D]`.
* `mask`: optional `[B, Ts]` boolean source mask, `True` on real steps.
* `context`: `[B, D]` or `[B, Tq, D]`, the weighted sum of `values`.
* `weights`: `[B, Ts]` or `[B, Tq, Ts]`, a softmax over the unmasked source
  steps: they sum to 1 over real steps and are exactly 0 on padding.

Scores are computed from *keys*, a projection of `values` that does not depend
on the query. A decoder that runs step by step should compute them once per
source with `precompute_keys(values)` and pass them back with `keys=`, so each
step only pays for the query projection:

    keys = attention.precompute_keys(encoder_outputs)   # once per source
    for each step:                                        # (inside a tf.while_loop)
        context, weights = attention(state, encoder_outputs, mask=mask, keys=keys)
"""

import keras
import tensorflow as tf
from keras import ops

from zoo.layers import native

__all__ = ["AdditiveAttention", "MultiplicativeAttention", "masked_softmax"]

# Fill value for masked scores: exp() of it underflows to exactly 0 in float32,
# without the NaNs that -inf produces on fully masked rows.
_MASKED_SCORE = -1e9


def _attend(scores, mask, values, dtype):
    """`(context [B, Tq, D], weights [B, Tq, Ts])` from `scores` over `values` [B, Ts, D]."""
    weights = ops.cast(masked_softmax(scores, mask), dtype)
    return ops.matmul(weights, values), weights


def _additive_scores(projected_query, keys, score_kernel):
    """`v^T tanh(W_q s + k_j)`: `[B, Tq, Ts]` from `[B, Tq, units]` and `[B, Ts, units]`."""
    hidden = ops.tanh(ops.expand_dims(projected_query, 2) + ops.expand_dims(keys, 1))
    score_kernel = ops.cast(score_kernel, hidden.dtype)  # [units, 1]
    return ops.squeeze(ops.matmul(hidden, score_kernel), axis=-1)


def _grouped_by_source(query, values):
    """`[N, H]` query rows -> `[B, N // B, H]`, the rows of each of `values`' B sources."""
    return ops.reshape(query, (ops.shape(values)[0], -1, query.shape[-1]))


def _fused_additive_step(library, projected_query, keys, score_kernel, mask, values):
    """`zoo_additive_attention` of one step, differentiable through the TF ops it replaces."""
    real = tf.zeros([0, 0], tf.bool) if mask is None else tf.cast(mask, tf.bool)

    @tf.custom_gradient
    def attend(projected_query, keys, score_kernel, values):
        outputs = library.zoo_additive_attention(projected_query, keys,
                                                 tf.reshape(score_kernel, [-1]), real, values)

        def gradient(d_context, d_weights):
            inputs = [projected_query, keys, score_kernel, values]
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                scores = _additive_scores(_grouped_by_source(projected_query, values), keys,
                                          score_kernel)
                reference = [tf.reshape(x, tf.shape(y)) for x, y in
                             zip(_attend(scores, mask, values, tf.float32), outputs)]
            upstream = [tf.zeros_like(x) if g is None else g
                        for g, x in zip((d_context, d_weights), outputs)]
            return tape.gradient(reference, inputs, output_gradients=upstream)

        return outputs, gradient

    return attend(projected_query, keys, score_kernel, values)


def masked_softmax(scores, mask=None):
    """Softmax over the last axis that ignores masked positions.

    Computed in float32 so that float16 scores neither overflow in `exp` nor
    lose the large negative fill. Masked positions get a weight of exactly 0;
    a row with no unmasked position gets all zeros rather than NaNs.

    Args:
        scores: `[B, Tq, Ts]` attention scores.
        mask: optional `[B, Ts]` mask, truthy on real source steps.

    Returns:
        `[B, Tq, Ts]` float32 weights.
    """
    scores = ops.cast(scores, "float32")
    if mask is None:
        return ops.softmax(scores, axis=-1)
    mask = ops.expand_dims(ops.cast(mask, "bool"), axis=1)  # broadcast over Tq
    weights = ops.softmax(ops.where(mask, scores, _MASKED_SCORE), axis=-1)
    return ops.where(mask, weights, 0.0)


class _Attention(keras.layers.Layer):
    """Shared mechanics: query rank handling, masking, softmax and context.

    Subclasses create their weights in `build` and implement
    `precompute_keys(values)` and `_score(projected_query_steps, keys)`.
    """

    def __init__(self, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # The output keeps the query's mask (target padding in teacher forcing).
        self.supports_masking = True

    def _dense(self, units, name):
        return keras.layers.Dense(
            units,
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name=name,
        )

    def precompute_keys(self, values):
        """Projects `values` [B, Ts, D] into the keys the scores are computed from."""
        raise NotImplementedError

    def _score(self, query, keys):
        """Scores `[B, Tq, Ts]` for `query` [B, Tq, H] against `keys` [B, Ts, ...]."""
        raise NotImplementedError

    def _fused_step(self, query, values, mask, keys):
        """`(context, weights)` of one step `[N, H]` by a native kernel, or None.

        None makes `call` run the layer's TF ops; subclasses with a kernel
        return its result where it can run.
        """
        return None

    def _check_built_for_keys(self):
        if not self.built:
            raise ValueError(
                f"Layer '{self.name}' must be built before `precompute_keys()`: call "
                "it once on (query, values) or call `build(query_shape, values_shape)`."
            )

    def call(self, query, values, mask=None, keys=None, return_attention_scores=True):
        """Attends from `query` over `values`.

        Args:
            query: `[B, H]` (one step), `[N, H]` (one step of `N // B` rows
                per source, consecutive) or `[B, Tq, H]` (all steps).
            values: `[B, Ts, D]`.
            mask: optional `[B, Ts]` boolean source mask (`True` on real steps).
            keys: optional output of `precompute_keys(values)`, to skip
                re-projecting `values` at every decoding step.
            return_attention_scores: whether to also return the weights.

        Returns:
            `(context, weights)`, or `context` alone when
            `return_attention_scores=False`.
        """
        single_step = len(query.shape) == 2
        if keys is None:
            keys = self.precompute_keys(values)
        fused = self._fused_step(query, values, mask, keys) if single_step else None
        if fused is not None:
            context, weights = fused
        elif single_step:
            context, weights = _attend(self._score(_grouped_by_source(query, values), keys),
                                       mask, values, self.compute_dtype)
            rows = ops.shape(query)[0]
            context = ops.reshape(context, (rows, context.shape[-1]))
            weights = ops.reshape(weights, (rows, ops.shape(weights)[-1]))
        else:
            context, weights = _attend(self._score(query, keys), mask, values,
                                       self.compute_dtype)
        if return_attention_scores:
            return context, weights
        return context

    def compute_mask(self, query, previous_mask=None):
        # Both outputs are indexed by query steps, so both inherit the query mask.
        return (previous_mask, previous_mask)

    def get_config(self):
        config = super().get_config()
        config["kernel_initializer"] = keras.initializers.serialize(self.kernel_initializer)
        return config


@keras.saving.register_keras_serializable(package="zoo")
class AdditiveAttention(_Attention):
    """Additive attention (Bahdanau et al., 2015).

    For a decoder state `s` and encoder outputs `h_1 .. h_Ts`:

        score(s, h_j) = v^T tanh(W_q s + W_k h_j)
        a_j           = exp(score_j) / sum_{k unmasked} exp(score_k)   (0 if j masked)
        context       = sum_j a_j h_j

    with `W_q: [units, H]`, `W_k: [units, D]`, `v: [units]` and no biases.
    `W_k h_j` is the *key* of step `j`; `precompute_keys` computes it once per
    source.

    Args:
        units: size of the hidden layer of the scoring MLP.
        kernel_initializer: initializer of `W_q`, `W_k` and `v`.

    Example:

    ```python
    attention = AdditiveAttention(units=64)
    encoder_outputs = keras.random.normal((2, 7, 32))   # [B, Ts, D]
    mask = keras.ops.arange(7)[None, :] < [[7], [4]]     # second source has 4 steps
    # Teacher forcing: all target steps at once.
    context, weights = attention(keras.random.normal((2, 5, 48)), encoder_outputs, mask=mask)
    # context: [2, 5, 32], weights: [2, 5, 7]
    # Step by step: project the source once.
    keys = attention.precompute_keys(encoder_outputs)
    context, weights = attention(keras.random.normal((2, 48)), encoder_outputs,
                                 mask=mask, keys=keys)
    # context: [2, 32], weights: [2, 7]
    ```
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.query_projection = self._dense(units, "query_projection")  # W_q
        self.key_projection = self._dense(units, "key_projection")  # W_k
        self.score_projection = self._dense(1, "score_projection")  # v

    def build(self, query_shape, values_shape, keys_shape=None):
        self.query_projection.build(query_shape)
        self.key_projection.build(values_shape)
        self.score_projection.build(tuple(values_shape[:-1]) + (self.units,))

    def precompute_keys(self, values):
        """Returns the keys `W_k h_j`, `[B, Ts, units]`."""
        self._check_built_for_keys()
        return self.key_projection(values)

    def _score(self, query, keys):
        return _additive_scores(self.query_projection(query), keys, self.score_projection.kernel)

    def _fused_step(self, query, values, mask, keys):
        """One decoding step by `zoo_additive_attention` (`zoo.layers.native`).

        The kernel never builds the `[N, Ts, units]` hidden layer that the TF
        ops write and read back, and the rows of one source read its keys and
        values, not copies. Gradients, should a step be differentiated,
        come from the TF ops, recomputed.
        """
        library = native.ops_for(query, values, keys)
        if library is None or self.compute_dtype != "float32":
            return None
        return _fused_additive_step(library, self.query_projection(query), keys,
                                    tf.convert_to_tensor(self.score_projection.kernel),
                                    mask, values)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="zoo")
class MultiplicativeAttention(_Attention):
    """Multiplicative attention, Luong et al. (2015) "general" score.

    For a decoder state `s` and encoder outputs `h_1 .. h_Ts`:

        score(s, h_j) = g * s^T W h_j      (g = 1 unless use_scale=True)
        a_j           = exp(score_j) / sum_{k unmasked} exp(score_k)   (0 if j masked)
        context       = sum_j a_j h_j

    with `W: [H, D]` and, when `use_scale=True`, a learned scalar `g`
    initialized to 1 (it lets the model sharpen or flatten the distribution,
    as `keras.layers.Attention(use_scale=True)` does). `W h_j` is the *key* of
    step `j`; `precompute_keys` computes it once per source, after which each
    step is a single batched dot product.

    Args:
        use_scale: whether to learn the scalar `g`.
        kernel_initializer: initializer of `W`.

    Example:

    ```python
    attention = MultiplicativeAttention()
    encoder_outputs = keras.random.normal((2, 7, 32))   # [B, Ts, D]
    context, weights = attention(keras.random.normal((2, 48)), encoder_outputs)
    # context: [2, 32], weights: [2, 7]
    ```
    """

    def __init__(self, use_scale=False, **kwargs):
        super().__init__(**kwargs)
        self.use_scale = use_scale
        self.key_projection = None  # W; its width is the query size, known in build()

    def build(self, query_shape, values_shape, keys_shape=None):
        self.key_projection = self._dense(query_shape[-1], "key_projection")
        self.key_projection.build(values_shape)
        self.scale = None
        if self.use_scale:
            self.scale = self.add_weight(name="scale", shape=(), initializer="ones")

    def precompute_keys(self, values):
        """Returns the keys `W h_j`, `[B, Ts, H]`."""
        self._check_built_for_keys()
        return self.key_projection(values)

    def _score(self, query, keys):
        scores = ops.matmul(query, ops.swapaxes(keys, 1, 2))  # [B, Tq, Ts]
        if self.scale is not None:
            scores = scores * ops.cast(self.scale, scores.dtype)
        return scores

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale}
