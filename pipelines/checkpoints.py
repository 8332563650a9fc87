"""Training checkpoints: ``accelerator.save_state`` into ``checkpoint-{step}``, holding only the trainable
parameters (the frozen ones come from the base model).

A checkpoint is written under a temporary name, completed with a manifest (``erasediff_checkpoint.json``:
the run id, the step, every file with its size and SHA-256, and the arguments the run was trained with) and
only then renamed; older checkpoints are removed after that, never before. So a kill at any instant leaves at least
one complete checkpoint, and a folder without a valid manifest is never resumed from. Importable without
torch: argument parsing inspects checkpoints before the heavy imports.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass

from .errors import InputError
from .outputs import RETIRED_SUFFIX, STAGING_FOLDER

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINABLE_WEIGHTS_FILE = "trainable_parameters.safetensors"
MANIFEST_FILE = "erasediff_checkpoint.json"
PARTIAL_SUFFIX = ".partial"
DELETING_SUFFIX = ".deleting"


@dataclass(frozen=True)
class CheckpointManifest:
    """What a complete checkpoint records about itself."""

    run_id: str
    step: int
    files: dict  # file name (relative to the checkpoint) → {"bytes": size, "sha256": hex digest}
    arguments: dict  # the run's recorded arguments when the checkpoint was written
    loop_state: dict  # what the training loop carries from step to step besides accelerate's state (λ)


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """Folders named ``checkpoint-<step>`` in ``output_dir`` as (step, path), oldest first (complete or not)."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_PATTERN.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return sorted(found)


def read_manifest(path: str) -> CheckpointManifest:
    """The manifest of the checkpoint folder ``path``; raises ValueError saying why there is none."""
    manifest_path = os.path.join(path, MANIFEST_FILE)
    if not os.path.isfile(manifest_path):
        raise ValueError(f"it has no {MANIFEST_FILE} (it was cut short, or not written by train_erasediff.py)")
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            record = json.load(handle)
        return CheckpointManifest(
            record["run_id"],
            int(record["step"]),
            dict(record["files"]),
            record["arguments"],
            dict(record.get("loop_state", {})),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"its {MANIFEST_FILE} is unreadable ({error})") from error


def checkpoint_problem(path: str, run_id: str | None = None, contents: bool = True) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed from, or None when it is complete (and, with
    ``run_id``, belongs to that run). ``contents=False`` checks the manifest and the file sizes only, not the
    SHA-256 digests, which read every byte: enough to tell a complete checkpoint from a cut-short one."""
    try:
        manifest = read_manifest(path)
    except ValueError as error:
        return str(error)
    if run_id is not None and manifest.run_id != run_id:
        return f"it belongs to another run (run id {manifest.run_id}, this folder's run is {run_id})"
    for name, record in manifest.files.items():
        file_path = os.path.join(path, name)
        if not os.path.isfile(file_path):
            return f"{file_path} is missing"
        actual = os.path.getsize(file_path)
        if actual != record["bytes"]:
            return f"{file_path} is truncated or altered ({actual} bytes, {record['bytes']} written)"
    if not contents:
        return None
    for name, record in manifest.files.items():  # sizes first: they are free, the digests read everything
        file_path = os.path.join(path, name)
        if _sha256(file_path) != record["sha256"]:
            return f"{file_path} is corrupt (its SHA-256 differs from the one written)"
    return None


def newest_complete_checkpoint(
    output_dir: str, run_id: str | None, contents: bool = True, skip: str | None = None
) -> tuple[str | None, list[tuple[str, str]]]:
    """The newest complete checkpoint of run ``run_id`` in ``output_dir`` other than ``skip`` (None when there
    is none) and the newer folders it skipped, each with the reason; ``contents`` as in checkpoint_problem."""
    skipped = []
    for _, path in reversed(list_checkpoints(output_dir)):
        if skip is not None and os.path.abspath(path) == os.path.abspath(skip):
            continue
        problem = checkpoint_problem(path, run_id, contents)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def checkpoint_step(path: str) -> int:
    """The global step a checkpoint folder was saved at, from its name."""
    match = CHECKPOINT_PATTERN.match(os.path.basename(os.path.normpath(path)))
    if not match:
        raise InputError(f"--resume_from_checkpoint {path} is not a checkpoint-<step> folder")
    return int(match.group(1))


def check_named_checkpoint(path: str) -> CheckpointManifest:
    """The manifest of a checkpoint named with ``--resume_from_checkpoint PATH``; an incomplete one is refused
    in one line that names what is wrong and the newest intact checkpoint beside it."""
    checkpoint_step(path)
    problem = checkpoint_problem(path)
    if problem is not None:
        newest, _ = newest_complete_checkpoint(os.path.dirname(os.path.abspath(path)), None)
        instead = f"resume from {newest} instead" if newest else "no intact checkpoint lies beside it"
        raise InputError(f"--resume_from_checkpoint {path} cannot be resumed from: {problem}; {instead}")
    return read_manifest(path)


def remove_leftovers(output_dir: str) -> None:
    """Deletes what an interrupted save or rotation left behind: ``.checkpoint-*.partial``/``.deleting``, the
    final save's staging folder and retired parts (``.final.partial``, ``.<part>.old``)."""
    if not os.path.isdir(output_dir):
        return
    for name in os.listdir(output_dir):
        temporary_checkpoint = name.startswith(".checkpoint-") and name.endswith((PARTIAL_SUFFIX, DELETING_SUFFIX))
        temporary_result = name == STAGING_FOLDER or (name.startswith(".") and name.endswith(RETIRED_SUFFIX))
        if temporary_checkpoint or temporary_result:
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def _remove_checkpoint(path: str) -> None:
    """Renames first (one atomic step makes it stop being a checkpoint), then deletes."""
    doomed = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}{DELETING_SUFFIX}")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(8 * 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_records(folder: str) -> dict:
    records = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            records[os.path.relpath(path, folder)] = {"bytes": os.path.getsize(path), "sha256": _sha256(path)}
    return records


