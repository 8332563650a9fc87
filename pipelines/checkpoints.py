"""Training checkpoints: ``accelerator.save_state`` into ``checkpoint-{step}``, holding only the trainable
parameters (the frozen ones come from the base model), written under a temporary name and then renamed,
so a checkpoint cut short by a crash never becomes the latest one. Importable without torch: argument
parsing resolves ``--resume_from_checkpoint`` before the heavy imports."""

from __future__ import annotations

import os
import re
import shutil

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINABLE_WEIGHTS_FILE = "trainable_parameters.safetensors"


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """Complete checkpoints in ``output_dir`` as (step, path), oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_PATTERN.match(name)
        if match and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(match.group(1)), os.path.join(output_dir, name)))
    return sorted(found)


def resolve_resume_path(resume_from_checkpoint: str, output_dir: str) -> str | None:
    """``latest`` → the newest checkpoint in ``output_dir`` (None when there is none); otherwise the path."""
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1][1] if checkpoints else None
    return resume_from_checkpoint


def checkpoint_step(path: str) -> int:
    """The global step a checkpoint folder was saved at, from its name."""
    match = CHECKPOINT_PATTERN.match(os.path.basename(os.path.normpath(path)))
    if not match:
        raise ValueError(f"--resume_from_checkpoint: {path} is not a checkpoint-<step> folder")
    return int(match.group(1))


def register_trainable_state_hooks(accelerator, unet) -> None:
    """Makes ``save_state``/``load_state`` store only the UNet's trainable parameters, as safetensors."""
    import torch
    from safetensors.torch import load_file, save_file

    def save_hook(models, weights, output_dir):
        for model in models:
            state = {
                n: p.detach().contiguous()
                for n, p in accelerator.unwrap_model(model).named_parameters()
                if p.requires_grad
            }
            save_file(state, os.path.join(output_dir, TRAINABLE_WEIGHTS_FILE))
        for _ in range(len(weights)):
            weights.pop()

    def load_hook(models, input_dir):
        state = load_file(os.path.join(input_dir, TRAINABLE_WEIGHTS_FILE))
        while models:
            model = accelerator.unwrap_model(models.pop())
            parameters = {n: p for n, p in model.named_parameters() if p.requires_grad}
            if set(parameters) != set(state):
                raise ValueError(
                    f"{input_dir} was saved with other trainable parameters (--use_lora, --rank or --train_method differ)"
                )
            with torch.no_grad():
                for name, parameter in parameters.items():
                    parameter.copy_(state[name])

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def save_checkpoint(accelerator, output_dir: str, step: int, total_limit: int | None) -> str:
    """Saves ``checkpoint-{step}`` atomically, first removing the oldest so at most ``total_limit`` remain."""
    final_path = os.path.join(output_dir, f"checkpoint-{step}")
    if accelerator.is_main_process:
        if total_limit is not None:
            existing = [path for s, path in list_checkpoints(output_dir) if s != step]
            for path in existing[: max(0, len(existing) - total_limit + 1)]:
                shutil.rmtree(path)
        temporary_path = os.path.join(output_dir, f".checkpoint-{step}.partial")
        shutil.rmtree(temporary_path, ignore_errors=True)
        accelerator.save_state(temporary_path)
        if os.path.isdir(final_path):
            shutil.rmtree(final_path)
        os.replace(temporary_path, final_path)
    accelerator.wait_for_everyone()
    return final_path


def diverged_message(output_dir: str, step: int, remain_loss: float, forget_loss: float) -> str:
    """What a user needs when the loss stops being finite: where, and which checkpoint is still good."""
    checkpoints = list_checkpoints(output_dir)
    keep = f"the last good checkpoint is {checkpoints[-1][1]}" if checkpoints else "no checkpoint was saved yet"
    return (
        f"non-finite loss at step {step} (L_r={remain_loss}, f={forget_loss}); stopped without saving the model, "
        f"{keep}; lower --learning_rate or --lambda_value, or use bf16 instead of fp16, and resume with "
        "--resume_from_checkpoint latest"
    )
