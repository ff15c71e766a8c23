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
        # Padding ("" -> "##") has no trigram, so it gets no id and a zero vector.
        ids = tf.strings.to_hash_bucket_fast(grams, self.num_buckets) + 1
        return ids.to_tensor(default_value=0)

    def call(self, tokens):
        ids = self.trigram_ids(tokens)
        vectors = self.embedding(ids)
        present = tf.cast(ids > 0, vectors.dtype)[..., tf.newaxis]
        return tf.reduce_sum(vectors * present, axis=2)

    def compute_mask(self, tokens, mask=None):
        # Real tokens are unmasked; step 0 always is, so no row is fully masked.
        # keras.ops, not tf: this also runs on symbolic tensors while a model is built.
        present = keras.ops.not_equal(tokens, PAD_TOKEN)
        return keras.ops.concatenate(
            [keras.ops.ones_like(present[:, :1]), present[:, 1:]], axis=1)

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


# --------------------------------------------------------------------------------------
# Character features for taggers (Ma & Hovy 2016 char CNN, Lample et al. 2016 char BiLSTM).
# --------------------------------------------------------------------------------------


def build_character_vocabulary(token_lists, min_count=1):
    """Characters of the training tokens, most frequent first, case kept.

    >>> build_character_vocabulary([["Ab", "b"]])
    ['b', 'A']
    """
    return build_vocabulary(([*token] for tokens in token_lists for token in tokens),
                            min_count=min_count, lowercase=False)


@keras.saving.register_keras_serializable(package="zoo")
class CharIds(keras.layers.Layer):
    """Tokens [B, T] (strings, "" = padding) -> character ids [B, T, C] (int32).

    0 pads, 1 is the unknown character, 2.. index `vocabulary`. Case is kept,
    so a tagger's character features see capitals even when its word lookup
    is lowercased. Words are cut to `max_word_length` characters; C >= 1
    even when every token is empty.

    >>> import tensorflow as tf
    >>> CharIds(["a", "b"])(tf.constant([["ab", "c"]])).numpy().tolist()
    [[[2, 3], [1, 0]]]
    """

    def __init__(self, vocabulary, max_word_length=20, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.max_word_length = max_word_length
        keys = tf.constant(self.vocabulary or [OOV_TOKEN], dtype=tf.string)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.range(2, 2 + len(keys), dtype=tf.int32)),
            default_value=1,
        )

    @property
    def vocabulary_size(self):
        """Number of ids including padding and the unknown character."""
        return len(self.vocabulary) + 2

    def call(self, tokens):
        chars = tf.strings.unicode_split(tokens, "UTF-8", errors="replace")
        chars = chars[:, :, : self.max_word_length]
        ids = tf.ragged.map_flat_values(self._table.lookup, chars).to_tensor(default_value=0)
        # One padding column keeps C >= 1 (a batch of empty strings has no characters).
        ids = tf.pad(ids, [[0, 0], [0, 0], [0, 1]])
        longest = tf.maximum(tf.shape(ids)[2] - 1, 1)
        return ids[:, :, :longest]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (None,)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(vocabulary=self.vocabulary, max_word_length=self.max_word_length)
        return config


@keras.saving.register_keras_serializable(package="zoo")
class CharacterEncoder(keras.layers.Layer):
    """Character ids [B, T, C] -> one vector per word [B, T, D].

    * `"cnn"` (Ma & Hovy 2016): embed characters, Conv1D (tanh) over each word,
      max over its characters; D = `filters`.
    * `"lstm"` (Lample et al. 2016): a BiLSTM reads each word; the final states
      of both directions are concatenated; D = 2 * `units`. The LSTM is stock
      Keras and cuDNN-eligible (words are right-padded and never empty: a
      padding word gets one unknown character).

    Words are processed as one flat batch of B*T character sequences.

    >>> import numpy as np
    >>> encoder = CharacterEncoder(10, kind="cnn", filters=8)
    >>> encoder(np.ones((2, 3, 5), "int32")).shape
    TensorShape([2, 3, 8])
    """

    def __init__(self, vocabulary_size, kind="cnn", embedding_dim=30, filters=30, kernel_size=3,
                 units=25, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("cnn", "lstm"):
            raise ValueError(f"kind must be 'cnn' or 'lstm', got {kind!r}")
        self.vocabulary_size = vocabulary_size
        self.kind = kind
        self.embedding_dim = embedding_dim
        self.filters = filters
        self.kernel_size = kernel_size
        self.units = units
        self.dropout = dropout
        self.embedding = keras.layers.Embedding(vocabulary_size, embedding_dim,
                                                name="char_embedding")
        self.embedding_dropout = keras.layers.Dropout(dropout)
        if kind == "cnn":
            self.encoder = keras.layers.Conv1D(filters, kernel_size, padding="same",
                                               activation="tanh", name="char_conv")
        else:
            self.encoder = keras.layers.Bidirectional(
                keras.layers.LSTM(units, name="char_lstm"), name="char_bilstm")

    @property
    def output_dim(self):
        return self.filters if self.kind == "cnn" else 2 * self.units

    def build(self, input_shape):
        self.embedding.build((None, None))
        self.encoder.build((None, None, self.embedding_dim))

    def call(self, char_ids, training=None):
        shape = tf.shape(char_ids)
        words = tf.reshape(char_ids, [-1, shape[2]])
        if self.kind == "lstm":
            words = ensure_one_step(words)  # cuDNN aborts on a word with no unmasked step
        mask = tf.not_equal(words, 0)
        x = self.embedding_dropout(self.embedding(words), training=training)
        if self.kind == "cnn":
            x = self.encoder(x)
            x = tf.reduce_max(tf.where(mask[..., tf.newaxis], x, tf.cast(-1e9, x.dtype)), axis=1)
            x = tf.where(tf.reduce_any(mask, axis=1, keepdims=True), x, tf.zeros_like(x))
        else:
            x = self.encoder(x, mask=mask, training=training)
        return tf.reshape(x, tf.concat([shape[:2], [self.output_dim]], axis=0))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:2]) + (self.output_dim,)

    def compute_mask(self, char_ids, mask=None):
        # Words with characters are real. Concatenate ORs its inputs' masks (an
        # unmasked input would unmask every padding step), so this one must be explicit.
        return keras.ops.any(keras.ops.not_equal(char_ids, 0), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(vocabulary_size=self.vocabulary_size, kind=self.kind,
                      embedding_dim=self.embedding_dim, filters=self.filters,
                      kernel_size=self.kernel_size, units=self.units, dropout=self.dropout)
        return config


@keras.saving.register_keras_serializable(package="zoo")
class WordDropout(keras.layers.Layer):
    """While training, replace each real word id by the OOV id with probability `rate`.

    The OOV embedding then learns what an unseen word looks like (Lample et
    al. 2016 replace singletons the same way), and the layers above learn to
    lean on character features for rare words. Padding (0) is never touched;
    at inference this is the identity.
    """

    def __init__(self, rate=0.0, oov_id=1, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.oov_id = oov_id
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, ids, training=None):
        if not training or not self.rate:
            return ids
        drop = keras.random.uniform(tf.shape(ids), seed=self.seed_generator) < self.rate
        return tf.where(drop & tf.not_equal(ids, 0), tf.cast(self.oov_id, ids.dtype), ids)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, oov_id=self.oov_id, seed=self.seed)
        return config
