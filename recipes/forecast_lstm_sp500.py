"""forecast-lstm-sp500: tomorrow's S&P 500 daily log return (a negative result).

Inputs: the last 20 daily log returns of the close, r_t = 100 log(p_t / p_{t-1}).
One LSTM of 32 units forecasts r_{t+1}; trained on 2000-2014, 2015-2016 for early
stopping, test period 2017-01..2018-08. The baseline that matters is the
price's persistence (tomorrow's close = today's, i.e. a return of 0); the
card also gives "tomorrow's return = today's" and the drift (the training
period's mean return). Daily index returns are close to unpredictable from
their own past.

Measured (test 2017-01..2018-08, 420 days): MAE 0.435% against 0.445% for
persistence and 0.443% for the drift, but only because the LSTM forecasts an
almost constant small positive return (std 0.05% against 0.67% for the
truth), close to that bull market's median. It calls the direction right on
56.7% of days, below always saying "up" (57.4%): no timing skill. The card's
verdict says so.

    zoo train recipes/forecast_lstm_sp500.py
"""

from pathlib import Path

CONFIG = dict(
    name="forecast-lstm-sp500",
    task="forecasting",
    architecture="lstm-forecaster",
    recipe_file=Path(__file__).name,
    series=dict(dataset="sp500", target="Close", transform="log_return", frequency="B",
                splits=dict(validation="2015-01-01", test="2017-01-01")),
    window=20,
    horizon=1,
    model=dict(cell="lstm", units=32, num_layers=1),
    loss="mae",
    learning_rate=1e-3,
    clipnorm=1.0,
    batch_size=64,
    epochs=50,
    patience=5,
    seed=0,
    units_label=" %",
    smoke=dict(model=dict(units=8), max_windows=200, epochs=1),
)

if __name__ == "__main__":
    from zoo.training import run_recipe

    run_recipe(CONFIG)
