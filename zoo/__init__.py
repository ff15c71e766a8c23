"""rnn-zoo: recurrent and convolutional sequence models for Keras 3 / TensorFlow.

>>> import zoo
>>> zoo.list_models()                          # pretrained models: name, task, data, metric
>>> clf = zoo.load("textcnn-trec")             # raw strings in, probabilities out
>>> model = zoo.create("text-cnn", num_classes=6)  # same architecture, fresh weights
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep CUDA-probe noise out of users' logs

from zoo import registry as _registry  # noqa: E402
from zoo import tasks as _tasks  # noqa: E402,F401  (registers every task's models)

__version__ = "0.1.0"
__all__ = ["list_models", "list_architectures", "load", "create", "__version__"]


def list_models(task=None, trained_only=False):
    """Pretrained models as dicts: name, task, dataset, headline metric and its value.

    The value is read from the model's card; it is None until the recipe has run.
    """
    rows = []
    for spec in _registry.pretrained(task, trained_only):
        value = None
        if spec.is_trained:
            from zoo.saving import read_card

            value = read_card(spec.directory)["metrics"].get(spec.metric)
        rows.append(dict(name=spec.name, task=spec.task, dataset=spec.dataset,
                         metric=spec.metric, value=value, trained=spec.is_trained))
    return rows


def list_architectures(task=None):
    """Architectures `create` can build: name, task, one-line summary."""
    return [dict(name=a.name, task=a.task, summary=a.summary) for a in _registry.architectures(task)]


def load(name):
    """Load a pretrained model (checksum-verified, `safe_mode=True`)."""
    from zoo.saving import load_pretrained

    spec = _registry.get_pretrained(name)
    if not spec.is_trained:
        raise FileNotFoundError(
            f"{name} has no weights at {spec.directory}. Train it with: zoo train {spec.recipe}"
        )
    return load_pretrained(spec.directory)


def create(name, **overrides):
    """Build a model with fresh weights from an architecture or a pretrained model's name.

    For a pretrained name, the configuration (vocabulary, sizes) comes from its
    saved file and `overrides` replace entries of that config.
    """
    try:
        arch = _registry.get_architecture(name)
        return arch.build(**overrides)
    except KeyError:
        pass
    spec = _registry.get_pretrained(name)
    if not spec.is_trained:
        return _registry.get_architecture(spec.architecture).build(**overrides)
    from zoo.saving import read_model_config

    cls, config = read_model_config(spec.directory)
    config.update(overrides)
    return cls.from_config(config)
