"""Flickr8k: 8,000 images of the official splits, 5 captions each."""

import tensorflow_datasets as tfds

from zoo.data.builders.base import ZooBuilder, read_lines

_FLICKR8K_RELEASE = "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k"
_SPLIT_LISTS = {
    "train": "Flickr_8k.trainImages.txt",
    "validation": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
_TOKEN_FILE = "Flickr8k.token.txt"
CAPTIONS_PER_IMAGE = 5


def read_captions(path):
    """`{image file name: [caption 0, ..., caption 4]}` from Flickr8k.token.txt."""
    numbered = {}
    for line in read_lines(path):
        if not line.strip():
            continue
        key, caption = line.split("\t", 1)
        name, number = key.rsplit("#", 1)
        numbered.setdefault(name, {})[int(number)] = caption.strip()
    return {name: [by_number[i] for i in sorted(by_number)] for name, by_number in numbered.items()}


class Flickr8k(ZooBuilder, skip_registration=True):
    """Flickr8k image captioning with the official Hodosh et al. (2013) splits.

    Features: `image` (tfds Image, JPEG; decoded to uint8 [H, W, 3] by default,
    pass `decoders={"image": tfds.decode.SkipDecoding()}` for the JPEG bytes),
    `image/filename`, and `captions` (the 5 tokenised captions, " ." at the end).
    Splits: train 6,000 / validation 1,000 (the "dev" list) / test 1,000 images,
    in the order of the split files. The offline images are 224x224.
    """

    name = "flickr8k"
    FOLDER = "flickr8k"

    def _info(self):
        return self._zoo_info(
            features={
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image/filename": tfds.features.Text(),
                "captions": tfds.features.Sequence(tfds.features.Text(), length=CAPTIONS_PER_IMAGE),
            },
            description="Flickr8k: 8,000 Flickr photos of people and animals, 5 captions each.",
            homepage="https://hockenmaier.cs.illinois.edu/8k-pictures.html",
            citation="Hodosh, Young, Hockenmaier (2013). Framing Image Description as a Ranking Task. JAIR 47.",
        )

    def _source_files(self, config):
        files = {split: (name, None) for split, name in _SPLIT_LISTS.items()}
        files.update({"captions": (_TOKEN_FILE, None), "images": ("images", None)})
        return files

    def _download(self, dl_manager, urls):
        archives = dl_manager.download_and_extract(
            {
                "text": f"{_FLICKR8K_RELEASE}/Flickr8k_text.zip",
                "images": f"{_FLICKR8K_RELEASE}/Flickr8k_Dataset.zip",
            }
        )
        paths = {split: archives["text"] / name for split, name in _SPLIT_LISTS.items()}
        paths["captions"] = archives["text"] / _TOKEN_FILE
        paths["images"] = archives["images"] / "Flicker8k_Dataset"  # sic, upstream spelling
        return paths

    def _split_generators(self, dl_manager):
        paths = self._resolve_sources(dl_manager)
        captions = read_captions(paths["captions"])
        return {
            split: self._generate_examples(paths[split], paths["images"], captions)
            for split in _SPLIT_LISTS
        }

    def _generate_examples(self, split_list, image_folder, captions):
        # Images come from the split list: the token file also names images
        # that belong to no split (and are not shipped offline).
        names = [line.strip() for line in read_lines(split_list) if line.strip()]
        for index, name in enumerate(names):
            if len(captions.get(name, ())) != CAPTIONS_PER_IMAGE:
                raise ValueError(
                    f"{name}: expected {CAPTIONS_PER_IMAGE} captions, found {captions.get(name)}"
                )
            yield (
                index,
                {
                    "image": image_folder / name,
                    "image/filename": name,
                    "captions": captions[name],
                },
            )
