"""Linear-chain conditional random field (CRF) for sequence tagging.

A linear-chain CRF scores a tag sequence `y = (y_1, ..., y_T)` for an input
`x` with per-token potentials `U` (the tagger's logits, `[T, num_tags]`), a
tag-to-tag transition matrix `A` and start/end transition vectors:

    score(x, y) = start[y_1] + sum_{t=1..T} U[t, y_t]
                  + sum_{t=2..T} A[y_{t-1}, y_t] + end[y_T]

    p(y | x) = exp(score(x, y)) / Z(x),   Z(x) = sum_y' exp(score(x, y'))

`log Z` comes from the forward recursion in log space (O(T * num_tags^2)):

    alpha_1[j] = start[j] + U[1, j]
    alpha_t[j] = logsumexp_i(alpha_{t-1}[i] + A[i, j]) + U[t, j]
    log Z      = logsumexp_j(alpha_T[j] + end[j])

and the most likely sequence from the Viterbi recursion, the same with `max`
in place of `logsumexp`, keeping the arg-max as a back-pointer:

    delta_t[j] = max_i(delta_{t-1}[i] + A[i, j]) + U[t, j]
    back_t[j]  = argmax_i(delta_{t-1}[i] + A[i, j])

Batches are right-padded (`post`): `mask[b, t]` is True for real steps and
every row is a run of True followed by a run of False. Padded steps leave
`alpha` / `delta` untouched (identity back-pointers), so a row of length `L`
is scored exactly as if it had been cut to `L`. Padded positions of decoded
tags are 0. The time axis must have at least one step (`T >= 1`). A row with
zero real steps (the zoo never builds one) is treated as an empty sequence
with one "virtual" tag that only gets start and end transitions:
`score = start[y] + end[y]`, `log Z = logsumexp(start + end)`; the results
stay finite.

All computation runs in float32: float16/bfloat16 potentials are cast up,
since `logsumexp` over long sentences loses too much precision in half
precision. The zoo is TensorFlow-only, so the recursions use `tf.foldl` /
`tf.scan`; they work eagerly, inside `tf.function` and inside `model.fit`.
"""

import keras
import tensorflow as tf

# ---------------------------------------------------------------------------
# Pure functions.
# ---------------------------------------------------------------------------


def _prepare(potentials, mask, *params):
    """Casts inputs to float32 / bool; a missing mask means "all real"."""
    potentials = tf.cast(tf.convert_to_tensor(potentials), tf.float32)
    if mask is None:
        mask = tf.ones(tf.shape(potentials)[:2], dtype=tf.bool)
    else:
        mask = tf.cast(tf.convert_to_tensor(mask), tf.bool)
    params = [tf.cast(tf.convert_to_tensor(p), tf.float32) for p in params]
    return potentials, mask, params


def _first_step(potentials, mask, start_transitions):
    """`start + U[:, 0]`; the unary term is dropped for a zero-length row."""
    first_unary = tf.where(mask[:, :1], potentials[:, 0], 0.0)
    return start_transitions[tf.newaxis] + first_unary


def _time_major_rest(potentials, mask):
    """Steps 2..T, time-major, as the sequence a scan/fold walks over."""
    rest_potentials = tf.transpose(potentials[:, 1:], [1, 0, 2])
    rest_mask = tf.transpose(mask[:, 1:], [1, 0])
    return rest_potentials, rest_mask


