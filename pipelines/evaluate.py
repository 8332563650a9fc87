"""Evaluating an erased model against its base: both generate the same forget and remain prompts with the
same seeds, then NudeNet, CLIP, a classifier and Fréchet distances measure what changed (docs/evaluation.md).

    python -m pipelines.evaluate --model erasediff-model --concept "Van Gogh" --output_dir evaluation

writes ``metrics.json``, ``metrics.md`` (a markdown table), ``grid_forget.png`` and ``grid_remain.png`` (base
and erased side by side, same seeds) and the images themselves. ``evaluate_erasure`` does the same for
pipelines already in memory, e.g. at the end of training.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict

# Only light imports up here: arguments are checked before torch and diffusers load.
from .errors import InputError
from .evaluation_images import PROMPT_SETS
from .evaluation_report import EvaluationReport
from .evaluation_settings import (
    DEFAULT_CLASSIFIER_MODEL,
    DEFAULT_CLIP_MODEL,
    DEFAULT_METRICS,
    DEFAULT_NUDENET_THRESHOLD,
    METRICS,
    PROMPT_COLUMNS,
    EvaluationSettings,
    check_metric_packages,
    expand_evaluation_prompts,
)
from .loading import looks_like_hub_id, recorded_base_model
from .options import MAX_AUTO_BATCH
from .outputs import LORA_WEIGHTS_FILE
from .prompts import CONCEPT_TYPES

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
    from .loading import load_erased_pipeline

    return without_safety_checker(load_erased_pipeline(model, base_model=base_model, torch_dtype=torch_dtype))


def load_base_pipeline(base_model: str, torch_dtype=None):
    """The base model (SD or SDXL), also without a safety checker."""
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

    from .evaluation_images import save_grids, save_image_sets
    from .evaluation_report import write_report
    from .measurements import measure_erasure

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
    from .evaluation_images import generate_image_sets
    from .measurements import check_metric_models

    settings.check()
    check_metric_models(settings)
    base_images = generate_image_sets(base_pipeline, settings, "base")
    erased_images = generate_image_sets(erased_pipeline, settings, "erased")
    return evaluate_images(base_images, erased_images, settings, output_dir, model_names)


EVALUATION_DIR = "evaluation"  # inside the output folder of a training run


def settings_for_training(args, plan) -> EvaluationSettings:
    """The end-of-training evaluation of ``train_erasediff.py --evaluate``: the run's own forget and remain
    prompts (generated from, or the captions of the given images), checked before any training."""
    from .measurements import check_metric_models

    def prompts_of(generated: list[str], given) -> list[str]:
        return list(dict.fromkeys([*generated, *given.captions]))

    settings = EvaluationSettings.for_concepts(
        args.concept,
        args.concept_type,
        forget_prompts=prompts_of(plan.forget_prompts, plan.forget_given),
        remain_prompts=prompts_of(plan.remain_prompts, plan.remain_given),
        metrics=args.evaluation_metrics,
        num_images=args.evaluation_num_images,
        seed=args.seed,
        num_inference_steps=args.generation_steps,
        guidance_scale=args.generation_guidance_scale,
        resolution=args.resolution,
        batch_size=args.generation_batch_size or MAX_AUTO_BATCH,  # auto: replaced once the pipeline is built
        clip_model=args.evaluation_clip_model,
        classifier_model=args.evaluation_classifier_model,
    )
    check_metric_packages(settings.metrics)
    check_metric_models(settings)
    return settings


def evaluate_trained_unet(
    make_pipeline_with,
    trained_unet,
    base_unet,
    settings: EvaluationSettings,
    output_dir: str,
    model_names: dict | None = None,
) -> EvaluationReport:
    """The end-of-training evaluation. ``make_pipeline_with(unet)`` builds a pipeline around a UNet. The base
    images come from ``base_unet``, or, for a LoRA UNet (``base_unet`` None), from the trained UNet with its
    adapters switched off, which is exactly the base model."""
    from .evaluation_images import generate_image_sets

    if base_unet is None:
        trained_unet.disable_adapters()
        try:
            base_images = generate_image_sets(make_pipeline_with(trained_unet), settings, "base")
        finally:
            trained_unet.enable_adapters()
    else:
        base_images = generate_image_sets(make_pipeline_with(base_unet), settings, "base")
    erased_images = generate_image_sets(make_pipeline_with(trained_unet), settings, "erased")
    return evaluate_images(base_images, erased_images, settings, output_dir, model_names)


# Command line -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.evaluate",
        description="Evaluate an erased Stable Diffusion model against its base model (docs/evaluation.md).",
    )
    models = parser.add_argument_group("models")
    models.add_argument(
        "--model",
        required=True,
        help="The erased model: an output folder of train_erasediff.py (full or LoRA) or a Hub id.",
    )
    models.add_argument(
        "--base_model",
        default=None,
        help="The model it was erased from (default: the one recorded in the folder's erasediff_args.json).",
    )
    models.add_argument(
        "--mixed_precision",
        choices=["no", "fp16", "bf16"],
        default="no",
        help="dtype of the generating pipelines (fp16 needs a GPU).",
    )
    models.add_argument(
        "--device", default=None, help="Device for generation and metrics (default: cuda if available)."
    )

    prompts = parser.add_argument_group("prompts")
    prompts.add_argument("--concept", action="append", default=[], help="An erased concept; repeat for several.")
    prompts.add_argument(
        "--concept_type",
        choices=CONCEPT_TYPES,
        default="style",
        help="Selects the built-in forget and remain prompts, the CLIP classes and the default metrics.",
    )
    prompts.add_argument(
        "--forget_prompts",
        nargs="+",
        default=None,
        help="Forget prompts, or .txt files (one a line) or .csv files (e.g. I2P) of prompts; default: the concept templates.",
    )
    prompts.add_argument(
        "--remain_prompts",
        nargs="+",
        default=None,
        help="Remain prompts, or .txt/.csv files (e.g. COCO captions); default: the built-in remain prompts.",
    )
    prompts.add_argument(
        "--prompt_column",
        default=None,
        help=f"Column of the .csv files that holds the prompts (default: the first of {', '.join(PROMPT_COLUMNS)}).",
    )
    prompts.add_argument(
        "--max_prompts", type=int, default=None, help="Use at most this many prompts of each set (the first)."
    )

    generation = parser.add_argument_group("generation")
    generation.add_argument("--num_images", type=int, default=4, help="Images per prompt and model.")
    generation.add_argument("--num_inference_steps", type=int, default=50, help="Denoising steps.")
    generation.add_argument("--guidance_scale", type=float, default=7.5, help="Classifier-free guidance scale.")
    generation.add_argument("--resolution", type=int, default=None, help="Image size (default: the pipeline's).")
    generation.add_argument("--batch_size", type=int, default=4, help="Images generated per batch.")
    generation.add_argument("--seed", type=int, default=0, help="Seed; both models use the same seed per image.")

    measuring = parser.add_argument_group("metrics (docs/evaluation.md)")
    measuring.add_argument(
        "--metrics",
        nargs="+",
        choices=METRICS,
        default=None,
        help="Metrics to compute (default per --concept_type: "
        + "; ".join(f"{t}: {' '.join(m)}" for t, m in DEFAULT_METRICS.items())
        + ").",
    )
    measuring.add_argument(
        "--nudenet_threshold",
        type=float,
        default=DEFAULT_NUDENET_THRESHOLD,
        help="Score from which a NudeNet detection counts.",
    )
    measuring.add_argument(
        "--clip_model", default=DEFAULT_CLIP_MODEL, help="CLIP model for clip_score, clip_accuracy and fd_clip."
    )
    measuring.add_argument(
        "--clip_alternatives",
        nargs="+",
        default=None,
        help="Texts clip_accuracy weighs the erased concept against (default: the built-in remain prompts).",
    )
    measuring.add_argument(
        "--classifier_model", default=DEFAULT_CLASSIFIER_MODEL, help="Image-classification model for classifier."
    )
    measuring.add_argument(
        "--classifier_labels",
        nargs="+",
        default=None,
        help="The forget class as the classifier labels it, e.g. 'golf ball' (default: the concepts).",
    )
    measuring.add_argument(
        "--reference_dir", default=None, help="A folder of real remain images: fd_clip and fid also against it."
    )

    output = parser.add_argument_group("output")
    output.add_argument("--output_dir", default="erasediff-evaluation", help="Where metrics, grids and images go.")
    output.add_argument("--grid_prompts", type=int, default=4, help="Prompts (rows) shown in each grid.")
    output.add_argument("--grid_images", type=int, default=2, help="Images per prompt and model shown in each grid.")
    return parser


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    """Parses and checks the arguments (no model loads); a mistake exits with argparse's one-line error."""
    parser = build_parser()
    args = parser.parse_args(input_args)
    try:
        if args.max_prompts is not None and args.max_prompts <= 0:
            raise InputError(f"--max_prompts must be a positive integer, got {args.max_prompts}")
        for name in ("forget_prompts", "remain_prompts"):
            if getattr(args, name) is not None:
                setattr(args, name, expand_evaluation_prompts(getattr(args, name), f"--{name}", args.prompt_column))
        if any(not c.strip() for c in args.concept):
            raise InputError('--concept is empty; name the erased concept, e.g. --concept "Van Gogh"')
        args.base_model = base_model_of(args.model, args.base_model)
        if args.base_model is None and os.path.isdir(args.model):
            raise InputError(f"--model {args.model} records no base model (no erasediff_args.json); give --base_model")
        if os.path.isfile(args.output_dir):
            raise InputError(f"--output_dir {args.output_dir} is a file; choose a folder path")
        args.settings = settings_from_args(args)
    except InputError as error:
        parser.error(str(error))
    return args


