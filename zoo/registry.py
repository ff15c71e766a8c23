"""The registry: architectures (fresh weights) and pretrained models (saved weights).

Like timm / KerasHub presets: an *architecture* name ("text-cnn") builds a
model from keyword arguments; a *pretrained* name ("textcnn-trec") names an
architecture plus the data and recipe that trained it, and the folder
`saved_models/NAME/` that holds `model.keras` and `card.json`. Task modules
register both at import time; every task registers one `TaskHandler` that
knows how to evaluate and print its models.
"""

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Callable, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Architecture:
    name: str
    task: str
    build: Callable  # (**kwargs) -> keras.Model with fresh weights
    summary: str
    demo_kwargs: dict = dataclasses.field(default_factory=dict)  # small config for `zoo demo`
    search_space: dict = dataclasses.field(default_factory=dict)  # default `zoo tune` space


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: str
    task: str
    dataset: str
    recipe: str  # path relative to the repo root
    metric: str  # the headline metric's key in the card
    summary: str

    @property
    def directory(self):
        return models_dir() / self.name

    @property
    def is_trained(self):
        return (self.directory / "model.keras").exists()


@dataclasses.dataclass(frozen=True)
class TaskHandler:
    name: str
    evaluate: Callable  # (model, spec, split) -> dict of metrics
    render: Callable  # (model, inputs: list[str], **options) -> list[str] readable lines
    examples: Callable  # (spec) -> list of example inputs shipped with the package
    train: Callable  # (config, run_dir, smoke) -> training.TrainResult
    # (model, data_path, run_dir, epochs, learning_rate, holdout, extend, freeze_encoder)
    # -> (model, metrics); metrics hold one held-out score before and after, as
    # `holdout_X_before` and `holdout_X` (what `zoo tune --from` maximizes).
    fine_tune: Optional[Callable] = None


_ARCHITECTURES: dict = {}
_PRETRAINED: dict = {}
_TASKS: dict = {}


def models_dir():
    """Where pretrained folders live: $ZOO_MODELS_DIR, else <repo>/saved_models."""
    return Path(os.environ.get("ZOO_MODELS_DIR", REPO_ROOT / "saved_models"))


def register_architecture(name, task, summary, demo_kwargs=None, search_space=None):
    """Decorator for a builder function: `@register_architecture("text-cnn", ...)`.

    `search_space` maps recipe-config keys ("learning_rate", "model.units") to
    hyperparameter ranges (see `zoo.tuning`); it is the default for `zoo tune`.
    """

    def decorate(build):
        _ARCHITECTURES[name] = Architecture(name, task, build, summary, demo_kwargs or {},
                                            search_space or {})
        return build

    return decorate


def register_pretrained(spec: ModelSpec):
    if spec.architecture not in _ARCHITECTURES:
        raise ValueError(f"{spec.name}: unknown architecture {spec.architecture!r}")
    _PRETRAINED[spec.name] = spec
    return spec


def register_task(handler: TaskHandler):
    _TASKS[handler.name] = handler
    return handler


def _unknown(kind, name, known):
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return KeyError(f"Unknown {kind} {name!r}.{hint} Known: {', '.join(sorted(known))}.")


def get_architecture(name) -> Architecture:
    if name not in _ARCHITECTURES:
        raise _unknown("architecture", name, list(_ARCHITECTURES))
    return _ARCHITECTURES[name]


def get_pretrained(name) -> ModelSpec:
    if name not in _PRETRAINED:
        raise _unknown("model", name, list(_PRETRAINED) + list(_ARCHITECTURES))
    return _PRETRAINED[name]


def get_task(name) -> TaskHandler:
    return _TASKS[name]


def architectures(task: Optional[str] = None):
    return [a for a in _ARCHITECTURES.values() if task in (None, a.task)]


def pretrained(task: Optional[str] = None, trained_only=False):
    return [
        s for s in _PRETRAINED.values()
        if task in (None, s.task) and (s.is_trained or not trained_only)
    ]
