"""The zoo's own word vectors: skip-gram word2vec with negative sampling.

No installable package ships English word2vec vectors, so the zoo trains its own
(Mikolov et al. 2013, "Distributed Representations of Words and Phrases and their
Compositionality") on the text it has offline; `recipes/word2vec_zoo.py` is the
one command that does it. Kim's (2014) static / non-static / multichannel
text-CNNs then start from them through `embedding_matrix`.

For a center word c with context word o and negatives k_1..k_K drawn from the
unigram distribution raised to 3/4, skip-gram maximizes

    log sigmoid(u_o . v_c) + sum_k log sigmoid(-u_k . v_c)

where v are the input ("word") vectors, the ones we keep, and u the output
vectors. The details follow the paper and its C tool: words seen fewer than
`min_count` times are dropped, frequent words are subsampled (keep probability
sqrt(t / f) + t / f), each center word draws its window size uniformly from
1..window, and plain SGD runs with a learning rate decaying linearly to ~0.
One departure, for speed on CPUs: pairs are trained in batches, and groups of
pairs share their negatives (`SkipGram` says why the objective is unchanged).

Tokens come from `zoo.layers.text.split_words(..., lowercase=True,
separate_punctuation=True)`, the tokenizer inside the zoo's classifiers, so a
vector's word is exactly a token the classifier's `WordIds` layer looks up.

Example:

>>> from zoo import embeddings
>>> vectors = embeddings.load_word_vectors()  # written by recipes/word2vec_zoo.py
>>> vectors.most_similar("terrible", k=3)
[('awful', 0.85), ('horrible', 0.83), ('atrocious', 0.77)]
>>> matrix = embeddings.embedding_matrix(["terrible", "zyzzyva"], vectors, seed=0)
>>> matrix.shape  # padding, OOV, then the vocabulary in WordIds order
(4, 300)

Vectors for other text:

>>> corpus = embeddings.build_corpus(my_texts, min_count=5)  # a list of strings
>>> vectors = embeddings.train_word2vec(corpus, epochs=10)
>>> embeddings.save_word_vectors(vectors, "my_vectors/")
"""

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from zoo.layers.text import split_words

VOCABULARY_FILE = "vocab.txt"
VECTORS_FILE = "vectors.npy"
INFO_FILE = "info.json"


# ---------------------------------------------------------------------------
# Corpus: raw strings -> vocabulary ids, the classifier's tokenization
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Corpus:
    """A tokenized corpus as vocabulary ids.

    Attributes:
        words: the vocabulary, most frequent first (ties alphabetical, like
            `zoo.layers.build_vocabulary`).
        counts: int64 [V], how often each word occurs.
        token_ids: int32 [N], the corpus with rare words removed.
        line_ids: int32 [N], the text (review, sentence) each token came from;
            context windows never cross from one text into the next.
        num_tokens: tokens before rare words were removed.
    """

    words: list
    counts: np.ndarray
    token_ids: np.ndarray
    line_ids: np.ndarray
    num_tokens: int


def tokenize(texts, batch_size=512):
    """Raw strings -> (flat tokens tf.string [N], tokens per text int64 [len(texts)]).

    Batches are formed from texts of similar length so `split_words`' dense
    padding stays small.
    """
    texts = list(texts)
    order = np.argsort([len(text) for text in texts], kind="stable")
    flat_tokens, lengths = [], np.zeros(len(texts), dtype=np.int64)
    for start in range(0, len(texts), batch_size):
        batch = order[start : start + batch_size]
        dense = split_words([texts[i] for i in batch], lowercase=True, separate_punctuation=True)
        # "" is only ever padding: whitespace splitting never yields an empty token.
        ragged = tf.RaggedTensor.from_tensor(dense, padding="")
        flat_tokens.append(ragged)
        lengths[batch] = ragged.row_lengths().numpy()
    if not flat_tokens:
        return tf.zeros([0], tf.string), lengths
    # Put texts back in their original order so line ids follow the input.
    restored = tf.gather(tf.concat(flat_tokens, axis=0), np.argsort(order, kind="stable"))
    return restored.flat_values, lengths


