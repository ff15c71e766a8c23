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
"""

import argparse
import dataclasses
import importlib.util
import json
import subprocess
import sys
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
    return model.fit(train_data, validation_data=val_data, epochs=epochs,
                     callbacks=all_callbacks, verbose=verbose)


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
    parser.add_argument("--run-dir", help="where checkpoints/logs go (default runs/NAME)")
    return parser.parse_args(argv)


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
    name = config["name"]
    if args.smoke and not args.output:
        import tempfile

        args.output = tempfile.mkdtemp(prefix="zoo-smoke-")
    output = Path(args.output) if args.output else registry.models_dir()
    run_dir = Path(args.run_dir or registry.REPO_ROOT / "runs" / name)
    if args.smoke:
        run_dir = output / "runs" / name
    keras.utils.set_random_seed(config.get("seed", 0))

    started = time.perf_counter()
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
        **result.extra,
    )
    card = save_pretrained(result.model, output / name, card)
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


def load_recipe(path_or_name):
    """Import a recipe file (path, or name under recipes/) and return its CONFIG."""
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
    config = dict(module.CONFIG)
    config.setdefault("recipe_file", path.name)
    return config
