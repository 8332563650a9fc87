#!/usr/bin/env python
"""UCE (Gandikota et al., "Unified Concept Editing in Diffusion Models", WACV 2024), written from the paper
as a baseline for the digits benchmark; it is not part of the training script.

UCE edits every cross-attention key and value projection W in closed form, without training: the text
embeddings c_i of the erased concept are mapped to what W_old makes of a target concept c_i* (here the empty
prompt, at the same token positions), while the embeddings c_j of a preservation set keep W_old c_j:

    W = (Σ_i v_i* c_iᵀ + Σ_j W_old c_j c_jᵀ + λ W_old) (Σ_i c_i c_iᵀ + Σ_j c_j c_jᵀ + λ I)⁻¹,  v_i* = W_old c_i*

The erased concept's vectors are the prompt's token positions from the digit's word on (the positions the
word changes: the text encoder is causal); the preservation set is the other nine digits' prompts, every
position. The ridge term λ‖W − W_old‖² keeps the inverse defined (the prompts span few directions).

    python -m benchmarks.digits.uce --digit 3 --output_dir /tmp/uce-3
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

RIDGE = 0.1  # λ of the ridge term
TARGET_PROMPT = ""


def token_vectors(pipeline, prompt: str):
    """The text encoder's output for ``prompt`` at every token position, [positions, width]."""
    import torch

    with torch.no_grad():
        return pipeline.encode_prompt(prompt, "cpu", 1, False)[0][0].double()


def first_differing_position(pipeline, prompt: str, others: list[str]) -> int:
    """The first token position where ``prompt``'s token ids part from those of any of ``others``."""
    ids = pipeline.tokenizer(prompt).input_ids
    other_ids = [pipeline.tokenizer(other).input_ids for other in others]
    return next(i for i, token in enumerate(ids) if any(i >= len(o) or o[i] != token for o in other_ids))


def erase_with_uce(pipeline, prompt: str, preserved_prompts: list[str]) -> None:
    """Edits ``pipeline.unet``'s cross-attention key/value projections in place to erase ``prompt`` while
    preserving ``preserved_prompts``."""
    import torch

    start = first_differing_position(pipeline, prompt, preserved_prompts)
    erased = token_vectors(pipeline, prompt)[start:]
    target = token_vectors(pipeline, TARGET_PROMPT)[start:]
    preserved = torch.cat([token_vectors(pipeline, p) for p in preserved_prompts])
    width = erased.shape[1]
    inputs = erased.T @ erased + preserved.T @ preserved + RIDGE * torch.eye(width, dtype=torch.float64)
    inverse = torch.linalg.inv(inputs)
    for name, module in pipeline.unet.named_modules():
        if not name.endswith(("attn2.to_k", "attn2.to_v")):
            continue
        old = module.weight.detach().double()
        outputs = (old @ target.T) @ erased + (old @ preserved.T) @ preserved + RIDGE * old
        with torch.no_grad():
            module.weight.copy_((outputs @ inverse).to(module.weight.dtype))


def main(argv: list[str] | None = None) -> None:
    from benchmarks.digits.data import prompt_for
    from benchmarks.digits.measure import load_pipeline
    from benchmarks.digits.train_base import DEFAULT_MODEL_DIR

    parser = argparse.ArgumentParser(description="UCE on the digits model (a benchmark baseline).")
    parser.add_argument("--digit", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0, help="Unused (UCE is deterministic); kept for the harness.")
    parser.add_argument("--model_dir", default=DEFAULT_MODEL_DIR)
    parser.add_argument("--output_dir", required=True, help="The edited UNet is saved to OUTPUT_DIR/unet.")
    args = parser.parse_args(argv)
    pipeline = load_pipeline(args.model_dir)
    erase_with_uce(pipeline, prompt_for(args.digit), [prompt_for(d) for d in range(10) if d != args.digit])
    pipeline.unet.save_pretrained(os.path.join(args.output_dir, "unet"))


if __name__ == "__main__":
    main()
