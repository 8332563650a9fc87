"""Where a run's wall time goes: one clock, charged to one phase at a time, for the end summary, the trackers
and benchmarks/run_time.py."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager

# In the order a run meets them; the end summary lists them so.
LOADING = "loading"  # imports, checks, models, optimizer, accelerate's prepare
DATA = "data generation"  # reading user data and generating D_f/D_r with the base model
ENCODING = "encoding"  # VAE and text encodings, once
TRAINING = "training"
VALIDATION = "validation images"
SAVING = "saving"  # checkpoints, the erased model, its card and grid
EVALUATION = "evaluation"
PUBLISHING = "publishing"
PHASES = (LOADING, DATA, ENCODING, TRAINING, VALIDATION, SAVING, EVALUATION, PUBLISHING)

_LINE = re.compile(r"^\s*(?P<phase>[a-z][a-z ]+?):\s+(?P<seconds>\d+\.\d) s \(\s*\d+%\)$")


class PhaseClock:
    """Charges the wall time since ``started`` (e.g. the process's start) to the current phase: ``switch``
    moves on to the next phase, ``phase(...)`` runs a block inside another phase (a checkpoint during
    training) and then returns to the one it interrupted. Every second goes to exactly one phase."""

    def __init__(self, started: float | None = None, first_phase: str = LOADING):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._current = first_phase
        self._since = time.time() if started is None else started

    def _charge(self) -> None:
        now = time.time()
        self.seconds[self._current] += now - self._since
        self._since = now

    def switch(self, phase: str) -> None:
        """From now on, time goes to ``phase``."""
        self._charge()
        self._current = phase

    @contextmanager
    def phase(self, phase: str):
        """The block's time goes to ``phase``; afterwards the interrupted phase resumes."""
        interrupted = self._current
        self.switch(phase)
        try:
            yield
        finally:
            self.switch(interrupted)

    def totals(self) -> dict[str, float]:
        """Seconds per phase so far (every phase, zeros included), rounded to 0.1 s."""
        self._charge()
        return {name: round(seconds, 1) for name, seconds in self.seconds.items()}


def phase_lines(seconds: dict[str, float]) -> list[str]:
    """One line per phase that took any time: ``<phase>: <s> s (<share>%)``; parse_phase_lines reads them."""
    total = sum(seconds.values()) or 1.0
    return [f"{name}: {value:.1f} s ({100 * value / total:3.0f}%)" for name, value in seconds.items() if value >= 0.05]


def parse_phase_lines(text: str) -> dict[str, float]:
    """The phases and seconds of the phase lines in ``text`` (a run's log); missing phases are 0."""
    found = dict.fromkeys(PHASES, 0.0)
    for line in text.splitlines():
        match = _LINE.match(line)
        if match and match["phase"] in found:
            found[match["phase"]] = float(match["seconds"])
    return found
