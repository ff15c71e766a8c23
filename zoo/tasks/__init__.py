"""One module per task; importing this package registers every task's models."""

from zoo.tasks import classification  # noqa: F401
