"""Load the zoo's datasets by name, as `tf.data` or as plain Python examples."""

import difflib
import functools

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from zoo.data.builders import CATALOG
from zoo.data.builders.language_model import EOS, build_vocabulary, line_tokens

# Other spellings users bring from TFDS or the papers.
_NAME_ALIASES = {
    "imdb_reviews": "imdb",
    "glue/sst2": "sst2",
    "sst-2": "sst2",
    "sst-1": "sst1",
    "ud_english-lines": "ud_english_lines",
    "en_lines": "ud_english_lines",
}
# A split may be asked for under any of these names.
_SPLIT_ALIASES = {
    "validation": ("dev", "valid", "val"),
    "dev": ("validation", "valid", "val"),
}
# Records parsed per step by `load_examples`.
_CONVERSION_BATCH = 4096


def list_datasets():
    """Names accepted by `load`, `load_examples` and `builder`, sorted."""
    return sorted(CATALOG)


def _catalog_entry(name):
    key = str(name).strip().lower()
    key = _NAME_ALIASES.get(key, key)
    builder_name, _, config_name = key.partition("/")  # TFDS style "builder/config"
    if config_name in CATALOG and CATALOG[config_name][0].name == builder_name:
        key = config_name
    if key in CATALOG:
        return key, CATALOG[key]
    close = difflib.get_close_matches(key, list(CATALOG) + list(_NAME_ALIASES), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"Unknown dataset {name!r}.{hint} Available: {', '.join(list_datasets())}.")


def builder(name, *, download=False):
    """The TFDS builder behind a dataset name, not yet prepared.

    Args:
        name: a name from `list_datasets()` (TFDS spellings such as
            "imdb_reviews", "glue/sst2" or "sentence_classification/trec" work too).
        download: allow fetching the public source when the local data
            folder (`data_root()`) lacks the dataset. Off by default, so
            nothing reads the network unless asked.

    >>> b = builder("atis")
    >>> b.download_and_prepare()            # once; later calls reuse the cache
    >>> b.info.features                     # doctest: +SKIP
    """
    _, (builder_class, config) = _catalog_entry(name)
    kwargs = {"config": config} if config else {}
    return builder_class(allow_download=download, **kwargs)


def _canonical_split(name, valid):
    if name in valid:
        return name
    for canonical in valid:
        if name in _SPLIT_ALIASES.get(canonical, ()):
            return canonical
    return None


def resolve_split(dataset, split, valid):
    """Map `split` (TFDS syntax: "train[:10%]+validation" works) onto `valid` names."""
    resolved = []
    for part in split.split("+"):
        base, bracket, rest = part.strip().partition("[")
        canonical = _canonical_split(base.strip(), valid)
        if canonical is None:
            aliases = sorted({a for v in valid for a in _SPLIT_ALIASES.get(v, ())} - set(valid))
            also = f" (aliases: {', '.join(aliases)})" if aliases else ""
            raise ValueError(
                f"Unknown split {split!r} for dataset {dataset!r}. Valid splits: {', '.join(valid)}{also}."
            )
        resolved.append(canonical + bracket + rest)
    return "+".join(resolved)


def _prepared(name, split, download):
    dataset_builder = builder(name, download=download)
    tfds_split = resolve_split(name, split, dataset_builder.split_names())
    if not dataset_builder.is_prepared():
        dataset_builder.download_and_prepare()
        # A fresh builder reads the split metadata from disk, also when another
        # process did the preparing while this one waited for the lock.
        dataset_builder = builder(name, download=download)
    return dataset_builder, tfds_split


def load(name, split, *, download=False, shuffle_files=False, decoders=None, as_supervised=False):
    """A dataset split as a `tf.data.Dataset` of feature dicts.

    Prepares the dataset on first use from `data_root()/<folder>` into the
    cache (`$ZOO_CACHE_DIR`, default `~/.cache/zoo`); later calls reuse it.
    Examples come in file order (shuffle in the pipeline).

    Features per dataset (all strings are `tf.string`, UTF-8):

    * `atis`, `snips`: `tokens` [n], `slots` [n] (BIO tags), `intent` (ATIS
      multi-intents joined with "#"). Splits train / validation / test.
    * `conll2003`: `tokens`, `pos`, `chunks`, `ner` [n] strings, NER in the
      file's IOB1. Splits train / dev / test (testa / testb).
    * `ud_english_lines`: `text`, `tokens`, `upos`, `xpos` [n]. train / dev / test.
    * `multi30k`: `en`, `de`, `fr`, `image/filename`. train / validation / test.
    * `trec`, `sst2`, `sst1`, `mr`, `subj`, `cr`, `mpqa`: `text`, `label`
      (int64 ClassLabel; names in `builder(name).info.features["label"].names`).
      `trec` adds `label-coarse` / `label-fine` (TFDS `trec` ids), `sst2` adds
      `sentence` and `idx` (as GLUE). trec: train / test; sst*: train /
      validation / test; mr, subj, cr, mpqa: train only (see `kfold_splits`).
    * `imdb`: `text`, `label` (0 neg, 1 pos), as TFDS `imdb_reviews`. train / test.
    * `ptb`: `text`, one line of the corpus. train / validation / test.
    * `flickr8k`: `image` (uint8 [224, 224, 3]), `image/filename`, `captions` [5].
      train / validation / test.
    * time series (`melbourne_min_temp`, `melbourne_max_temp`, `beijing_pm25`,
      `sp500`, `sunspots`, `airline_passengers`): `date` plus one float64 per
      CSV column (NaN where missing). One `train` split, in time order.

    Split names accept the aliases dev / valid / val <-> validation, and TFDS
    slicing ("train[:90%]").

    Args:
        name: a dataset name from `list_datasets()`.
        split: a split name, e.g. "train".
        download: allow fetching the public source if the local folder is missing.
        shuffle_files, decoders, as_supervised: passed to TFDS `as_dataset`.

    >>> ds = load("atis", "train")
    >>> next(iter(ds))["intent"]            # doctest: +SKIP
    <tf.Tensor: shape=(), dtype=string, numpy=b'atis_flight'>
    """
    dataset_builder, tfds_split = _prepared(name, split, download)
    return dataset_builder.as_dataset(
        split=tfds_split,
        shuffle_files=shuffle_files,
        decoders=decoders,
        as_supervised=as_supervised,
    )


