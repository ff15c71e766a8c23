"""Forecasting series: one config per series, one example per row, in time order."""

import csv
import dataclasses
import io
import math
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from zoo.data.builders.base import ZooBuilder, read_text

_BROWNLEE = (
    "https://raw.githubusercontent.com/jbrownlee/Datasets/d20fcb6402ae34e653d4513b00f39257bb37ed7f"
)
_SP500 = (
    "https://raw.githubusercontent.com/jaungiers/LSTM-Neural-Network-for-Time-Series-Prediction/"
    "da44411c91135b64c02eb60da3c7f574c7c4c253/data/sp500.csv"
)
MISSING_VALUES = ("", "NA", "NaN", "nan")


def _iso_date(row, column):
    return row[column]


def _day_month_year(row, column):
    """S&P 500 dates are `DD-MM-YY` (2000-2018) -> `YYYY-MM-DD`."""
    day, month, year = row[column].split("-")
    century = "20" if int(year) < 70 else "19"
    return f"{century}{year}-{month}-{day}"


def _year_month_day_hour(row, _):
    return f"{row['year']}-{int(row['month']):02d}-{int(row['day']):02d} {int(row['hour']):02d}:00"


@dataclasses.dataclass(eq=False)
class SeriesConfig(tfds.core.BuilderConfig):
    """A CSV series: its file, how to read its date, and its value columns."""

    file: str = ""
    url: str = ""
    date_column: str = ""
    date_format: callable = _iso_date
    float_columns: tuple = ()
    text_columns: tuple = ()


SERIES_CONFIGS = (
    SeriesConfig(
        name="melbourne_min_temp",
        description="Daily minimum temperature in Melbourne (°C), 1981-1990, 3,650 days.",
        file="daily-min-temperatures.csv",
        url=f"{_BROWNLEE}/daily-min-temperatures.csv",
        date_column="Date",
        float_columns=("Temp",),
    ),
    SeriesConfig(
        name="melbourne_max_temp",
        description="Daily maximum temperature in Melbourne (°C), 1981-1990, 3,650 days.",
        file="daily-max-temperatures.csv",
        url=f"{_BROWNLEE}/daily-max-temperatures.csv",
        date_column="Date",
        float_columns=("Temperature",),
    ),
    SeriesConfig(
        name="beijing_pm25",
        description="Hourly Beijing PM2.5 and weather, 2010-2014, 43,824 hours (pm2.5 NaN where missing).",
        file="beijing-pm25-pollution.csv.gz",
        url=f"{_BROWNLEE}/pollution.csv",
        date_format=_year_month_day_hour,
        float_columns=(
            "year",
            "month",
            "day",
            "hour",
            "pm2.5",
            "DEWP",
            "TEMP",
            "PRES",
            "Iws",
            "Is",
            "Ir",
        ),
        text_columns=("cbwd",),
    ),
    SeriesConfig(
        name="sp500",
        description="S&P 500 index, daily OHLCV, 2000-01-03 to 2018-08-31, 4,697 trading days.",
        file="sp500-daily-2000-2018.csv",
        url=_SP500,
        date_column="Date",
        date_format=_day_month_year,
        float_columns=("Open", "High", "Low", "Close", "Volume"),
    ),
    SeriesConfig(
        name="sunspots",
        description="Zurich monthly sunspot numbers, 1749-1983, 2,820 months.",
        file="monthly-sunspots.csv",
        url=f"{_BROWNLEE}/monthly-sunspots.csv",
        date_column="Month",
        float_columns=("Sunspots",),
    ),
    SeriesConfig(
        name="airline_passengers",
        description="International airline passengers (thousands), monthly, 1949-1960, 144 months.",
        file="airline-passengers.csv",
        url=f"{_BROWNLEE}/airline-passengers.csv",
        date_column="Month",
        float_columns=("Passengers",),
    ),
)


def _to_float(value):
    return math.nan if value.strip() in MISSING_VALUES else float(value)


class Timeseries(ZooBuilder, skip_registration=True):
    """Time series for forecasting, one config per series.

    Features: `date` (ISO string: `YYYY-MM-DD`, `YYYY-MM` for monthly series,
    `YYYY-MM-DD HH:00` for hourly Beijing), one float32 per numeric column
    under its CSV name (missing values are NaN), and a Text per categorical
    column (Beijing's wind direction `cbwd`). Beijing's row counter `No` is
    dropped. A single `train` split holds the whole series in time order; cut
    it by time for validation.
    """

    name = "timeseries"
    FOLDER = "timeseries"
    SPLITS = ("train",)
    BUILDER_CONFIGS: ClassVar[list] = list(SERIES_CONFIGS)

    def _info(self):
        config = self.builder_config
        features = {"date": tfds.features.Text()}
        features.update({c: tfds.features.Scalar(np.float32) for c in config.float_columns})
        features.update({c: tfds.features.Text() for c in config.text_columns})
        return self._zoo_info(
            features=features,
            description=config.description,
            homepage="https://github.com/jbrownlee/Datasets",
            citation="Hyndman, Time Series Data Library; Liang et al. (2015) for Beijing PM2.5.",
        )

    def _source_files(self, config):
        return {"series": (config.file, config.url)}

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(self._resolve_sources(dl_manager)["series"])}

    def _generate_examples(self, path):
        config = self.builder_config
        for index, row in enumerate(csv.DictReader(io.StringIO(read_text(path), newline=""))):
            example = {"date": config.date_format(row, config.date_column)}
            example.update({c: _to_float(row[c]) for c in config.float_columns})
            example.update({c: row[c] for c in config.text_columns})
            yield index, example
