"""One module per task; importing this package registers every task's models."""

from zoo.tasks import classification  # noqa: F401
from zoo.tasks import language_model  # noqa: F401
from zoo.tasks import tagging  # noqa: F401
from zoo.tasks import forecasting  # noqa: F401
from zoo.tasks import translation  # noqa: F401
from zoo.tasks import captioning  # noqa: F401
