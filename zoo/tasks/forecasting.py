"""Time-series forecasting: windows of past observations -> LSTM/GRU -> the next values.

A `Forecaster` reads the last `window` observations of every input feature
(the target itself, covariates, one-hot categories, calendar cycles) and
forecasts the target `horizon` steps ahead, in the target's own units. Input
scaling is fitted on the training period only and stored inside the model; so
is the description of the series (`series`), which turns a CSV of recent
observations into model inputs.

>>> import zoo
>>> from zoo.tasks.forecasting import forecast_csv
>>> model = zoo.load("forecast-lstm-melbourne-temp")
>>> forecast_csv(model, "zoo/examples/melbourne_min_temp_recent.csv")["forecast"]
array([12.56], dtype=float32)

or from a shell: `zoo predict forecast-lstm-melbourne-temp recent.csv --plot out.png`.

Splits are by time and contiguous: train, then validation, then test. A
window belongs to the split that holds *all* its target steps; its inputs may
reach back into the previous period, as they would in real use.
"""

import csv
import functools
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from zoo import registry
from zoo.layers import recurrent_stack
from zoo.tracing import traced_call

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
SPLITS = ("train", "validation", "test")
_MISSING = ("", "NA", "NaN", "nan")
_STEP = {"D": np.timedelta64(1, "D"), "h": np.timedelta64(1, "h")}

# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="zoo")
class LastObservation(keras.layers.Layer):
    """`[B, T, F]` -> `[B, 1]`: feature `index` at the last step (the persistence forecast)."""

    def __init__(self, index, **kwargs):
        super().__init__(**kwargs)
        self.index = index

    def call(self, inputs):
        return inputs[:, -1, self.index : self.index + 1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "index": self.index}


@keras.saving.register_keras_serializable(package="zoo")
class Forecaster(keras.Model):
    """Observations `[B, window, F]` (raw units) -> forecasts `[B, horizon]` (target units).

        z = Normalize(x)                         mean/variance of the training period
        h = RNN(Conv1D(z))                       Conv1D front end optional
        y = target_std * (W h + b) + target_mean        (residual=False)
        y = x_{T, target} + target_std * (W h + b)      (residual=True)

    With `residual=True` the network learns the change from the last observed
    value, so an untrained model starts at the persistence forecast;
    `nonnegative=True` clips forecasts at 0 (a ReLU).

    Args:
        num_features, window, horizon: input and output shapes.
        cell, units, num_layers, dropout: the recurrent stack (`recurrent_stack`).
        conv_filters, conv_width: a causal Conv1D front end (0 filters: none).
        feature_mean, feature_variance: input scaling (training period only).
        target_mean, target_std: output scaling (training period only).
        target_index: column of the target in the inputs (for `residual`).
        series: how raw observations become features (see `build_features`).
        feature_names: names of the `num_features` input columns.
    """

    def __init__(self, num_features, window, horizon=1, cell="lstm", units=64, num_layers=1,
                 dropout=0.0, conv_filters=0, conv_width=3, residual=False, nonnegative=False,
                 feature_mean=None,
                 feature_variance=None, target_mean=0.0, target_std=1.0, target_index=0,
                 series=None, feature_names=None, **kwargs):
        feature_mean = _floats(feature_mean, num_features, 0.0)
        feature_variance = _floats(feature_variance, num_features, 1.0)
        inputs = keras.Input(shape=(window, num_features), name="observations")
        x = keras.layers.Normalization(mean=feature_mean, variance=feature_variance,
                                       name="scale_inputs")(inputs)
        if conv_filters:
            x = keras.layers.Conv1D(conv_filters, conv_width, padding="causal", activation="relu",
                                    name="conv")(x)
        x = recurrent_stack(x, units, num_layers, cell, dropout=dropout, return_sequences=False,
                            name="encoder")
        z = keras.layers.Dense(horizon, name="scaled_forecast")(x)
        if residual:
            change = keras.layers.Rescaling(float(target_std), name="change")(z)
            last = LastObservation(target_index, name="last_observation")(inputs)
            outputs = keras.layers.Add(name="forecast")([last, change])
        else:
            outputs = keras.layers.Rescaling(float(target_std), offset=float(target_mean),
                                             name="forecast")(z)
        if nonnegative:  # concentrations, counts: never forecast below zero
            outputs = keras.layers.ReLU(name="nonnegative")(outputs)
        super().__init__(inputs, outputs, **kwargs)
        self.num_features, self.window, self.horizon = num_features, window, horizon
        self.cell, self.units, self.num_layers, self.dropout_rate = cell, units, num_layers, dropout
        self.conv_filters, self.conv_width, self.residual = conv_filters, conv_width, residual
        self.nonnegative = nonnegative
        self.feature_mean, self.feature_variance = feature_mean, feature_variance
        self.target_mean, self.target_std = float(target_mean), float(target_std)
        self.target_index = target_index
        self.series = dict(series or {})
        self.feature_names = list(feature_names or [f"x{i}" for i in range(num_features)])

    def get_config(self):
        return dict(name=self.name, num_features=self.num_features, window=self.window,
                    horizon=self.horizon, cell=self.cell, units=self.units,
                    num_layers=self.num_layers, dropout=self.dropout_rate,
                    conv_filters=self.conv_filters, conv_width=self.conv_width,
                    residual=self.residual, nonnegative=self.nonnegative,
                    feature_mean=self.feature_mean,
                    feature_variance=self.feature_variance, target_mean=self.target_mean,
                    target_std=self.target_std, target_index=self.target_index,
                    series=self.series, feature_names=self.feature_names)

    def forecast(self, observations, batch_size=256):
        """Forecasts `[N, horizon]` (numpy) for observation windows `[N, window, F]`."""
        observations = np.asarray(observations, dtype="float32")
        call = traced_call(self, tf.TensorSpec([None, self.window, self.num_features], tf.float32))
        return np.concatenate([call(observations[i : i + batch_size]).numpy()
                               for i in range(0, len(observations), batch_size)] or
                              [np.zeros((0, self.horizon), "float32")])


