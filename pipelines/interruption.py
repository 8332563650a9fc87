"""Ending a run cleanly on Ctrl-C (SIGINT) or a scheduler's preemption (SIGTERM). Before training, a signal
stops the run at once (nothing trained is lost); from the first training step on, the first signal asks the
run to stop after the current optimizer step with a checkpoint, and a second one stops it at once."""

from __future__ import annotations

import shlex
import signal
import sys
from typing import Sequence

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal number, as shells report it


class StopAtOnce(KeyboardInterrupt):
    """A signal before training started, or a second one while the run was already stopping."""

    def __init__(self, signum: int, why: str):
        super().__init__(f"stopped at once by {why}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 130)


class StopRequest:
    """Installs the SIGINT/SIGTERM handlers for the length of a ``with`` block (main thread only); the previous
    handlers come back on exit. Until ``stop_after_steps`` is called a signal stops at once (StopAtOnce);
    after it, the first signal is recorded for the loop to act on."""

    def __init__(self):
        self.signum: int | None = None
        self.immediate = True
        self.at_once_because = "before training started"
        self._previous: dict = {}

    def stop_after_steps(self) -> None:
        """From now on the first signal waits for the end of the current step."""
        self.immediate = False

    def stop_at_once(self, because: str) -> None:
        """From now on a signal stops at once (nothing would be lost); ``because`` ends its message."""
        self.immediate, self.at_once_because = True, because

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
        name = signal.Signals(signum).name
        if self.immediate:
            raise StopAtOnce(signum, f"{name} {self.at_once_because}")
        if self.signum is not None:
            raise StopAtOnce(signum, f"a second {name}")
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
