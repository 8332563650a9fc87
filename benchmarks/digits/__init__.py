"""The offline digits testbed: a tiny text-to-image model trained on scikit-learn's 8×8 digits, a judge
classifier, and the unlearning benchmark that erases each digit with train_erasediff.py (docs/benchmarks.md)."""
