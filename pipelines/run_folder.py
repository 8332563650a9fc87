"""Whose output folder is it: the run that wrote it (its id, finished or not), the lock a running run holds,
and whether a resumed run has the arguments its checkpoint was trained with. Importable without torch."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

from .checkpoints import list_checkpoints
from .errors import InputError

LOCK_FILE = ".erasediff.lock"
# Written last by the final save (pipelines/export.py), so their presence means the run finished.
FINISHED_MARKERS = ("model_index.json", "pytorch_lora_weights.safetensors")

# Arguments that cannot change what a resumed run computes, so they may differ from the checkpoint's.
MAY_DIFFER_ON_RESUME = frozenset(
    {
        "output_dir",
        "overwrite_output_dir",
        "cache_dir",
        "resume_from_checkpoint",
        "checkpointing_steps",
        "checkpoints_total_limit",
        "gradient_checkpointing",
        "validation_prompts",
        "num_validation_images",
        "validation_steps",
        "report_to",
        "logging_dir",
        "evaluate",
        "evaluation_metrics",
        "evaluation_num_images",
        "evaluation_clip_model",
        "evaluation_classifier_model",
        "save_as",
        "push_to_hub",
        "hub_model_id",
        "hub_private_repo",
        "push_checkpoints",
        "push_generated_data",
        "push_logs",
        "run_id",
    }
)
# A decaying schedule is built from --max_train_steps; these are not, so the run may be made longer.
SCHEDULES_THAT_MAY_GROW = ("constant", "constant_with_warmup")


def new_run_id() -> str:
    """A fresh id that the run records in its arguments and in every checkpoint."""
    return uuid.uuid4().hex[:12]


def visible_entries(output_dir: str) -> list[str]:
    """The folder's entries, without the lock file (which never counts as content)."""
    return [name for name in os.listdir(output_dir) if name != LOCK_FILE] if os.path.isdir(output_dir) else []


def earlier_run(output_dir: str, args_file: str) -> str | None:
    """A description of the run an output folder already holds (finished or not), or None."""
    entries = visible_entries(output_dir)
    checkpoints = list_checkpoints(output_dir)
    partial = [n for n in entries if n.startswith(".checkpoint-")]
    if args_file not in entries and not checkpoints and not partial:
        return None
    if any(marker in entries for marker in FINISHED_MARKERS):
        return "a finished EraseDiff run"
    newest = f", newest checkpoint {os.path.basename(checkpoints[-1][1])}" if checkpoints else ", no checkpoint"
    return f"an unfinished EraseDiff run{newest}"


def _process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def read_lock(output_dir: str) -> dict | None:
    """The lock's record ({"pid", "host", "started"}), {} when unreadable, None when there is no lock."""
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def lock_holder(output_dir: str) -> str | None:
    """Who holds the folder's lock, worded for an error message, when that run may still be running."""
    record = read_lock(output_dir)
    if record is None:
        return None
    if record == {}:
        return f"an unknown process (unreadable {LOCK_FILE}; delete it if no run uses the folder)"
    here = record.get("host") == socket.gethostname()
    if here and not _process_is_alive(int(record.get("pid", -1))):
        return None
    where = "this host" if here else f"host {record.get('host')}"
    return f"process {record.get('pid')} on {where}" + ("" if here else f" (delete {LOCK_FILE} if it has stopped)")


class OutputLock:
    """A lock file in the output folder, held for a whole run; a dead holder on this host is taken over."""

    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, LOCK_FILE)
        self.record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        self.held = False
        self.created_folder = False

    def acquire(self) -> str | None:
        """Takes the lock (creating the folder if needed); returns a message when it took over a dead
        process's lock. Raises InputError naming the holder when a live run holds it."""
        folder = os.path.dirname(self.path) or "."
        self.created_folder = not os.path.isdir(folder)
        os.makedirs(folder, exist_ok=True)
        message = None
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                output_dir = os.path.dirname(self.path)
                holder = lock_holder(output_dir)
                if holder is not None:
                    raise InputError(
                        f"--output_dir {output_dir} is in use by {holder}; wait for that run or choose another --output_dir"
                    ) from None
                stale = read_lock(output_dir) or {}
                message = f"took over the lock of process {stale.get('pid')}, which is no longer running"
                os.remove(self.path)
                continue
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(self.record, handle)
            self.held = True
            return message
        raise InputError(f"--output_dir {os.path.dirname(self.path)}: could not take {LOCK_FILE}; try again")

    def release(self) -> None:
        """Removes the lock if this process still holds it, and the folder if the lock created it and a
        refused run left it empty."""
        folder = os.path.dirname(self.path) or "."
        if self.held and (read_lock(folder) or {}).get("pid") == self.record["pid"]:
            os.remove(self.path)
            if self.created_folder and not os.listdir(folder):
                os.rmdir(folder)
        self.held = False


def argument_differences(recorded: dict, current: dict) -> list[str]:
    """The run-defining arguments whose value differs between a checkpoint's record and this run, each as
    ``--name recorded (now current)``; --max_train_steps may only grow, and only with a constant schedule."""
    differences = []
    for name in sorted(set(recorded) | set(current)):
        if name in MAY_DIFFER_ON_RESUME or recorded.get(name) == current.get(name):
            continue
        if (
            name == "max_train_steps"
            and current.get("lr_scheduler") in SCHEDULES_THAT_MAY_GROW
            and recorded.get("lr_scheduler") == current.get("lr_scheduler")
            and current[name] > recorded[name]
        ):
            continue
        differences.append(f"--{name} {recorded.get(name)} (now {current.get(name)})")
    return differences
