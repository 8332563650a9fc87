"""``python -m pipelines.evaluate``, the evaluation command's first name, kept working for existing scripts;
the command lives in pipelines/evaluation/ (``python -m pipelines.evaluation``)."""

from .evaluation.command import run

if __name__ == "__main__":
    run()
