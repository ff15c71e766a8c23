"""End-to-end throughput of the pretrained models in saved_models/, through their public API.

Each model is timed as a user calls it (raw strings / windows / image paths in,
readable results out), with its stock layers and, side by side, as a copy whose
LSTM/GRU run `zoo.layers.fast_recurrent` (same weights). Inputs are the
task's shipped examples (`TaskHandler.examples`), repeated to `count` items;
translators get the first `count` source sentences of their test split
instead, because decoding time follows output length and their three shipped
examples translate to at most 9 words.
"""

import itertools
import traceback

import numpy as np

import zoo
from zoo import registry
from zoo.layers import fast_recurrent, iter_recurrent_layers


# Translation is also timed one sentence per call (interactive use), on this many sentences.
ONE_BY_ONE_ITEMS = 32

# The workload each translation workload's cost is read against: beam 5 against greedy
# search at the same batching ("beam-5 costs 5x greedy per sentence").
COST_BASE = {"beam-5": "greedy", "beam-5, batch 1": "greedy, batch 1"}


def _repeat(items, count):
    return list(itertools.islice(itertools.cycle(items), count))


def _forecast_windows(model, count, seed=0):
    """Windows in raw units around the training-period mean and spread."""
    rng = np.random.default_rng(seed)
    mean = np.asarray(model.feature_mean, np.float32)
    std = np.sqrt(np.asarray(model.feature_variance, np.float32))
    noise = rng.standard_normal((count, model.window, model.num_features)).astype(np.float32)
    return mean + std * noise


def translation_sources(spec, count):
    """The first `count` source sentences of a translator's test split (cycled if fewer)."""
    from zoo.tasks import translation

    sources, _ = translation.load_pairs(spec.dataset, "test", *translation.languages(spec))
    return _repeat(sources, count)


def translator_parser(description, sentences):
    """The command line of the translation probes: `--model`, `--sentences`."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="translate-gru-attention-multi30k-en-de")
    parser.add_argument("--sentences", type=int, default=sentences)
    return parser


def translator_and_sources(args):
    """The translator `args.model` and the first `args.sentences` source sentences of its test."""
    model = zoo.load(args.model)
    return model, translation_sources(registry.get_pretrained(args.model), args.sentences)


def compare_translations(title, runs, texts, repetitions, references=None):
    """Prints how `runs` ({name: texts -> translations}) agree and their interleaved times.

    The first run is the base: each other's translations are compared with its
    and its time divided into the others'. With `references`, also each run's
    corpus BLEU. Returns {name: median seconds per call}.
    """
    from benchmarks import timing
    from zoo.metrics import corpus_bleu

    outputs = {name: run(texts) for name, run in runs.items()}
    base_name, base_output = next(iter(outputs.items()))
    seconds = {name: t["seconds"] for name, t in timing.interleaved(
        {name: (lambda run=run: run(texts)) for name, run in runs.items()},
        repetitions, min_seconds=0.0).items()}
    print(f"{title}, {len(texts)} sentences:")
    for name, value in seconds.items():
        same = sum(a == b for a, b in zip(base_output, outputs[name]))
        bleu = (f"  BLEU {corpus_bleu(outputs[name], references)['bleu']:.2f}"
                if references is not None else "")
        print(f"  {name:26s} {value:7.3f} s  {seconds[base_name] / value:5.2f}x  "
              f"{same} of {len(texts)} as {base_name!r}{bleu}")
    return seconds


def workloads(spec, model, count):
    """{label: (callable(model) -> results, items per call)} for the model's task.

    Tasks without a known public API (or not yet written) give {}.
    """
    examples = registry.get_task(spec.task).examples(spec) if spec.task in registry._TASKS else []
    texts = _repeat([str(e) for e in examples], count) if examples else []
    if spec.task == "classification":
        return {"predict": (lambda m: m.predict(texts), count)}
    if spec.task == "tagging":
        return {"tag": (lambda m: m.tag(texts), count)}
    if spec.task == "language_model":
        return {"score": (lambda m: m.score(texts), count)}
    if spec.task == "translation":
        texts = translation_sources(spec, count)
        one_by_one = texts[:ONE_BY_ONE_ITEMS]
        return {"greedy": (lambda m: m.translate(texts, beam_size=1), count),
                "beam-5": (lambda m: m.translate(texts, beam_size=5), count),
                "greedy, batch 1": (lambda m: m.translate(one_by_one, beam_size=1, batch_size=1),
                                    len(one_by_one)),
                "beam-5, batch 1": (lambda m: m.translate(one_by_one, beam_size=5, batch_size=1),
                                    len(one_by_one))}
    if spec.task == "captioning" or hasattr(model, "caption"):
        return {"caption": (lambda m: m.caption(texts), count)}
    if spec.task == "forecasting":
        windows = _forecast_windows(model, count)
        return {"forecast": (lambda m: m.forecast(windows), count)}
    return {}


def _variants(model):
    """{"stock": model, "zoo fast": copy with fast kernels}.

    The fast copy is omitted for models without LSTM/GRU layers (it would be
    the same model) and when it cannot be built (the error is printed).
    """
    variants = {"stock": model}
    if not list(iter_recurrent_layers(model)):
        return variants
    try:
        variants["zoo fast"] = fast_recurrent.fast_cpu_model(model)
    except Exception as error:  # noqa: BLE001  (report it, keep measuring the stock model)
        print(f"  fast copy failed: {type(error).__name__}: {error}")
    return variants


def candidates_for(spec, count):
    """{(workload, variant): (callable, items per call)} for one pretrained model."""
    model = zoo.load(spec.name)
    runs = {}
    variants = _variants(model)
    for label, (call, items) in workloads(spec, model, count).items():
        for variant, instance in variants.items():
            runs[(label, variant)] = (lambda call=call, m=instance: call(m), items)
    return runs


def trained_specs(names=None):
    specs = [registry.get_pretrained(row["name"]) for row in zoo.list_models(trained_only=True)]
    return [s for s in specs if not names or s.name in names]


def safe_candidates(spec, count):
    try:
        return candidates_for(spec, count), None
    except Exception as error:  # noqa: BLE001  (one broken model must not stop the others)
        traceback.print_exc()
        return {}, f"{type(error).__name__}: {error}"