def build_corpus(texts, min_count=5, batch_size=512):
    """Tokenize `texts` and map tokens to a vocabulary of words seen >= `min_count` times.

    Counting and id mapping run on whole arrays (`tf.unique_with_counts`), not
    per token in Python, so ~10M tokens take seconds.
    """
    tokens, lengths = tokenize(texts, batch_size)
    unique_tokens, token_index, counts = tf.unique_with_counts(tokens, out_idx=tf.int64)
    unique_tokens = [t.decode("utf-8") for t in unique_tokens.numpy()]
    counts = counts.numpy()
    ranked = sorted((i for i in range(len(counts)) if counts[i] >= min_count),
                    key=lambda i: (-counts[i], unique_tokens[i]))
    # unique index -> vocabulary id, -1 for words below min_count.
    to_vocabulary = np.full(len(counts), -1, dtype=np.int32)
    to_vocabulary[ranked] = np.arange(len(ranked), dtype=np.int32)
    ids = to_vocabulary[token_index.numpy()]
    line_ids = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    known = ids >= 0
    return Corpus(words=[unique_tokens[i] for i in ranked], counts=counts[ranked].astype(np.int64),
                  token_ids=ids[known], line_ids=line_ids[known], num_tokens=len(ids))


# ---------------------------------------------------------------------------
# Sampling: subsampling, dynamic windows, negatives
# ---------------------------------------------------------------------------


def keep_probabilities(counts, threshold=1e-5):
    """Probability of keeping each occurrence of a word (the C tool's subsampling).

    keep(w) = sqrt(t / f(w)) + t / f(w), with f the word's corpus frequency:
    words rarer than ~2.6 t are always kept, "the" mostly dropped, which both
    speeds training and improves rare words' vectors.
    """
    if not threshold:
        return np.ones(len(counts), np.float32)
    ratio = threshold * counts.sum() / np.maximum(counts, 1)
    return np.minimum(np.sqrt(ratio) + ratio, 1.0).astype(np.float32)


def skipgram_pairs(token_ids, line_ids, window, rng):
    """All (center, context) pairs of one pass, vectorized over the corpus.

    Each center position draws its window size b uniformly from 1..window (so
    nearer words are used more often) and pairs with the tokens at distance
    1..b on both sides within its own line. One NumPy pass per distance and
    side, on array slices; no Python loop over tokens.

    Returns:
        int32 [num_pairs, 2]: (center, context) rows, in corpus order.
    """
    windows = rng.integers(1, window + 1, size=len(token_ids), dtype=np.int8)
    blocks = [np.zeros((0, 2), np.int32)]
    for distance in range(1, min(window, len(token_ids) - 1) + 1):
        same_line = line_ids[:-distance] == line_ids[distance:]
        before, after = token_ids[:-distance], token_ids[distance:]
        # Center before its context (uses the earlier token's window), then after it.
        for center, context, center_window in ((before, after, windows[:-distance]),
                                               (after, before, windows[distance:])):
            chosen = same_line & (center_window >= distance)
            blocks.append(np.stack([center[chosen], context[chosen]], axis=1))
    return np.concatenate(blocks).astype(np.int32, copy=False)


def negative_sampling_cdf(counts, power=0.75):
    """Cumulative unigram^power distribution, for drawing negatives by binary search."""
    weights = np.asarray(counts, dtype=np.float64) ** power
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    return cdf.astype(np.float32)


# ---------------------------------------------------------------------------
# The model and its compiled SGD step
# ---------------------------------------------------------------------------


