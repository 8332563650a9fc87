"""What is trained: the official code's ``train_method`` choices mapped onto diffusers' UNet names, and
PEFT LoRA adapters restricted to the part of the UNet that ``train_method`` selects.

Mapping (CompVis name → diffusers name): ``attn2`` (cross-attention) and ``attn1`` (self-attention) keep
their names; ``time_embed`` → ``time_embedding``; the output block ``out.`` → ``conv_norm_out`` / ``conv_out``.
"""

from __future__ import annotations

from typing import Iterable

import torch

from .errors import InputError
from .options import DEFAULT_LORA_TARGET_MODULES, TRAIN_METHODS

_TIME_AND_OUTPUT = ("time_embedding", "conv_norm_out", "conv_out")


def _has_part(name: str, parts: Iterable[str]) -> bool:
    pieces = name.split(".")
    return any(part in pieces for part in parts)


def selected_by_train_method(name: str, train_method: str) -> bool:
    """Whether the UNet parameter or module called ``name`` belongs to the part ``train_method`` trains.

    - full: everything; xattn: cross-attention (``attn2``); selfattn: self-attention (``attn1``);
    - noxattn: everything but cross-attention, the time embedding and the output block;
    - notime: everything but the time embedding and the output block.
    """
    if train_method == "full":
        return True
    if train_method == "xattn":
        return _has_part(name, ("attn2",))
    if train_method == "selfattn":
        return _has_part(name, ("attn1",))
    if train_method == "noxattn":
        return not _has_part(name, ("attn2", *_TIME_AND_OUTPUT))
    if train_method == "notime":
        return not _has_part(name, _TIME_AND_OUTPUT)
    raise ValueError(f"unknown train_method {train_method!r}; choose from {TRAIN_METHODS}")


def select_trainable_parameters(unet: torch.nn.Module, train_method: str) -> list[torch.nn.Parameter]:
    """Freezes the UNet except the parameters ``train_method`` selects, and returns those."""
    trainable = []
    for name, parameter in unet.named_parameters():
        parameter.requires_grad_(selected_by_train_method(name, train_method))
        if parameter.requires_grad:
            trainable.append(parameter)
    return trainable


def lora_module_names(unet: torch.nn.Module, train_method: str, target_modules: Iterable[str]) -> list[str]:
    """Full names of the modules that get a LoRA adapter: a target suffix, inside the selected part."""
    suffixes = tuple(target_modules)
    return [
        name
        for name, module in unet.named_modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
        and any(name == s or name.endswith("." + s) for s in suffixes)
        and selected_by_train_method(name, train_method)
    ]


def add_lora_adapters(
    unet: torch.nn.Module, rank: int, lora_alpha: float, train_method: str, target_modules: Iterable[str]
) -> list[torch.nn.Parameter]:
    """Freezes the UNet, adds a PEFT LoRA adapter to the selected modules and returns its parameters."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    names = lora_module_names(unet, train_method, target_modules)
    if not names:
        raise InputError(
            f"--lora_target_modules {','.join(target_modules)} matches no module inside --train_method "
            f"{train_method}; name modules such as {','.join(DEFAULT_LORA_TARGET_MODULES)}"
        )
    config = LoraConfig(r=rank, lora_alpha=lora_alpha, init_lora_weights="gaussian", target_modules=names)
    unet.add_adapter(config)
    return [p for p in unet.parameters() if p.requires_grad]
