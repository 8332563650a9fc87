"""Writing the trained model in the form ``--save_as`` asks for: LoRA weights, a standalone pipeline with
the adapter fused into the denoiser (UNet or transformer), or both.

The result is written into a staging folder inside the output folder and moved into place when it is
complete: every component folder in one rename, and the file that makes the folder loadable
(``model_index.json`` or the LoRA weights) last, so an incomplete model never looks complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from .families import FAMILIES, SD
from .kohya import KOHYA_WEIGHTS_FILE, save_kohya_lora
from .outputs import FINISHED_MARKERS, LORA_WEIGHTS_FILE, RETIRED_SUFFIX, STAGING_FOLDER

FUSED_SUBFOLDER = "fused"


def save_lora_weights(model, output_dir: str, family: str = SD) -> str:
    """Writes the denoiser's LoRA adapter as ``pytorch_lora_weights.safetensors`` in diffusers' format (keys
    under ``unet.`` or ``transformer.``), with its adapter configuration (rank, alpha, modules) in the file's
    metadata, so the family pipeline's ``load_lora_weights`` restores it at the strength it was trained at."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    family_class = FAMILIES[family]
    component = family_class.denoiser
    family_class.pipeline_class().save_lora_weights(
        output_dir,
        **{
            f"{component}_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(model)),
            f"{component}_lora_adapter_metadata": model.peft_config["default"].to_dict(),
        },
        safe_serialization=True,
    )
    return os.path.join(output_dir, LORA_WEIGHTS_FILE)


def save_full_pipeline(
    base_model: str, model, output_dir: str, revision: str | None = None, variant: str | None = None, family: str = SD
) -> None:
    """Writes the base pipeline with the trained denoiser (other components reloaded in their own dtype). It
    is always complete, T5 included: a pipeline saved without a component does not load without arguments."""
    family_class = FAMILIES[family]
    pipeline = family_class.pipeline_class().from_pretrained(
        base_model, **{family_class.denoiser: model}, revision=revision, variant=variant
    )
    pipeline.save_pretrained(output_dir, safe_serialization=True)


def move_into_place(staging: str, output_dir: str) -> list[str]:
    """Moves every entry of ``staging`` into ``output_dir`` (replacing an earlier result), the loadable
    markers last, and removes ``staging``; returns the names moved."""
    names = sorted(os.listdir(staging), key=lambda name: name in FINISHED_MARKERS)
    for marker in FINISHED_MARKERS:  # the old result stops looking complete before any part changes
        if marker in names and os.path.isfile(os.path.join(output_dir, marker)):
            os.remove(os.path.join(output_dir, marker))
    for name in names:
        source, target = os.path.join(staging, name), os.path.join(output_dir, name)
        if os.path.isdir(target) and not os.path.islink(target):
            retired = os.path.join(output_dir, f".{name}{RETIRED_SUFFIX}")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(target, retired)
            os.replace(source, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(source, target)
    os.rmdir(staging)
    return names


def save_erased_model(args, unet, family: str = SD) -> str | None:
    """Writes what ``args.save_as`` asks for into ``args.output_dir`` through a staging folder (removed if the
    write fails); returns the fused pipeline's subfolder when it is written beside the LoRA weights
    (``both``), else None."""
    staging = os.path.join(args.output_dir, STAGING_FOLDER)
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        fused_folder = _write_result(args, unet, family, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    move_into_place(staging, args.output_dir)
    return fused_folder


def _write_result(args, unet, family: str, folder: str) -> str | None:
    from .loading import load_erased_pipeline

    if not args.use_lora:
        save_full_pipeline(args.pretrained_model_name_or_path, unet, folder, args.revision, args.variant, family)
        return None
    if args.save_as in ("lora", "both"):
        save_lora_weights(unet, folder, family)
        if not FAMILIES[family].flow_matching:  # kohya's layout for AUTOMATIC1111 / ComfyUI (UNets only)
            save_kohya_lora(unet, os.path.join(folder, KOHYA_WEIGHTS_FILE), family)
        if args.save_as == "lora":
            return None
    with tempfile.TemporaryDirectory() as scratch:
        lora_dir = folder if args.save_as == "both" else scratch
        if args.save_as == "pipeline":
            save_lora_weights(unet, lora_dir, family)
        fused = load_erased_pipeline(
            lora_dir,
            base_model=args.pretrained_model_name_or_path,
            fuse=True,
            base_revision=args.revision,
            variant=args.variant,
            without_t5=False,  # saved complete, like the full pipeline
        )
        target = os.path.join(folder, FUSED_SUBFOLDER) if args.save_as == "both" else folder
        fused.save_pretrained(target, safe_serialization=True)
    return FUSED_SUBFOLDER if args.save_as == "both" else None
