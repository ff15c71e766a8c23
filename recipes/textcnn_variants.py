"""Kim's four text-CNN variants on TREC and SST-2, measured side by side.

    python recipes/textcnn_variants.py [--datasets trec sst2] [--smoke]

Each variant runs the shipped recipe (recipes/textcnn_trec.py, textcnn_sst2.py)
with only `model.variant` changed: rand (embeddings from scratch), static (the
zoo's skip-gram vectors, frozen), non-static (fine-tuned) and multichannel (both).
Test accuracies go into the shipped model's card under `variants`, with Kim's
(2014) published numbers beside them; the trained variants are not kept.
"""

import argparse
import json
import tempfile

from zoo import registry
from zoo.saving import read_card, write_json_atomic
from zoo.training import load_recipe, smoke_config

KIM_2014 = {  # Table 2; Kim's SST-2 models also trained on phrase-level labels
    "trec": {"rand": 91.2, "static": 92.8, "non-static": 93.6, "multichannel": 92.2},
    "sst2": {"rand": 82.7, "static": 86.8, "non-static": 87.2, "multichannel": 88.1},
}


def measure(dataset, smoke=False):
    config = load_recipe(f"textcnn_{dataset}")
    if smoke:
        config = smoke_config(config)
    results = {}
    for variant in KIM_2014[dataset]:
        run = dict(config, model=dict(config["model"], variant=variant), seed=0)
        result = registry.get_task("classification").train(
            run, run_dir=tempfile.mkdtemp(prefix=f"variant-{variant}-"), smoke=smoke)
        results[variant] = {"zoo": result.metrics["accuracy"], "kim_2014": KIM_2014[dataset][variant]}
        print(json.dumps({dataset: {variant: results[variant]}}), flush=True)
    return results


def main(argv=None):
    import keras

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["trec", "sst2"])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    for dataset in args.datasets:
        keras.utils.set_random_seed(0)
        results = measure(dataset, args.smoke)
        spec = registry.get_pretrained(f"textcnn-{dataset}")
        if not args.smoke and spec.is_trained:
            card = read_card(spec.directory)
            card["variants"] = dict(results, command="python recipes/textcnn_variants.py")
            write_json_atomic(card, spec.directory / "card.json")


if __name__ == "__main__":
    main()