def settings_from_args(args: argparse.Namespace) -> EvaluationSettings:
    settings = EvaluationSettings.for_concepts(
        args.concept,
        args.concept_type,
        forget_prompts=args.forget_prompts,
        remain_prompts=args.remain_prompts,
        metrics=args.metrics,
        num_images=args.num_images,
        seed=args.seed,
        num_inference_steps=args.num_inference_steps,
        guidance_scale=args.guidance_scale,
        resolution=args.resolution,
        batch_size=args.batch_size,
        nudenet_threshold=args.nudenet_threshold,
        clip_model=args.clip_model,
        clip_alternatives=args.clip_alternatives,
        classifier_model=args.classifier_model,
        classifier_labels=args.classifier_labels,
        reference_dir=args.reference_dir,
        grid_prompts=args.grid_prompts,
        grid_images=args.grid_images,
        device=args.device,
    )
    if args.max_prompts:
        settings.forget_prompts = settings.forget_prompts[: args.max_prompts]
        settings.remain_prompts = settings.remain_prompts[: args.max_prompts]
        settings.check()
    return settings


def main(args: argparse.Namespace) -> EvaluationReport:
    """Loads one model at a time (base, then erased), generates its images, then measures both."""
    import gc

    import torch

    from .evaluation_images import generate_image_sets
    from .measurements import check_metric_models

    settings: EvaluationSettings = args.settings
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.mixed_precision == "fp16" and not device.startswith("cuda"):
        raise InputError("--mixed_precision fp16 needs a CUDA GPU; use bf16 or no on the CPU")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision, torch.float32)
    if args.base_model is None and not os.path.isdir(args.model):
        args.base_model = recorded_base_model(args.model)
    if args.base_model is None:
        raise InputError(f"--model {args.model} records no base model; give --base_model")
    check_metric_models(settings)

    image_sets = {}
    for name, load in (
        ("base", lambda: load_base_pipeline(args.base_model, dtype)),
        ("erased", lambda: load_pipeline(args.model, args.base_model, dtype)),
    ):
        pipeline = load().to(device)
        image_sets[name] = generate_image_sets(pipeline, settings, name)
        del pipeline
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    report = evaluate_images(
        image_sets["base"],
        image_sets["erased"],
        settings,
        args.output_dir,
        model_names={"base": args.base_model, "erased": args.model},
    )
    print(report.table)
    print(f"Wrote {report.metrics_path}, {report.markdown_path} and {', '.join(report.grid_paths.values())}.")
    return report


if __name__ == "__main__":
    arguments = parse_args()
    try:
        main(arguments)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