class SkipGram(tf.Module):
    """Input and output vectors of skip-gram with negative sampling, and its SGD step.

    `train_step(centers, contexts, learning_rate)` gathers the rows it needs,
    computes the gradient of

        loss = -log sigmoid(u_o . v_c) - sum_k log sigmoid(-u_k . v_c)

    in closed form (d loss / d logit = sigmoid(logit) - label) and subtracts
    `learning_rate` times it from exactly those rows (`scatter_sub`): no softmax
    over the vocabulary and no dense update. Gradients are summed over the
    batch, not averaged, so the learning rate means what it means in the C tool
    (a step per pair).

    Negatives are shared by groups of `negatives_shared_by` pairs (Ji et al.
    2016, "Parallelizing Word2Vec in Shared and Distributed Memory"): each pair
    still gets `negatives` words drawn from unigram^0.75, so the objective's
    expectation is unchanged, but a group's logits and gradients become small
    matrix products and far fewer rows are gathered and scattered, which is
    where a CPU spends its time. `negatives_shared_by=1` is per-pair sampling.

    Args:
        counts: word counts [V]; they set the negative-sampling distribution.
        dim: vector size.
        negatives: K, negatives per pair.
        negatives_shared_by: pairs per group that share their K negatives;
            batch sizes must be a multiple of it.
        seed: seeds the initial vectors and the negative draws.
        xla_updates: apply the sparse updates with an XLA-compiled scatter.
    """

    def __init__(self, counts, dim=300, negatives=5, negatives_shared_by=64, seed=0,
                 xla_updates=True, name="skip_gram"):
        super().__init__(name=name)
        self.dim = dim
        self.negatives = negatives
        self.negatives_shared_by = negatives_shared_by
        vocabulary_size = len(counts)
        rng = np.random.default_rng(seed)
        # The C tool's initialization: small random inputs, zero outputs.
        initial = rng.uniform(-0.5 / dim, 0.5 / dim, size=(vocabulary_size, dim))
        self.input_vectors = tf.Variable(initial.astype(np.float32), name="input_vectors")
        self.output_vectors = tf.Variable(tf.zeros((vocabulary_size, dim)), name="output_vectors")
        self._cdf = tf.constant(negative_sampling_cdf(counts))
        self._random = tf.random.Generator.from_seed(seed)
        signature = [tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32),
                     tf.TensorSpec([], tf.float32)]
        self.train_step = tf.function(self._train_step, input_signature=signature)
        # TF's CPU scatter kernels cost ~1 us per row; XLA's scatter loop is 2-3x
        # faster, while the dense math runs best on TF's own kernels.
        self._apply_updates = (tf.function(self._scatter_sub, jit_compile=True)
                               if xla_updates else self._scatter_sub)

    def sample_negatives(self, shape):
        """Word ids drawn from unigram^0.75 (binary search in the CDF)."""
        uniform = self._random.uniform([tf.reduce_prod(shape)])
        ids = tf.searchsorted(self._cdf, uniform, side="right", out_type=tf.int32)
        return tf.reshape(tf.minimum(ids, tf.size(self._cdf) - 1), shape)

    def _train_step(self, centers, contexts, learning_rate):
        """One SGD step on a batch of pairs; returns the summed loss."""
        groups = tf.shape(centers)[0] // self.negatives_shared_by
        negatives = self.sample_negatives([groups, self.negatives])  # [G, K]
        center = tf.gather(self.input_vectors, centers)  # v_c [B, D]
        context = tf.gather(self.output_vectors, contexts)  # u_o [B, D]
        negative = tf.gather(self.output_vectors, negatives)  # u_k [G, K, D]
        grouped_center = tf.reshape(center, [groups, self.negatives_shared_by, self.dim])

        positive_logits = tf.reduce_sum(center * context, axis=-1)  # [B]
        negative_logits = tf.matmul(grouped_center, negative, transpose_b=True)  # [G, S, K]
        loss = (tf.reduce_sum(tf.nn.softplus(-positive_logits))  # -log sigmoid(x) = softplus(-x)
                + tf.reduce_sum(tf.nn.softplus(negative_logits)))

        # d loss / d logit = sigmoid(logit) - label, times the learning rate here,
        # on [B] and [G, S, K] tensors rather than on [B, D] gradients.
        positive_step = learning_rate * (tf.sigmoid(positive_logits) - 1.0)
        negative_step = learning_rate * tf.sigmoid(negative_logits)
        center_update = (positive_step[:, None] * context
                         + tf.reshape(tf.matmul(negative_step, negative), [-1, self.dim]))
        context_update = positive_step[:, None] * center
        negative_update = tf.matmul(negative_step, grouped_center, transpose_a=True)  # [G, K, D]
        self._apply_updates(centers, center_update, contexts, context_update,
                            tf.reshape(negatives, [-1]),
                            tf.reshape(negative_update, [-1, self.dim]))
        return loss

    def _scatter_sub(self, centers, center_update, contexts, context_update, negatives,
                     negative_update):
        """Sparse SGD: subtract each row's update in place (repeated rows accumulate)."""
        self.input_vectors.scatter_sub(tf.IndexedSlices(center_update, centers))
        self.output_vectors.scatter_sub(tf.IndexedSlices(context_update, contexts))
        self.output_vectors.scatter_sub(tf.IndexedSlices(negative_update, negatives))


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def train_word2vec(corpus, dim=300, epochs=10, window=5, negatives=5, subsample=1e-5,
                   learning_rate=0.025, batch_size=16384, negatives_shared_by=64, seed=0,
                   xla_updates=True, log_every=10.0, log=None):
    """Train skip-gram vectors on a `Corpus`; returns `WordVectors` (the input vectors).

    Each epoch subsamples the corpus afresh, draws fresh windows, shuffles all
    pairs and runs SGD in batches of `batch_size` pairs; the learning rate falls
    linearly from `learning_rate` to 1e-4 of it over all epochs, as in the C
    tool. Every `log_every` seconds `log` (default: print) gets a line with
    progress, the mean loss per pair, and throughput in corpus tokens/s (the C
    tool's words/s) and pairs/s. The returned vectors carry a `stats` dict.
    """
    if batch_size % negatives_shared_by:
        raise ValueError(f"batch_size={batch_size} must be a multiple of "
                         f"negatives_shared_by={negatives_shared_by}.")
    log = log or _print
    rng = np.random.default_rng(seed)
    model = SkipGram(corpus.counts, dim, negatives, negatives_shared_by, seed, xla_updates)
    keep = keep_probabilities(corpus.counts, subsample)
    tokens_per_epoch = len(corpus.token_ids)
    started = last_log = time.perf_counter()
    total_pairs, logged_loss, logged_pairs, loss_per_pair = 0, 0.0, 0, float("nan")
    for epoch in range(epochs):
        pairs = _epoch_pairs(corpus, keep, window, rng)
        # Whole groups only: the < negatives_shared_by pairs left over are dropped.
        pairs = pairs[: len(pairs) - len(pairs) % negatives_shared_by]
        for start in range(0, len(pairs), batch_size):
            progress = (epoch + start / len(pairs)) / epochs
            rate = learning_rate * max(1.0 - progress, 1e-4)
            batch = pairs[start : start + batch_size]
            logged_loss += float(model.train_step(batch[:, 0], batch[:, 1], np.float32(rate)))
            logged_pairs += len(batch)
            total_pairs += len(batch)
            now = time.perf_counter()
            end_of_epoch = start + batch_size >= len(pairs)
            if now - last_log >= log_every or end_of_epoch:
                elapsed = now - started
                epoch_done = min(start + batch_size, len(pairs)) / len(pairs)
                loss_per_pair = logged_loss / logged_pairs
                log(f"epoch {epoch + 1}/{epochs} {100 * epoch_done:5.1f}%"
                    f"  loss {loss_per_pair:.4f}  lr {rate:.5f}"
                    f"  {(epoch + epoch_done) * tokens_per_epoch / elapsed / 1e3:,.0f}k tokens/s"
                    f"  {total_pairs / elapsed / 1e3:,.0f}k pairs/s  {elapsed:,.0f}s")
                last_log, logged_loss, logged_pairs = now, 0.0, 0
    seconds = max(time.perf_counter() - started, 1e-9)
    stats = dict(epochs=epochs, corpus_tokens=corpus.num_tokens,
                 vocabulary_tokens=tokens_per_epoch, pairs=total_pairs,
                 train_seconds=round(seconds, 1),
                 tokens_per_second=round(epochs * tokens_per_epoch / seconds),
                 pairs_per_second=round(total_pairs / seconds),
                 final_loss=round(loss_per_pair, 4))
    return WordVectors(list(corpus.words), model.input_vectors.numpy(), stats)


