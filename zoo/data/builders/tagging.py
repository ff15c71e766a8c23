"""Sequence-labelling datasets: ATIS, SNIPS, CoNLL-2003 and UD English-LinES.

Tags stay strings (`Sequence(Text())`): test splits hold tags and intents never
seen in training, so the label vocabulary belongs to the model (with an UNK
entry), not to the dataset.
"""

import tensorflow_datasets as tfds

from zoo.data.builders.base import ZooBuilder, read_lines

_SLOT_GATED_SLU = (
    "https://raw.githubusercontent.com/MiuLab/SlotGated-SLU/"
    "61f0307c729b1fad479ef1de94aa5ac5dee601b0/data"
)
_SLU_SPLIT_FOLDERS = {"train": "train", "validation": "valid", "test": "test"}
_SLU_FILES = ("seq.in", "seq.out", "label")


def _tags():
    return tfds.features.Sequence(tfds.features.Text())


class _SlotFilling(ZooBuilder, skip_registration=True):
    """Joint slot filling + intent detection in the SlotGated-SLU layout.

    Features: `tokens` (words), `slots` (one BIO tag per token), `intent`
    (string; ATIS multi-intents are joined with "#").
    """

    CITATION = ""
    DESCRIPTION = ""

    def _info(self):
        return self._zoo_info(
            features={"tokens": _tags(), "slots": _tags(), "intent": tfds.features.Text()},
            description=self.DESCRIPTION,
            homepage="https://github.com/MiuLab/SlotGated-SLU",
            citation=self.CITATION,
        )

    def _source_files(self, config):
        return {
            f"{split}/{name}": (
                f"{folder}/{name}",
                f"{_SLOT_GATED_SLU}/{self.FOLDER}/{folder}/{name}",
            )
            for split, folder in _SLU_SPLIT_FOLDERS.items()
            for name in _SLU_FILES
        }

    def _split_generators(self, dl_manager):
        paths = self._resolve_sources(dl_manager)
        return {
            split: self._generate_examples(*(paths[f"{split}/{name}"] for name in _SLU_FILES))
            for split in _SLU_SPLIT_FOLDERS
        }

    def _generate_examples(self, tokens_path, slots_path, intents_path):
        token_lines = read_lines(tokens_path)
        slot_lines = read_lines(slots_path)
        intents = read_lines(intents_path)
        if not len(token_lines) == len(slot_lines) == len(intents):
            raise ValueError(f"{tokens_path.parent}: seq.in, seq.out and label differ in length.")
        for index, (words, slots, intent) in enumerate(zip(token_lines, slot_lines, intents)):
            # str.split(): some SNIPS lines end with a space.
            tokens, tags = words.split(), slots.split()
            if len(tokens) != len(tags):
                raise ValueError(
                    f"{tokens_path}: line {index + 1} has {len(tokens)} tokens, {len(tags)} tags."
                )
            yield index, {"tokens": tokens, "slots": tags, "intent": intent.strip()}


class Atis(_SlotFilling, skip_registration=True):
    """ATIS airline-travel queries (Goo et al. 2018 split): 4,478 / 500 / 893."""

    name = "atis"
    FOLDER = "atis"
    DESCRIPTION = "ATIS spoken queries, lowercased, with BIO slot tags and intents."
    CITATION = (
        "Hemphill, Godfrey, Doddington (1990). The ATIS Spoken Language Systems Pilot Corpus."
    )


class Snips(_SlotFilling, skip_registration=True):
    """SNIPS voice-assistant queries (Goo et al. 2018 split): 13,084 / 700 / 700."""

    name = "snips"
    FOLDER = "snips"
    DESCRIPTION = "SNIPS voice-assistant queries with BIO slot tags and 7 intents."
    CITATION = "Coucke et al. (2018). Snips Voice Platform. arXiv:1805.10190."


_CONLL_NER = (
    "https://raw.githubusercontent.com/suryasumukh/conll-ner/"
    "18d3e43a09247adaa9ec088485a087d5ffa758a6/data"
)


