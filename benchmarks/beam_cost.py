"""Beam 5's cost per sentence over greedy search's, against `translate`'s sentences per call.

    .venv/bin/python -m benchmarks.beam_cost [--model NAME] [--sentences 256]
        [--batch-sizes 1,4,16,64,256] [--repetitions 3] [--plot PNG]

For each batch size, times `translate` on a translator's first `--sentences`
test sentences (`--sentences` or 32 at batch size 1, one sentence per call)
with beam 5 and with greedy search, interleaved (`benchmarks.timing`), and
prints seconds per sentence for each and beam 5's over greedy's: where the
2.5x of the issue's target holds. `--plot` draws the ratio against the batch
size, the target dashed.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import models, timing

TARGET = 2.5
ONE_BY_ONE_SENTENCES = 32


def measure(model, sources, batch_sizes, repetitions):
    """{batch size: {"greedy": s per sentence, "beam 5": s per sentence}}."""
    per_sentence = {}
    for batch_size in batch_sizes:
        texts = sources[:ONE_BY_ONE_SENTENCES] if batch_size == 1 else sources
        runs = {search: (lambda beam=beam: model.translate(texts, beam_size=beam,
                                                           batch_size=batch_size))
                for search, beam in (("greedy", 1), ("beam 5", 5))}
        seconds = timing.interleaved(runs, repetitions, min_seconds=0.0)
        per_sentence[batch_size] = {search: t["seconds"] / len(texts)
                                    for search, t in seconds.items()}
    return per_sentence


def plot(per_sentence, title, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(per_sentence)
    ratios = [per_sentence[b]["beam 5"] / per_sentence[b]["greedy"] for b in sizes]
    figure, axes = plt.subplots(figsize=(6, 3.6))
    axes.plot(sizes, ratios, "o-", label="beam 5 / greedy, per sentence")
    axes.axhline(TARGET, linestyle="--", color="gray", label=f"target {TARGET}x")
    axes.set_xscale("log", base=2)
    axes.set_xticks(sizes, [str(b) for b in sizes])
    axes.set_xlabel("sentences per `translate` call")
    axes.set_ylabel("cost over greedy")
    axes.set_ylim(0, max(ratios + [TARGET]) * 1.15)
    axes.set_title(title, fontsize=9)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None):
    import zoo
    from zoo import registry

    parser = models.translator_parser(__doc__.split("\n")[0], sentences=256)
    parser.add_argument("--batch-sizes", default="1,4,16,64,256")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--plot", metavar="PNG", help="also draw the ratios")
    args = parser.parse_args(argv)
    spec = registry.get_pretrained(args.model)
    sources = models.translation_sources(spec, args.sentences)
    model = zoo.load(args.model)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    per_sentence = measure(model, sources, batch_sizes, args.repetitions)
    print(f"{args.model}, {args.sentences} test sentences ({ONE_BY_ONE_SENTENCES} at batch 1), "
          "ms per sentence (median of interleaved calls):")
    print(f"  {'per call':>8s} {'greedy':>8s} {'beam 5':>8s}  beam 5 / greedy")
    for batch_size, times in per_sentence.items():
        ratio = times["beam 5"] / times["greedy"]
        print(f"  {batch_size:8d} {times['greedy'] * 1e3:8.2f} {times['beam 5'] * 1e3:8.2f}  "
              f"{ratio:5.2f}x{'' if ratio <= TARGET else '  (over ' + str(TARGET) + 'x)'}")
    if args.plot:
        plot(per_sentence, f"{args.model}: beam 5 against greedy per sentence", args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
