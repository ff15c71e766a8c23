"""Datasets of the zoo as TFDS builders, and the `tf.data` pipelines that feed models.

Every dataset is prepared from the offline copy under `data_root()` (the
`ZOO_DATA_DIR` environment variable, default `<repo>/../shared/data`) into the
cache `$ZOO_CACHE_DIR` (default `~/.cache/zoo`), once.

>>> import zoo.data
>>> zoo.data.list_datasets()[:3]
['airline_passengers', 'atis', 'beijing_pm25']
>>> ds = zoo.data.load("sst2", "train")          # tf.data.Dataset of dicts
>>> examples = zoo.data.load_examples("atis", "test")   # list of Python dicts
>>> examples[0]["tokens"][:3], examples[0]["intent"]
(['i', 'would', 'like'], 'atis_flight')

Pipelines (`zoo.data.pipeline`) batch raw strings with their labels, by length,
padding label sequences on the right; `zoo.data.images` decodes images.
"""

from zoo.data.builders import MissingDataError, kfold_splits
from zoo.data.loading import (
    builder,
    list_datasets,
    load,
    load_examples,
    prepare,
    ptb_token_ids,
    ptb_tokens,
)
from zoo.data.settings import cache_dir, data_root

__all__ = [
    "MissingDataError",
    "builder",
    "cache_dir",
    "data_root",
    "kfold_splits",
    "list_datasets",
    "load",
    "load_examples",
    "prepare",
    "ptb_token_ids",
    "ptb_tokens",
]
