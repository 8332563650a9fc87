"""The library behind train_erasediff.py: one module per stage (README.md lists them)."""

from .quiet_imports import install_filters

install_filters()
