"""Forecasting: features, time splits, train-only scaling, baselines, CSV in, smoke recipes."""

import numpy as np
import pytest

from zoo.saving import load_pretrained, save_pretrained
from zoo.tasks import forecasting as fc

SERIES = dict(dataset="toy", target="y", covariates=["x"], categorical={"wind": ["N", "S"]},
              missing_indicator=True, frequency="D", season=7,
              splits=dict(validation="2000-03-01", test="2000-04-01"))


def toy_columns(days=120, seed=0):
    """A daily toy series: y = weekly cycle + noise, x a covariate, wind a category."""
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2000-01-01", "m") + np.arange(days) * np.timedelta64(1, "D")
    y = 10 + 3 * np.sin(2 * np.pi * np.arange(days) / 7) + rng.normal(0, 0.1, days)
    wind = rng.choice(["N", "S", "E"], days).astype(object)
    return dict(date=dates, y=y, x=rng.normal(size=days), wind=wind)


def test_features_fill_gaps_flag_them_and_one_hot_categories():
    columns = toy_columns()
    columns["y"][[5, 6]] = np.nan
    features, target, names = fc.build_features(columns, SERIES)
    assert names == ["y", "y_missing", "x", "wind=N", "wind=S"]
    assert features[5, 0] == features[6, 0] == pytest.approx(columns["y"][4])  # carried forward
    assert features[[4, 5, 6], 1].tolist() == [0, 1, 1]
    assert np.isnan(target[[5, 6]]).all()  # the truth stays unknown
    east = columns["wind"] == "E"
    assert (features[east, 3:] == 0).all()  # an unknown category is all zeros


def test_windows_stay_inside_their_split_and_skip_unknown_truth():
    columns = toy_columns()
    columns["y"][100] = np.nan
    features, target, _ = fc.build_features(columns, SERIES)
    bounds = fc.split_bounds(columns["date"], SERIES["splits"])
    assert bounds == {"train": (0, 60), "validation": (60, 91), "test": (91, 120)}
    for start, stop in bounds.values():
        origins = fc.window_origins(target, features, (start, stop), window=10, horizon=3)
        assert (origins + 1 >= start).all() and (origins + 3 < stop).all()
        assert (origins - 9 >= 0).all()
        assert not np.isin(100, origins[:, None] + np.arange(1, 4)).any()
    inputs, truth = fc.windows_at(features, target, np.array([20]), window=10, horizon=3)
    np.testing.assert_array_equal(inputs[0], features[11:21])
    np.testing.assert_array_equal(truth[0], target[21:24].astype("float32"))


def test_scaling_sees_the_training_period_only(monkeypatch, tmp_path):
    columns = toy_columns()
    bounds = fc.split_bounds(columns["date"], SERIES["splits"])
    features, target, _ = fc.build_features(columns, SERIES)
    reference = fc.fit_scaling(features, target, bounds["train"][1])
    # Changing everything after the training period changes nothing in the scaling ...
    changed = {k: v.copy() for k, v in columns.items()}
    changed["y"][60:] += 1000.0
    changed["x"][60:] *= 50.0
    features2, target2, _ = fc.build_features(changed, SERIES)
    assert fc.fit_scaling(features2, target2, bounds["train"][1]) == reference
    np.testing.assert_allclose(reference["feature_mean"][2], columns["x"][:60].mean(), rtol=1e-5)
    # ... and the model `train` builds stores exactly those statistics.
    monkeypatch.setattr(fc, "series_columns", lambda dataset: changed)
    config = dict(series=SERIES, architecture="lstm-forecaster", window=10, horizon=1,
                  model=dict(units=4), epochs=1)
    model = fc.train(config, run_dir=tmp_path, smoke=True).model
    np.testing.assert_allclose(model.feature_mean, reference["feature_mean"], rtol=1e-6)
    np.testing.assert_allclose(model.get_layer("scale_inputs").mean.numpy().ravel(),
                               reference["feature_mean"], rtol=1e-6)
    assert model.target_mean == pytest.approx(np.mean(columns["y"][:60]), rel=1e-6)


