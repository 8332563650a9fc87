"""The one exception type for mistakes a user can make (arguments, files, data)."""


class InputError(ValueError):
    """A user's mistake, worded as one line that names the argument or file and what to do."""