def _free_name(path: str) -> str:
    candidate, number = path, 1
    while os.path.exists(candidate):
        number += 1
        candidate = f"{path}-{number}"
    return candidate


def temporary_checkpoint_path(output_dir: str, step: int) -> str:
    """Where ``checkpoint-{step}`` is written before its manifest and rename make it complete."""
    return os.path.join(output_dir, f".checkpoint-{step}{PARTIAL_SUFFIX}")


def write_checkpoint_folder(
    output_dir: str,
    step: int,
    run_id: str,
    arguments: dict,
    write_state,
    total_limit: int | None,
    loop_state: dict | None = None,
) -> str:
    """Writes ``checkpoint-{step}`` with ``write_state(folder)`` (accelerate's ``save_state``) into a temporary
    folder, adds the manifest, renames it into place, and only then removes this run's oldest complete
    checkpoints beyond ``total_limit``. On an error the temporary folder is removed and the error re-raised.
    ``write_state=None``: every process has already written its part into :func:`temporary_checkpoint_path`
    (a sharded engine's ``save_state`` is collective)."""
    final_path = os.path.join(output_dir, f"checkpoint-{step}")
    temporary_path = temporary_checkpoint_path(output_dir, step)
    if write_state is not None:
        shutil.rmtree(temporary_path, ignore_errors=True)
    try:
        if write_state is not None:
            write_state(temporary_path)
        manifest = {
            "run_id": run_id,
            "step": step,
            "files": _file_records(temporary_path),
            "arguments": arguments,
            "loop_state": loop_state or {},
        }
        with open(os.path.join(temporary_path, MANIFEST_FILE), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        shutil.rmtree(temporary_path, ignore_errors=True)
        raise
    if os.path.isdir(final_path):
        if checkpoint_problem(final_path, run_id, contents=False) is None:  # this run's, from an earlier save
            _remove_checkpoint(final_path)
        else:  # not this run's (or incomplete): kept, under a name that is no checkpoint's
            os.replace(final_path, _free_name(f"{final_path}.replaced"))
    os.replace(temporary_path, final_path)
    if total_limit is not None:
        ours = [
            p
            for s, p in list_checkpoints(output_dir)
            if s != step and checkpoint_problem(p, run_id, contents=False) is None
        ]
        for path in ours[: max(0, len(ours) - total_limit + 1)]:
            _remove_checkpoint(path)
    return final_path


def register_trainable_state_hooks(accelerator, unet, family: str) -> None:
    """Makes ``save_state``/``load_state`` store only the UNet's trainable parameters, as safetensors; a LoRA
    run's checkpoint also holds ``pytorch_lora_weights.safetensors``, loadable with ``load_lora_weights``."""
    import torch
    from safetensors.torch import load_file, save_file

    from .export import save_lora_weights

    def save_hook(models, weights, output_dir):
        for model in models:
            unwrapped = accelerator.unwrap_model(model)
            state = {n: p.detach().contiguous() for n, p in unwrapped.named_parameters() if p.requires_grad}
            save_file(state, os.path.join(output_dir, TRAINABLE_WEIGHTS_FILE))
            if getattr(unwrapped, "peft_config", None):
                save_lora_weights(unwrapped, output_dir, family)
        for _ in range(len(weights)):
            weights.pop()

    def load_hook(models, input_dir):
        state = load_file(os.path.join(input_dir, TRAINABLE_WEIGHTS_FILE))
        while models:
            model = accelerator.unwrap_model(models.pop())
            parameters = {n: p for n, p in model.named_parameters() if p.requires_grad}
            if set(parameters) != set(state):
                raise InputError(
                    f"{input_dir} holds other trainable parameters than this run trains "
                    "(--use_lora, --rank, --lora_target_modules or --train_method differ); resume with the checkpoint's own"
                )
            with torch.no_grad():
                for name, parameter in parameters.items():
                    parameter.copy_(state[name])

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def diverged_message(output_dir: str, step: int, remain_loss: float, forget_loss: float, run_id: str) -> str:
    """What a user needs when the loss stops being finite: where, and which checkpoint is still good."""
    newest, _ = newest_complete_checkpoint(output_dir, run_id, contents=False)
    keep = f"the last good checkpoint is {newest}" if newest else "no checkpoint was saved yet"
    return (
        f"non-finite loss at step {step} (L_r={remain_loss}, f={forget_loss}); stopped without saving the model, "
        f"{keep}; start a new run in another --output_dir with a lower --learning_rate or --lambda_value, or bf16 "
        "instead of fp16 (a resume must keep these arguments)"
    )
