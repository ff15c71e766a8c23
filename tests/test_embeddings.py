"""The zoo's word2vec (zoo/embeddings.py) and its recipe (recipes/word2vec_zoo.py).

Exact checks where the math allows it (the SGD step against autodiff, the
dynamic window's distance distribution, the embedding-matrix layout against
`WordIds`), plus one cheap statistical sanity check: on a synthetic corpus two
words that always share contexts end up closer than unrelated words.
"""

import functools
import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from zoo import embeddings
from zoo.data.settings import data_root
from zoo.layers import WordIds
from zoo.layers.text import split_words

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "word2vec_zoo.py"


def load_recipe():
    spec = importlib.util.spec_from_file_location("word2vec_zoo", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# Tokenization parity with the classifiers' in-model tokenizer
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _real_sample_lines():
    root = data_root()
    if not (root / "imdb" / "train.csv.gz").exists():
        return None
    recipe = load_recipe()
    lines = recipe.imdb_train_texts(root)[:40]
    lines += recipe.ptb_train_texts(root)[:40] + recipe.multi30k_train_texts(root)[:40]
    sentences = recipe.sentence_train_texts(root)
    lines += sentences[:40] + [s for s in sentences if "\xf0" in s]  # TREC's stray Latin-1 byte
    return tuple(lines)


def real_sample_lines():
    """A few real lines of every source, including `<br />` and a Latin-1 byte."""
    lines = _real_sample_lines()
    if lines is None:
        pytest.skip(f"offline data not found under {data_root()}")
    assert any("<br />" in line for line in lines) and any("\xf0" in line for line in lines)
    return list(lines)


def test_corpus_tokens_are_exactly_the_classifier_tokens():
    lines = [*real_sample_lines(), "", "A great movie!<br /><br />Isn't it?", "   "]
    corpus = embeddings.build_corpus(lines, min_count=1, batch_size=7)  # several length batches
    words = np.array(corpus.words, dtype=object)
    reference = split_words(lines, lowercase=True, separate_punctuation=True).numpy()
    for i, line in enumerate(lines):
        expected = [token.decode("utf-8") for token in reference[i] if token]  # b"" pads
        assert words[corpus.token_ids[corpus.line_ids == i]].tolist() == expected, line[:80]


def test_vector_rows_line_up_with_word_ids():
    lines = real_sample_lines()
    corpus = embeddings.build_corpus(lines, min_count=1)
    layer = WordIds(corpus.words, lowercase=True, separate_punctuation=True)
    for i in [0, 45, 85, len(lines) - 1]:
        ids = layer(tf.constant([lines[i]])).numpy()[0]
        # WordIds id = vocabulary index + 2 = the row of embedding_matrix.
        np.testing.assert_array_equal(ids[ids > 0], corpus.token_ids[corpus.line_ids == i] + 2)


def test_build_corpus_counts_and_min_count():
    corpus = embeddings.build_corpus(["b a b", "c, b a", "d"], min_count=2)
    assert corpus.words == ["b", "a"]  # most frequent first; ",", "c", "d" seen once
    assert corpus.counts.tolist() == [3, 2]
    assert corpus.token_ids.tolist() == [0, 1, 0, 0, 1]
    assert corpus.line_ids.tolist() == [0, 0, 0, 1, 1]
    assert corpus.num_tokens == 8


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------


def test_pairs_stay_inside_lines_and_window():
    token_ids = np.arange(5, dtype=np.int32)
    line_ids = np.array([0, 0, 0, 1, 1], dtype=np.int32)
    pairs = embeddings.skipgram_pairs(token_ids, line_ids, 1, np.random.default_rng(0))
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3)]


def test_dynamic_window_weights_distance_d_by_window_minus_d_plus_one():
    size, window = 200_000, 5
    positions = np.arange(size, dtype=np.int32)  # token id = position, to read distances
    pairs = embeddings.skipgram_pairs(positions, np.zeros(size, np.int32), window,
                                      np.random.default_rng(1))
    distances = np.abs(pairs[:, 0] - pairs[:, 1])
    counts = np.bincount(distances, minlength=window + 1)[1:]
    expected = np.array([(window - d + 1) / window for d in range(1, window + 1)])
    np.testing.assert_allclose(counts / counts[0], expected, atol=0.02)


def test_keep_probabilities_subsample_only_frequent_words():
    counts = np.array([1_000_000, 10_000, 10])
    keep = embeddings.keep_probabilities(counts, threshold=1e-5)
    frequency = counts / counts.sum()
    np.testing.assert_allclose(keep[0], np.sqrt(1e-5 / frequency[0]) + 1e-5 / frequency[0],
                               rtol=1e-5)
    assert keep[0] < keep[1] < keep[2] == 1.0
    assert (embeddings.keep_probabilities(counts, threshold=None) == 1).all()