def test_baselines_persistence_and_seasonal_persistence():
    target = np.arange(30, dtype="float64")
    origins = np.array([10, 20])
    naive = fc.baselines({"season": 7}, target, origins, horizon=2)
    np.testing.assert_array_equal(naive["persistence"], [[10, 10], [20, 20]])
    np.testing.assert_array_equal(naive["seasonal_persistence"], [[4, 5], [14, 15]])
    returns = fc.baselines({"transform": "log_return"}, target, origins, 1, train_mean=0.05)
    np.testing.assert_array_equal(returns["persistence"], [[0], [0]])  # price persistence
    np.testing.assert_array_equal(returns["last_return"], [[10], [20]])
    np.testing.assert_array_equal(returns["drift"], [[0.05], [0.05]])
    metrics = fc.score_forecasts({}, target, origins, [[11.5], [21.5]], [[11], [21]], 1)
    assert metrics["mae"] == 0.5 and metrics["persistence_mae"] == 1.0
    assert metrics["beats_persistence"] and "Beats persistence" in fc.verdict(metrics)
    worse = dict(metrics, mae=1.5, beats_persistence=False, skill_vs_persistence=-0.5)
    assert fc.verdict(worse).startswith("Does NOT beat persistence")


def test_log_returns_are_in_percent():
    columns = dict(date=np.array(["2000-01-03", "2000-01-04"], "datetime64[m]"),
                   Close=np.array([100.0, 110.0]))
    target = fc.target_series(columns, {"target": "Close", "transform": "log_return"})
    assert np.isnan(target[0]) and target[1] == pytest.approx(100 * np.log(1.1))


def demo_model():
    from zoo import registry

    arch = registry.get_architecture("lstm-forecaster")
    return arch.build(**arch.demo_kwargs)


def test_predict_from_the_example_csv_with_truth_and_plot(tmp_path):
    model = demo_model()
    (path,) = fc.examples(None)
    result = fc.forecast_csv(model, path)
    assert result["forecast"].shape == (1,)
    assert str(result["future_dates"][0])[:10] == "1990-12-01"
    assert result["truth"][0] == pytest.approx(13.3, abs=1e-4)  # from the dataset, 1990-12-01
    lines = fc.render(model, [path], plot=str(tmp_path / "chart.png"))
    assert "forecast 1990-12-01" in lines[1] and "truth" in lines[2]
    assert (tmp_path / "chart.png").stat().st_size > 5_000


def test_csv_with_too_few_rows_is_refused(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("Date,Temp\n1990-11-29,12.0\n1990-11-30,12.7\n")
    with pytest.raises(ValueError, match="needs the last 14 observations"):
        fc.forecast_csv(demo_model(), str(path))


def test_conv_front_end_gru_multi_step_shapes_and_nonnegative_output():
    from zoo.layers import cudnn_ineligibility, iter_recurrent_layers

    model = fc.Forecaster(num_features=5, window=12, horizon=24, cell="gru", units=6,
                          conv_filters=4, conv_width=3, nonnegative=True, target_mean=-50.0)
    forecasts = model.forecast(np.random.default_rng(0).normal(size=(3, 12, 5)))
    assert forecasts.shape == (3, 24) and (forecasts >= 0).all()
    assert model.get_layer("conv").padding == "causal"  # no peeking at later steps
    assert [cudnn_ineligibility(layer) for layer in iter_recurrent_layers(model)] == [[]]


def test_saved_forecaster_round_trip(tmp_path):
    model = demo_model()
    card = dict(metrics={}, recipe="test", data="none", trained_on="test", wall_time_s=0)
    save_pretrained(model, tmp_path, card)
    loaded = load_pretrained(tmp_path)
    windows = np.random.default_rng(0).normal(size=(4, 14, 3)).astype("float32")
    np.testing.assert_allclose(loaded.forecast(windows), model.forecast(windows), rtol=1e-6)
    assert loaded.series == model.series


@pytest.mark.parametrize("recipe", ["forecast_lstm_melbourne_temp", "forecast_lstm_beijing_pm25",
                                    "forecast_lstm_sp500"])
def test_smoke_recipes_run(recipe, tmp_path):
    from zoo.training import load_recipe, run_recipe

    config = load_recipe(recipe)
    config["smoke"] = dict(config["smoke"], max_windows=100)
    card = run_recipe(config, ["--smoke", "--output", str(tmp_path)])
    metrics = card["metrics"]
    assert metrics["windows"] == 100 and "persistence_mae" in metrics
    assert "persistence" in card["verdict"]
