"""The one training engine shared by every model (see trainers.engine.trainer)."""