def _blank_line_blocks(lines):
    """Groups of consecutive non-blank lines."""
    block = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


class Conll2003(ZooBuilder, skip_registration=True):
    """CoNLL-2003 English NER, laid out like TFDS `conll2003`.

    Features: `tokens`, `pos` (Penn tags), `chunks`, `ner`, all string
    sequences (TFDS stores ClassLabel ids of the same names). `ner` keeps the
    file's original IOB1 tags. Splits: train / dev / test = eng.train / testa / testb.
    """

    name = "conll2003"
    FOLDER = "conll2003"
    SPLITS = ("train", "dev", "test")
    _FILES = (("train", "eng.train"), ("dev", "eng.testa"), ("test", "eng.testb"))
    _COLUMNS = ("tokens", "pos", "chunks", "ner")

    def _info(self):
        return self._zoo_info(
            features={column: _tags() for column in self._COLUMNS},
            description="CoNLL-2003 English NER (Reuters), original IOB1 tags.",
            homepage="https://www.clips.uantwerpen.be/conll2003/ner/",
            citation="Tjong Kim Sang & De Meulder (2003). Introduction to the CoNLL-2003 Shared Task.",
        )

    def _source_files(self, config):
        return {split: (f"{file}.gz", f"{_CONLL_NER}/{file}") for split, file in self._FILES}

    def _split_generators(self, dl_manager):
        paths = self._resolve_sources(dl_manager)
        return {split: self._generate_examples(paths[split]) for split in self.SPLITS}

    def _generate_examples(self, path):
        sentences = (
            b for b in _blank_line_blocks(read_lines(path)) if not b[0].startswith("-DOCSTART-")
        )
        for index, block in enumerate(sentences):
            columns = zip(*(line.split(" ") for line in block))
            yield index, dict(zip(self._COLUMNS, map(list, columns)))


_UD_LINES = (
    "https://raw.githubusercontent.com/UniversalDependencies/UD_English-LinES/"
    "30927439b9d383d21d0c86e647ba493cd89adf8c"
)


class UdEnglishLines(ZooBuilder, skip_registration=True):
    """Universal Dependencies English-LinES (CoNLL-U) for POS tagging.

    Features: `text` (the sentence's `# text`), `tokens` (FORM), `upos` (17
    universal tags), `xpos` (language-specific tags, "_" where absent).
    Multiword-token and empty-node lines are skipped. Splits: train / dev / test.
    """

    name = "ud_english_lines"
    FOLDER = "ud_english_lines"
    SPLITS = ("train", "dev", "test")

    def _info(self):
        return self._zoo_info(
            features={
                "text": tfds.features.Text(),
                "tokens": _tags(),
                "upos": _tags(),
                "xpos": _tags(),
            },
            description="UD English-LinES treebank (literature, manuals, Europarl), CC BY-NC-SA 4.0.",
            homepage="https://universaldependencies.org/treebanks/en_lines/",
            citation="Ahrenberg (2007). LinES: An English-Swedish Parallel Treebank. NODALIDA.",
        )

    def _source_files(self, config):
        return {
            split: (f"en_lines-ud-{split}.conllu.gz", f"{_UD_LINES}/en_lines-ud-{split}.conllu")
            for split in self.SPLITS
        }

    def _split_generators(self, dl_manager):
        paths = self._resolve_sources(dl_manager)
        return {split: self._generate_examples(paths[split]) for split in self.SPLITS}

    def _generate_examples(self, path):
        for index, block in enumerate(_blank_line_blocks(read_lines(path))):
            text = next((c.split("=", 1)[1].strip() for c in block if c.startswith("# text =")), "")
            rows = [line.split("\t") for line in block if not line.startswith("#")]
            words = [row for row in rows if "-" not in row[0] and "." not in row[0]]
            yield (
                index,
                {
                    "text": text,
                    "tokens": [row[1] for row in words],
                    "upos": [row[3] for row in words],
                    "xpos": [row[4] for row in words],
                },
            )