def test_negatives_follow_unigram_to_the_three_quarters():
    counts = np.array([1000, 100, 10, 1])
    model = embeddings.SkipGram(counts, dim=4, seed=0)
    draws = model.sample_negatives([200_000]).numpy()
    expected = counts**0.75 / (counts**0.75).sum()
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / len(draws), expected, atol=0.005)


# ---------------------------------------------------------------------------
# The SGD step
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("shared_by,xla", [(1, False), (2, True)])
def test_train_step_is_sgd_on_the_negative_sampling_loss(shared_by, xla):
    counts = np.array([50, 40, 30, 20, 10, 5])
    model = embeddings.SkipGram(counts, dim=8, negatives=3, negatives_shared_by=shared_by,
                                seed=3, xla_updates=xla)
    rng = np.random.default_rng(0)
    model.output_vectors.assign(rng.normal(size=(6, 8)).astype("float32") * 0.3)
    v0, u0 = model.input_vectors.numpy(), model.output_vectors.numpy()
    centers = np.array([0, 1, 2, 0], np.int32)  # a repeated row: its updates must add up
    contexts = np.array([3, 4, 5, 1], np.int32)
    learning_rate = 0.1

    # The step's negatives: replay its random generator.
    state = model._random.state.numpy()
    negatives = model.sample_negatives([len(centers) // shared_by, 3]).numpy()
    model._random.reset(state)

    v, u = tf.Variable(v0), tf.Variable(u0)
    with tf.GradientTape() as tape:
        center = tf.gather(v, centers)
        positive = tf.reduce_sum(center * tf.gather(u, contexts), -1)
        per_pair_negatives = np.repeat(negatives, shared_by, axis=0)  # [B, K]
        negative = tf.einsum("bd,bkd->bk", center, tf.gather(u, per_pair_negatives))
        # -log sigmoid(u_o . v_c) - sum_k log sigmoid(-u_k . v_c)
        loss = tf.reduce_sum(-tf.math.log_sigmoid(positive)) + tf.reduce_sum(
            -tf.math.log_sigmoid(-negative))
    grad_v, grad_u = (tf.convert_to_tensor(g) for g in tape.gradient(loss, [v, u]))

    step_loss = model.train_step(centers, contexts, np.float32(learning_rate))
    np.testing.assert_allclose(float(step_loss), float(loss), rtol=1e-5)
    np.testing.assert_allclose(model.input_vectors.numpy(), v0 - learning_rate * grad_v,
                               atol=1e-6)
    np.testing.assert_allclose(model.output_vectors.numpy(), u0 - learning_rate * grad_u,
                               atol=1e-6)


def synthetic_corpus(seed=0, sentences=1500):
    """Four topics of eight words; "alpha" and "beta" stand in for each other in topic 0."""
    rng = np.random.default_rng(seed)
    topics = [[f"t{t}w{i}" for i in range(8)] for t in range(4)]
    texts = []
    for _ in range(sentences):
        topic = rng.integers(4)
        words = list(rng.choice(topics[topic], size=8))
        if topic == 0:
            words.insert(rng.integers(9), "alpha" if rng.random() < 0.5 else "beta")
        texts.append(" ".join(words))
    return texts, topics


def test_words_sharing_contexts_end_up_closer_than_unrelated_words():
    texts, topics = synthetic_corpus()
    corpus = embeddings.build_corpus(texts, min_count=1)
    vectors = embeddings.train_word2vec(
        corpus, dim=16, epochs=4, subsample=None, batch_size=512, negatives_shared_by=8,
        learning_rate=0.025, seed=0, log=lambda line: None)
    twins = vectors.similarity("alpha", "beta")
    unrelated = [vectors.similarity("alpha", w) for t in topics[1:] for w in t]
    assert twins > 0.5 and twins > max(unrelated) + 0.2, (twins, max(unrelated))
    assert vectors.most_similar("alpha", k=1)[0][0] == "beta"


def test_batch_size_must_split_into_negative_groups():
    corpus = embeddings.build_corpus(["a b c"], min_count=1)
    with pytest.raises(ValueError, match="multiple"):
        embeddings.train_word2vec(corpus, batch_size=100, negatives_shared_by=64)


# ---------------------------------------------------------------------------
# Using the vectors
# ---------------------------------------------------------------------------


def test_embedding_matrix_layout_matches_word_ids():
    vectors = embeddings.WordVectors(["movie", "good"], np.array([[1.0, 2.0], [3.0, 4.0]]))
    vocabulary = ["good", "zyzzyva", "movie"]
    matrix = embeddings.embedding_matrix(vocabulary, vectors, seed=0)
    assert matrix.shape == (5, 2) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[0], 0.0)  # padding
    np.testing.assert_array_equal(matrix[2], [3.0, 4.0])  # "good"
    np.testing.assert_array_equal(matrix[4], [1.0, 2.0])  # "movie"
    for row in (1, 3):  # OOV and the word without a vector: U(-0.25, 0.25)
        assert np.all(np.abs(matrix[row]) <= 0.25) and np.any(matrix[row] != 0)
    ids = WordIds(vocabulary)(tf.constant(["movie good zyzzyva never-seen"])).numpy()[0]
    assert ids.tolist() == [4, 2, 3, 1]
    np.testing.assert_array_equal(matrix[ids[:2]], [vectors["movie"], vectors["good"]])

    again = embeddings.embedding_matrix(vocabulary, {"good": np.array([3.0, 4.0])}, seed=0)
    np.testing.assert_array_equal(again[:4], matrix[:4])  # random rows depend on the seed only
    other = embeddings.embedding_matrix(vocabulary, vectors, seed=1)
    assert not np.array_equal(other[3], matrix[3])
    assert embeddings.coverage(vocabulary, vectors) == pytest.approx(2 / 3)


def test_nearest_neighbours_and_analogies():
    words = ["man", "woman", "king", "queen", "apple"]
    vectors = embeddings.WordVectors(words, np.array(
        [[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1], [-1, 0, 0]], dtype=np.float32))
    assert vectors.most_similar("king", k=1)[0][0] in {"man", "queen"}
    assert "king" not in dict(vectors.most_similar("king", k=4))
    assert vectors.analogy("man", "woman", "king", k=1)[0][0] == "queen"


def test_save_and_load_round_trip(tmp_path):
    words = ["the", "caf\xe9", "odd\x85word", "."]  # U+0085 must not split the vocabulary
    vectors = embeddings.WordVectors(words, np.random.default_rng(0).normal(size=(4, 6)),
                                     stats=dict(epochs=3))
    embeddings.save_word_vectors(vectors, tmp_path, info=dict(wall_seconds=1.5))
    loaded = embeddings.load_word_vectors(tmp_path)
    assert loaded.words == words and loaded.vectors.dtype == np.float32
    assert np.load(tmp_path / "vectors.npy").dtype == np.float16
    np.testing.assert_allclose(loaded.vectors, vectors.vectors, atol=2e-3)
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["epochs"] == 3 and info["vocabulary_size"] == 4 and info["dim"] == 6
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left


def test_missing_vectors_say_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"recipes/word2vec_zoo\.py"):
        embeddings.load_word_vectors(tmp_path / "nowhere")