def _print(line):
    print(line, flush=True)


def _epoch_pairs(corpus, keep, window, rng):
    """Subsample, pair and shuffle one epoch's (center, context) pairs: int32 [P, 2]."""
    kept = rng.random(len(corpus.token_ids), dtype=np.float32) < keep[corpus.token_ids]
    pairs = skipgram_pairs(corpus.token_ids[kept], corpus.line_ids[kept], window, rng)
    # Shuffle rows in place through an int64 view: one pass, no index array.
    rng.shuffle(pairs.view(np.int64).reshape(-1))
    return pairs


# ---------------------------------------------------------------------------
# Using the vectors
# ---------------------------------------------------------------------------


class WordVectors:
    """Words and their vectors, with nearest-neighbour and analogy queries.

    >>> vectors = load_word_vectors()
    >>> vectors["movie"].shape, "movie" in vectors, len(vectors)
    ((300,), True, 34101)
    >>> vectors.most_similar("france", k=2)
    [('italy', 0.8), ('spain', 0.79)]
    >>> vectors.analogy("good", "better", "bad", k=1)  # good : better = bad : ?
    [('worse', 0.66)]
    """

    def __init__(self, words, vectors, stats=None):
        if len(words) != len(vectors):
            raise ValueError(f"{len(words)} words but {len(vectors)} vectors.")
        self.words = list(words)
        self.vectors = np.asarray(vectors)
        self.stats = dict(stats or {})
        self.index = {word: i for i, word in enumerate(self.words)}
        self._unit = None

    @property
    def dim(self):
        return self.vectors.shape[1]

    def __len__(self):
        return len(self.words)

    def __contains__(self, word):
        return word in self.index

    def __getitem__(self, word):
        return self.vectors[self.index[word]]

    def get(self, word, default=None):
        i = self.index.get(word)
        return default if i is None else self.vectors[i]

    def _unit_vectors(self):
        if self._unit is None:
            vectors = self.vectors.astype(np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            self._unit = vectors / np.maximum(norms, 1e-12)
        return self._unit

    def nearest(self, query, k=10, exclude=()):
        """The k words whose vectors have the highest cosine with `query` (a vector)."""
        unit = self._unit_vectors()
        query = np.asarray(query, dtype=np.float32)
        scores = unit @ (query / max(np.linalg.norm(query), 1e-12))
        for word in exclude:
            if word in self.index:
                scores[self.index[word]] = -np.inf
        best = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
        best = best[np.argsort(-scores[best])]
        return [(self.words[i], round(float(scores[i]), 4)) for i in best]

    def most_similar(self, word, k=10):
        """Nearest neighbours of a word by cosine similarity, the word itself left out."""
        return self.nearest(self._unit_vectors()[self.index[word]], k, exclude=[word])

    def similarity(self, first, second):
        unit = self._unit_vectors()
        return float(unit[self.index[first]] @ unit[self.index[second]])

    def analogy(self, a, b, c, k=5):
        """a : b = c : ?, answered by 3CosAdd: nearest(b - a + c), the three left out."""
        unit = self._unit_vectors()
        query = unit[self.index[b]] - unit[self.index[a]] + unit[self.index[c]]
        return self.nearest(query, k, exclude=[a, b, c])


def default_directory():
    """`$ZOO_CACHE_DIR/word2vec` (default `~/.cache/zoo/word2vec`)."""
    from zoo.data.settings import cache_dir

    return cache_dir() / "word2vec"


def save_word_vectors(word_vectors, directory=None, info=None):
    """Write `vocab.txt` (one word a line), `vectors.npy` (float16) and `info.json`.

    Each file is written under a temporary name and renamed, so a killed run
    never leaves a half-written file behind.
    """
    directory = Path(directory or default_directory())
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / VOCABULARY_FILE,
                  lambda f: f.write("\n".join(word_vectors.words).encode("utf-8")))
    _write_atomic(directory / VECTORS_FILE,
                  lambda f: np.save(f, word_vectors.vectors.astype(np.float16)))
    info = {**word_vectors.stats, **(info or {}), "vocabulary_size": len(word_vectors),
            "dim": word_vectors.dim}
    _write_atomic(directory / INFO_FILE,
                  lambda f: f.write(json.dumps(info, indent=2).encode("utf-8")))
    return directory


