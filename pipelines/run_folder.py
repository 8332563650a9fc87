"""Whose output folder is it: the run that wrote it (its id, finished or not), the lock a running run holds,
and whether a resumed run has the arguments its checkpoint was trained with. Importable without torch."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid

from .checkpoints import list_checkpoints
from .errors import InputError
from .outputs import FINISHED_MARKERS

LOCK_FILE = ".erasediff.lock"
# Written last by the final save (pipelines/export.py), so their presence means the run finished.

# Arguments that cannot change what a resumed run computes, so they may differ from the checkpoint's.
MAY_DIFFER_ON_RESUME = frozenset(
    {
        "output_dir",
        "overwrite_output_dir",
        "allow_unverified_engine",
        "cache_dir",
        "resume_from_checkpoint",
        "checkpointing_steps",
        "checkpoints_total_limit",
        "gradient_checkpointing",
        "generation_batch_size",  # each image has its own seed; the batch only sets how many run at once
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
    partial = [n for n in entries if n.startswith(".checkpoint-") or n == f"{args_file}.tmp"]
    if args_file not in entries and not checkpoints and not partial:
        return None
    if any(marker in entries for marker in FINISHED_MARKERS):
        return "a finished EraseDiff run"
    newest = f", newest checkpoint {os.path.basename(checkpoints[-1][1])}" if checkpoints else ", no checkpoint"
    return f"an unfinished EraseDiff run{newest}"


def read_lock(output_dir: str) -> dict:
    """What the lock file says about its holder ({"pid", "host", "started"}); {} when absent or unreadable."""
    try:
        with open(os.path.join(output_dir, LOCK_FILE), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _holder_words(record: dict) -> str:
    host = record.get("host")
    where = "this host" if host == socket.gethostname() else f"host {host}"
    return f"process {record.get('pid', '(unknown)')} on {where}"


def lock_holder(output_dir: str) -> str | None:
    """Who holds the folder's lock, worded for an error message, or None when no live run holds it.

    The lock is an advisory ``flock`` on the lock file, which the kernel releases when its process ends in
    any way (SIGKILL included), so a lock file alone never blocks anyone.
    """
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        # A shared probe: it conflicts only with a run's exclusive lock, never with another process probing
        # at the same moment (every process of a launch parses its arguments at once).
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_words(read_lock(output_dir))
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return None
    finally:
        os.close(descriptor)


class OutputLock:
    """The output folder's lock, held for a whole run: an exclusive ``flock`` on ``.erasediff.lock`` (which
    records the holder's pid and host). A lock file whose process has ended holds nothing and is taken over."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_FILE)
        self.record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        self.descriptor: int | None = None
        self.created_folder = False

    def acquire(self) -> str | None:
        """Takes the lock (creating the folder if needed); returns a message when a lock file of an ended
        process was there. Raises InputError naming the holder when a live run holds it."""
        self.created_folder = not os.path.isdir(self.output_dir)
        os.makedirs(self.output_dir, exist_ok=True)
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                raise InputError(
                    f"--output_dir {self.output_dir} is in use by {_holder_words(read_lock(self.output_dir))}; "
                    "wait for that run or choose another --output_dir"
                ) from None
            # The holder we waited behind may have removed the file: then this lock is on a dead inode.
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(descriptor)
        previous = read_lock(self.output_dir)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, json.dumps(self.record).encode())
        self.descriptor = descriptor
        if previous:
            return f"took over the lock of {_holder_words(previous)}, which is no longer running"
        return None

    def release(self) -> None:
        """Removes the lock file and releases the lock (in that order, so that no one locks a removed file),
        and removes the folder if the lock created it and a refused run left it empty."""
        if self.descriptor is None:
            return
        os.remove(self.path)
        os.close(self.descriptor)
        self.descriptor = None
        if self.created_folder and not os.listdir(self.output_dir):
            os.rmdir(self.output_dir)


# Recorded facts that are not flags, and how a difference in them is worded.
RECORDED_FACTS = {
    "forget_data_digest": "the forget images or their captions changed",
    "remain_data_digest": "the remain images or their captions changed",
    "num_processes": "the number of processes",
    "distributed_engine": "the distributed engine (accelerate config)",
}


def argument_differences(recorded: dict, current: dict) -> list[str]:
    """The run-defining arguments whose value differs between a checkpoint's record and this run, each as
    ``--name recorded (now current)``; --max_train_steps may only grow, and only with a constant schedule."""
    differences = []
    for name in sorted(set(recorded) | set(current)):
        if name in MAY_DIFFER_ON_RESUME or recorded.get(name) == current.get(name):
            continue
        if name.endswith("_data_digest"):
            differences.append(RECORDED_FACTS[name])
            continue
        if name == "distributed_engine" and name not in recorded:  # recorded since engines were checked
            continue
        if name in RECORDED_FACTS:
            differences.append(f"{RECORDED_FACTS[name]} {recorded.get(name)} (now {current.get(name)})")
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
