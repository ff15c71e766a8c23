"""The one fit loop and the one recipe runner every task uses.

`fit` wraps `model.fit` with what long CPU runs need: resume after a kill
(`BackupAndRestore`), early stopping that restores the best weights, a CSV
history and TensorBoard logs. `run_recipe` turns a recipe's CONFIG into a
trained, evaluated, saved model with a complete card, timing the whole run.

A recipe is a small Python file:

    CONFIG = dict(name="textcnn-trec", task="classification", dataset="trec", ...)
    if __name__ == "__main__":
        from zoo.training import run_recipe
        run_recipe(CONFIG)

and runs alone (`python recipes/textcnn_trec.py`) or through `zoo train`.

`run_fine_tune` (`zoo train --from NAME --data FILE`) adapts a saved model to
a user's file through its task's `fine_tune`, which trains with the same `fit`;
NAME is a pretrained name or any folder `save_pretrained` wrote.
"""

import argparse
import dataclasses
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras

from zoo import registry
from zoo.saving import machine_description, save_pretrained


@dataclasses.dataclass
class TrainResult:
    """What a task's `train` returns to the recipe runner."""

    model: keras.Model
    metrics: dict  # on the official test split
    data: str  # which data, which splits
    extra: dict = dataclasses.field(default_factory=dict)  # anything else for the card
    validation: dict = dataclasses.field(default_factory=dict)  # best epoch's val_* (tuning)


def best_epoch_metrics(history, monitor, mode="max"):
    """The validation metrics of the epoch where `monitor` was best (what early stopping kept)."""
    values = history.history.get(monitor) or []
    if not values:
        return {}
    pick = max if mode == "max" else min
    best = values.index(pick(values))
    return {k: float(v[best]) for k, v in history.history.items() if k.startswith("val_")}