def _write_atomic(path, write):
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as f:
        write(f)
    os.replace(temporary, path)


def load_word_vectors(directory=None, dtype="float32"):
    """Load the vectors written by `recipes/word2vec_zoo.py` as `WordVectors`.

    Args:
        directory: defaults to `$ZOO_CACHE_DIR/word2vec` (`~/.cache/zoo/word2vec`).
        dtype: the returned matrix's dtype (stored as float16).
    """
    directory = Path(directory or default_directory())
    if not (directory / VECTORS_FILE).exists():
        raise FileNotFoundError(
            f"No word vectors in {directory}. Train them with: python recipes/word2vec_zoo.py")
    # Split on "\n" only: a few tokens carry Latin-1 characters such as U+0085,
    # which str.splitlines() would treat as line breaks.
    words = (directory / VOCABULARY_FILE).read_bytes().decode("utf-8").split("\n")
    vectors = np.load(directory / VECTORS_FILE).astype(dtype)
    info_path = directory / INFO_FILE
    stats = json.loads(info_path.read_text()) if info_path.exists() else {}
    return WordVectors(words, vectors, stats)


def embedding_matrix(vocabulary, vectors, seed=0, scale=0.25):
    """Initial weights [len(vocabulary) + 2, dim] for an Embedding fed by `WordIds`.

    Row 0 is padding (zeros), row 1 the OOV token, row i + 2 the word
    `vocabulary[i]`. Words without a vector, and the OOV row, get U(-scale,
    scale) as in Kim (2014). The random draws depend only on `seed` and the
    shape, not on which words are found.

    Args:
        vocabulary: words in `WordIds` order (without padding / OOV).
        vectors: `WordVectors`, or any mapping word -> vector.
        seed: seed of the random rows.
        scale: half-width of the uniform init for missing words.
    """
    dim = vectors.dim if isinstance(vectors, WordVectors) else len(next(iter(vectors.values())))
    rng = np.random.default_rng(seed)
    matrix = rng.uniform(-scale, scale, size=(len(vocabulary) + 2, dim)).astype(np.float32)
    matrix[0] = 0.0
    for i, word in enumerate(vocabulary):
        vector = vectors.get(word)
        if vector is not None:
            matrix[i + 2] = vector
    return matrix


def coverage(vocabulary, vectors):
    """Fraction of `vocabulary` that has a vector (Kim reports this per dataset)."""
    return sum(word in vectors for word in vocabulary) / max(len(vocabulary), 1)


__all__ = [
    "Corpus", "SkipGram", "WordVectors", "build_corpus", "coverage", "default_directory",
    "embedding_matrix", "keep_probabilities", "load_word_vectors", "negative_sampling_cdf",
    "save_word_vectors", "skipgram_pairs", "tokenize", "train_word2vec",
]
