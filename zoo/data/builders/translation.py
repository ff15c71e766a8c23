"""Multi30k Task 1: image descriptions in English, German and French."""

import tensorflow_datasets as tfds

from zoo.data.builders.base import ZooBuilder, read_lines

_MULTI30K = (
    "https://raw.githubusercontent.com/multi30k/dataset/"
    "a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1"
)
LANGUAGES = ("en", "de", "fr")
_SPLIT_FILES = {"train": "train", "validation": "val", "test": "test_2016_flickr"}


class Multi30k(ZooBuilder, skip_registration=True):
    """Multi30k (Task 1), raw text, line-aligned across languages.

    Features, as TFDS translation datasets: one `Text` per language code,
    `en`, `de`, `fr`; plus `image/filename`, the Flickr30k image each sentence
    describes. Splits: train 29,000 / validation 1,014 / test 1,000 (test2016).

    >>> ex = zoo.data.load_examples("multi30k", "validation")[0]   # doctest: +SKIP
    >>> ex["en"], ex["de"]                                         # doctest: +SKIP
    """

    name = "multi30k"
    FOLDER = "multi30k"

    def _info(self):
        features = {language: tfds.features.Text() for language in LANGUAGES}
        features["image/filename"] = tfds.features.Text()
        return self._zoo_info(
            features=features,
            description="Multi30k Task 1 parallel image descriptions (en, de, fr).",
            homepage="https://github.com/multi30k/dataset",
            citation="Elliott, Frank, Sima'an, Specia (2016). Multi30K. Workshop on Vision and Language.",
            supervised_keys=("en", "de"),
        )

    def _source_files(self, config):
        files = {}
        for split, stem in _SPLIT_FILES.items():
            for language in LANGUAGES:
                relative = f"raw/{stem}.{language}.gz"
                files[f"{split}/{language}"] = (relative, f"{_MULTI30K}/{relative}")
            relative = f"image_splits/{stem}.txt"
            files[f"{split}/images"] = (relative, f"{_MULTI30K}/{relative}")
        return files

    def _split_generators(self, dl_manager):
        paths = self._resolve_sources(dl_manager)
        return {
            split: self._generate_examples(
                {key: paths[f"{split}/{key}"] for key in (*LANGUAGES, "images")}
            )
            for split in _SPLIT_FILES
        }

    def _generate_examples(self, paths):
        columns = {key: read_lines(path) for key, path in paths.items()}
        if len({len(lines) for lines in columns.values()}) != 1:
            raise ValueError(f"Multi30k files are not line-aligned: {paths}")
        for index, row in enumerate(zip(*columns.values())):
            example = dict(zip(columns, (value.strip() for value in row)))
            example["image/filename"] = example.pop("images")
            yield index, example