def crf_sequence_score(potentials, tags, mask, transitions, start_transitions, end_transitions):
    """Unnormalized `score(x, y)` of given tag sequences.

    Args:
        potentials: float `[batch, time, num_tags]` per-token scores `U`.
        tags: int `[batch, time]` tag ids; values at padded steps are ignored.
        mask: bool-like `[batch, time]`, right-padded, or `None` (no padding).
        transitions: `[num_tags, num_tags]`, `A[i, j]` scores tag `i -> j`.
        start_transitions: `[num_tags]` scores for the first tag.
        end_transitions: `[num_tags]` scores for the last tag.

    Returns:
        float32 `[batch]`.
    """
    potentials, mask, (transitions, start, end) = _prepare(
        potentials, mask, transitions, start_transitions, end_transitions
    )
    num_tags = tf.shape(transitions)[0]
    # Padded steps may hold any label (e.g. -1); clamp them to a valid id.
    tags = tf.where(mask, tf.cast(tags, tf.int32), 0)
    real = tf.cast(mask, tf.float32)

    unary = tf.gather(potentials, tags, axis=2, batch_dims=2)
    unary_score = tf.reduce_sum(unary * real, axis=1)

    pair_ids = tags[:, :-1] * num_tags + tags[:, 1:]
    pair = tf.gather(tf.reshape(transitions, [-1]), pair_ids)
    pair_score = tf.reduce_sum(pair * real[:, 1:], axis=1)

    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    last_tags = tf.gather(tags, tf.maximum(lengths - 1, 0), batch_dims=1)
    boundary_score = tf.gather(start, tags[:, 0]) + tf.gather(end, last_tags)
    return unary_score + pair_score + boundary_score


def crf_log_norm(potentials, mask, transitions, start_transitions, end_transitions):
    """`log Z(x)` by the forward algorithm in log space; float32 `[batch]`."""
    potentials, mask, (transitions, start, end) = _prepare(
        potentials, mask, transitions, start_transitions, end_transitions
    )

    def forward_step(alpha, step):
        unary, is_real = step
        # [batch, from, 1] + [1, from, to] -> reduce over `from`.
        scores = alpha[:, :, tf.newaxis] + transitions[tf.newaxis]
        next_alpha = tf.reduce_logsumexp(scores, axis=1) + unary
        return tf.where(is_real[:, tf.newaxis], next_alpha, alpha)

    alpha = tf.foldl(
        forward_step,
        _time_major_rest(potentials, mask),
        initializer=_first_step(potentials, mask, start),
    )
    return tf.reduce_logsumexp(alpha + end[tf.newaxis], axis=1)


def crf_log_likelihood(potentials, tags, mask, transitions, start_transitions, end_transitions):
    """Per-sequence `log p(tags | x) = score(x, tags) - log Z(x)`.

    Differentiable with respect to the potentials and all transition
    parameters. See the module docstring for the equations.

    Example:

    >>> import numpy as np
    >>> potentials = np.zeros([1, 3, 2], "float32")    # 3 steps, 2 tags
    >>> zeros_2x2, zeros_2 = np.zeros([2, 2]), np.zeros([2])
    >>> ll = crf_log_likelihood(potentials, [[0, 1, 1]], [[1, 1, 0]],
    ...                         zeros_2x2, zeros_2, zeros_2)
    >>> round(float(ll[0]), 4)   # uniform over 2**2 sequences of length 2
    -1.3863

    Args:
        potentials: float `[batch, time, num_tags]` (any float dtype).
        tags: int `[batch, time]` gold tags.
        mask: bool-like `[batch, time]`, right-padded, or `None`.
        transitions: `[num_tags, num_tags]`.
        start_transitions: `[num_tags]`.
        end_transitions: `[num_tags]`.

    Returns:
        float32 `[batch]`, each `<= 0`.
    """
    args = (transitions, start_transitions, end_transitions)
    score = crf_sequence_score(potentials, tags, mask, *args)
    return score - crf_log_norm(potentials, mask, *args)


