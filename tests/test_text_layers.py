"""Text front ends: vocabulary, OOV, right padding, never-empty masks, trigram hashing."""

import keras
import numpy as np
import tensorflow as tf

from zoo.layers import LetterTrigramEmbedding, WordIds, build_vocabulary, letter_trigrams
from zoo.layers.text import split_words


def test_vocabulary_min_count_and_order():
    vocab = build_vocabulary([["b", "a", "B"], ["a", "c"]], min_count=2)
    assert vocab == ["a", "b"]  # "c" seen once; "B" lowercased into "b"; ties alphabetical
    assert build_vocabulary([["x", "y", "y"]], max_size=1) == ["y"]


def test_word_ids_reserve_padding_and_oov():
    layer = WordIds(["the", "dog"])
    ids = layer(tf.constant(["The dog barks", "dog", ""])).numpy()
    assert ids.tolist() == [[2, 3, 1], [3, 0, 0], [1, 0, 0]]
    assert layer.vocabulary_size == 4


def test_masks_are_right_padded_and_never_empty():
    layer = WordIds(["a"])
    ids = layer(tf.constant(["", "   ", "zzz qqq", "a a a a"])).numpy()
    mask = ids != 0
    assert mask.any(axis=1).all()  # no fully masked row: cuDNN aborts on those
    for row in mask:  # post padding: once False, stays False
        assert not np.any(row[np.argmin(row):]) or row.all() or not row[np.argmin(row)]
        first_pad = np.argmax(~row) if (~row).any() else len(row)
        assert row[:first_pad].all() and not row[first_pad:].any()


def test_all_empty_batch_still_has_one_step():
    ids = WordIds(["a"])(tf.constant(["", ""])).numpy()
    assert ids.shape == (2, 1) and (ids == 1).all()


def test_empty_strings_feed_an_lstm_through_valid_masks():
    words = WordIds(["good", "film"])
    inputs = keras.Input(shape=(), dtype="string")
    x = keras.layers.Embedding(words.vocabulary_size, 4, mask_zero=True)(words(inputs))
    outputs = keras.layers.LSTM(3)(x)
    model = keras.Model(inputs, outputs)
    out = model(tf.constant(["", "good film", "   "])).numpy()
    assert np.isfinite(out).all()


def test_punctuation_and_html_are_split_for_raw_text():
    tokens = split_words(["Great film!<br />Didn't you, too?"], separate_punctuation=True)
    assert [t.decode() for t in tokens.numpy()[0]] == [
        "great", "film", "!", "didn't", "you", ",", "too", "?"]


def test_min_length_pads_short_batches():
    assert WordIds(["a"], min_length=5)(tf.constant(["a"])).numpy().tolist() == [[2, 0, 0, 0, 0]]


def test_max_length_truncates():
    assert WordIds(["a"], max_length=2)(tf.constant(["a a a a"])).shape == (1, 2)


def test_letter_trigrams_reference():
    assert letter_trigrams("boy") == ["#bo", "boy", "oy#"]
    assert letter_trigrams("a") == ["#a#"]


def test_trigram_embedding_is_the_sum_of_its_trigram_vectors():
    layer = LetterTrigramEmbedding(num_buckets=50, output_dim=3)
    tokens = tf.constant([["boy", ""]])
    out = layer(tokens).numpy()
    table = layer.embedding.embeddings.numpy()
    buckets = tf.strings.to_hash_bucket_fast(letter_trigrams("boy"), 50).numpy() + 1
    np.testing.assert_allclose(out[0, 0], table[buckets].sum(0), atol=1e-6)
    np.testing.assert_array_equal(out[0, 1], 0)  # padding gets no vector
    assert layer.compute_mask(tokens).numpy().tolist() == [[True, False]]


def test_trigram_hashing_shares_vectors_between_related_words():
    layer = LetterTrigramEmbedding(num_buckets=1000, output_dim=2)
    ids = layer.trigram_ids(tf.constant([["boys", "boy"]])).numpy()[0]
    shared = set(ids[0]) & set(ids[1]) - {0}
    assert len(shared) >= 2  # "#bo", "boy": an unseen inflection still lands near its stem


def test_word_ids_round_trip_through_config():
    layer = WordIds(["x", "y"], max_length=7, separate_punctuation=True, min_length=3)
    clone = WordIds.from_config(layer.get_config())
    texts = tf.constant(["x, y!", ""])
    np.testing.assert_array_equal(layer(texts), clone(texts))


def test_trigram_front_end_feeds_an_lstm_in_a_functional_model():
    from zoo.layers import SplitWords

    inputs = keras.Input(shape=(), dtype="string")
    x = LetterTrigramEmbedding(num_buckets=100, output_dim=4)(SplitWords()(inputs))
    model = keras.Model(inputs, keras.layers.LSTM(3)(x))  # the mask is built symbolically too
    out = model(tf.constant(["a boy runs", "", "boy"])).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[2], model(tf.constant(["boy"])).numpy()[0], atol=1e-6)
