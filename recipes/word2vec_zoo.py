"""word2vec-zoo: the zoo's own 300-d skip-gram word vectors (Mikolov et al. 2013).

    python recipes/word2vec_zoo.py            # ~4 CPU-minutes (see below)
    python recipes/word2vec_zoo.py --smoke    # < 1 min: 1,500 texts per source, 50-d

Kim's (2014) static / non-static / multichannel text-CNNs start from pretrained
word vectors, and no installable package ships English word2vec vectors, so
this recipe trains them (`zoo.embeddings`) on the text the zoo has offline, in
the classifiers' own tokenization (lowercased, punctuation split off):

* IMDB train reviews (25,000; `<br />` becomes a space);
* PTB train (Mikolov's LM version; its `<unk>` and `N` placeholders are
  dropped, they are not words a classifier ever sees);
* Multi30k English train (29,000 image descriptions);
* TREC train, SST-2 train and SST-1 train sentences (labels stripped, duplicate
  sentences kept once: SST-2's train sentences are nearly all in SST-1's).

Only training splits are read, never a validation or test split. MR
(rt-polarity), Subj, CR and MPQA are left out entirely: they have no fixed
split and are scored by 10-fold cross-validation, so any of their sentences
may be a test sentence of some fold.

Output (not in git): `$ZOO_CACHE_DIR/word2vec/` (default `~/.cache/zoo/word2vec/`)
holds `vocab.txt` (one word a line), `vectors.npy` (float16 [V, 300]) and
`info.json` (corpus token count, vocabulary size, epochs, wall time, throughput,
the settings, and the nearest-neighbour / analogy checks printed at the end).
`--smoke` writes to `word2vec-smoke/` instead, so it never replaces real vectors.
`zoo.embeddings.load_word_vectors()` reads them back.
"""

import argparse
import csv
import gzip
import json
import os
import platform
import resource
import sys
import time

from zoo import embeddings
from zoo.data.settings import cache_dir, data_root

CONFIG = dict(
    dim=300,
    window=5,
    negatives=5,
    min_count=5,
    subsample=1e-5,
    # 10 passes reach a loss of ~2.35 per pair (3 passes: 2.52, and poor
    # neighbours for frequent words). One pass over the 8.2M-token corpus is
    # ~11M pairs after subsampling, ~21 CPU-seconds; the whole run measured 237
    # CPU-seconds, 16.7 min wall on a 2-core VM shared with ~7 other training
    # jobs (load average 20). `--epochs` trades quality for time.
    epochs=10,
    learning_rate=0.025,
    batch_size=16384,
    negatives_shared_by=64,
    seed=0,
)
# The smoke run checks the pipeline on 1,500 texts per source in seconds; lighter
# subsampling (1e-3) leaves enough pairs in so small a slice to learn something.
SMOKE_CONFIG = dict(CONFIG, dim=50, epochs=2, subsample=1e-3, batch_size=4096,
                    texts_per_source=1500)

NEIGHBOUR_QUERIES = ["good", "movie", "terrible", "france", "monday", "actor", "funny", "dog",
                     "stock"]
# (a, b, c, expected d) for "a is to b as c is to d", words common in the corpus.
ANALOGIES = [
    ("man", "woman", "king", "queen"), ("man", "woman", "boy", "girl"),
    ("he", "she", "his", "her"), ("brother", "sister", "father", "mother"),
    ("actor", "actress", "man", "woman"), ("husband", "wife", "man", "woman"),
    ("good", "better", "bad", "worse"), ("good", "best", "bad", "worst"),
    ("big", "bigger", "small", "smaller"), ("old", "older", "young", "younger"),
    ("is", "was", "are", "were"), ("go", "went", "see", "saw"),
    ("walk", "walking", "run", "running"), ("film", "films", "movie", "movies"),
    ("dog", "dogs", "cat", "cats"), ("boy", "boys", "girl", "girls"),
    ("write", "writer", "direct", "director"), ("france", "paris", "germany", "berlin"),
]


# ---------------------------------------------------------------------------
# Corpus: training splits only
# ---------------------------------------------------------------------------


