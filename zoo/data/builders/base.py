"""The base TFDS builder of the zoo and the file readers its builders share.

Every builder prepares from the local copy under `data_root()/<FOLDER>` (passed to
TFDS as the manual dir) when it exists, and otherwise downloads the files from the
dataset's public source. The zoo's own `load` forbids the download unless asked,
so tests and recipes never touch the network.
"""

import contextlib
import gzip
import inspect
from pathlib import Path
from typing import ClassVar

import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from zoo.data import settings

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

GZIP_MAGIC = b"\x1f\x8b"


class MissingDataError(FileNotFoundError):
    """The raw files of a dataset are not where the zoo expects them."""


def missing_data_message(dataset, folder):
    return (
        f"The raw files of dataset '{dataset}' were not found: expected the folder "
        f"{folder}. Set the environment variable {settings.DATA_DIR_ENV} to the folder "
        f"holding the zoo's offline data (the one with MANIFEST.md; currently "
        f"{settings.data_root()}), or pass download=True to fetch the public source."
    )


def read_bytes(path):
    """The file's bytes, gunzipped when it is gzip (by content, not by name)."""
    data = Path(path).read_bytes()
    return gzip.decompress(data) if data[:2] == GZIP_MAGIC else data


def decode_text(data):
    """Decode bytes as UTF-8, falling back to cp1252 then Latin-1.

    Some of Kim (2014)'s files are cp1252 (0x85 is "…", 0x91-0x97 are quotes and
    dashes). Decoding them as Latin-1 would put U+0085 (a line break for Python's
    `str.splitlines` and `str.split`) inside sentences. Latin-1 is the last resort
    for the five bytes cp1252 leaves undefined; it never fails, so nothing is lost.
    """
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1")


def read_lines(path):
    """Lines of a text file (gzip or plain, any of the encodings above).

    Splits on "\\n" only (never `str.splitlines`, which also breaks on U+0085,
    U+2028, ...) and drops the empty string after a final newline and any "\\r".
    """
    text = decode_text(read_bytes(path))
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_text(path):
    """The whole decoded text of a file (gzip or plain)."""
    return decode_text(read_bytes(path))


@contextlib.contextmanager
def _exclusive_lock(path):
    """An inter-process lock on `path` (a no-op where `fcntl` is missing)."""
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ZooBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the zoo's builders: local folder first, public source otherwise.

    Subclasses set `FOLDER` (their sub-folder of the data root) and implement
    `_source_files(config)` returning `{key: (relative_path, url)}`, plus the usual
    `_info` / `_split_generators` / `_generate_examples`. Examples are written in
    file order (`disable_shuffling=True`): order matters for language-model
    streams and time series, makes spot checks by index possible, and costs
    nothing since pipelines shuffle anyway.
    """

    VERSION = tfds.core.Version("1.0.0")
    # Bump VERSION whenever generated examples change: prepared caches are keyed by it.
    RELEASE_NOTES: ClassVar[dict] = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Point ${settings.DATA_DIR_ENV} at the zoo's offline data folder (the one "
        "with MANIFEST.md); each dataset reads its own sub-folder."
    )
    FOLDER = None
    # Split names this builder (or config) produces, used to check a requested
    # split before anything is prepared.
    SPLITS = ("train", "validation", "test")

    def __init__(self, *, allow_download=True, **kwargs):
        kwargs.setdefault("data_dir", str(settings.tfds_data_dir()))
        super().__init__(**kwargs)
        self.allow_download = allow_download

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls):
        # TFDS's own lookup imports `importlib_resources`, which TFDS does not
        # install on Python >= 3.9; the builder's source file is all it needs.
        return epath.Path(inspect.getfile(cls))

    def split_names(self):
        return tuple(getattr(self.builder_config, "splits", None) or self.SPLITS)

    def download_and_prepare(self, *, download_dir=None, download_config=None, **kwargs):
        """Prepare from the zoo's data folder (see `zoo.data.data_root()`), once."""
        if download_config is None and self.is_prepared():
            return
        download_config = download_config or tfds.download.DownloadConfig(
            manual_dir=str(settings.data_root()), try_download_gcs=False
        )
        download_dir = download_dir or str(settings.download_dir())
        # Test runs and recipes share one cache: the lock lets a second process
        # wait for the first one's data instead of racing it to the final rename.
        with _exclusive_lock(Path(self.data_dir_root) / f".{self.name}.lock"):
            super().download_and_prepare(
                download_dir=download_dir, download_config=download_config, **kwargs
            )

    def _zoo_info(self, *, features, description, homepage, citation, supervised_keys=None):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            description=description,
            homepage=homepage,
            citation=citation,
            supervised_keys=supervised_keys,
            disable_shuffling=True,
        )

    def _source_files(self, config):
        raise NotImplementedError

    def _local_folder(self, dl_manager):
        try:
            return Path(dl_manager.manual_dir) / self.FOLDER
        except AssertionError:  # TFDS: no manual dir given, or it is empty.
            return None

    def _resolve_sources(self, dl_manager):
        """`{key: Path}` of the raw files: the local copy, else downloaded ones."""
        sources = self._source_files(self.builder_config)
        folder = self._local_folder(dl_manager)
        if folder is not None and folder.is_dir():
            return {key: folder / relative for key, (relative, _) in sources.items()}
        if not self.allow_download:
            folder = folder or settings.data_root() / self.FOLDER
            raise MissingDataError(missing_data_message(self.name, folder))
        return self._download(dl_manager, {key: url for key, (_, url) in sources.items()})

    def _download(self, dl_manager, urls):
        """Fetch `urls`; subclasses whose sources are archives override this."""
        return {key: Path(path) for key, path in dl_manager.download(urls).items()}