def _floats(values, size, default):
    return [float(default)] * size if values is None else [float(v) for v in values]


# --------------------------------------------------------------------------------------
# Series -> features
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def series_columns(dataset):
    """The whole series of a zoo dataset as `{column: array}`, `date` as datetime64.

    Cached per process (treat the arrays as read-only): evaluation, training
    and `zoo predict`'s look-up of the truth share one read.
    """
    from zoo.data import load_examples

    return rows_to_columns(load_examples(dataset, "train"))


def rows_to_columns(rows):
    if not rows:
        raise ValueError("The series has no rows.")
    columns = {key: [row[key] for row in rows] for key in rows[0]}
    return {key: (np.array(values, dtype="datetime64[m]") if key == "date"
                  else np.array(values, dtype=object if isinstance(values[0], str) else "float64"))
            for key, values in columns.items()}


def forward_fill(values):
    """Each NaN takes the last observed value before it (leading NaNs stay NaN)."""
    values = np.asarray(values, dtype="float64")
    index = np.where(np.isnan(values), 0, np.arange(len(values)))
    np.maximum.accumulate(index, out=index)
    return values[index]  # leading NaNs point at row 0, itself NaN


def target_series(columns, series):
    """The quantity forecast: the target column, or its daily log return in percent.

        r_t = 100 * log(p_t / p_{t-1})        (series["transform"] == "log_return")
    """
    values = np.asarray(columns[series["target"]], dtype="float64")
    if series.get("transform") == "log_return":
        return np.concatenate([[np.nan], 100.0 * np.diff(np.log(values))])
    return values


def target_name(series):
    """"Temp", or "Close_log_return_%" when the target is transformed."""
    transform = series.get("transform")
    return f"{series['target']}_{transform}_%" if transform else series["target"]


