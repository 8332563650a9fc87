"""Continuing a run: which checkpoint ``--resume_from_checkpoint`` means, whether this run's arguments may
continue it, loading it with one-line errors, and saving checkpoints with one-line errors on a full disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass, field
from pickle import UnpicklingError  # the exception type only: torch.load(weights_only=True) raises it

from .checkpoints import (
    check_named_checkpoint,
    newest_complete_checkpoint,
    read_manifest,
    temporary_checkpoint_path,
    write_checkpoint_folder,
)
from .errors import InputError, TrainingError, first_line
from .outputs import FINISHED_MARKERS, read_recorded_arguments
from .run_folder import argument_differences, new_run_id, visible_entries


@dataclass
class ResumePlan:
    """Where a run starts: the checkpoint to load (None: step 0), the run id it continues, the arguments that
    checkpoint was trained with, and what was skipped on the way (to be logged)."""

    checkpoint: str | None
    run_id: str
    recorded: dict | None
    notes: list[str] = field(default_factory=list)

    def check_arguments(self, current: dict) -> None:
        """Refuses, in one line listing each difference, to continue a checkpoint with arguments that would
        change what it trained (pipelines/run_folder.MAY_DIFFER_ON_RESUME lists those that may differ)."""
        if not self.checkpoint or self.recorded is None:
            return
        differences = argument_differences(self.recorded, current)
        if differences:
            raise InputError(
                f"--resume_from_checkpoint: {self.checkpoint} was trained with other arguments: "
                + ", ".join(differences)
                + "; resume with the recorded values (erasediff_checkpoint.json) or start a new run in another --output_dir"
            )


def plan_resume(resume_from_checkpoint: str | None, output_dir: str) -> ResumePlan:
    """Resolves ``--resume_from_checkpoint`` (a path, ``latest`` or None) against ``output_dir``.

    ``latest`` takes the newest *complete* checkpoint of the folder's own run and notes each newer folder it
    skipped and why; with none, the run starts from scratch unless the folder holds a finished model (which
    starting over would overwrite: refused).
    """
    if not resume_from_checkpoint:
        return ResumePlan(None, new_run_id(), None)
    folder_arguments = read_recorded_arguments(output_dir) or {}
    if resume_from_checkpoint != "latest":
        manifest = check_named_checkpoint(resume_from_checkpoint)
        if folder_arguments.get("run_id") not in (None, manifest.run_id):
            raise InputError(
                f"--resume_from_checkpoint {resume_from_checkpoint} belongs to run {manifest.run_id}, but --output_dir "
                f"{output_dir} holds run {folder_arguments['run_id']}; resume into the checkpoint's own folder or an empty one"
            )
        return ResumePlan(resume_from_checkpoint, manifest.run_id, manifest.arguments)
    run_id = folder_arguments.get("run_id")
    path, skipped = newest_complete_checkpoint(output_dir, run_id)
    notes = [f"skipped {skipped_path}: {why}" for skipped_path, why in skipped]
    if path is None:
        if any(marker in visible_entries(output_dir) for marker in FINISHED_MARKERS):
            raise InputError(
                f"--resume_from_checkpoint latest: {output_dir} holds a finished run and no complete checkpoint to "
                "continue it from; choose another --output_dir"
            )
        notes.append(f"no complete checkpoint in {output_dir}; starting from scratch")
        return ResumePlan(None, run_id or new_run_id(), folder_arguments or None, notes)
    manifest = read_manifest(path)
    return ResumePlan(path, manifest.run_id, manifest.arguments, notes)


def _unreadable_file(path: str) -> tuple[str, str] | None:
    """The first file of a checkpoint that does not load, with why (run only after loading failed)."""
    from accelerate.utils import load
    from safetensors.torch import load_file

    for name in sorted(os.listdir(path)):
        file_path = os.path.join(path, name)
        try:
            if name.endswith(".safetensors"):
                load_file(file_path)
            elif name.endswith((".bin", ".pkl", ".pt")):
                load(file_path)  # as load_state reads them: weights only
            elif name.endswith(".json"):
                with open(file_path, encoding="utf-8") as handle:
                    json.load(handle)
        except UnpicklingError:
            return file_path, "it holds Python objects that are not loaded, for safety"
        except Exception as error:  # noqa: BLE001 - any failure to decode means the file is corrupt
            return file_path, f"it is corrupt ({first_line(error)})"
    return None


def load_checkpoint(accelerator, path: str) -> None:
    """``accelerator.load_state(path)``, with a file that cannot be loaded named in one line together with
    the newest other intact checkpoint."""
    try:
        accelerator.load_state(path)
    except InputError:
        raise
    except Exception as error:
        file_path, why = _unreadable_file(path) or (path, f"accelerate could not load it ({first_line(error)})")
        intact, _ = newest_complete_checkpoint(os.path.dirname(os.path.abspath(path)), None, skip=path)
        instead = f"resume from {intact} instead" if intact else "start a new run in another --output_dir"
        raise InputError(f"--resume_from_checkpoint: cannot load {file_path}: {why}; {instead}") from error


def save_checkpoint(
    accelerator,
    output_dir: str,
    step: int,
    run_id: str,
    arguments: dict,
    total_limit: int | None,
    wait: bool = True,
    collective: bool = False,
    loop_state: dict | None = None,
) -> str | None:
    """Saves ``checkpoint-{step}`` on the main process (pipelines/checkpoints.py) and, with ``wait``, has every
    process wait for it; a full disk ends the run in one line, with the partial folder removed and the
    earlier checkpoints intact. ``collective`` (FSDP, DeepSpeed): every process writes its shards first.
    ``loop_state`` (JSON values) goes into the manifest."""
    path = None
    write_state = accelerator.save_state
    if collective:
        temporary_path = temporary_checkpoint_path(output_dir, step)
        if accelerator.is_main_process:
            shutil.rmtree(temporary_path, ignore_errors=True)
        accelerator.wait_for_everyone()
        try:
            accelerator.save_state(temporary_path)
        except Exception as error:  # this process's part failed: no partial folder is left to look like one
            shutil.rmtree(temporary_path, ignore_errors=True)
            raise_if_disk_full(error, os.path.join(output_dir, f"checkpoint-{step}"), output_dir, run_id)
            raise
        accelerator.wait_for_everyone()
        write_state = None
    if accelerator.is_main_process:
        try:
            path = write_checkpoint_folder(output_dir, step, run_id, arguments, write_state, total_limit, loop_state)
        except Exception as error:
            raise_if_disk_full(error, os.path.join(output_dir, f"checkpoint-{step}"), output_dir, run_id)
            raise
    if wait:
        accelerator.wait_for_everyone()
    return path


# Below this much free space, a failed write is taken to be a full disk: safetensors and torch.save report a
# full disk in their own words (a SafetensorError, "unexpected pos"), not always as OSError(ENOSPC).
NEARLY_FULL_BYTES = 16 * 2**20


def is_disk_full(error: BaseException, folder: str) -> bool:
    """Whether ``error``, raised while writing into ``folder``, comes from a full disk or quota."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if "No space left on device" in str(error) or "os error 28" in str(error):
        return True
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def raise_if_disk_full(error: BaseException, folder: str, output_dir: str, run_id: str) -> None:
    """Turns a full disk while writing ``folder`` into one line (TrainingError) that says what is left."""
    if not is_disk_full(error, output_dir):
        return
    newest, _ = newest_complete_checkpoint(output_dir, run_id, contents=False)
    kept = f"the newest complete checkpoint, {newest}, is intact" if newest else "no checkpoint had been saved"
    raise TrainingError(
        f"no space left on the device while writing {folder}; the partial folder was removed and {kept}; "
        "free space and resume with --resume_from_checkpoint latest"
    ) from error
