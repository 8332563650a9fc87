"""Attacks that try to bring an erased concept back, each written from its paper's description: rephrased
prompts (paraphrase.py), a word learned on concept images against the erased model (inversion.py, Pham et
al. 2024), prompt tokens optimised to make the erased model denoise like the original (embedding.py, after
UnlearnDiffAtk), and fine-tuning on a few concept images (relearn.py). suite.py runs them with their
same-budget controls; docs/robustness.md explains the figures."""
