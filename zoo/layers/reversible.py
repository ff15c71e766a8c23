"""A reversible word tokenizer for generation: raw text -> ids -> the same raw text.

Translation must print text a reader expects ("Zwei Männer, die lachen."),
not tokens ("zwei männer , die lachen ."). This tokenizer keeps case and marks
where the whitespace was, SentencePiece-style: a token that followed a space
starts with "▁" (U+2581). Words are runs of letters, digits and combining marks;
every other character (punctuation, symbols) is a token of its own.

    "Two young, White males."  ->  ["▁Two", "▁young", ",", "▁White", "▁males", "."]

Detokenizing is then a rule with no exceptions: join the tokens, turn "▁" into
a space, strip. It restores the input exactly, up to whitespace normalization
(runs of whitespace become one space; leading/trailing whitespace is dropped):

    detokenize(tokenize(text)) == " ".join(text.split())

Everything is TensorFlow string ops, so the tokenizer lives inside the saved
model and inside an exported SavedModel (strings in, strings out).

Example:

>>> import tensorflow as tf
>>> tokenizer = ReversibleTokenizer(["▁Two", "▁dogs", "."])
>>> ids = tokenizer(tf.constant(["Two dogs.", "Two cats!"]))
>>> ids.numpy().tolist()
[[4, 5, 6], [4, 1, 1]]
>>> tokenizer.detokenize(ids).numpy().tolist()
[b'Two dogs.', b'Two']
"""

import keras
import tensorflow as tf

from zoo.layers.text import ensure_one_step

SPACE_MARK = "\u2581"  # "▁", the SentencePiece whitespace marker
PAD_ID, OOV_ID, START_ID, END_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("", "[OOV]", "[START]", "[END]")

# One token: an optional space mark, then a word (letters, digits, combining
# marks) or any single other character. RE2 syntax (tf.strings.regex_replace).
_TOKEN = SPACE_MARK + r"?(?:[\pL\pN\pM]+|[^\pL\pN\pM" + SPACE_MARK + "])"


def reversible_split(texts, max_length=None):
    """Raw strings [B] -> ragged tokens [B, (T)] with "▁" marking a preceding space.

    The first token of a non-empty text is marked too (a sentence starts
    after "a space"), so a word has the same token at the start and inside.
    """
    texts = tf.convert_to_tensor(texts, dtype=tf.string)
    texts = tf.strings.strip(tf.strings.regex_replace(texts, r"\s+", " "))
    texts = tf.strings.regex_replace(texts, " ", SPACE_MARK)
    texts = tf.strings.regex_replace(texts, "^(.)", SPACE_MARK + r"\1", replace_global=False)
    # Tokens contain no spaces any more, so a space is a safe separator.
    tokens = tf.strings.split(tf.strings.regex_replace(texts, _TOKEN, r"\0 "))
    return tokens[:, :max_length] if max_length else tokens


def join_tokens(tokens):
    """Tokens [B, T] (dense or ragged; "" contributes nothing) -> detokenized strings [B]."""
    joined = tf.strings.reduce_join(tokens, axis=-1)
    return tf.strings.strip(tf.strings.regex_replace(joined, SPACE_MARK, " "))


@keras.saving.register_keras_serializable(package="zoo")
class ReversibleTokenizer(keras.layers.Layer):
    """Raw strings [B] -> token ids [B, T] (int32), and back to strings.

    Ids: 0 padding, 1 out-of-vocabulary, 2 start, 3 end, then `vocabulary`
    (tokens as produced by `reversible_split`, e.g. from
    `build_vocabulary(..., lowercase=False)`). Rows are right-padded; a row
    with no token gets one OOV id, so no row is fully masked.

    Args:
        vocabulary: list of tokens, most frequent first.
        max_length: keep at most this many tokens per text (None: all).

    Call arguments:
        texts: string tensor [B].
        add_start: prepend the start id (a decoder's input under teacher forcing).
        add_end: append the end id (a decoder's target).
    """

    def __init__(self, vocabulary, max_length=None, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.max_length = max_length
        keys = tf.constant(self.vocabulary or ["[NONE]"], dtype=tf.string)
        ids = tf.range(len(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + len(keys), dtype=tf.int32)
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, ids), default_value=OOV_ID)
        # id -> token; special ids map to "" so they vanish when joined.
        self._strings = tf.constant(["", "", "", ""] + self.vocabulary, dtype=tf.string)

    @property
    def vocabulary_size(self):
        """Number of ids, special ones included (an Embedding's input_dim)."""
        return len(self.vocabulary) + len(SPECIAL_TOKENS)

    def tokenize(self, texts):
        """Raw strings [B] -> dense tokens [B, T >= 1] ("" pads)."""
        tokens = reversible_split(texts, self.max_length)
        dense = tokens.to_tensor(default_value="")
        return tf.pad(dense, [[0, 0], [0, tf.maximum(1 - tf.shape(dense)[1], 0)]])

    def tokens_to_ids(self, tokens):
        """Dense tokens [B, T] ("" = padding) -> ids [B, T]."""
        return tf.where(tf.equal(tokens, ""), PAD_ID, self._table.lookup(tokens))

    def ids_to_tokens(self, ids):
        """Ids [B, T] -> tokens [B, T]; padding, OOV, start and end become ""."""
        return tf.gather(self._strings, ids)

    def detokenize(self, ids):
        """Ids [B, T] -> strings [B] (everything after an end id is dropped)."""
        ids = tf.convert_to_tensor(ids)
        ended = tf.cumsum(tf.cast(tf.equal(ids, END_ID), tf.int32), axis=-1) > 0
        return join_tokens(self.ids_to_tokens(tf.where(ended, PAD_ID, ids)))

    def call(self, texts, add_start=False, add_end=False):
        tokens = reversible_split(texts, self.max_length)
        ids = tf.ragged.map_flat_values(self._table.lookup, tokens)
        if add_start:
            ids = tf.concat([tf.fill([ids.nrows(), 1], START_ID), ids], axis=1)
        if add_end:
            ids = tf.concat([ids, tf.fill([ids.nrows(), 1], END_ID)], axis=1)
        dense = ids.to_tensor(default_value=PAD_ID)
        dense = tf.pad(dense, [[0, 0], [0, tf.maximum(1 - tf.shape(dense)[1], 0)]])
        return ensure_one_step(dense, fill_id=OOV_ID)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None)

    def compute_output_spec(self, texts, add_start=False, add_end=False):
        return keras.KerasTensor((texts.shape[0], None), dtype="int32")

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(vocabulary=self.vocabulary, max_length=self.max_length)
        return config
