"""``python -m pipelines.evaluation``: the evaluation command (command.py)."""

from .command import run

run()
