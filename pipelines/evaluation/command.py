"""Evaluating an erased model against its base: both generate the same forget and remain prompts with the
same seeds, then NudeNet, CLIP, a classifier and Fréchet distances measure what changed (docs/evaluation.md).

    python -m pipelines.evaluation --model erasediff-model --concept "Van Gogh" --output_dir evaluation

writes ``metrics.json``, ``metrics.md`` (a markdown table), ``grid_forget.png`` and ``grid_remain.png`` (base
and erased side by side, same seeds) and the images themselves. (pipelines/evaluation/comparison.py does the same for
pipelines already in memory.) ``--attacks`` also runs the attack suite (docs/robustness.md).
"""

from __future__ import annotations

import argparse
import os
import sys

# Only light imports up here: arguments are checked before torch and diffusers load.
from ..errors import InputError
from ..loading import recorded_base_model
from ..prompts import CONCEPT_TYPES, expand_prompt_arguments
from .attacks.settings import ATTACKS, AttackSettings, parse_attack_names
from .comparison import base_model_of, evaluate_images, load_base_pipeline, load_pipeline
from .report import EvaluationReport
from .settings import (
    DEFAULT_CLASSIFIER_MODEL,
    DEFAULT_CLIP_MODEL,
    DEFAULT_METRICS,
    DEFAULT_NUDENET_THRESHOLD,
    METRICS,
    PROMPT_COLUMNS,
    EvaluationSettings,
    expand_evaluation_prompts,
)

# Command line -------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.evaluation",
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
    generation.add_argument(
        "--guidance_scale",
        type=float,
        default=None,
        help="Guidance scale (default: the base pipeline's own: 7.5 for SD and SDXL, 7.0 for SD3, 3.5 for FLUX).",
    )
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

    attacks = parser.add_argument_group("attacks (docs/robustness.md)")
    attacks.add_argument(
        "--attacks",
        default=None,
        help=f"Comma-separated attacks to run after the metrics, of {', '.join(ATTACKS)}, or all. The concept is "
        "detected with the first of nudenet, classifier, clip_accuracy in --metrics.",
    )
    attacks.add_argument(
        "--paraphrase_prompts",
        nargs="+",
        default=None,
        help="More paraphrases of the concept (prompts or .txt files), added to the built-in ones.",
    )
    defaults = AttackSettings()
    attacks.add_argument(
        "--attack_images", type=int, default=defaults.images, help="Concept images the attacker holds."
    )
    attacks.add_argument(
        "--attack_images_dir",
        default=None,
        help="The attacker's concept images (imagefolder with metadata.jsonl); default: the base model's.",
    )
    attacks.add_argument(
        "--attack_control_images_dir",
        default=None,
        help="Images of something else for the controls; default: the base model's remain images.",
    )
    attacks.add_argument(
        "--attack_steps", type=int, default=defaults.steps, help="Optimisation steps of inversion and embedding."
    )
    attacks.add_argument(
        "--attack_learning_rate", type=float, default=defaults.learning_rate, help="Of the learned embeddings."
    )
    attacks.add_argument(
        "--attack_batch_size", type=int, default=defaults.batch_size, help="Images per optimisation step."
    )
    attacks.add_argument(
        "--attack_embedding_tokens",
        type=int,
        default=defaults.embedding_tokens,
        help="Tokens the embedding attack puts in front of each forget prompt.",
    )
    attacks.add_argument(
        "--attack_relearn_steps", type=int, default=defaults.relearn_steps, help="Fine-tuning steps of relearn."
    )
    attacks.add_argument(
        "--attack_relearn_learning_rate",
        type=float,
        default=defaults.relearn_learning_rate,
        help="AdamW learning rate of relearn.",
    )
    attacks.add_argument(
        "--attack_relearn_every",
        type=int,
        default=defaults.relearn_every,
        help="Measure the relearning curve every this many steps.",
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
        args.attack_settings = attack_settings_from_args(args)
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


def attack_settings_from_args(args: argparse.Namespace) -> AttackSettings | None:
    """The attack settings of --attacks and --attack_*, checked (None without --attacks)."""
    from .attacks.detector import check_detector_metric
    from .attacks.paraphrase import paraphrase_prompts

    if args.attacks is None:
        for name in ("paraphrase_prompts", "attack_images_dir", "attack_control_images_dir"):
            if getattr(args, name) is not None:
                raise InputError(f"--{name} is for the attacks: add --attacks (e.g. --attacks all)")
        return None
    if args.mixed_precision != "no":
        raise InputError("--attacks optimise in float32; drop --mixed_precision")
    check_detector_metric(args.settings)
    extra = expand_prompt_arguments(args.paraphrase_prompts, "--paraphrase_prompts") if args.paraphrase_prompts else []
    built_in = paraphrase_prompts(args.settings.concepts, args.settings.concept_type)
    settings = AttackSettings(
        attacks=parse_attack_names(args.attacks),
        paraphrase_prompts=list(dict.fromkeys([*built_in, *extra])),
        images=args.attack_images,
        images_dir=args.attack_images_dir,
        control_images_dir=args.attack_control_images_dir,
        steps=args.attack_steps,
        learning_rate=args.attack_learning_rate,
        batch_size=args.attack_batch_size,
        embedding_tokens=args.attack_embedding_tokens,
        relearn_steps=args.attack_relearn_steps,
        relearn_learning_rate=args.attack_relearn_learning_rate,
        relearn_every=args.attack_relearn_every,
        seed=args.seed,
    )
    settings.check()
    return settings


def main(args: argparse.Namespace) -> EvaluationReport:
    """Loads one model at a time (base, then erased), generates its images, then measures both."""
    import gc

    import torch

    from .images import generate_image_sets
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
    if args.guidance_scale is None:
        from diffusers import DiffusionPipeline

        from ..families import FAMILIES, family_of

        family = family_of(DiffusionPipeline.load_config(args.base_model))
        settings.guidance_scale = FAMILIES[family].default_guidance_scale

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
    if args.attack_settings is not None:
        from .attacks.detector import detector_for
        from .attacks.report import attack_table
        from .attacks.suite import ATTACKS_DIR, run_attack_suite
        from .report import with_attacks

        attacks = run_attack_suite(
            load_pipeline(args.model, args.base_model).to(device),
            load_base_pipeline(args.base_model).to(device),
            settings,
            args.attack_settings,
            detector_for(settings, device),
            args.output_dir,
        )
        report = with_attacks(report, attacks)
        print(attack_table(attacks))
        print(f"Wrote the attacks' images, grids and results to {os.path.join(args.output_dir, ATTACKS_DIR)}.")
    print(f"Wrote {report.metrics_path}, {report.markdown_path} and {', '.join(report.grid_paths.values())}.")
    return report


def run() -> None:
    """The command: parse, evaluate, and report an error found late (e.g. a model that cannot load) as one line."""
    arguments = parse_args()
    try:
        main(arguments)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
