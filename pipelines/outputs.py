"""The output folder: refusing to clobber someone else's files, and recording the run's arguments."""

from __future__ import annotations

import json
import os

from .errors import InputError

ARGS_FILE = "erasediff_args.json"
LORA_WEIGHTS_FILE = "pytorch_lora_weights.safetensors"
# Present only in a finished output folder (moved in last by the final save): a loadable pipeline or LoRA.
FINISHED_MARKERS = ("model_index.json", LORA_WEIGHTS_FILE)
# The final save's staging folder, and the suffix of a part it replaces while moving the new one in.
STAGING_FOLDER = ".final.partial"
RETIRED_SUFFIX = ".old"
# Never written to disk or logs: they are credentials.
SECRET_ARGUMENTS = ("hub_token",)


def check_output_dir(output_dir: str, overwrite: bool, resuming: bool = False, lock_held: bool = False) -> None:
    """Raises InputError (one line, naming --output_dir) when the folder cannot or should not be written: a
    file, a folder a live run holds, an earlier run's folder (unless resuming it), or someone else's files.

    Run at parse time (fail early) and again once this run holds the folder's lock (``lock_held``), since
    another run may have written the folder in between."""
    from .run_folder import earlier_run, lock_holder, visible_entries

    probe = os.path.abspath(output_dir)
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if os.path.isfile(probe):
        where = "is a file" if probe == os.path.abspath(output_dir) else f"lies under the file {probe}"
        raise InputError(f"--output_dir {output_dir} {where}; choose a folder path")
    if not os.path.isdir(output_dir):
        return
    holder = None if lock_held else lock_holder(output_dir)
    if holder is not None:
        raise InputError(
            f"--output_dir {output_dir} is in use by {holder}; wait for that run or choose another --output_dir"
        )
    earlier = earlier_run(output_dir, ARGS_FILE)
    if earlier is not None and not resuming:
        raise InputError(
            f"--output_dir {output_dir} holds {earlier}; continue it with --resume_from_checkpoint latest, "
            "or choose another --output_dir (nothing in it is overwritten)"
        )
    if earlier is None and visible_entries(output_dir) and not overwrite:
        raise InputError(
            f"--output_dir {output_dir} is not empty and holds no earlier EraseDiff run; choose an empty folder "
            "or pass --overwrite_output_dir to write into it (nothing in it is deleted)"
        )


def public_arguments(args) -> dict:
    """The run's arguments without secrets, as JSON-ready values."""
    return {key: value for key, value in vars(args).items() if key not in SECRET_ARGUMENTS}


def read_recorded_arguments(output_dir: str) -> dict | None:
    """The arguments an earlier run recorded in ``output_dir``, if any; an unreadable record is one line."""
    path = os.path.join(output_dir, ARGS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError) as error:
        raise InputError(f"{path} is unreadable ({error}); restore it or choose another --output_dir") from error
    if not isinstance(record, dict):
        raise InputError(f"{path} holds no argument record; restore it or choose another --output_dir")
    return record


def recorded_form(args) -> dict:
    """The run's public arguments exactly as ``erasediff_args.json`` and the checkpoints hold them."""
    return json.loads(json.dumps(public_arguments(args)))


def save_arguments(args, output_dir: str) -> None:
    """Writes ``erasediff_args.json`` (never the Hub token), replacing the old one in one step."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, ARGS_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(public_arguments(args), handle, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
