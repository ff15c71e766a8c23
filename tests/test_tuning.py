"""Tuning, resume, distributed tuning and training: real processes, loopback only."""

import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner
import pytest

from zoo import tuning
from zoo.training import load_recipe

ZOO = [sys.executable, "-m", "zoo.cli"]
RECIPE = "textcnn_trec"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra):
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    for key in ("TF_CONFIG", "KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP",
                "KERASTUNER_ORACLE_PORT"):
        env.pop(key, None)
    env.update(extra)
    return env


def _trials(directory):
    with open(Path(directory) / "trials.csv") as f:
        return list(csv.DictReader(f))


def test_search_space_shorthand():
    hp = keras_tuner.HyperParameters()
    config = tuning.apply_hyperparameters(
        {"model": {"units": 1}, "learning_rate": 0.1},
        {"model.units": [8, 16], "model.widths": [[3, 4], [5]], "learning_rate": (1e-4, 1e-2, "log"),
         "model.layers": (1, 3), "model.dropout": (0.0, 0.5, 0.1)}, hp)
    assert config["model"]["units"] in (8, 16)
    assert config["model"]["widths"] in ([3, 4], [5])
    assert 1e-4 <= config["learning_rate"] <= 1e-2
    assert isinstance(hp.get("model.layers"), int)
    with pytest.raises(ValueError, match="cannot read"):
        tuning.declare(hp, "x", "nonsense")


def test_default_objectives_follow_the_task():
    assert tuning.default_objective({"task": "classification"}) == "val_accuracy"
    assert tuning.default_objective({"task": "language_model"}) == "val_perplexity"
    assert tuning._direction("val_perplexity") == "min"


def test_search_writes_trials_best_recipe_and_model(tmp_path):
    tuning.tune(load_recipe(RECIPE), "random", max_trials=2, directory=tmp_path, smoke=True)
    rows = _trials(tmp_path)
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    best = max(float(r["val_accuracy"]) for r in rows)
    card = json.loads((tmp_path / "best_model" / "card.json").read_text())
    assert card["metrics"]["val_accuracy"] == pytest.approx(best)
    config = load_recipe(str(tmp_path / "best_recipe.py"))
    assert config["name"] == "textcnn-trec-tuned"
    assert config["model"]["num_filters"] in (50, 100, 200)


def test_killed_search_resumes_with_finished_trials_kept(tmp_path):
    command = [*ZOO, "tune", RECIPE, "--max-trials", "3", "--smoke", "--directory", str(tmp_path)]
    first = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    done = []
    while time.time() < deadline and not done:  # kill once the first trial has finished
        time.sleep(1)
        done = [p for p in tmp_path.glob("search/trial_*/trial.json")
                if json.loads(p.read_text())["status"] == "COMPLETED"]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert done, "the first trial never finished"
    finished = {p.parent.name: json.loads(p.read_text())["score"] for p in done}

    subprocess.run(command, env=_env(), check=True, capture_output=True, timeout=600)
    rows = _trials(tmp_path)
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" for r in rows)
    for trial_dir, score in finished.items():
        row = next(r for r in rows if f"trial_{r['trial_id']}" == trial_dir)
        assert float(row["val_accuracy"]) == pytest.approx(score)  # kept, not rerun


