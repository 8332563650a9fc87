"""The line every benchmark ends with: its summary as one JSON object, printed and, with --json_out, appended."""

from __future__ import annotations

import json


def emit(summary: dict, json_out: str | None) -> None:
    """Prints ``summary`` as one JSON line and appends the same line to ``json_out`` when given."""
    line = json.dumps(summary)
    if json_out:
        with open(json_out, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    print(line, flush=True)
