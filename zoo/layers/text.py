"""Text front ends that live inside the model: raw strings in, ids out.

* `build_vocabulary`: a 1-of-N vocabulary from training tokens with a min count.
* `WordIds`: whitespace tokens -> ids, 0 = padding, 1 = the OOV ("other") token.
  Right-padded; every row keeps at least one unmasked step, so an empty string
  becomes a single OOV token (cuDNN aborts on a fully masked row).
* `LetterTrigramEmbedding`: the seed's alternative to 1-of-N, DSSM word hashing:
  `#boy#` -> `#bo`, `boy`, `oy#`, each hashed into `num_buckets`, and the word
  vector is the sum of its trigram embeddings (= multi-hot trigram counts @ W).
  Unseen and misspelled words still get a meaningful vector.

Example:

>>> import tensorflow as tf
>>> from zoo.layers import WordIds
>>> ids = WordIds(["a", "dog"])(tf.constant(["A dog runs", ""]))
>>> ids.numpy().tolist()
[[2, 3, 1], [1, 0, 0]]
"""

import collections

import keras
import tensorflow as tf

PAD_TOKEN = ""
OOV_TOKEN = "[OOV]"


def build_vocabulary(token_lists, min_count=1, max_size=None, lowercase=True):
    """Tokens seen at least `min_count` times, most frequent first (ties alphabetical).

    The padding and OOV tokens are not included: `WordIds` reserves ids 0 and 1.
    """
    counts = collections.Counter()
    for tokens in token_lists:
        counts.update(t.lower() if lowercase else t for t in tokens)
    counts.pop(PAD_TOKEN, None)
    counts.pop(OOV_TOKEN, None)
    ranked = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
    return ranked[:max_size] if max_size else ranked


# ASCII punctuation except the apostrophe, so "n't" and "'s" stay whole.
_PUNCTUATION = r"""([!"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~])"""


def split_words(texts, lowercase=True, max_length=None, separate_punctuation=False,
                min_length=1):
    """Raw strings [B] -> dense right-padded tokens [B, T >= min_length] ("" pads). TF ops only.

    With `separate_punctuation`, HTML line breaks become spaces and punctuation
    becomes its own token ("great!" -> "great", "!"), for raw user text. Without
    it, tokens are exactly the whitespace-separated words (tagging relies on that).
    """
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    if lowercase:
        texts = tf.strings.lower(texts, encoding="utf-8")
    if separate_punctuation:
        texts = tf.strings.regex_replace(texts, r"<br\s*/?>", " ")
        texts = tf.strings.regex_replace(texts, _PUNCTUATION, r" \1 ")
    tokens = tf.strings.split(texts)
    if max_length:
        tokens = tokens[:, :max_length]
    dense = tokens.to_tensor(default_value=PAD_TOKEN)
    # Padding columns guarantee T >= min_length even when every text is empty.
    batch, length = tf.shape(dense)[0], tf.shape(dense)[1]
    dense = tf.concat([dense, tf.fill([batch, min_length], PAD_TOKEN)], axis=1)
    return dense[:, : tf.maximum(length, min_length)]


def ensure_one_step(ids, fill_id=1):
    """Give a row with no real token one `fill_id` at step 0, so no row is fully masked."""
    first = ids[:, :1]
    first = tf.where(tf.equal(first, 0), tf.cast(fill_id, ids.dtype), first)
    return tf.concat([first, ids[:, 1:]], axis=1)


