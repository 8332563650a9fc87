"""Writing the trained model in the form ``--save_as`` asks for: LoRA weights, a standalone pipeline with
the adapter fused into the UNet, or both."""

from __future__ import annotations

import os
import tempfile

from .model_family import SD, pipeline_class
from .outputs import LORA_WEIGHTS_FILE

FUSED_SUBFOLDER = "fused"


def save_lora_weights(unet, output_dir: str, family: str = SD) -> str:
    """Writes the UNet's LoRA adapter as ``pytorch_lora_weights.safetensors`` in diffusers' format, loadable
    with the family pipeline's ``load_lora_weights``."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    pipeline_class(family).save_lora_weights(output_dir, unet_lora_layers=layers, safe_serialization=True)
    return os.path.join(output_dir, LORA_WEIGHTS_FILE)


def save_full_pipeline(
    base_model: str, unet, output_dir: str, revision: str | None = None, variant: str | None = None, family: str = SD
) -> None:
    """Writes the base pipeline with the trained UNet (other components reloaded in their own dtype)."""
    pipeline = pipeline_class(family).from_pretrained(base_model, unet=unet, revision=revision, variant=variant)
    pipeline.save_pretrained(output_dir, safe_serialization=True)


def save_erased_model(args, unet, family: str = SD) -> str | None:
    """Writes what ``args.save_as`` asks for into ``args.output_dir``; returns the fused pipeline's
    subfolder when it is written beside the LoRA weights (``both``), else None."""
    from .loading import load_erased_pipeline

    if not args.use_lora:
        save_full_pipeline(
            args.pretrained_model_name_or_path, unet, args.output_dir, args.revision, args.variant, family
        )
        return None
    if args.save_as in ("lora", "both"):
        save_lora_weights(unet, args.output_dir, family)
        if args.save_as == "lora":
            return None
    with tempfile.TemporaryDirectory() as scratch:
        lora_dir = args.output_dir if args.save_as == "both" else scratch
        if args.save_as == "pipeline":
            save_lora_weights(unet, lora_dir, family)
        fused = load_erased_pipeline(
            lora_dir,
            base_model=args.pretrained_model_name_or_path,
            fuse=True,
            base_revision=args.revision,
            variant=args.variant,
        )
        target = os.path.join(args.output_dir, FUSED_SUBFOLDER) if args.save_as == "both" else args.output_dir
        fused.save_pretrained(target, safe_serialization=True)
    return FUSED_SUBFOLDER if args.save_as == "both" else None