def _calendar(dates, name):
    """Cyclical encodings of the date: (sin, cos) of the position in the cycle."""
    if name == "day_of_year":
        days = (dates.astype("datetime64[D]") - dates.astype("datetime64[Y]")).astype("float64")
        phase = 2 * np.pi * days / 365.25
    elif name == "hour_of_day":
        hours = (dates.astype("datetime64[h]") - dates.astype("datetime64[D]")).astype("float64")
        phase = 2 * np.pi * hours / 24.0
    else:
        raise ValueError(f"Unknown calendar feature {name!r}; use day_of_year or hour_of_day.")
    return {f"{name}_sin": np.sin(phase), f"{name}_cos": np.cos(phase)}


def build_features(columns, series):
    """Raw columns -> `(features [T, F] float32, target [T], feature names)`.

    `series` says which columns to use:

    * `target`: the column forecast (with `transform="log_return"`: its returns).
    * `covariates`: other numeric columns given to the model.
    * `categorical`: `{column: [categories]}`, one-hot encoded (unknown: all 0).
    * `calendar`: `["day_of_year"]` and/or `["hour_of_day"]` cycles.

    Missing numeric values are carried forward from the last observation
    (what a forecaster knows at that time); for the target a 0/1 column
    `<target>_missing` records where that happened. `target` keeps its NaNs
    so that windows whose truth is missing can be left out of training and
    scoring.
    """
    target = target_series(columns, series)
    features = {target_name(series): forward_fill(target)}  # always column 0
    if series.get("missing_indicator"):
        features[f"{series['target']}_missing"] = np.isnan(target).astype("float64")
    for name in series.get("covariates", []):
        features[name] = forward_fill(columns[name])
    for name, categories in series.get("categorical", {}).items():
        values = np.asarray(columns[name]).astype(str)
        features.update({f"{name}={c}": (values == c).astype("float64") for c in categories})
    for name in series.get("calendar", []):
        features.update(_calendar(columns["date"], name))
    names = list(features)
    return np.stack([features[n] for n in names], axis=1).astype("float32"), target, names


def split_bounds(dates, splits):
    """`{split: (start, stop)}` row ranges from the first dates of validation and test."""
    validation = int(np.searchsorted(dates, np.datetime64(splits["validation"])))
    test = int(np.searchsorted(dates, np.datetime64(splits["test"])))
    if not 0 < validation < test < len(dates):
        raise ValueError(f"Split dates {splits} do not cut the series into three periods.")
    return {"train": (0, validation), "validation": (validation, test), "test": (test, len(dates))}


def fit_scaling(features, target, train_stop):
    """Mean and variance of every feature and of the target, over rows `[0, train_stop)` only.

    Nothing after the training period enters the scaling: the validation and
    test periods stay unseen, as they would be in deployment.
    """
    train_features, train_target = features[:train_stop], target[:train_stop]
    return dict(feature_mean=np.nanmean(train_features, axis=0).tolist(),
                feature_variance=np.nanvar(train_features, axis=0).tolist(),
                target_mean=float(np.nanmean(train_target)),
                target_std=float(np.nanstd(train_target)) or 1.0)


def window_origins(target, features, bounds, window, horizon):
    """Indices `t` (last observed step) of the usable windows whose targets lie in `bounds`.

    Targets `t+1 .. t+horizon` must all be inside `[start, stop)` and known;
    inputs `t-window+1 .. t` must exist and be finite.
    """
    start, stop = bounds
    origins = np.arange(max(start - 1, window - 1), stop - horizon)
    future = origins[:, None] + np.arange(1, horizon + 1)
    known = ~np.isnan(target[future]).any(axis=1)
    finite_rows = np.isfinite(features).all(axis=1).astype("int64")
    finite_windows = np.convolve(finite_rows, np.ones(window, "int64"), "full")[: len(finite_rows)]
    return origins[known & (finite_windows[origins] == window)]


