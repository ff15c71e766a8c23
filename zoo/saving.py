"""Save and load pretrained models: `model.keras` + `card.json`, checksummed and atomic.

A card records what a number means and how to get it again: metrics on the
official test split, the exact recipe command, the data, the seed, the wall
time and the machine. `load_pretrained` refuses a file whose sha256 differs
from the card (a truncated download or a tampered archive), and always loads
with `safe_mode=True` (no Lambda layers, no pickle).
"""

import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path

import keras

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"
REQUIRED_CARD_KEYS = ("metrics", "recipe", "data", "sha256", "trained_on", "wall_time_s",
                      "keras_version")


class ChecksumError(RuntimeError):
    """A saved model file does not match the sha256 recorded in its card."""


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path, write):
    """Write through `write(tmp_path)`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; models and cards are shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_model_atomic(model, path):
    _atomic_write(path, lambda tmp: model.save(tmp))


def write_json_atomic(obj, path):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")

    _atomic_write(path, write)


def machine_description():
    cores = os.cpu_count()
    return f"{platform.machine()} CPU, {cores} cores, {platform.system()}, Python {platform.python_version()}"


def _without_training_state(model):
    """An uncompiled copy with the same weights: Adam's two moments would triple the file."""
    if getattr(model, "optimizer", None) is None:
        return model
    clone = type(model).from_config(model.get_config())
    clone.set_weights(model.get_weights())
    return clone


def save_pretrained(model, directory, card):
    """Save `model` and its card into `directory`; fills sha256 and versions in the card.

    `card` must hold at least metrics, recipe, data, trained_on and wall_time_s.
    """
    directory = Path(directory)
    save_model_atomic(_without_training_state(model), directory / MODEL_FILE)
    card = dict(card)
    card["keras_version"] = keras.__version__
    card["sha256"] = {MODEL_FILE: sha256_of(directory / MODEL_FILE)}
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise ValueError(f"Model card is missing {missing}")
    write_json_atomic(card, directory / CARD_FILE)
    return card


def read_card(directory):
    path = Path(directory) / CARD_FILE
    if not path.exists():
        raise FileNotFoundError(f"No model card at {path}")
    return json.loads(path.read_text())


def verify_checksums(directory, card=None):
    card = card or read_card(directory)
    for name, expected in card.get("sha256", {}).items():
        path = Path(directory) / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is listed in the card but missing")
        actual = sha256_of(path)
        if actual != expected:
            raise ChecksumError(
                f"{path} has sha256 {actual[:12]}..., but its card records {expected[:12]}...: "
                "the file is corrupt or was modified. Re-fetch it or retrain with the card's recipe."
            )


def load_pretrained(directory, compile=False):
    """Verify checksums, then `keras.saving.load_model(..., safe_mode=True)`."""
    directory = Path(directory)
    card = read_card(directory)
    verify_checksums(directory, card)
    return keras.saving.load_model(directory / MODEL_FILE, compile=compile, safe_mode=True)


def read_model_config(directory):
    """(class, constructor config) of a saved task model, without loading its weights."""
    import zipfile

    with zipfile.ZipFile(Path(directory) / MODEL_FILE) as archive:
        serialized = json.loads(archive.read("config.json"))
    cls = keras.saving.get_registered_object(serialized["registered_name"])
    if cls is None:
        raise ValueError(f"{serialized['registered_name']} is not a registered zoo model")
    return cls, dict(serialized["config"])
