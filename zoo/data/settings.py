"""Where the zoo finds raw data and keeps prepared data.

Two environment variables, read at call time so tests and users can change them
without re-importing:

* `ZOO_DATA_DIR`: the folder holding the offline copies of the datasets (one
  sub-folder per dataset, as described by its MANIFEST.md). Defaults to
  `<repo root>/../shared/data` when that folder exists.
* `ZOO_CACHE_DIR`: where prepared TFDS data (and any downloads) go. Defaults to
  `~/.cache/zoo`.
"""

import os
from pathlib import Path

DATA_DIR_ENV = "ZOO_DATA_DIR"
CACHE_DIR_ENV = "ZOO_CACHE_DIR"

# zoo/data/settings.py -> parents[2] is the repository root (the parent of `zoo/`).
_REPO_ROOT = Path(__file__).resolve().parents[2]
_DEFAULT_DATA_ROOT = _REPO_ROOT.parent / "shared" / "data"


def data_root():
    """The folder with the raw dataset files, as a `Path`.

    `$ZOO_DATA_DIR` when set, else `<repo root>/../shared/data`. The folder may
    not exist: builders check and say what to do when they need it.

    >>> data_root() / "atis" / "train" / "seq.in"   # doctest: +SKIP
    """
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return _DEFAULT_DATA_ROOT


def cache_dir():
    """Root of the zoo's cache: `$ZOO_CACHE_DIR` or `~/.cache/zoo`."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "zoo"


def tfds_data_dir():
    """The TFDS `data_dir` holding prepared datasets."""
    return cache_dir() / "tensorflow_datasets"


def download_dir():
    """Where online preparation keeps its downloads."""
    return cache_dir() / "downloads"