def fit(model, train_data, val_data=None, *, epochs, run_dir, monitor="val_loss", mode="auto",
        patience=None, callbacks=(), verbose="auto"):
    """`model.fit` with resume, best-weights early stopping, CSV and TensorBoard logs."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    all_callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
        *callbacks,
    ]
    if patience is not None and val_data is not None:
        all_callbacks.append(keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=patience, restore_best_weights=True))
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    train_data, val_data = (_even_batches(d) for d in (train_data, val_data))
    return model.fit(train_data, validation_data=val_data, epochs=epochs,
                     callbacks=all_callbacks, verbose=verbose)


def reduce_lr_callbacks(config, monitor, mode="max"):
    """Halve the learning rate when `monitor` stalls for `config["reduce_lr_patience"]` epochs."""
    if not config.get("reduce_lr_patience"):
        return []
    return [keras.callbacks.ReduceLROnPlateau(monitor, factor=0.5, mode=mode,
                                              patience=config["reduce_lr_patience"],
                                              min_lr=1e-5, verbose=1)]


def _even_batches(dataset):
    """Under a multi-replica strategy, drop batches that would leave a replica empty."""
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1 or dataset is None or not isinstance(dataset, tf.data.Dataset):
        return dataset
    first = lambda batch, *rest: tf.nest.flatten(batch)[0]  # noqa: E731
    return dataset.filter(lambda *b: tf.shape(first(*b))[0] % replicas == 0)


def _git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=registry.REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def recipe_arguments(argv=None):
    parser = argparse.ArgumentParser(description="Train one zoo model from its recipe.")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run on a small real subset (seconds); saves to --output")
    parser.add_argument("--output", help="models folder (default: saved_models/, or a temp "
                        "folder with --smoke)")
    parser.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    parser.add_argument("--seed", type=int, help="override the recipe's seed")
    parser.add_argument("--batch-size", type=int, help="override the recipe's per-replica batch")
    parser.add_argument("--run-dir", help="where checkpoints/logs go (default runs/NAME)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="tf.distribute strategy; multi-worker reads TF_CONFIG")
    parser.add_argument("--cpu-replicas", type=int,
                        help="split the CPU into N logical devices (try mirrored without GPUs)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="mixed precision policy; output layers stay float32")
    parser.add_argument("--plot", help="save the learning curves (loss and metrics) to this PNG")
    return parser.parse_args(argv)


def plot_learning_curves(history_csv, path):
    """One panel per metric, training and validation together, from the run's history.csv."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(history_csv) as f:
        rows = list(csv.DictReader(f))
    names = [k for k in rows[0] if k not in ("epoch", "learning_rate") and not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    epochs = [int(r["epoch"]) + 1 for r in rows]
    for ax, name in zip(axes[0], names):
        ax.plot(epochs, [float(r[name]) for r in rows], marker="o", label="train")
        if f"val_{name}" in rows[0]:
            ax.plot(epochs, [float(r[f"val_{name}"]) for r in rows], marker="o", label="validation")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


STRATEGIES = ("default", "mirrored", "multi-worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def _patch_keras_for_strategies():
    """Two Keras 3.15 workarounds, applied only when a recipe asks for a strategy.

    1. Before building, Keras MEAN-reduces one distributed batch just to learn its
       shapes, which fails on string batches (our models take raw text): take the
       first replica's batch instead (same shapes and dtypes, no arithmetic).
    2. Under MultiWorkerMirroredStrategy it reduces the (scalar) logs with
       `axis=0`, which fails on scalars (tensorflow/tensorflow#72388): reduce
       them with `axis=None`.
    """
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_zoo_patched", False):
        return
    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = trainer.reduce_per_replica

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None or iterator is None:
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            batch = tf.nest.map_structure(
                lambda v: self.distribute_strategy.experimental_local_results(v)[0], next(it))
            break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    trainer._zoo_patched = True


def make_strategy(kind="default", cpu_replicas=None):
    """A tf.distribute strategy; create it before any other TensorFlow work."""
    import tensorflow as tf

    if kind != "default":
        _patch_keras_for_strategies()
    if cpu_replicas:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
    if kind == "mirrored":
        devices = None
        if cpu_replicas and not tf.config.list_physical_devices("GPU"):
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if kind == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief():
    """False on the non-chief workers of a multi-worker run (they must not write the model)."""
    import os

    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = tf_config.get("task", {})
    return task.get("type", "chief") == "chief" or (
        task.get("type") == "worker" and task.get("index", 0) == 0
        and "chief" not in tf_config.get("cluster", {}))


def run_recipe(config, argv=None):
    """Train, evaluate and save the model a recipe describes; returns the card."""
    args = recipe_arguments(argv)
    config = dict(config)
    if args.smoke:
        config = smoke_config(config)
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if args.seed is not None:
        config["seed"] = args.seed
    if args.batch_size is not None:
        config["batch_size"] = args.batch_size
    name = config["name"]
    if args.smoke and not args.output:
        args.output = tempfile.mkdtemp(prefix="zoo-smoke-")
    output = Path(args.output) if args.output else registry.models_dir()
    run_dir = Path(args.run_dir or registry.REPO_ROOT / "runs" / name)
    if args.smoke:
        run_dir = output / "runs" / name
    strategy = make_strategy(args.strategy, args.cpu_replicas)
    keras.mixed_precision.set_global_policy(args.precision)
    keras.utils.set_random_seed(config.get("seed", 0))
    # Each replica sees the recipe's batch size: the global batch scales with replicas.
    config["batch_size"] = config.get("batch_size", 32) * strategy.num_replicas_in_sync
    if not is_chief():
        output, run_dir = Path(tempfile.mkdtemp(prefix="zoo-worker-")), run_dir / "worker"

    started = time.perf_counter()
    with strategy.scope():
        result = registry.get_task(config["task"]).train(config, run_dir=run_dir, smoke=args.smoke)
    wall_time = time.perf_counter() - started

    recipe_file = str(config.get("recipe_file", f"{name.replace('-', '_')}.py"))
    command = f"zoo train {recipe_file if '/' in recipe_file else 'recipes/' + recipe_file}"
    card = dict(
        name=name,
        task=config["task"],
        architecture=config.get("architecture"),
        metrics=result.metrics,
        recipe=command + (" --smoke" if args.smoke else ""),
        data=result.data,
        seed=config.get("seed", 0),
        config={k: v for k, v in config.items() if k not in ("name", "task")},
        trained_on=machine_description(),
        wall_time_s=round(wall_time, 1),
        commit=_git_commit(),
        smoke=args.smoke,
        strategy=f"{args.strategy} ({strategy.num_replicas_in_sync} replicas)",
        precision=args.precision,
        **result.extra,
    )
    card = save_pretrained(result.model, output / name, card)
    if args.plot and (run_dir / "history.csv").exists():
        plot_learning_curves(run_dir / "history.csv", args.plot)
    print(json.dumps({"name": name, "metrics": result.metrics, "wall_time_s": card["wall_time_s"],
                      "saved": str(output / name)}, indent=2))
    return card


def smoke_config(config):
    """The recipe's `smoke` overrides merged in (nested `model` dicts are merged too)."""
    overrides = dict(config.get("smoke", {}))
    merged = {**config, **overrides}
    merged["model"] = {**config.get("model", {}), **overrides.get("model", {})}
    merged.setdefault("epochs", 3)
    merged["epochs"] = overrides.get("epochs", 3)
    return merged


def run_recipe_file(path_or_name, argv=None):
    """`zoo train RECIPE`: a model recipe's CONFIG, a fine-tuning CONFIG (one naming a
    `base_model`), or a recipe script's own `main`."""
    module = _import_recipe(path_or_name)
    config = getattr(module, "CONFIG", {})
    if "base_model" in config:  # a fine-tuning config, e.g. `zoo tune --from`'s best_recipe.py
        return run_fine_tune(fine_tune_command(config) + list(argv or []))
    if "task" in config:
        return run_recipe(load_recipe(path_or_name), argv)
    return module.main(argv)


def _import_recipe(path_or_name):
    path = Path(path_or_name)
    if not path.exists():
        candidate = registry.REPO_ROOT / "recipes" / f"{path_or_name.replace('-', '_')}.py"
        if not candidate.exists():
            known = sorted(p.stem for p in (registry.REPO_ROOT / "recipes").glob("*.py"))
            raise FileNotFoundError(f"No recipe {path_or_name!r}. Known recipes: {', '.join(known)}")
        path = candidate
    spec = importlib.util.spec_from_file_location(f"zoo_recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.recipe_path = path
    return module


def load_recipe(path_or_name):
    """Import a recipe file (path, or name under recipes/) and return its CONFIG."""
    module = _import_recipe(path_or_name)
    config = dict(module.CONFIG)
    config.setdefault("recipe_file", module.recipe_path.name)
    return config


def fine_tune_arguments(argv=None):
    parser = argparse.ArgumentParser(prog="zoo train --from NAME",
                                     description="Fine-tune a pretrained model on your data.")
    parser.add_argument("--from", dest="source", required=True,
                        help="pretrained model name, or a folder with model.keras and card.json")
    parser.add_argument("--data", required=True, help=(
        "your data: classification CSV/TSV (text,label); tagging CoNLL; translation "
        "SRC_FILE,TGT_FILE (line-aligned) or a TSV (source<TAB>target); captioning a folder "
        "of images with captions.tsv (image<TAB>caption), or that captions file"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--holdout", type=float, default=0.2,
                        help="fraction of the file scored before and after, never trained on")
    parser.add_argument("--extend-vocabulary", action="store_true",
                        help="add the file's new words (seen twice or more) to the vocabulary")
    parser.add_argument("--freeze-encoder", action="store_true",
                        help="train only the layers after the encoder (see the task's fine_tune)")
    parser.add_argument("--dropout", type=float, help="replace the model's dropout rate")
    parser.add_argument("--output", help="models folder (default saved_models/)")
    parser.add_argument("--name", help="name of the fine-tuned model (default NAME-finetuned)")
    return parser.parse_args(argv)


def base_model_info(source):
    """(task, architecture, folder) of a pretrained name or of a saved model folder.

    A folder is anything `save_pretrained` wrote (a recipe's output, an earlier
    fine-tuning, a search's best_model): its card names the task.
    """
    from zoo.saving import read_card

    path = Path(source)
    if path.is_dir():
        card = read_card(path)
        if "task" not in card:
            raise ValueError(f"{path / 'card.json'} names no task: cannot tell how to fine-tune it")
        return card["task"], card.get("architecture"), path
    spec = registry.get_pretrained(source)
    if not spec.is_trained:
        raise FileNotFoundError(f"{source} has no weights at {spec.directory}. Train it with: "
                                f"zoo train {spec.recipe}")
    return spec.task, spec.architecture, spec.directory


def fine_tune_config(source, data, epochs=3, learning_rate=1e-4, holdout=0.2,
                     extend_vocabulary=False, freeze_encoder=False, dropout=None, name=None):
    """A fine-tuning run as a config dict: what `run_fine_tune` runs and `zoo tune --from` varies."""
    task, architecture, _ = base_model_info(source)
    is_folder = Path(source).is_dir()
    base_name = Path(source).resolve().name if is_folder else source
    return dict(name=name or f"{base_name}-finetuned", task=task, architecture=architecture,
                base_model=str(Path(source).resolve()) if is_folder else source, data=str(data),
                epochs=epochs, learning_rate=learning_rate, holdout=holdout,
                extend_vocabulary=extend_vocabulary, freeze_encoder=freeze_encoder,
                dropout=dropout)


def fine_tune_command(config):
    """The `zoo train --from ...` arguments that rerun a fine-tuning config."""
    argv = ["--from", config["base_model"], "--data", config["data"], "--name", config["name"],
            "--epochs", str(config["epochs"]), "--learning-rate", str(config["learning_rate"]),
            "--holdout", str(config["holdout"])]
    if config.get("dropout") is not None:
        argv += ["--dropout", str(config["dropout"])]
    argv += ["--extend-vocabulary"] * bool(config.get("extend_vocabulary"))
    return argv + ["--freeze-encoder"] * bool(config.get("freeze_encoder"))


def with_dropout(model, rate):
    """A copy of a zoo task model with its `dropout` rate replaced and the same weights."""
    config = model.get_config()
    if "dropout" not in config:
        raise ValueError(f"{type(model).__name__} has no dropout setting to change")
    copy = type(model).from_config({**config, "dropout": rate})
    copy.set_weights(model.get_weights())
    return copy


def holdout_split(items, fraction, seed=0):
    """(kept, held out) after a seeded shuffle; at least one item is held out."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(items))
    cut = len(items) - max(1, round(len(items) * fraction))
    return [items[i] for i in order[:cut]], [items[i] for i in order[cut:]]


def copy_weights_growing_vocabulary(source, target, grown_layers):
    """Copy every layer's weights from `source` into the same-named layer of `target`.

    `target` was built with a longer vocabulary (new entries appended, so old ids
    keep their meaning). Layers named in `grown_layers` get extra entries: an
    Embedding keeps its rows and gains small random ones; an output Dense keeps
    its columns and gains small random ones whose bias is the lowest old bias, so
    new words start unlikely and the grown model first behaves like the old one.
    Nested models (a captioner's decoder) are copied layer by layer too.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    for layer in source.layers:
        twin = target.get_layer(layer.name)
        if isinstance(layer, keras.Model):
            copy_weights_growing_vocabulary(layer, twin, grown_layers)
        elif layer.name in grown_layers:
            twin.set_weights(_grown(layer, twin, rng))
        else:
            twin.set_weights(layer.get_weights())


def _grown(layer, twin, rng):
    """`layer`'s weights with the entries `twin` has in addition appended."""
    import numpy as np

    old = layer.get_weights()
    is_embedding = isinstance(layer, keras.layers.Embedding)
    axis = 0 if is_embedding else 1  # embedding rows, output kernel columns
    added = twin.get_weights()[0].shape[axis] - old[0].shape[axis]
    shape = (added, old[0].shape[1]) if is_embedding else (old[0].shape[0], added)
    grown = [np.concatenate([old[0], rng.uniform(-0.05, 0.05, shape).astype(old[0].dtype)], axis)]
    if not is_embedding:
        grown.append(np.concatenate([old[1], np.full(added, old[1].min(), old[1].dtype)]))
    return grown


def fine_tune(config, run_dir):
    """Run the base model's task `fine_tune` on `config["data"]`; returns a `TrainResult`.

    Every task's `fine_tune` reports one score before and after (`holdout_X_before`,
    `holdout_X`); `validation` carries it, also as `holdout_score`, the objective of
    `zoo tune --from`.
    """
    from zoo.saving import load_pretrained

    task, _, folder = base_model_info(config["base_model"])
    handler = registry.get_task(task)
    if handler.fine_tune is None:
        raise ValueError(f"Fine-tuning is not available for {task} models yet.")
    model = load_pretrained(folder)
    if config.get("dropout") is not None:
        model = with_dropout(model, config["dropout"])
    model, metrics = handler.fine_tune(
        model, config["data"], run_dir=run_dir, epochs=config["epochs"],
        learning_rate=config["learning_rate"], holdout=config["holdout"],
        extend=config.get("extend_vocabulary", False),
        freeze_encoder=config.get("freeze_encoder", False))
    scores = {key: metrics[key] for key in metrics if f"{key}_before" in metrics}
    return TrainResult(
        model=model, metrics=metrics,
        data=f"{config['data']} ({round(100 * config['holdout'])}% held out for scoring)",
        validation={**scores, "holdout_score": next(iter(scores.values()))})


_FINE_TUNE_SETTINGS = ("epochs", "learning_rate", "holdout", "extend_vocabulary",
                       "freeze_encoder", "dropout")


def run_fine_tune(argv=None):
    """`zoo train --from NAME --data FILE`: fine-tune, score a held-out part, save with a card."""
    args = fine_tune_arguments(argv)
    output = Path(args.output) if args.output else registry.models_dir()
    config = fine_tune_config(**{k: v for k, v in vars(args).items() if k != "output"})
    name = config["name"]
    started = time.perf_counter()
    result = fine_tune(config, run_dir=output / "runs" / name)
    card = save_pretrained(result.model, output / name, dict(
        name=name, task=config["task"], architecture=config["architecture"],
        base_model=config["base_model"], metrics=result.metrics,
        recipe="zoo train " + " ".join(argv if argv is not None else sys.argv[1:]),
        data=result.data, config={k: config[k] for k in _FINE_TUNE_SETTINGS},
        trained_on=machine_description(), wall_time_s=round(time.perf_counter() - started, 1)))
    print(json.dumps({"name": name, "metrics": result.metrics, "saved": str(output / name)},
                     indent=2))
    return card
