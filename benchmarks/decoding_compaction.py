"""Decoding with and without dropping finished sentences from the batch, side by side.

`greedy_search` and `beam_search` given `constants` drop the sentences that
are done (`zoo.decoding._without_done_sentences`). This times `translate`
both ways on a translator's test sentences, in its default batches of 64,
and checks that the translations are the same:

    .venv/bin/python -m benchmarks.decoding_compaction [--model NAME] [--sentences 512]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import zoo
from benchmarks import models
from zoo import decoding, registry


def translator(name, compact):
    """A freshly loaded translator whose decoders were traced with or without dropping."""
    model = zoo.load(name)
    saved = decoding._MIN_DONE_FRACTION
    decoding._MIN_DONE_FRACTION = saved if compact else 2.0  # above 1: never worth it
    try:
        for beam_size in (1, 5):
            model.translate(["A warm-up sentence ."], beam_size=beam_size)  # traces
    finally:
        decoding._MIN_DONE_FRACTION = saved
    return model


def main(argv=None):
    parser = models.translator_parser(__doc__.split("\n")[0], sentences=512)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args(argv)
    texts = models.translation_sources(registry.get_pretrained(args.model), args.sentences)
    variants = {"all rows to the end": translator(args.model, False),
                "done sentences leave": translator(args.model, True)}
    for beam_size in (1, 5):
        runs = {name: (lambda texts, m=m: m.translate(texts, beam_size=beam_size))
                for name, m in variants.items()}
        models.compare_translations(f"{args.model}, beam {beam_size}", runs, texts,
                                    args.repetitions)


if __name__ == "__main__":
    main()