def crf_viterbi_decode(potentials, mask, transitions, start_transitions, end_transitions):
    """Most likely tag sequence per row, by the Viterbi algorithm.

    Args:
        potentials: float `[batch, time, num_tags]` (any float dtype).
        mask: bool-like `[batch, time]`, right-padded, or `None`.
        transitions: `[num_tags, num_tags]`.
        start_transitions: `[num_tags]`.
        end_transitions: `[num_tags]`.

    Returns:
        `(best_tags, best_score)`: int32 `[batch, time]` with 0 at padded
        steps, and float32 `[batch]` = `score(x, best_tags)`.
    """
    potentials, mask, (transitions, start, end) = _prepare(
        potentials, mask, transitions, start_transitions, end_transitions
    )
    num_tags = tf.shape(transitions)[0]
    keep_tag = tf.range(num_tags)[tf.newaxis]  # back-pointers on padded steps

    def viterbi_step(carry, step):
        delta, _ = carry
        unary, is_real = step
        scores = delta[:, :, tf.newaxis] + transitions[tf.newaxis]
        next_delta = tf.reduce_max(scores, axis=1) + unary
        back = tf.argmax(scores, axis=1, output_type=tf.int32)
        is_real = is_real[:, tf.newaxis]
        return tf.where(is_real, next_delta, delta), tf.where(is_real, back, keep_tag)

    first_delta = _first_step(potentials, mask, start)
    deltas, back_pointers = tf.scan(
        viterbi_step,
        _time_major_rest(potentials, mask),
        initializer=(first_delta, tf.zeros_like(first_delta, dtype=tf.int32)),
    )
    # `deltas` is empty for a single-step batch, hence the concat.
    last_delta = tf.concat([first_delta[tf.newaxis], deltas], axis=0)[-1]
    final_scores = last_delta + end[tf.newaxis]
    best_score = tf.reduce_max(final_scores, axis=1)
    last_tag = tf.argmax(final_scores, axis=1, output_type=tf.int32)

    # Walk the back-pointers from the end: back_t maps tag_t to tag_{t-1}.
    earlier_tags = tf.scan(
        lambda tag, back: tf.gather(back, tag, batch_dims=1),
        back_pointers,
        initializer=last_tag,
        reverse=True,
    )
    best_tags = tf.concat([earlier_tags, last_tag[tf.newaxis]], axis=0)
    best_tags = tf.where(mask, tf.transpose(best_tags), 0)
    return best_tags, best_score


