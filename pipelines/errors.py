"""The exceptions the command line reports as one line instead of a traceback."""


class InputError(ValueError):
    """A user's mistake, worded as one line that names the argument or file and what to do."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says what is left on disk and what to do."""
