"""The exceptions the command line reports as one line instead of a traceback."""


class InputError(ValueError):
    """A user's mistake, worded as one line that names the argument or file and what to do."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says what is left on disk and what to do.
    ``exit_code`` is the command line's exit status (130/143 after SIGINT/SIGTERM)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type's name when it has none."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__
