"""Moved to ``pipelines.families`` (one module per model family); the old name stays importable."""

from .families import *  # noqa: F401,F403
