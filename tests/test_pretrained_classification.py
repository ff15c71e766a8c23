"""Shipped classifiers, loaded fresh, meet their floors on the full official test split."""

import numpy as np
import pytest

import zoo
from zoo.layers.fast_recurrent import fast_cpu_model
from zoo.saving import read_card
from zoo.tasks import classification

# Floors from the issue: Kim (2014) CNN-rand numbers for the CNNs, the keras-io range for IMDB.
FLOORS = {"textcnn-trec": 91.2, "textcnn-sst2": 82.7, "sentiment-bilstm-sst2": 82.7,
          "sentiment-bilstm-imdb": 88.0}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_meets_floor_and_reproduces_its_card(name, trained_spec):
    spec = trained_spec(name)
    # The fast CPU kernels give the stock layers' outputs (tests/test_fast_recurrent.py) about
    # 3x faster: the stock path needs 2-4 minutes for IMDB's 25,000 reviews on 2 cores.
    model = fast_cpu_model(zoo.load(name))
    metrics = classification.evaluate(model, spec.dataset, "test")
    card = read_card(spec.directory)
    assert metrics["accuracy"] >= FLOORS[name]
    assert metrics["accuracy"] == pytest.approx(card["metrics"]["accuracy"], abs=0.01)
    assert metrics["examples"] == card["metrics"]["examples"]


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_odd_inputs_return_results(name, trained_spec):
    trained_spec(name)
    model = zoo.load(name)
    texts = ["", "   ", " ".join(["great"] * 1_000), "Très bien — 映画 ☃ !!", "ok"]
    probabilities = model.predict(texts)
    assert probabilities.shape == (5, len(model.class_names))
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-4)
    assert [label for label, _ in model.classify(texts)][0] in model.class_names


def test_fine_tuning_on_a_users_csv_improves_held_out_accuracy(tmp_path, trained_spec):
    """A movie-review model adapts to customer reviews (CR) from a small CSV."""
    import csv

    from zoo import data
    from zoo.training import run_fine_tune

    trained_spec("textcnn-sst2")
    rows = data.load_examples("cr", "train")[:800]
    path = tmp_path / "reviews.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for row in rows:
            writer.writerow([row["text"], ["negative", "positive"][row["label"]]])
    card = run_fine_tune(["--from", "textcnn-sst2", "--data", str(path), "--epochs", "3",
                          "--learning-rate", "5e-4", "--output", str(tmp_path / "models")])
    metrics = card["metrics"]
    assert metrics["holdout_examples"] == 160
    assert metrics["holdout_accuracy"] > metrics["holdout_accuracy_before"]
    from zoo.saving import load_pretrained

    tuned = load_pretrained(tmp_path / "models" / "textcnn-sst2-finetuned")
    assert tuned.class_names == ["negative", "positive"]


def test_fine_tuning_rejects_unknown_labels(tmp_path, trained_spec):
    from zoo.training import run_fine_tune

    trained_spec("textcnn-sst2")
    path = tmp_path / "bad.tsv"
    path.write_text("text\tlabel\ngood film\tmaybe\n")
    with pytest.raises(ValueError, match="'maybe' is not one of"):
        run_fine_tune(["--from", "textcnn-sst2", "--data", str(path),
                       "--output", str(tmp_path / "m")])
