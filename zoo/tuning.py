"""keras-tuner glue shared by every task: one recipe in, a tuned recipe and model out.

A search is a recipe CONFIG plus a search space: a map from config keys
("learning_rate", or "model.units" for the model's constructor) to ranges:

    [64, 128, 256]          -> hp.Choice
    [False, True]           -> hp.Boolean
    (1, 3)                  -> hp.Int(min, max)
    (0.0, 0.5, 0.1)         -> hp.Float with a step (hp.Int if all ints)
    (1e-4, 1e-2, "log")     -> hp.Float with log sampling

Every architecture registers a default space; a recipe may override it with
`search_space=...`. Each trial runs the task's own `train` (the same code a
recipe runs, so there is no second training loop), reporting the best
epoch's validation metric; Hyperband's epoch budget maps onto `epochs`.

    zoo tune recipes/textcnn_trec.py --tuner bayesian --max-trials 10
    zoo tune recipes/textcnn_trec.py --max-trials 4 --smoke     # minutes

Results in `--directory` (default runs/tune/NAME): keras-tuner's state (a
killed search resumes where it stopped), `trials.csv`, `best_recipe.py`
(runnable by `zoo train`), and the best model saved like any other.

Fine-tuning searches: `zoo tune --from NAME --data FILE --max-trials 6` searches
only the fine-tuning settings (learning rate, frozen encoder, dropout, epochs:
`FINE_TUNE_SEARCH_SPACE`) with the same tuner; each trial is one
`zoo train --from` run, scored on the held-out part of FILE (`holdout_score`,
so that part selects the settings and is no longer an untouched test).

Distributed: `zoo tune ... --distributed --workers 2` starts a keras-tuner
chief (the oracle) and workers on this machine through KERASTUNER_TUNER_ID /
KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT; to spread over machines, start
the same command with those variables set on each (see the README).
"""

import argparse
import csv
import json
import os
import pprint
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner

from zoo import registry
from zoo.saving import save_model_atomic, save_pretrained, machine_description

TUNERS = {
    "random": keras_tuner.RandomSearch,
    "bayesian": keras_tuner.BayesianOptimization,
    "hyperband": keras_tuner.Hyperband,
}


def declare(hp, key, spec):
    """Declare one hyperparameter from the shorthand above and return its value."""
    if isinstance(spec, list):
        if sorted(spec) == [False, True] and all(isinstance(v, bool) for v in spec):
            return hp.Boolean(key)
        if any(isinstance(v, (list, dict)) for v in spec):  # keras-tuner choices are scalars
            return json.loads(hp.Choice(key, [json.dumps(v) for v in spec]))
        return hp.Choice(key, spec)
    if isinstance(spec, tuple) and len(spec) in (2, 3):
        low, high = spec[:2]
        third = spec[2] if len(spec) == 3 else None
        if third == "log":
            return hp.Float(key, low, high, sampling="log")
        if all(isinstance(v, int) for v in spec if v is not None):
            return hp.Int(key, low, high, step=third or 1)
        return hp.Float(key, low, high, step=third)
    raise ValueError(f"Search space entry {key!r}: cannot read {spec!r}")


def apply_hyperparameters(config, space, hp):
    """A copy of `config` with every search-space key set from `hp`."""
    config = json.loads(json.dumps(config))  # deep copy, JSON-safe
    for key, spec in space.items():
        value = declare(hp, key, spec)
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return config


FINE_TUNE_SEARCH_SPACE = {"learning_rate": (1e-5, 3e-3, "log"), "freeze_encoder": [False, True],
                          "dropout": (0.1, 0.5, 0.1)}


def fine_tune_search_config(source, data, max_epochs=3, holdout=0.2, extend_vocabulary=False):
    """A fine-tuning config (see `zoo.training.fine_tune_config`) with its search space."""
    from zoo.training import fine_tune_config

    config = fine_tune_config(source, data, epochs=max_epochs, holdout=holdout,
                              extend_vocabulary=extend_vocabulary)
    space = dict(FINE_TUNE_SEARCH_SPACE)
    if max_epochs > 1:
        space["epochs"] = (1, max_epochs)
    config["search_space"] = space
    return config


