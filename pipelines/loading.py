"""One call to load an erased model: a LoRA folder (into its base pipeline) or a full pipeline folder,
local or on the Hub."""

from __future__ import annotations

import json
import os

from .errors import InputError
from .outputs import ARGS_FILE, LORA_WEIGHTS_FILE

PIPELINE_INDEX_FILE = "model_index.json"


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` reads as ``owner/name`` on the Hub rather than a local path."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and not os.path.exists(name)


def _list_files(path_or_repo_id: str, revision: str | None = None) -> list[str]:
    if os.path.isdir(path_or_repo_id):
        return os.listdir(path_or_repo_id)
    from huggingface_hub import list_repo_files

    return list_repo_files(path_or_repo_id, revision=revision)


def recorded_arguments(path_or_repo_id: str, revision: str | None = None) -> dict:
    """The arguments an erasure run recorded in its ``erasediff_args.json`` (empty if the folder has none)."""
    if os.path.isdir(path_or_repo_id):
        args_path = os.path.join(path_or_repo_id, ARGS_FILE)
        if not os.path.isfile(args_path):
            return {}
    else:
        from huggingface_hub import hf_hub_download

        args_path = hf_hub_download(path_or_repo_id, ARGS_FILE, revision=revision)
    with open(args_path, encoding="utf-8") as handle:
        return json.load(handle)


def recorded_base_model(path_or_repo_id: str, revision: str | None = None) -> str | None:
    """The base model an erasure run recorded in its ``erasediff_args.json``, if the folder has one."""
    return recorded_arguments(path_or_repo_id, revision).get("pretrained_model_name_or_path")


# What StableDiffusion3Pipeline takes to run without T5, as a run with --t5 drop was trained.
WITHOUT_T5 = {"text_encoder_3": None, "tokenizer_3": None}


def load_erased_pipeline(
    path_or_repo_id: str,
    base_model: str | None = None,
    torch_dtype=None,
    fuse: bool = False,
    revision: str | None = None,
    base_revision: str | None = None,
    variant: str | None = None,
    without_t5: bool | None = None,
):
    """Returns a ready pipeline (``StableDiffusionPipeline``, ``StableDiffusionXLPipeline``,
    ``StableDiffusion3Pipeline`` or ``FluxPipeline``) for the output of ``train_erasediff.py``.

    A folder (or Hub repo) with ``model_index.json`` is a full pipeline; one with
    ``pytorch_lora_weights.safetensors`` holds LoRA weights, loaded into ``base_model`` — by default the
    base recorded in the folder's ``erasediff_args.json`` — and fused into the denoiser when ``fuse`` is set.
    An SD3 model trained with ``--t5 drop`` is loaded without T5 (``without_t5``, by default what the folder
    records), since its erasure holds for prompts encoded without it.
    """
    from diffusers import DiffusionPipeline

    files = _list_files(path_or_repo_id, revision)
    recorded = recorded_arguments(path_or_repo_id, revision) if ARGS_FILE in files else {}
    if without_t5 is None:
        without_t5 = recorded.get("t5") == "drop"
    left_out = WITHOUT_T5 if without_t5 else {}
    if PIPELINE_INDEX_FILE in files:
        return DiffusionPipeline.from_pretrained(
            path_or_repo_id, torch_dtype=torch_dtype, revision=revision, **left_out
        )
    if LORA_WEIGHTS_FILE not in files:
        raise InputError(
            f"{path_or_repo_id} holds neither {PIPELINE_INDEX_FILE} nor {LORA_WEIGHTS_FILE}; give the output folder of train_erasediff.py"
        )
    base = base_model or recorded.get("pretrained_model_name_or_path")
    if base is None:
        raise InputError(f"{path_or_repo_id} records no base model; pass base_model=")
    if os.path.isabs(base) and not os.path.isdir(base):
        raise InputError(
            f"the recorded base model {base} is a local folder that does not exist here; pass base_model="
        )
    pipeline = DiffusionPipeline.from_pretrained(
        base, torch_dtype=torch_dtype, revision=base_revision, variant=variant, **left_out
    )
    pipeline.load_lora_weights(path_or_repo_id, weight_name=LORA_WEIGHTS_FILE, revision=revision)
    if fuse:
        pipeline.fuse_lora()
        pipeline.unload_lora_weights()  # keeps the fused weights, drops the adapter layers
    return pipeline
