"""forecast-lstm-beijing-pm25: the next 24 hours of PM2.5 in Beijing, from weather too.

Inputs: the last 48 hours of PM2.5 (missing hours carried forward, with a 0/1
"missing" column), dew point, temperature, pressure, cumulated wind speed,
hours of snow and rain, the wind direction one-hot (NE, NW, SE, calm "cv") and
the hour of day as (sin, cos). One LSTM of 64 units forecasts the change from
the last observed value for each of the next 24 hours (never below 0), trained on 2010-2012
with 2013 for early stopping (MAE loss); test period 2014. Windows whose
24-hour truth has a missing hour are left out of training and scoring.
Baselines: persistence (the last value for all 24 hours) and seasonal
persistence (the same hour yesterday).

    zoo train recipes/forecast_lstm_beijing_pm25.py
"""

from pathlib import Path

CONFIG = dict(
    name="forecast-lstm-beijing-pm25",
    task="forecasting",
    architecture="lstm-forecaster",
    recipe_file=Path(__file__).name,
    series=dict(dataset="beijing_pm25", target="pm2.5", missing_indicator=True,
                covariates=["DEWP", "TEMP", "PRES", "Iws", "Is", "Ir"],
                categorical={"cbwd": ["NE", "NW", "SE", "cv"]}, calendar=["hour_of_day"],
                frequency="h", season=24,
                splits=dict(validation="2013-01-01", test="2014-01-01")),
    window=48,
    horizon=24,
    model=dict(cell="lstm", units=64, num_layers=1, residual=True, nonnegative=True),
    loss="mae",
    learning_rate=1e-3,
    clipnorm=1.0,
    batch_size=128,
    epochs=20,
    patience=3,
    seed=0,
    units_label=" ug/m3",
    smoke=dict(model=dict(units=8), max_windows=200, epochs=1),
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
