"""What is trained: the official code's ``train_method`` choices mapped onto the denoiser's module names (the
family's ModuleParts: a UNet's in families/unet.py, SD3's and FLUX's transformers' in
families/transformer.py; docs/method.md lists them), and PEFT LoRA adapters restricted to the part that
``train_method`` selects.
"""

from __future__ import annotations

from typing import Iterable

import torch

from .errors import InputError
from .families import ModuleParts
from .families.unet import UNET_PARTS
from .options import TRAIN_METHODS


def selected_by_train_method(name: str, train_method: str, parts: ModuleParts = UNET_PARTS) -> bool:
    """Whether the denoiser's parameter or module called ``name`` belongs to the part ``train_method`` trains.

    - full: everything; xattn: where text meets the image (a UNet's cross-attention ``attn2``); selfattn:
      the image's self-attention (a UNet's ``attn1``);
    - noxattn: everything but xattn's part, the time embedding and the output layers;
    - notime: everything but the time embedding and the output layers.
    """
    if train_method == "full":
        return True
    if train_method == "xattn":
        return parts.contains(parts.cross_attention, name)
    if train_method == "selfattn":
        return parts.contains(parts.self_attention, name)
    if train_method == "noxattn":
        return not parts.contains(parts.cross_attention + parts.time_and_output, name)
    if train_method == "notime":
        return not parts.contains(parts.time_and_output, name)
    raise ValueError(f"unknown train_method {train_method!r}; choose from {TRAIN_METHODS}")


def select_trainable_parameters(
    model: torch.nn.Module, train_method: str, parts: ModuleParts = UNET_PARTS
) -> list[torch.nn.Parameter]:
    """Freezes the denoiser except the parameters ``train_method`` selects, and returns those."""
    trainable = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(selected_by_train_method(name, train_method, parts))
        if parameter.requires_grad:
            trainable.append(parameter)
    return trainable


def lora_module_names(
    model: torch.nn.Module, train_method: str, target_modules: Iterable[str], parts: ModuleParts = UNET_PARTS
) -> list[str]:
    """Full names of the modules that get a LoRA adapter: a target suffix, inside the selected part."""
    suffixes = tuple(target_modules)
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
        and any(name == s or name.endswith("." + s) for s in suffixes)
        and selected_by_train_method(name, train_method, parts)
    ]


def add_lora_adapters(
    model: torch.nn.Module,
    rank: int,
    lora_alpha: float,
    train_method: str,
    target_modules: Iterable[str],
    parts: ModuleParts = UNET_PARTS,
) -> list[torch.nn.Parameter]:
    """Freezes the denoiser, adds a PEFT LoRA adapter to the selected modules and returns its parameters."""
    from peft import LoraConfig

    model.requires_grad_(False)
    names = lora_module_names(model, train_method, target_modules, parts)
    if not names:
        raise InputError(
            f"--lora_target_modules {','.join(target_modules)} matches no module inside --train_method "
            f"{train_method}; name modules such as to_k,to_q,to_v,to_out.0 (docs/method.md lists each family's)"
        )
    config = LoraConfig(r=rank, lora_alpha=lora_alpha, init_lora_weights="gaussian", target_modules=names)
    model.add_adapter(config)
    return [p for p in model.parameters() if p.requires_grad]
