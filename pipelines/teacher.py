"""The frozen base model θ₀ as a regression target for the remain set (``--remain_target teacher``).

Its prediction on the noised remain latents, sg[model_θ₀(z_t, t, c_r)], is what the remain loss pulls the
trained model towards: the base model itself is the minimiser, so fine-tuning cannot narrow what it draws.
No second UNet is loaded:

- a LoRA run disables its adapters for the teacher's forward (the UNet without adapters *is* θ₀);
- a full or partial fine-tuning run keeps a copy of the *trainable* parameters only, as they were before
  training, in the frozen weights' dtype, and swaps them in for the forward (``torch.func.functional_call``);
  the frozen rest is shared with the trained model.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch


class FrozenTeacher:
    """Predicts with the base model's weights θ₀ under ``torch.no_grad()``."""

    def __init__(self, unet: torch.nn.Module, uses_lora: bool, weight_dtype: torch.dtype):
        """``unet`` is the model being trained, before ``accelerator.prepare`` and before any checkpoint is
        loaded into it (its trainable parameters must still hold θ₀)."""
        self.uses_lora = uses_lora
        self.base_parameters: dict[str, torch.Tensor] = {}
        if not uses_lora:
            self.base_parameters = {
                name: parameter.detach().to(dtype=weight_dtype, copy=True)
                for name, parameter in unet.named_parameters()
                if parameter.requires_grad
            }

    @property
    def extra_bytes(self) -> int:
        """Memory the teacher holds beyond the trained model (0 for LoRA)."""
        return sum(t.numel() * t.element_size() for t in self.base_parameters.values())

    def predict(
        self,
        unet: torch.nn.Module,
        forward: Callable[[Callable], torch.Tensor],
        autocast: Callable[[], AbstractContextManager] = nullcontext,
    ) -> torch.Tensor:
        """``forward(call)`` without a graph, where ``call`` runs ``unet`` (the unwrapped trained model) at θ₀.

        LoRA: the adapters are switched off for the call and always switched back on, with their
        ``requires_grad`` (PEFT's ``disable_adapters`` clears it).
        """
        with torch.no_grad(), autocast():
            if self.uses_lora:
                unet.disable_adapters()
                try:
                    return forward(unet)
                finally:
                    unet.enable_adapters()
            parameters = self.base_parameters
            return forward(lambda *args, **kwargs: torch.func.functional_call(unet, parameters, args, kwargs))
