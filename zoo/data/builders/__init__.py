"""The zoo's TFDS builders and the catalog of dataset names they serve.

Each name in `CATALOG` is one (builder class, config name) pair; datasets with
several configs (the sentence sets, the time series) get one name per config.
"""

from zoo.data.builders.base import MissingDataError, ZooBuilder
from zoo.data.builders.captioning import Flickr8k
from zoo.data.builders.classification import (
    SENTENCE_CONFIGS,
    Imdb,
    SentenceClassification,
    kfold_splits,
)
from zoo.data.builders.language_model import Ptb
from zoo.data.builders.tagging import Atis, Conll2003, Snips, UdEnglishLines
from zoo.data.builders.timeseries import SERIES_CONFIGS, Timeseries
from zoo.data.builders.translation import Multi30k

CATALOG = {
    "atis": (Atis, None),
    "snips": (Snips, None),
    "conll2003": (Conll2003, None),
    "ud_english_lines": (UdEnglishLines, None),
    "multi30k": (Multi30k, None),
    **{config.name: (SentenceClassification, config.name) for config in SENTENCE_CONFIGS},
    "imdb": (Imdb, None),
    "ptb": (Ptb, None),
    "flickr8k": (Flickr8k, None),
    **{config.name: (Timeseries, config.name) for config in SERIES_CONFIGS},
}

__all__ = [
    "CATALOG",
    "Atis",
    "Conll2003",
    "Flickr8k",
    "Imdb",
    "MissingDataError",
    "Multi30k",
    "Ptb",
    "SentenceClassification",
    "Snips",
    "Timeseries",
    "UdEnglishLines",
    "ZooBuilder",
    "kfold_splits",
]
