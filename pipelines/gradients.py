"""Keeping ∇f apart from ∇L_r for the adaptive λ rules, with two backward passes and no copies."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch

from .objective import SumAcross, adaptive_lambda, combine_gradients


class ForgetGradientBuffer:
    """Accumulates ∇f in its own tensors while ∇L_r accumulates in ``.grad``.

    Inside :meth:`collecting_forget` the parameters' ``.grad`` points at the forget buffer, so a backward
    pass (DDP's all-reduce included) accumulates there; on exit the pointers are swapped back. Nothing is
    copied and no full gradient vector is concatenated.
    """

    def __init__(self, parameters: Iterable[torch.nn.Parameter], sum_across: SumAcross | None = None):
        """``sum_across`` adds λ's three sums over processes when the gradients are sharded (FSDP2)."""
        self.parameters = list(parameters)
        self.sum_across = sum_across
        self.forget_grads: list[torch.Tensor | None] = [None] * len(self.parameters)

    @contextmanager
    def collecting_forget(self) -> Iterator[None]:
        """Routes the backward passes run inside the block into the forget buffer."""
        remain_grads = [p.grad for p in self.parameters]
        for parameter, grad in zip(self.parameters, self.forget_grads):
            parameter.grad = grad
        try:
            yield
        finally:
            self.forget_grads = [p.grad for p in self.parameters]
            for parameter, grad in zip(self.parameters, remain_grads):
                parameter.grad = grad

    def apply_lambda(self, mode: str, eta: float) -> torch.Tensor:
        """Computes λ from the accumulated ∇L_r (``.grad``) and ∇f, leaves ∇L_r + λ∇f in ``.grad`` and
        empties the buffer. Returns λ."""
        for parameter, forget_grad in zip(self.parameters, self.forget_grads):
            # A parameter that only the forget pass reached still takes part, with ∇L_r = 0.
            if parameter.grad is None and forget_grad is not None:
                parameter.grad = torch.zeros_like(forget_grad)
        pairs = [(p.grad, g) for p, g in zip(self.parameters, self.forget_grads) if g is not None]
        if not pairs:
            self.clear()
            return torch.zeros(())
        remain_grads, forget_grads = zip(*pairs)
        lam = adaptive_lambda(mode, remain_grads, forget_grads, eta, self.sum_across)
        combine_gradients(remain_grads, forget_grads, lam)
        self.clear()
        return lam

    def clear(self) -> None:
        """Drops the forget gradients (after each optimizer step)."""
        self.forget_grads = [None] * len(self.parameters)
