"""`tf.data` pipelines for text tasks: raw strings in, batches grouped by length.

Models in the zoo tokenize inside the model (whitespace tokens), so pipelines
carry RAW STRINGS plus labels. Label sequences (one tag per token) are padded on
the right ("post") with 0, or "" for string tags; strings themselves are never
altered, so "" stays "".

>>> batches = text_batches(["a good film", "bad", ""], [1, 0, 0], batch_size=2)
>>> for texts, labels in batches: ...
"""

import math

import numpy as np
import tensorflow as tf


def num_tokens(text):
    """Whitespace token count of a scalar string tensor (the models' tokenization)."""
    return tf.size(tf.strings.split(text))


def default_bucket_boundaries(texts):
    """Powers of two up to the longest text: 2, 4, 8, ... tokens.

    Doubling widths keep padding below half of each batch while leaving few,
    well-filled buckets.
    """
    longest = max((len(text.split()) for text in texts), default=1)
    return [2**i for i in range(1, max(1, math.ceil(math.log2(max(longest, 2)))) + 1)]


def _is_sequence(value):
    return isinstance(value, (list, tuple, np.ndarray)) and not isinstance(value, (str, bytes))


def _label_tensor(values):
    """A column of labels -> tensor; per-example sequences become ragged rows."""
    values = list(values)
    if values and _is_sequence(values[0]):
        lengths = [len(row) for row in values]
        flat = [item for row in values for item in row]
        return tf.RaggedTensor.from_row_lengths(tf.constant(flat), lengths)
    return tf.constant(values)


def _dense(value):
    # Rows sliced from a RaggedTensor come out ragged; padded batching wants dense.
    return value.to_tensor() if isinstance(value, tf.RaggedTensor) else value


def _as_dataset(texts, labels):
    texts = tf.constant(texts, dtype=tf.string)
    if labels is None:
        return tf.data.Dataset.from_tensor_slices(texts)
    if isinstance(labels, dict):
        columns = {key: _label_tensor(values) for key, values in labels.items()}
    else:
        columns = _label_tensor(labels)
    dataset = tf.data.Dataset.from_tensor_slices((texts, columns))
    return dataset.map(lambda text, label: (text, tf.nest.map_structure(_dense, label)))


def text_batches(
    texts,
    labels=None,
    *,
    batch_size=32,
    shuffle=False,
    seed=None,
    bucket_by_length=True,
    bucket_boundaries=None,
    drop_remainder=False,
):
    """Batch raw strings (and labels) for training or evaluation.

    Args:
        texts: list of raw strings, tokens separated by whitespace.
        labels: None (texts only), one label per text (int, float or string:
            classification, translation targets, captions), one sequence per
            text (tagging: padded post with 0), or a dict of such columns
            (e.g. `{"slots": tag_ids, "intent": intent_ids}`).
        batch_size: examples per batch.
        shuffle: reshuffle all examples every epoch (before bucketing).
        seed: shuffle seed, for reproducible order.
        bucket_by_length: group texts of similar token counts into batches, so
            the model's internal padding stays small.
        bucket_boundaries: token-count boundaries; default powers of two.
        drop_remainder: drop incomplete batches.

    Returns:
        A `tf.data.Dataset` of `texts` or `(texts, labels)` batches.

    >>> ds = text_batches(["show flights", "", "to boston now"],
    ...                   [[1, 2], [], [3, 0, 4]], batch_size=8, bucket_by_length=False)
    >>> texts, tags = next(iter(ds))
    >>> tags.numpy().tolist()
    [[1, 2, 0], [0, 0, 0], [3, 0, 4]]
    """
    texts = list(texts)
    dataset = _as_dataset(texts, labels)
    if shuffle:
        dataset = dataset.shuffle(max(len(texts), 1), seed=seed, reshuffle_each_iteration=True)
    if bucket_by_length:
        boundaries = list(bucket_boundaries or default_bucket_boundaries(texts))
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=lambda text, *_: num_tokens(text),
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            drop_remainder=drop_remainder,
        )
    else:
        dataset = dataset.padded_batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