def run_config(config, run_dir, smoke=False):
    """One trial: the recipe's own training, or one fine-tuning run when it names a base model."""
    from zoo import training

    if "base_model" in config:
        return training.fine_tune(config, run_dir)
    return registry.get_task(config["task"]).train(config, run_dir=run_dir, smoke=smoke)


def search_space_for(config):
    space = config.get("search_space")
    if space is None:
        space = registry.get_architecture(config["architecture"]).search_space
    if not space:
        raise ValueError(f"{config['name']}: no search space (set `search_space` in the recipe)")
    return space


def default_objective(config):
    """The task's natural objective: validation accuracy, slot F1, BLEU or perplexity."""
    if "objective" in config:
        return config["objective"]
    if "base_model" in config:
        return "holdout_score"
    return {"classification": "val_accuracy", "tagging": "val_f1", "translation": "val_bleu",
            "captioning": "val_bleu", "language_model": "val_perplexity",
            "forecasting": "val_loss"}.get(config["task"], "val_loss")


def _direction(objective):
    return "min" if any(w in objective for w in ("loss", "perplexity", "error", "mae")) else "max"


def make_tuner(kind, config, directory, max_trials, objective, smoke=False, seed=0,
               overwrite=False):
    """A keras-tuner Tuner of the given kind whose trials run the recipe's task."""
    space = search_space_for(config)
    base = TUNERS[kind]

    class RecipeTuner(base):
        def run_trial(self, trial, *args, **kwargs):
            hp = trial.hyperparameters
            trial_config = apply_hyperparameters(config, space, hp)
            if "tuner/epochs" in hp.values:  # Hyperband's budget for this bracket
                trial_config["epochs"] = hp.values["tuner/epochs"]
            trial_dir = Path(self.get_trial_dir(trial.trial_id))
            # The run dir is the trial's own: a killed trial resumes from its last epoch.
            result = run_config(trial_config, trial_dir / "run", smoke)
            if objective not in result.validation:
                raise KeyError(f"{config['task']} reported {sorted(result.validation)}, "
                               f"not the objective {objective!r}")
            save_model_atomic(result.model, trial_dir / "model.keras")
            (trial_dir / "trial_config.json").write_text(json.dumps(trial_config, indent=2))
            return {objective: result.validation[objective]}

    kwargs = dict(objective=keras_tuner.Objective(objective, _direction(objective)),
                  directory=str(directory), project_name="search", overwrite=overwrite,
                  seed=seed)
    if kind == "hyperband":
        kwargs.update(max_epochs=config.get("epochs", 10), factor=3,
                      hyperband_iterations=1)
    else:
        kwargs["max_trials"] = max_trials
    return RecipeTuner(**kwargs)


def write_results(tuner, config, directory, objective):
    """trials.csv, best_recipe.py and the best model (saved like any pretrained one)."""
    directory = Path(directory)
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    keys = sorted({k for t in trials for k in t.hyperparameters.values})
    with open(directory / "trials.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial_id", "status", objective, *keys])
        for t in trials:
            writer.writerow([t.trial_id, t.status, t.score,
                             *[t.hyperparameters.values.get(k) for k in keys]])
    best = tuner.oracle.get_best_trials(1)
    if not best:
        return None
    trial_dir = Path(tuner.get_trial_dir(best[0].trial_id))
    best_config = json.loads((trial_dir / "trial_config.json").read_text())
    best_config["name"] = f"{config['name']}-tuned"
    best_config.pop("search_space", None)
    recipe = directory / "best_recipe.py"
    best_config["recipe_file"] = str(recipe)
    recipe.write_text(
        f'"""Best configuration found by `zoo tune` ({objective} = {best[0].score:.4f}).\n\n'
        f'    zoo train {recipe}\n"""\n\nCONFIG = {pprint.pformat(best_config, sort_dicts=False)}\n\n'
        'if __name__ == "__main__":\n' + _recipe_main(best_config))
    import keras

    model = keras.saving.load_model(trial_dir / "model.keras", safe_mode=True)
    save_pretrained(model, directory / "best_model", dict(
        task=config["task"], architecture=config.get("architecture"),
        metrics={objective: best[0].score}, recipe=f"zoo train {recipe}",
        data=f"{config.get('dataset') or config.get('data')}: validation metric of the best trial",
        trained_on=machine_description(), wall_time_s=None,
        hyperparameters=best[0].hyperparameters.values))
    return best[0]