# ---------------------------------------------------------------------------
# Keras layer and loss.
# ---------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="zoo")
class CRF(keras.layers.Layer):
    """Linear-chain CRF: learnable transitions plus Viterbi decoding.

    The layer owns the transition parameters of

        score(x, y) = sum_t (U[t, y_t] + A[y_{t-1}, y_t]) + start[y_1] + end[y_T]

    where `U` are per-token potentials produced by the layers below (the
    tagger's logits) and `A` (`transitions`), `start` (`start_transitions`),
    `end` (`end_transitions`) are weights of this layer. Training maximizes
    `log p(y | x) = score(x, y) - log Z(x)` with `log Z` from the forward
    recursion (see `crf_log_likelihood`); inference returns the Viterbi path.

    Calling the layer decodes: `crf(potentials, mask)` returns int32 tags
    `[batch, time]` (0 at padded steps), so it can sit at the end of a
    functional inference model. It has no gradient; train on the potentials
    with `crf_loss(potentials, tags, mask, crf)`, which reaches both the
    potentials and this layer's weights. A Keras mask on `potentials` (from
    `Embedding(mask_zero=True)`, say) is used automatically and propagated.

    Variables are float32 and computation runs in float32 even under a
    mixed-precision policy; half-precision potentials are cast up.

    Example:

    ```python
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(vocab_size, 64, mask_zero=True)(tokens)
    x = keras.layers.Bidirectional(keras.layers.LSTM(64, return_sequences=True))(x)
    potentials = keras.layers.Dense(num_tags)(x)
    crf = CRF(num_tags)
    tags = crf(potentials)                      # Viterbi decoding
    # In the task model's compute_loss:
    #     loss = crf_loss(potentials, gold_tags, mask, crf)
    ```

    Args:
        num_tags: number of tags; the last axis of the potentials.
        transitions_initializer: initializer of the `[num_tags, num_tags]`
            transition matrix.
        boundary_initializer: initializer of the start/end vectors.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).
    """

    def __init__(
        self,
        num_tags,
        transitions_initializer="glorot_uniform",
        boundary_initializer="zeros",
        **kwargs,
    ):
        # The CRF is a numerically sensitive output layer: keep it float32.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if int(num_tags) < 1:
            raise ValueError(f"`num_tags` must be >= 1, got {num_tags}.")
        self.num_tags = int(num_tags)
        self.transitions_initializer = keras.initializers.get(transitions_initializer)
        self.boundary_initializer = keras.initializers.get(boundary_initializer)
        self.supports_masking = True
        # The weights do not depend on the input shape, so they exist from
        # construction: `crf_loss` may use them before the layer is called.
        self.transitions = self.add_weight(
            name="transitions",
            shape=(self.num_tags, self.num_tags),
            initializer=self.transitions_initializer,
            dtype="float32",
        )
        self.start_transitions = self.add_weight(
            name="start_transitions",
            shape=(self.num_tags,),
            initializer=self.boundary_initializer,
            dtype="float32",
        )
        self.end_transitions = self.add_weight(
            name="end_transitions",
            shape=(self.num_tags,),
            initializer=self.boundary_initializer,
            dtype="float32",
        )
        self.built = True

    def _parameters(self):
        return (self.transitions, self.start_transitions, self.end_transitions)

    def _check_potentials(self, potentials):
        last_dim = potentials.shape[-1]
        if last_dim is not None and last_dim != self.num_tags:
            raise ValueError(
                f"CRF '{self.name}' has num_tags={self.num_tags} but got "
                f"potentials with last dimension {last_dim} "
                f"(shape {tuple(potentials.shape)})."
            )

    def log_likelihood(self, potentials, tags, mask=None):
        """`log p(tags | potentials)`, float32 `[batch]`."""
        self._check_potentials(potentials)
        return crf_log_likelihood(potentials, tags, mask, *self._parameters())

    def decode(self, potentials, mask=None):
        """Viterbi `(best_tags int32 [batch, time], best_score float32 [batch])`."""
        self._check_potentials(potentials)
        return crf_viterbi_decode(potentials, mask, *self._parameters())

    def call(self, potentials, mask=None):
        best_tags, _ = self.decode(potentials, mask)
        return best_tags

    def compute_output_spec(self, potentials, mask=None):
        return keras.KerasTensor(potentials.shape[:-1], dtype="int32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_tags": self.num_tags,
                "transitions_initializer": keras.initializers.serialize(
                    self.transitions_initializer
                ),
                "boundary_initializer": keras.initializers.serialize(self.boundary_initializer),
            }
        )
        return config


def crf_loss(potentials, tags, mask, crf_layer, sample_weight=None):
    """Mean negative log-likelihood of `tags` under `crf_layer`.

        loss = sum_b w_b * (-log p(tags_b | x_b)) / sum_b w_b

    with `w_b = 1` when `sample_weight` is None. Gradients reach the
    potentials and the layer's transitions. Meant for a task model's
    `compute_loss`:

    ```python
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        mask = x["token_ids"] != 0
        return crf_loss(y_pred["potentials"], y, mask, self.crf, sample_weight)
    ```

    Args:
        potentials: float `[batch, time, num_tags]`.
        tags: int `[batch, time]` gold tags.
        mask: bool-like `[batch, time]`, right-padded, or `None`.
        crf_layer: the `CRF` layer holding the transitions.
        sample_weight: optional float `[batch]` per-sequence weights.

    Returns:
        float32 scalar.
    """
    nll = -crf_layer.log_likelihood(potentials, tags, mask)
    if sample_weight is None:
        return tf.reduce_mean(nll)
    sample_weight = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    return tf.math.divide_no_nan(tf.reduce_sum(nll * sample_weight), tf.reduce_sum(sample_weight))