def windows_at(features, target, origins, window, horizon):
    """`(inputs [N, window, F], targets [N, horizon])` for the given origins."""
    past = origins[:, None] + np.arange(-window + 1, 1)
    future = origins[:, None] + np.arange(1, horizon + 1)
    return features[past], target[future].astype("float32")


# --------------------------------------------------------------------------------------
# Baselines and metrics
# --------------------------------------------------------------------------------------


def baselines(series, target, origins, horizon, train_mean=None):
    """Naive forecasts `{name: [N, horizon]}` on the same windows as the model.

    * persistence: the last observed value, for every step ahead
      (`y_{t+h} = y_t`). On returns it is the price's persistence: return 0.
    * seasonal_persistence (when `series["season"]` = s): the value one
      season earlier, `y_{t+h} = y_{t+h-s}` (needs `h <= s`).
    * last_return (returns only): tomorrow's return = today's.
    * drift (returns only, given `train_mean`): the training period's mean
      return every day, a random walk with drift for the price.
    """
    known = forward_fill(target)
    last = known[origins][:, None] * np.ones((1, horizon))
    forecasts = {}
    if series.get("transform") == "log_return":
        forecasts["persistence"] = np.zeros_like(last)
        forecasts["last_return"] = last
        if train_mean is not None:
            forecasts["drift"] = np.full_like(last, train_mean)
    else:
        forecasts["persistence"] = last
    season = series.get("season")
    if season and season >= horizon and (origins >= season - 1).all():
        forecasts["seasonal_persistence"] = known[origins[:, None] + np.arange(1, horizon + 1) - season]
    return forecasts


def errors(forecast, truth):
    """Mean absolute and root-mean-square error over every window and step ahead."""
    difference = np.asarray(forecast, "float64") - np.asarray(truth, "float64")
    return float(np.mean(np.abs(difference))), float(np.sqrt(np.mean(difference**2)))


def direction_accuracy(forecast, truth):
    """Share of days whose sign of return is called right, beside always saying "up"."""
    forecast, truth = np.ravel(forecast), np.ravel(truth)
    return {"direction_accuracy": float(np.mean(np.sign(forecast) == np.sign(truth))),
            "always_up_direction_accuracy": float(np.mean(truth > 0)),
            "forecast_std": float(np.std(forecast)), "truth_std": float(np.std(truth))}


def score_forecasts(series, target, origins, forecast, truth, horizon, train_mean=None):
    """Model MAE/RMSE beside every naive baseline's on the same windows."""
    metrics = {}
    metrics["mae"], metrics["rmse"] = errors(forecast, truth)
    for name, baseline in baselines(series, target, origins, horizon, train_mean).items():
        metrics[f"{name}_mae"], metrics[f"{name}_rmse"] = errors(baseline, truth)
    if series.get("transform") == "log_return":
        metrics.update(direction_accuracy(forecast, truth))
    metrics = {k: round(v, 4) for k, v in metrics.items()}
    metrics["windows"] = len(origins)
    metrics["skill_vs_persistence"] = round(1.0 - metrics["mae"] / metrics["persistence_mae"], 4)
    metrics["beats_persistence"] = bool(metrics["mae"] < metrics["persistence_mae"])
    return metrics


def verdict(metrics, units=""):
    """Plain sentences: the model against persistence, then against any better baseline."""
    model, naive = metrics["mae"], metrics["persistence_mae"]
    if metrics["beats_persistence"]:
        text = (f"Beats persistence: test MAE {model:.3f}{units} vs {naive:.3f}{units} "
                f"({100 * metrics['skill_vs_persistence']:.1f}% lower).")
    else:
        text = (f"Does NOT beat persistence: test MAE {model:.3f}{units} vs {naive:.3f}{units} "
                "for simply repeating the last value. Use the persistence forecast instead.")
    for key, value in metrics.items():
        name = key[: -len("_mae")]
        if key.endswith("_mae") and name != "persistence" and value <= model:
            text += (f" It does NOT beat the {name.replace('_', ' ')} baseline either "
                     f"(MAE {value:.3f}{units}).")
    if "direction_accuracy" in metrics:
        called, up = metrics["direction_accuracy"], metrics["always_up_direction_accuracy"]
        skill = "better than" if called > up else "no better than"
        text += (f" It calls the direction of the move right on {100 * called:.1f}% of days, "
                 f"{skill} always saying 'up' ({100 * up:.1f}%); its forecasts vary by "
                 f"{metrics['forecast_std']:.3f}{units} (std) against {metrics['truth_std']:.3f}"
                 f"{units} for the truth.")
    return text


