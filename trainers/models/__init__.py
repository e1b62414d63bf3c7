"""The model zoo. Importing this package registers every model."""

from trainers.models import hybrid_attention  # noqa: F401
