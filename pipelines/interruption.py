"""Ending a run cleanly on Ctrl-C (SIGINT) or a scheduler's preemption (SIGTERM): the first signal asks the
training loop to stop after the current optimizer step with a checkpoint; a second Ctrl-C stops at once."""

from __future__ import annotations

import shlex
import signal
import sys
from typing import Sequence

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal number, as shells report it


class StopAtOnce(KeyboardInterrupt):
    """A second Ctrl-C (or SIGTERM) while the run was already stopping."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopRequest:
    """Installs the SIGINT/SIGTERM handlers for the length of a ``with`` block (main thread only) and records
    the first signal; the previous handlers come back on exit."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 1)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise StopAtOnce(signum)
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after the current step with a checkpoint "
            "(press Ctrl-C again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> "StopRequest":
        try:
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: signals stay as they are
            self._previous = {}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def resume_command(argv: Sequence[str]) -> str:
    """The command line that continues this run: the same arguments with ``--resume_from_checkpoint latest``."""
    kept, skip = [], False
    for value in argv:
        if skip:
            skip = False
            continue
        if value == "--resume_from_checkpoint":
            skip = True
            continue
        if value.startswith("--resume_from_checkpoint="):
            continue
        kept.append(value)
    return shlex.join(["accelerate", "launch", "train_erasediff.py", *kept, "--resume_from_checkpoint", "latest"])
