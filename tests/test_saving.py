"""Saving: atomic writes, checksums, safe_mode loading in a fresh process."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import zoo
from zoo import saving

CARD = dict(metrics={"accuracy": 50.0}, recipe="zoo train recipes/x.py", data="toy",
            trained_on="test", wall_time_s=0.0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models") / "toy-classifier"
    model = zoo.create("rnn-classifier", vocabulary=["good", "bad", "film"],
                       class_names=["neg", "pos"], units=4, embedding_dim=4)
    card = saving.save_pretrained(model, directory, CARD)
    return model, directory, card


def test_card_has_required_keys_and_checksum(saved):
    _, directory, card = saved
    on_disk = json.loads((directory / "card.json").read_text())
    assert on_disk == card
    for key in saving.REQUIRED_CARD_KEYS:
        assert key in on_disk
    assert on_disk["sha256"]["model.keras"] == saving.sha256_of(directory / "model.keras")
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temp files left


def test_round_trip_in_a_fresh_process_is_exact(saved):
    model, directory, _ = saved
    texts = ["good film", "", "bad bad unseen-word", "ünïcödé"]
    expected = model.predict(texts)
    script = textwrap.dedent(f"""
        import json, sys
        import zoo
        from zoo.saving import load_pretrained
        model = load_pretrained({str(directory)!r})
        print(json.dumps(model.predict({texts!r}).tolist()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=True)
    np.testing.assert_array_equal(np.array(json.loads(out.stdout.strip().splitlines()[-1]),
                                           dtype="float32"), expected)


def test_tampered_model_is_refused(saved, tmp_path):
    _, directory, _ = saved
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("model.keras", "card.json"):
        (copy / name).write_bytes((directory / name).read_bytes())
    with open(copy / "model.keras", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(saving.ChecksumError, match="corrupt or was modified"):
        saving.load_pretrained(copy)


def test_missing_listed_file_is_reported(tmp_path, saved):
    _, directory, _ = saved
    (tmp_path / "card.json").write_bytes((directory / "card.json").read_bytes())
    with pytest.raises(FileNotFoundError, match="missing"):
        saving.load_pretrained(tmp_path)


def test_incomplete_card_is_refused(tmp_path, saved):
    model, _, _ = saved
    with pytest.raises(ValueError, match="missing"):
        saving.save_pretrained(model, tmp_path / "m", {"metrics": {}})


def test_failed_save_leaves_the_old_file(tmp_path):
    target = tmp_path / "f.json"
    saving.write_json_atomic({"a": 1}, target)

    class Boom:
        def save(self, path):
            open(path, "w").write("partial")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        saving.save_model_atomic(Boom(), target)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_create_from_a_saved_model_gives_fresh_weights(saved, monkeypatch):
    model, directory, _ = saved
    cls, config = saving.read_model_config(directory)
    assert cls is type(model)
    fresh = cls.from_config(config)
    assert fresh.vocabulary == model.vocabulary
    assert any(not np.array_equal(a, b) for a, b in zip(fresh.get_weights(), model.get_weights()))