def test_distributed_search_runs_each_trial_once(tmp_path):
    port = _free_port()
    result = subprocess.run(
        [*ZOO, "tune", RECIPE, "--max-trials", "3", "--smoke", "--directory", str(tmp_path),
         "--distributed", "--workers", "2", "--port", str(port)],
        env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _trials(tmp_path)
    assert len(rows) == 3 and len({r["trial_id"] for r in rows}) == 3
    assert all(r["status"] == "COMPLETED" for r in rows)
    workers = {json.loads(p.read_text()).get("trial_id") for p in
               tmp_path.glob("search/trial_*/trial.json")}
    assert len(workers) == 3


def _train(tmp_path, *flags, env=None):
    out = tmp_path / "out"
    result = subprocess.run([*ZOO, "train", RECIPE, "--smoke", "--output", str(out), *flags],
                            env=env or _env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out / "runs" / "textcnn-trec" / "history.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)], out


def test_mirrored_strategy_on_two_cpu_devices_matches_one_device(tmp_path):
    single, _ = _train(tmp_path / "one", "--epochs", "2", "--batch-size", "100")
    mirrored, out = _train(tmp_path / "two", "--epochs", "2", "--batch-size", "50",
                           "--strategy", "mirrored", "--cpu-replicas", "2")
    card = json.loads((out / "textcnn-trec" / "card.json").read_text())
    assert card["strategy"] == "mirrored (2 replicas)"
    assert mirrored[-1] < mirrored[0]
    # Same global batch (2 x 50 vs 1 x 100), seed and data order: the same training,
    # up to per-replica dropout masks and summation order.
    assert mirrored[0] == pytest.approx(single[0], rel=0.05)


def test_multi_worker_training_on_localhost(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        out = tmp_path / f"worker{index}"
        procs.append(subprocess.Popen(
            [*ZOO, "train", RECIPE, "--smoke", "--epochs", "2", "--strategy", "multi-worker",
             "--output", str(out)],
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs[0][-2000:] + logs[1][-2000:]
    card = json.loads((tmp_path / "worker0" / "textcnn-trec" / "card.json").read_text())
    assert card["strategy"] == "multi-worker (2 replicas)"
    assert not (tmp_path / "worker1" / "textcnn-trec").exists()  # only the chief saves
    with open(tmp_path / "worker0" / "runs" / "textcnn-trec" / "history.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert losses[-1] < losses[0]


def _cr_reviews_csv(path, rows=240):
    """Customer reviews as a user's CSV (text,label names): a shift from the SST-2 movie domain."""
    from zoo import data

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for row in data.load_examples("cr", "train")[:rows]:
            writer.writerow([row["text"], ["negative", "positive"][row["label"]]])
    return path


def test_fine_tuning_search_writes_trials_and_a_rerunnable_best(tmp_path, trained_spec):
    """`zoo tune --from NAME --data FILE`: the same tuner, trials are fine-tuning runs."""
    from zoo import cli
    from zoo.training import run_recipe_file

    trained_spec("textcnn-sst2")
    reviews = _cr_reviews_csv(tmp_path / "reviews.csv")
    search = tmp_path / "search"
    assert cli.main(["tune", "--from", "textcnn-sst2", "--data", str(reviews), "--max-trials", "2",
                     "--epochs", "2", "--directory", str(search)]) == 0
    rows = _trials(search)
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    assert {"learning_rate", "freeze_encoder", "dropout", "epochs"} <= set(rows[0])
    assert len({(r["learning_rate"], r["dropout"]) for r in rows}) == 2
    assert all(0 <= float(r["holdout_score"]) <= 100 for r in rows)
    card = json.loads((search / "best_model" / "card.json").read_text())
    assert card["task"] == "classification"
    assert card["metrics"]["holdout_score"] == max(float(r["holdout_score"]) for r in rows)

    best = load_recipe(str(search / "best_recipe.py"))
    assert best["base_model"] == "textcnn-sst2" and best["name"] == "textcnn-sst2-finetuned-tuned"
    assert isinstance(best["freeze_encoder"], bool)
    rerun = run_recipe_file(str(search / "best_recipe.py"), ["--output", str(tmp_path / "models")])
    assert rerun["config"]["learning_rate"] == pytest.approx(best["learning_rate"])
    assert rerun["metrics"]["holdout_examples"] == 48


def test_fine_tuning_search_needs_data(capsys):
    from zoo import cli

    with pytest.raises(SystemExit):
        cli.main(["tune", "--from", "textcnn-sst2", "--max-trials", "2"])
    assert "--from takes --data" in capsys.readouterr().err


@pytest.mark.parametrize("policy, low", [("mixed_float16", "float16"),
                                         ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision_smoke_run(tmp_path, monkeypatch, policy, low):
    """`--precision`: inner layers compute in 16 bits, the output layer and variables in float32."""
    import keras

    from zoo import training

    trained, save = [], training.save_pretrained

    def keep_model(model, directory, card):  # run_recipe saves the model it trained
        trained.append(model)
        return save(model, directory, card)

    monkeypatch.setattr(training, "save_pretrained", keep_model)
    try:
        card = training.run_recipe(load_recipe(RECIPE), ["--smoke", "--epochs", "2", "--precision",
                                                         policy, "--output", str(tmp_path)])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model = trained[0]
    assert card["precision"] == policy
    assert model.get_layer("classes").dtype_policy.name == "float32"
    inner = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv1D,
                                                                   keras.layers.Embedding))]
    assert inner and all(layer.compute_dtype == low and layer.variable_dtype == "float32"
                         for layer in inner)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (low == "float16")
    with open(tmp_path / "runs" / "textcnn-trec" / "history.csv") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 2 and all(map(math.isfinite, losses)) and losses[-1] < losses[0]