# --------------------------------------------------------------------------------------
# Evaluation and training
# --------------------------------------------------------------------------------------


def prepared_series(series):
    """`(features, target, names, split bounds, dates)` of a model's series."""
    columns = series_columns(series["dataset"])
    features, target, names = build_features(columns, series)
    dates = columns["date"]
    return features, target, names, split_bounds(dates, series["splits"]), dates


def evaluate(model, split="test", max_windows=None):
    """MAE/RMSE of the model and of the naive baselines on a split of its series."""
    split = {"valid": "validation", "val": "validation", "dev": "validation"}.get(split, split)
    features, target, _, bounds, _ = prepared_series(model.series)
    origins = window_origins(target, features, bounds[split], model.window, model.horizon)
    origins = origins[:max_windows]
    inputs, truth = windows_at(features, target, origins, model.window, model.horizon)
    return score_forecasts(model.series, target, origins, model.forecast(inputs), truth,
                           model.horizon, train_mean=model.target_mean)


def _window_dataset(inputs, targets, batch_size, shuffle, seed):
    data = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle:  # only windows of the training period are shuffled, among themselves
        data = data.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def train(config, run_dir, smoke=False):
    """Fit the recipe's forecaster on the training period; report the test period."""
    from zoo.training import TrainResult, fit

    series = dict(config["series"])
    window, horizon = config["window"], config.get("horizon", 1)
    features, target, names, bounds, dates = prepared_series(series)
    scaling = fit_scaling(features, target, bounds["train"][1])
    origins = {s: window_origins(target, features, bounds[s], window, horizon) for s in SPLITS}
    if config.get("max_windows"):  # the most recent windows of each split only
        origins = {s: o[-config["max_windows"]:] for s, o in origins.items()}
    data = {s: windows_at(features, target, o, window, horizon) for s, o in origins.items()}

    model = registry.get_architecture(config["architecture"]).build(
        num_features=len(names), window=window, horizon=horizon, series=series,
        feature_names=names, target_index=0, **scaling,
        **config.get("model", {}))
    model.compile(optimizer=keras.optimizers.Adam(config.get("learning_rate", 1e-3),
                                                  global_clipnorm=config.get("clipnorm", 1.0)),
                  loss=config.get("loss", "mae"), metrics=["mae", "root_mean_squared_error"])
    batch_size, seed = config.get("batch_size", 64), config.get("seed", 0)
    fit(model, _window_dataset(*data["train"], batch_size, True, seed),
        _window_dataset(*data["validation"], 512, False, seed),
        epochs=config.get("epochs", 30), run_dir=run_dir,
        monitor="val_loss", mode="min", patience=config.get("patience", 5))

    test_inputs, test_truth = data["test"]
    metrics = score_forecasts(series, target, origins["test"], model.forecast(test_inputs),
                              test_truth, horizon, train_mean=scaling["target_mean"])
    show = functools.partial(_format_date, frequency=series.get("frequency", "D"))
    period = {s: f"{show(dates[bounds[s][0]])}..{show(dates[bounds[s][1] - 1])}" for s in SPLITS}
    return TrainResult(
        model=model, metrics=metrics,
        data=(f"{series['dataset']} split by time: train {period['train']} "
              f"({len(origins['train'])} windows), validation {period['validation']} "
              f"({len(origins['validation'])}), test {period['test']} ({len(origins['test'])}); "
              "scaling fitted on the training period only"),
        extra={"verdict": verdict(metrics, config.get("units_label", "")),
               "features": names, "horizon": horizon, "window": window})


