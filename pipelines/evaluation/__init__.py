"""Evaluating an erasure: metrics that compare an erased model with its base (comparison.py, measurements.py,
one module per metric family), the report and model-card table (report.py), and the attacks that try to bring
the concept back (attacks/). The command is ``python -m pipelines.evaluation`` (docs/evaluation.md)."""