def test_default_directory_follows_zoo_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path))
    assert embeddings.default_directory() == tmp_path / "word2vec"


# ---------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------


def write_gzip(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(text.encode("utf-8"))


def test_recipe_reads_training_splits_only(tmp_path):
    """A data folder holding only the training files is all the recipe needs."""
    write_gzip(tmp_path / "imdb" / "train.csv.gz",
               'id,rating,label,text\n0,9,1,"Great film.<br /><br />Loved it, ""truly""."\n')
    write_gzip(tmp_path / "ptb" / "ptb.train.txt.gz", " the <unk> rose N % \n a b \n")
    write_gzip(tmp_path / "multi30k" / "raw" / "train.en.gz", "A dog runs.\nTwo men talk.\n")
    folder = tmp_path / "sentence_classification"
    folder.mkdir()
    (folder / "TREC.train.all").write_bytes(b"0 what is caf\xf0 ?\n")
    (folder / "stsa.binary.train").write_bytes(b"1 a fine film .\n")
    (folder / "stsa.fine.train").write_bytes(b"3 a fine film .\n0 awful .\n")
    texts, sizes = load_recipe().corpus_texts(tmp_path)
    assert sizes == {"imdb/train": 1, "ptb/train": 2, "multi30k/train.en": 2,
                     "trec+sst2+sst1/train": 3}
    assert texts[0] == 'Great film.<br /><br />Loved it, "truly".'  # split_words handles <br />
    assert texts[1:3] == ["the rose %", "a b"]  # PTB placeholders dropped
    assert texts[5:] == ["what is caf\xf0 ?", "a fine film .", "awful ."]  # labels off, once each


@pytest.mark.slow
def test_recipe_smoke_writes_vectors(tmp_path):
    info = load_recipe().main(["--smoke", "--output", str(tmp_path)])
    loaded = embeddings.load_word_vectors(tmp_path)
    assert loaded.dim == 50 and len(loaded) == info["vocabulary_size"] > 1000
    assert info["corpus_tokens"] > 100_000 and "good" in loaded