def _to_python(value):
    """Nested lists of bytes -> lists of str (numbers are already Python)."""
    if isinstance(value, list):
        return [_to_python(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def _ordered_records(dataset_builder, tfds_split):
    """The serialized examples of a split (TFDS slicing allowed), in file order."""
    if dataset_builder.info.file_format != tfds.core.FileFormat.TFRECORD:
        raise NotImplementedError(
            f"load_examples reads TFRecord files, not {dataset_builder.info.file_format}."
        )
    splits = dataset_builder.info.splits
    parts = []
    for instruction in tfds.core.ReadInstruction.from_spec(tfds_split).to_absolute(splits):
        files = [str(path) for path in splits[instruction.splitname].filepaths]
        start = instruction.from_ or 0
        records = tf.data.TFRecordDataset(files).skip(start)
        if instruction.to is not None:
            records = records.take(instruction.to - start)
        parts.append(records)
    return functools.reduce(lambda a, b: a.concatenate(b), parts)


def _batch_parse_spec(features):
    # Variable-length sequences parse as ragged (TFDS's own spec would pad them).
    return {
        key: tf.io.RaggedFeature(spec.dtype)
        if isinstance(spec, tf.io.FixedLenSequenceFeature)
        else spec
        for key, spec in features.tf_example_spec.items()
    }


def load_examples(name, split, *, download=False):
    """A split as a list of dicts of Python values (str, int, float, lists).

    The same examples as `load`, in the same order, for code that wants plain
    Python. It parses whole batches of records at once, so it is ~10x faster
    than iterating `load`. Images stay encoded JPEG bytes (decode them with
    `zoo.data.images.load_image`).

    >>> examples = load_examples("atis", "test")
    >>> len(examples), sorted(examples[0])
    (893, ['intent', 'slots', 'tokens'])
    """
    dataset_builder, tfds_split = _prepared(name, split, download)
    features = dataset_builder.info.features
    raw_keys = {
        key for key, feature in features.items() if isinstance(feature, tfds.features.Image)
    }
    spec = _batch_parse_spec(features)
    batches = _ordered_records(dataset_builder, tfds_split).batch(_CONVERSION_BATCH)
    examples = []
    for batch in batches.map(lambda records: tf.io.parse_example(records, spec)):
        columns = {}
        for key, value in batch.items():
            values = (
                value.to_list() if isinstance(value, tf.RaggedTensor) else value.numpy().tolist()
            )
            columns[key] = values if key in raw_keys else _to_python(values)
        examples.extend(dict(zip(columns, row)) for row in zip(*columns.values()))
    return examples


def prepare(*names, download=False):
    """Prepare datasets (all of them when no name is given) into the cache."""
    for name in names or list_datasets():
        builder(name, download=download).download_and_prepare()


def ptb_tokens(split, *, download=False):
    """The PTB split as one token list, `<eos>` after every line.

    >>> len(ptb_tokens("validation"))
    73760
    """
    return line_tokens(
        (example["text"] for example in load_examples("ptb", split, download=download)), EOS
    )


def ptb_token_ids(split, vocabulary=None, *, download=False):
    """The PTB split as a token-id stream (int32), `<eos>` after every line.

    Args:
        split: "train", "validation" or "test".
        vocabulary: list of tokens, index = id. Defaults to the training
            vocabulary (10,000 types) by decreasing frequency. Tokens outside
            it map to `<unk>`.

    Returns:
        `(ids, vocabulary)`.

    >>> ids, vocab = ptb_token_ids("test")
    >>> ids.shape, len(vocab)
    ((82430,), 10000)
    """
    if vocabulary is None:
        vocabulary = build_vocabulary(ptb_tokens("train", download=download))
    tokens = ptb_tokens(split, download=download)
    index = {token: i for i, token in enumerate(vocabulary)}
    unknown = index.get("<unk>")
    missing = [t for t in set(tokens) if t not in index]
    if missing and unknown is None:
        raise ValueError(
            f"{len(missing)} PTB tokens (e.g. {missing[:3]}) are not in the vocabulary, which has no <unk>."
        )
    ids = np.fromiter((index.get(t, unknown) for t in tokens), dtype=np.int32, count=len(tokens))
    return ids, list(vocabulary)