# --------------------------------------------------------------------------------------
# CSV of recent observations -> forecast (zoo predict NAME recent.csv [--plot out.png])
# --------------------------------------------------------------------------------------


def read_observations(path, dataset):
    """A CSV of recent observations -> `{column: array}` as `series_columns` gives.

    Accepts the layout of the dataset's source file (e.g. Beijing's
    `year,month,day,hour,...` or S&P's `DD-MM-YY` dates) or one with a
    `date` column holding ISO dates.
    """
    from zoo.data.builders.timeseries import SERIES_CONFIGS

    config = next((c for c in SERIES_CONFIGS if c.name == dataset), None)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no observations.")
    parsed = []
    for row in rows:
        date = row["date"] if "date" in row else config.date_format(row, config.date_column)
        values = {"date": date}
        for key, value in row.items():
            if key in ("date", "No", getattr(config, "date_column", None)):
                continue
            text_columns = getattr(config, "text_columns", ())
            values[key] = value if key in text_columns else _number(value)
        parsed.append(values)
    return rows_to_columns(parsed)


def _number(text):
    return math.nan if text.strip() in _MISSING else float(text)


def _future_dates(last_date, horizon, frequency):
    if frequency == "B":  # trading days
        day = last_date.astype("datetime64[D]")
        return np.array([np.busday_offset(day, h, roll="forward") for h in range(1, horizon + 1)])
    return last_date + _STEP[frequency] * np.arange(1, horizon + 1)


def forecast_csv(model, path):
    """Forecast from the last `window` rows of a CSV; adds the truth when the dataset has it."""
    series = model.series
    columns = read_observations(path, series["dataset"])
    features, target, _ = build_features(columns, series)
    if len(features) < model.window:
        raise ValueError(f"{path} has {len(features)} rows; this model needs the last "
                         f"{model.window} observations.")
    recent = features[-model.window :]
    if not np.isfinite(recent).all():
        raise ValueError(f"The last {model.window} rows of {path} have values that are missing "
                         "from the start (nothing to carry forward).")
    dates = columns["date"]
    result = dict(dates=dates, history=forward_fill(target), last_date=dates[-1],
                  future_dates=_future_dates(dates[-1], model.horizon, series["frequency"]),
                  forecast=model.forecast(recent[None])[0])
    if series.get("transform") == "log_return":  # back to the price: p_{t+h} = p_t e^{sum r / 100}
        last_price = float(columns[series["target"]][-1])
        result["implied_price"] = last_price * np.exp(np.cumsum(result["forecast"]) / 100.0)
    result["truth"] = _truth_after(series, dates[-1], model.horizon)
    return result


def _truth_after(series, last_date, horizon):
    """The observed values after `last_date` in the dataset (None if unknown)."""
    from zoo.data import MissingDataError

    try:
        columns = series_columns(series["dataset"])
    except MissingDataError:  # no local data: a forecast without the truth is still a forecast
        return None
    target = target_series(columns, series)
    position = int(np.searchsorted(columns["date"], last_date))
    if position >= len(target) or columns["date"][position] != last_date:
        return None
    truth = target[position + 1 : position + 1 + horizon]
    return truth if len(truth) == horizon else None