@keras.saving.register_keras_serializable(package="zoo")
class WordIds(keras.layers.Layer):
    """Raw strings [B] -> word ids [B, T] (int32): 0 padding, 1 OOV, 2.. vocabulary.

    Args:
        vocabulary: list of tokens (without padding/OOV), e.g. from `build_vocabulary`.
        lowercase: lowercase before lookup (the vocabulary must match).
        max_length: keep at most this many tokens (None: all).
        separate_punctuation: split punctuation and HTML breaks off words (raw text).
        min_length: pad every batch to at least this many steps (a CNN's widest filter).
    """

    def __init__(self, vocabulary, lowercase=True, max_length=None, separate_punctuation=False,
                 min_length=1, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.lowercase = lowercase
        self.max_length = max_length
        self.separate_punctuation = separate_punctuation
        self.min_length = min_length
        keys = tf.constant(self.vocabulary or [OOV_TOKEN], dtype=tf.string)
        values = tf.range(2, 2 + len(keys), dtype=tf.int32)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, values), default_value=1
        )

    @property
    def vocabulary_size(self):
        """Number of ids including padding and OOV (the Embedding's input_dim)."""
        return len(self.vocabulary) + 2

    def call(self, texts):
        tokens = split_words(texts, self.lowercase, self.max_length, self.separate_punctuation,
                             self.min_length)
        ids = self.tokens_to_ids(tokens)
        return ensure_one_step(ids)

    def tokens_to_ids(self, tokens):
        """Dense tokens [B, T] ("" = padding) -> ids [B, T]."""
        ids = self._table.lookup(tokens)
        return tf.where(tf.equal(tokens, PAD_TOKEN), 0, ids)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary=self.vocabulary, lowercase=self.lowercase, max_length=self.max_length,
            separate_punctuation=self.separate_punctuation, min_length=self.min_length,
        )
        return config


def letter_trigrams(word):
    """Pure-Python reference: `"boy"` -> `["#bo", "boy", "oy#"]`."""
    padded = f"#{word}#"
    return [padded[i : i + 3] for i in range(len(padded) - 2)]


@keras.saving.register_keras_serializable(package="zoo")
class LetterTrigramEmbedding(keras.layers.Layer):
    """Letter-trigram word hashing (Huang et al. 2013, DSSM) followed by an embedding bag.

        trigrams(w) = 3-grams of "#" + w + "#"
        e(w) = sum_{g in trigrams(w)} E[hash(g) mod num_buckets]

    Input: tokens [B, T] (strings, "" = padding). Output: [B, T, output_dim],
    zeros at padding. Hashing is FarmHash (`tf.strings.to_hash_bucket_fast`):
    deterministic across runs and machines, so a saved model keeps its meaning.
    """

    def __init__(self, num_buckets=30000, output_dim=64, lowercase=True, **kwargs):
        super().__init__(**kwargs)
        self.num_buckets = num_buckets
        self.output_dim = output_dim
        self.lowercase = lowercase
        self.embedding = keras.layers.Embedding(num_buckets + 1, output_dim, name="trigram_table")

    def build(self, input_shape):
        self.embedding.build((None,))

    def trigram_ids(self, tokens):
        """Tokens [B, T] -> hashed trigram ids [B, T, K] (0 = none, else bucket + 1)."""
        if self.lowercase:
            tokens = tf.strings.lower(tokens, encoding="utf-8")
        words = tf.strings.join(["#", tokens, "#"])
        chars = tf.strings.unicode_split(words, "UTF-8", errors="replace")
        grams = tf.strings.ngrams(chars, 3, separator="")
        ids = tf.strings.to_hash_bucket_fast(grams, self.num_buckets) + 1
        ids = tf.where(tf.equal(tokens, PAD_TOKEN)[..., tf.newaxis], tf.zeros_like(ids), ids)
        return ids.to_tensor(default_value=0)

    def call(self, tokens):
        ids = self.trigram_ids(tokens)
        vectors = self.embedding(ids)
        present = tf.cast(ids > 0, vectors.dtype)[..., tf.newaxis]
        return tf.reduce_sum(vectors * present, axis=2)

    def compute_mask(self, tokens, mask=None):
        # Real tokens are unmasked; step 0 always is, so no row is fully masked.
        present = tf.not_equal(tokens, PAD_TOKEN)
        return tf.concat([tf.ones_like(present[:, :1]), present[:, 1:]], axis=1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_buckets=self.num_buckets, output_dim=self.output_dim, lowercase=self.lowercase
        )
        return config


@keras.saving.register_keras_serializable(package="zoo")
class SplitWords(keras.layers.Layer):
    """Raw strings [B] -> dense whitespace tokens [B, T>=1] ("" pads), for hashing front ends."""

    def __init__(self, lowercase=True, max_length=None, **kwargs):
        super().__init__(**kwargs)
        self.lowercase = lowercase
        self.max_length = max_length

    def call(self, texts):
        return split_words(texts, self.lowercase, self.max_length)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None)

    def get_config(self):
        config = super().get_config()
        config.update(lowercase=self.lowercase, max_length=self.max_length)
        return config
