"""Decoding with and without dropping finished sentences from the batch, side by side.

`greedy_search` and `beam_search` given `constants` drop the sentences that
are done (`zoo.decoding._without_done_sentences`). This times `translate`
both ways on a translator's test sentences, in its default batches of 64,
and checks that the translations are the same:

    .venv/bin/python -m benchmarks.decoding_compaction [--model NAME] [--sentences 512]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import zoo
from benchmarks import models, timing
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="translate-gru-attention-multi30k-en-de")
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args(argv)
    texts = models.translation_sources(registry.get_pretrained(args.model), args.sentences)
    variants = {"all rows to the end": translator(args.model, False),
                "done sentences leave": translator(args.model, True)}
    for beam_size in (1, 5):
        outputs = {name: m.translate(texts, beam_size=beam_size) for name, m in variants.items()}
        same = sum(a == b for a, b in zip(*outputs.values()))
        runs = {name: (lambda m=m: m.translate(texts, beam_size=beam_size))
                for name, m in variants.items()}
        seconds = {name: t["seconds"] for name, t in
                   timing.interleaved(runs, args.repetitions, min_seconds=0.0).items()}
        base = seconds["all rows to the end"]
        print(f"{args.model}, beam {beam_size}, {len(texts)} sentences: "
              f"{same} of {len(texts)} translations the same")
        for name, value in seconds.items():
            print(f"  {name:22s} {value:7.3f} s  {base / value:5.2f}x")


if __name__ == "__main__":
    main()
