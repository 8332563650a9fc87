"""The library behind train_erasediff.py: one module per stage of an EraseDiff run (see README.md)."""
