"""Beam search's exact and heuristic stopping rules on a translator, side by side.

`beam_search(stopping="exact")` runs a sentence until no live hypothesis could
still win at any length up to `max_length`; `"heuristic"` bounds a live
hypothesis as if it ended at the next step (see `zoo.decoding.beam_search`).
This times `translate` (beam 5, batches of 64) with each rule, and greedy
search for scale, on a translator's whole test split, and prints how many
translations agree with the exact rule's and each corpus BLEU:

    .venv/bin/python -m benchmarks.beam_stopping [--model NAME] [--sentences 1000]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import zoo
from benchmarks import models
from zoo import registry
from zoo.tasks import translation


def main(argv=None):
    parser = models.translator_parser(__doc__.split("\n")[0], sentences=1000)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args(argv)
    spec = registry.get_pretrained(args.model)
    sources, references = translation.load_pairs(spec.dataset, "test",
                                                 *translation.languages(spec))
    sources, references = sources[: args.sentences], references[: args.sentences]
    model = zoo.load(args.model)
    runs = {"beam 5, exact": lambda texts: model.translate(texts, stopping="exact"),
            "beam 5, heuristic": lambda texts: model.translate(texts, stopping="heuristic"),
            "greedy": lambda texts: model.translate(texts, beam_size=1)}
    models.compare_translations(args.model, runs, sources, args.repetitions, references)


if __name__ == "__main__":
    main()
