"""Comparing an erased model with its base: both generate the same forget and remain prompts with the same
seeds, then the settings' metrics measure what changed (docs/evaluation.md). ``evaluate_erasure`` takes two
pipelines in memory, ``evaluate_trained_unet`` serves the end of training, ``evaluate_images`` measures sets
already generated."""

from __future__ import annotations

import os
from dataclasses import asdict

from ..errors import InputError
from ..loading import looks_like_hub_id, recorded_base_model
from ..outputs import LORA_WEIGHTS_FILE
from .images import PROMPT_SETS
from .report import EvaluationReport
from .settings import EvaluationSettings

# Models -------------------------------------------------------------------------------------------------


def base_model_of(model: str, base_model: str | None) -> str | None:
    """The base model to compare ``model`` with: ``base_model``, else the one its erasediff_args.json
    records (local folders only). Raises InputError when ``model`` is neither a model folder nor a Hub id."""
    if os.path.isdir(model):
        has_lora = os.path.isfile(os.path.join(model, LORA_WEIGHTS_FILE))
        if not has_lora and not os.path.isfile(os.path.join(model, "model_index.json")):
            raise InputError(
                f"--model {model} holds neither {LORA_WEIGHTS_FILE} nor model_index.json; give the output folder of train_erasediff.py"
            )
        return base_model or recorded_base_model(model)
    if not looks_like_hub_id(model):
        raise InputError(f"--model {model} does not exist; give a local model folder or a Hub id")
    return base_model


def without_safety_checker(pipeline):
    """Drops an SD pipeline's safety checker: it would black out exactly the images NudeNet must see."""
    if getattr(pipeline, "safety_checker", None) is not None:
        pipeline.safety_checker = None
    return pipeline


def load_pipeline(model: str, base_model: str | None = None, torch_dtype=None):
    """The erased model (``loading.load_erased_pipeline``: a full pipeline, or LoRA weights loaded into
    ``base_model``), without a safety checker."""
    from ..loading import load_erased_pipeline

    return without_safety_checker(load_erased_pipeline(model, base_model=base_model, torch_dtype=torch_dtype))


def load_base_pipeline(base_model: str, torch_dtype=None):
    """The base model (any family), also without a safety checker."""
    from diffusers import DiffusionPipeline

    return without_safety_checker(DiffusionPipeline.from_pretrained(base_model, torch_dtype=torch_dtype))


def evaluate_images(
    base_images: dict,
    erased_images: dict,
    settings: EvaluationSettings,
    output_dir: str,
    model_names: dict | None = None,
) -> EvaluationReport:
    """Saves the images, measures them and writes metrics.json, metrics.md and the grids to ``output_dir``."""
    import torch

    from .images import save_grids, save_image_sets
    from .measurements import measure_erasure
    from .report import write_report

    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    images = {"base": base_images, "erased": erased_images}
    image_dirs = {m: save_image_sets(images[m], settings, os.path.join(output_dir, "images", m)) for m in images}
    grid_paths = save_grids(base_images, erased_images, settings.grid_prompts, settings.grid_images, output_dir)
    metrics = measure_erasure(images, settings, image_dirs, device)
    results = {
        "models": model_names or {"base": "base", "erased": "erased"},
        "settings": {k: v for k, v in asdict(settings).items() if not k.endswith("_prompts")},
        "prompts": {s: settings.prompts(s) for s in PROMPT_SETS},
        "metrics": metrics,
    }
    return write_report(results, grid_paths, output_dir)


def evaluate_erasure(
    erased_pipeline,
    base_pipeline,
    settings: EvaluationSettings,
    output_dir: str,
    model_names: dict | None = None,
) -> EvaluationReport:
    """Generates the forget and remain prompts with both pipelines (same seeds), measures them and writes
    metrics.json, metrics.md and the grids to ``output_dir``. ``base_pipeline`` must be the untouched base
    model; for a LoRA UNet trained in place, generate the sets with adapters off and on (``generate_image_sets``)
    and call ``evaluate_images`` (docs/evaluation.md)."""
    from .images import generate_image_sets
    from .measurements import check_metric_models

    settings.check()
    check_metric_models(settings)
    base_images = generate_image_sets(base_pipeline, settings, "base")
    erased_images = generate_image_sets(erased_pipeline, settings, "erased")
    return evaluate_images(base_images, erased_images, settings, output_dir, model_names)


EVALUATION_DIR = "evaluation"  # inside the output folder of a training run


def evaluate_trained_unet(
    make_pipeline_with,
    trained_unet,
    base_unet,
    settings: EvaluationSettings,
    output_dir: str,
    model_names: dict | None = None,
    attack_settings=None,
) -> EvaluationReport:
    """The end-of-training evaluation. ``make_pipeline_with(unet)`` builds a pipeline around a UNet. The base
    images come from ``base_unet``, or, for a LoRA UNet (``base_unet`` None), from the trained UNet with its
    adapters switched off, which is exactly the base model. With ``attack_settings`` (AttackSettings) the
    attack suite runs too, on copies: the base UNet of a LoRA run is a copy with its adapters off."""
    from .images import generate_image_sets

    if base_unet is None:
        trained_unet.disable_adapters()
        try:
            base_images = generate_image_sets(make_pipeline_with(trained_unet), settings, "base")
        finally:
            trained_unet.enable_adapters()
    else:
        base_images = generate_image_sets(make_pipeline_with(base_unet), settings, "base")
    erased_images = generate_image_sets(make_pipeline_with(trained_unet), settings, "erased")
    report = evaluate_images(base_images, erased_images, settings, output_dir, model_names)
    if attack_settings is None:
        return report
    import copy

    from .attacks.detector import detector_for
    from .attacks.suite import run_attack_suite
    from .report import with_attacks

    if base_unet is None:
        base_unet = copy.deepcopy(trained_unet)
        base_unet.disable_adapters()
    attacks = run_attack_suite(
        make_pipeline_with(trained_unet),
        make_pipeline_with(base_unet),
        settings,
        attack_settings,
        detector_for(settings, trained_unet.device),
        output_dir,
    )
    return with_attacks(report, attacks)
