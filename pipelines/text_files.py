"""Reading the user's text files (prompt lists, metadata.jsonl) with a one-line error for a wrong encoding."""

from __future__ import annotations

from .errors import InputError


def read_text(path: str, argument: str) -> str:
    """A UTF-8 text file's contents (a BOM is dropped); a file in another encoding raises InputError that
    names ``argument``, the file, the line and the encoding to save it in."""
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise InputError(
            f"{argument}: {path} line {line} is not UTF-8 (byte 0x{raw[error.start]:02x}); save the file as UTF-8"
        ) from None


def read_text_lines(path: str, argument: str) -> list[str]:
    """The lines of a UTF-8 text file (see read_text), split at line feeds only: ``str.splitlines`` would also
    split at U+2028, U+0085 or a form feed, which JSON strings may hold raw."""
    return [line.removesuffix("\r") for line in read_text(path, argument).removesuffix("\n").split("\n")]