def read_lines(path):
    """Lines of a (gzipped) text file, decoded as Latin-1 if it is not UTF-8.

    Split on "\\n" only: some files hold U+0085, which `str.splitlines` would
    treat as a line break.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # TREC train has one stray byte; never fails
    return [line for line in text.split("\n") if line.strip()]


def imdb_train_texts(root):
    csv.field_size_limit(1 << 24)
    with gzip.open(root / "imdb" / "train.csv.gz", "rt", encoding="utf-8", newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


def ptb_train_texts(root):
    placeholders = {"<unk>", "N"}
    return [" ".join(t for t in line.split() if t not in placeholders)
            for line in read_lines(root / "ptb" / "ptb.train.txt.gz")]


def multi30k_train_texts(root):
    return read_lines(root / "multi30k" / "raw" / "train.en.gz")


def sentence_train_texts(root):
    """TREC, SST-2 and SST-1 training sentences, labels stripped, each sentence once."""
    folder = root / "sentence_classification"
    sentences = {}
    for name in ["TREC.train.all", "stsa.binary.train", "stsa.fine.train"]:
        for line in read_lines(folder / name):
            _, _, sentence = line.partition(" ")  # drop the label
            sentences.setdefault(sentence, None)
    return list(sentences)


SOURCES = {
    "imdb/train": imdb_train_texts,
    "ptb/train": ptb_train_texts,
    "multi30k/train.en": multi30k_train_texts,
    "trec+sst2+sst1/train": sentence_train_texts,
}


def corpus_texts(root, texts_per_source=None):
    """All training texts, one string per review / sentence; (texts, count per source)."""
    texts, sizes = [], {}
    for name, read in SOURCES.items():
        source = read(root)[:texts_per_source]
        sizes[name] = len(source)
        texts.extend(source)
    return texts, sizes


# ---------------------------------------------------------------------------
# Quality checks
# ---------------------------------------------------------------------------


def quality_report(vectors, frequent_words=10000):
    """Nearest neighbours and analogies, printed and returned as a dict.

    Neighbours are searched among the `frequent_words` most frequent words: in
    a corpus this small, words seen 5-10 times get noisy vectors that crowd the
    lists without telling much about the frequent words asked about.
    """
    frequent = embeddings.WordVectors(vectors.words[:frequent_words],
                                      vectors.vectors[:frequent_words])
    report = {"neighbours": {}, "analogies": {}}
    print(f"\nNearest neighbours (cosine, among the {len(frequent):,} most frequent words):")
    for word in NEIGHBOUR_QUERIES:
        if word in frequent:
            neighbours = frequent.most_similar(word, k=8)
            report["neighbours"][word] = neighbours
            print(f"  {word:>9}: " + ", ".join(f"{w} {s:.2f}" for w, s in neighbours))
    print("\nAnalogies a : b = c : ? (3CosAdd over the whole vocabulary):")
    solved = asked = 0
    for a, b, c, expected in ANALOGIES:
        if not all(w in vectors for w in (a, b, c, expected)):
            continue
        answer = vectors.analogy(a, b, c, k=1)[0][0]
        asked += 1
        solved += answer == expected
        report["analogies"][f"{a}:{b}={c}:?"] = answer
        miss = "" if answer == expected else f"  (expected {expected})"
        print(f"  {a}:{b} = {c}:{answer}{miss}")
    report["analogy_accuracy"] = f"{solved}/{asked}"
    print(f"  solved {solved}/{asked}")
    return report


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="1,500 texts per source, 2 epochs, 50-d")
    parser.add_argument("--epochs", type=int, help="override the number of passes")
    parser.add_argument("--output", help="folder for the vectors (default: the zoo cache)")
    args = parser.parse_args(argv)
    config = dict(SMOKE_CONFIG if args.smoke else CONFIG)
    if args.epochs:
        config["epochs"] = args.epochs
    output = args.output or cache_dir() / ("word2vec-smoke" if args.smoke else "word2vec")

    started, load_start = time.perf_counter(), _load_average()
    texts, sizes = corpus_texts(data_root(), config.pop("texts_per_source", None))
    corpus = embeddings.build_corpus(texts, min_count=config["min_count"])
    corpus_seconds = time.perf_counter() - started
    print(f"Corpus: {len(texts):,} texts {sizes}, {corpus.num_tokens:,} tokens, "
          f"{len(corpus.words):,} words seen >= {config['min_count']} times "
          f"({corpus_seconds:.0f}s)", flush=True)

    vectors = embeddings.train_word2vec(
        corpus, **{k: v for k, v in config.items() if k != "min_count"})
    wall_seconds = time.perf_counter() - started
    report = quality_report(vectors)

    info = dict(
        vectors.stats, vocabulary_size=len(vectors), dim=vectors.dim,
        recipe="python recipes/word2vec_zoo.py" + (" --smoke" if args.smoke else ""),
        sources=sizes, config=config,
        corpus_seconds=round(corpus_seconds, 1), wall_seconds=round(wall_seconds, 1),
        # CPU time and load average tell a busy shared machine from a slow recipe.
        cpu_seconds=round(_cpu_seconds(), 1), load_average_start=load_start,
        load_average_end=_load_average(),
        machine=f"{platform.machine()}, {_cpu_count()} CPU cores, TensorFlow on CPU",
        **report,
    )
    directory = embeddings.save_word_vectors(vectors, output, info)
    print(f"\nWrote {len(vectors):,} x {vectors.dim} vectors to {directory} in "
          f"{wall_seconds / 60:.1f} min ({vectors.stats['tokens_per_second']:,} tokens/s, "
          f"{vectors.stats['pairs_per_second']:,} pairs/s while training)")
    print(json.dumps({k: info[k] for k in ("wall_seconds", "cpu_seconds", "load_average_start",
                                           "load_average_end", "config")}))
    return info


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load_average():
    return [round(x, 1) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    main(sys.argv[1:])
