"""forecast-lstm-melbourne-temp: tomorrow's minimum temperature in Melbourne.

Inputs: the last 30 days of the daily minimum (degrees C) and the day of the
year as (sin, cos). One LSTM of 32 units forecasts the change from today's
value (`residual=True`), trained on 1981-1988 with 1989 for early stopping;
test period 1990, reported beside persistence (tomorrow = today) and seasonal
persistence (tomorrow = the same day last year).

    zoo train recipes/forecast_lstm_melbourne_temp.py
"""

from pathlib import Path

CONFIG = dict(
    name="forecast-lstm-melbourne-temp",
    task="forecasting",
    architecture="lstm-forecaster",
    recipe_file=Path(__file__).name,
    series=dict(dataset="melbourne_min_temp", target="Temp", calendar=["day_of_year"],
                frequency="D", season=365,
                splits=dict(validation="1989-01-01", test="1990-01-01")),
    window=30,
    horizon=1,
    model=dict(cell="lstm", units=32, num_layers=1, residual=True),
    loss="mse",
    learning_rate=1e-3,
    clipnorm=1.0,
    batch_size=64,
    epochs=50,
    patience=5,
    seed=0,
    units_label=" C",
    smoke=dict(model=dict(units=8), max_windows=200, epochs=1),
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