def plot_forecast(result, path, series, history_steps=None):
    """Save a PNG: recent history, the forecast and (when known) the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = history_steps or max(3 * len(result["forecast"]), 60)
    figure, axes = plt.subplots(figsize=(9, 3.5))
    axes.plot(result["dates"][-steps:], result["history"][-steps:], color="0.3", label="history")
    joined = np.concatenate([[result["last_date"]], result["future_dates"]])
    last_value = result["history"][-1]
    axes.plot(joined, np.concatenate([[last_value], result["forecast"]]), "o-", color="tab:blue",
              markersize=3, label="forecast")
    if result["truth"] is not None:
        axes.plot(joined, np.concatenate([[last_value], result["truth"]]), "s--",
                  color="tab:green", markersize=3, label="truth")
    label = target_name(series)
    axes.set(title=f"{series['dataset']}: {label}", ylabel=label)
    axes.legend(loc="best")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _format_date(date, frequency):
    unit = "m" if frequency == "h" else "D"
    return str(np.datetime_as_string(np.datetime64(date, unit))).replace("T", " ")


def render(model, inputs, plot=None, **_):
    lines = []
    show = functools.partial(_format_date, frequency=model.series.get("frequency", "D"))
    for index, path in enumerate(inputs):
        result = forecast_csv(model, path)
        values = ", ".join(f"{v:.2f}" for v in result["forecast"])
        first, last = show(result["future_dates"][0]), show(result["future_dates"][-1])
        span = first if len(result["future_dates"]) == 1 else f"{first} .. {last}"
        lines.append(f"{path}: last observation {show(result['last_date'])} "
                     f"({target_name(model.series)} {result['history'][-1]:.2f})")
        lines.append(f"  forecast {span}: {values}")
        if "implied_price" in result:
            prices = ", ".join(f"{p:.2f}" for p in result["implied_price"])
            lines.append(f"  implied {model.series['target']}: {prices}")
        if result["truth"] is not None:
            mae = float(np.nanmean(np.abs(result["forecast"] - result["truth"])))
            truth = ", ".join(f"{v:.2f}" for v in result["truth"])
            lines.append(f"  truth: {truth}  (MAE {mae:.2f})")
        if plot:
            target = plot if len(inputs) == 1 else f"{Path(plot).with_suffix('')}_{index}.png"
            lines.append(f"  plot saved to {plot_forecast(result, target, model.series)}")
    return lines


EXAMPLES = {
    "melbourne_min_temp": "melbourne_min_temp_recent.csv",
    "beijing_pm25": "beijing_pm25_recent.csv",
    "sp500": "sp500_recent.csv",
}


def examples(spec=None):
    dataset = getattr(spec, "dataset", None)
    return [str(EXAMPLES_DIR / EXAMPLES.get(dataset, EXAMPLES["melbourne_min_temp"]))]


# --------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------

MELBOURNE_SERIES = dict(
    dataset="melbourne_min_temp", target="Temp", calendar=["day_of_year"], frequency="D",
    season=365, splits=dict(validation="1989-01-01", test="1990-01-01"))


@registry.register_architecture(
    "lstm-forecaster", "forecasting",
    "Windows of past observations -> (Conv1D) -> LSTM/GRU -> next value(s)",
    demo_kwargs=dict(num_features=3, window=14, units=8, series=MELBOURNE_SERIES,
                     feature_names=["Temp", "day_of_year_sin", "day_of_year_cos"],
                     residual=True))
def build_forecaster(num_features, window, **kwargs):
    return Forecaster(num_features, window, **kwargs)


for _name, _dataset, _summary in (
    ("forecast-lstm-melbourne-temp", "melbourne_min_temp",
     "Melbourne daily minimum temperature, 1 day ahead (LSTM)"),
    ("forecast-lstm-beijing-pm25", "beijing_pm25",
     "Beijing hourly PM2.5 with weather covariates, next 24 hours (LSTM)"),
    ("forecast-lstm-sp500", "sp500",
     "S&P 500 daily log return, 1 day ahead (LSTM; no timing skill, see its card)"),
):
    registry.register_pretrained(registry.ModelSpec(
        name=_name, architecture="lstm-forecaster", task="forecasting", dataset=_dataset,
        recipe=f"recipes/{_name.replace('-', '_')}.py", metric="mae", summary=_summary))

registry.register_task(registry.TaskHandler(
    name="forecasting", evaluate=lambda model, spec, split="test": evaluate(model, split),
    render=render, examples=examples, train=train))