def _recipe_main(config):
    """The `__main__` block of a written recipe: a fine-tuning config reruns `zoo train --from`."""
    if "base_model" in config:
        return ("    import sys\n\n    from zoo.training import fine_tune_command, run_fine_tune\n\n"
                "    run_fine_tune(fine_tune_command(CONFIG) + sys.argv[1:])\n")
    return "    from zoo.training import run_recipe\n\n    run_recipe(CONFIG)\n"


def tune(config, tuner="random", max_trials=10, objective=None, directory=None, smoke=False,
         overwrite=False, seed=0):
    """Run (or resume) a search; returns the tuner."""
    from zoo.training import smoke_config

    if smoke:
        config = smoke_config(config)
    objective = objective or default_objective(config)
    directory = Path(directory or registry.REPO_ROOT / "runs" / "tune" / config["name"])
    directory.mkdir(parents=True, exist_ok=True)
    search = make_tuner(tuner, config, directory, max_trials, objective, smoke, seed, overwrite)
    started = time.perf_counter()
    search.search()
    if os.environ.get("KERASTUNER_TUNER_ID", "chief") == "chief":
        best = write_results(search, config, directory, objective)
        score = None if best is None else best.score
        print(json.dumps({"best": score, "objective": objective, "directory": str(directory),
                          "wall_time_s": round(time.perf_counter() - started, 1)}))
    return search


def launch_distributed(argv, workers, port):
    """Start a chief (the oracle) and `workers` worker processes on this machine."""
    base = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(port))
    command = [sys.executable, "-m", "zoo.cli", "tune", *argv]
    chief = subprocess.Popen(command, env=dict(base, KERASTUNER_TUNER_ID="chief"))
    time.sleep(3)  # let the oracle bind its port before workers connect
    procs = [subprocess.Popen(command, env=dict(base, KERASTUNER_TUNER_ID=f"tuner{i}"))
             for i in range(workers)]
    codes = [p.wait() for p in procs]
    chief.wait()
    return max(codes + [chief.returncode])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="zoo tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", help="a recipe (or give --from and --data)")
    parser.add_argument("--from", dest="source",
                        help="search fine-tuning settings of this pretrained model (or folder)")
    parser.add_argument("--data", help="with --from: your data, as for `zoo train --from`")
    parser.add_argument("--epochs", type=int,
                        help="the recipe's epochs; with --from, the most epochs tried (default 3)")
    parser.add_argument("--holdout", type=float, default=0.2,
                        help="with --from: fraction of --data that scores each trial")
    parser.add_argument("--extend-vocabulary", action="store_true",
                        help="with --from: add --data's new words in every trial")
    parser.add_argument("--tuner", choices=sorted(TUNERS), default="random")
    parser.add_argument("--max-trials", type=int, default=10)
    parser.add_argument("--objective", help="e.g. val_accuracy (default: the task's own)")
    parser.add_argument("--directory", help="search state and results (default runs/tune/NAME)")
    parser.add_argument("--smoke", action="store_true", help="tiny trials on a data subset")
    parser.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distributed", action="store_true",
                        help="run a keras-tuner chief and --workers workers on this machine")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.distributed and "KERASTUNER_TUNER_ID" not in os.environ:
        forwarded = [a for a in (argv or sys.argv[1:]) if a != "--distributed"]
        return launch_distributed(forwarded, args.workers, args.port)
    tune(_search_config(parser, args), args.tuner, args.max_trials, args.objective,
         args.directory, args.smoke, args.overwrite, args.seed)
    return 0


def _search_config(parser, args):
    from zoo.training import load_recipe

    if args.source is None:
        if args.recipe is None:
            parser.error("give a RECIPE, or --from NAME --data FILE")
        config = load_recipe(args.recipe)
        if args.epochs is not None:
            config["epochs"] = args.epochs
        return config
    if args.recipe is not None or args.data is None or args.smoke:
        parser.error("--from takes --data and no RECIPE or --smoke")
    return fine_tune_search_config(args.source, args.data, args.epochs or 3, args.holdout,
                                   args.extend_vocabulary)
