#!/usr/bin/env python
"""EraseDiff for Stable Diffusion 1.x/2.x, SDXL, SD3 and FLUX.1: erase a concept by fine-tuning (full or LoRA) on
``min L_r(θ)  s.t.  f(θ) − f* ≤ 0`` (Wu et al., arXiv 2401.05779; docs/method.md).

    accelerate launch train_erasediff.py --concept "Van Gogh"

Reads top to bottom in the order things happen; each stage is a call into ``pipelines/``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time

# Only light imports up here: arguments are checked before torch and diffusers load (about 5 s).
from pipelines.argument_checks import check_arguments
from pipelines.errors import InputError, TrainingError
from pipelines.evaluation.attacks.settings import ATTACKS
from pipelines.evaluation.settings import DEFAULT_CLASSIFIER_MODEL, DEFAULT_CLIP_MODEL, METRICS
from pipelines.options import (
    DEFAULT_ETA,
    DEFAULT_FORGET_BATCH_SIZE,
    DEFAULT_FORGET_NOISE_MEAN,
    DEFAULT_FORGET_NOISE_STD,
    DEFAULT_GENERATION_SCHEDULER,
    DEFAULT_GENERATION_STEPS,
    DEFAULT_LAMBDA_MODE,
    DEFAULT_LAMBDA_REFRESH_STEPS,
    DEFAULT_LAMBDA_VALUE,
    DEFAULT_MAX_TRAIN_STEPS,
    DEFAULT_NUM_FORGET_IMAGES,
    DEFAULT_NUM_REMAIN_IMAGES,
    DEFAULT_PROPORTION_EMPTY_PROMPTS,
    DEFAULT_REMAIN_BATCH_SIZE,
    DEFAULT_REMAIN_TARGET,
    FLOW_MATCHING_DEFAULTS,
    FORGET_NOISES,
    FORGET_TARGETS,
    GENERATION_SCHEDULERS,
    LAMBDA_MODES,
    LR_SCHEDULERS,
    PREDICTION_TYPES,
    REMAIN_TARGETS,
    SAVE_AS_CHOICES,
    T5_PLACEMENTS,
    TRAIN_METHODS,
    WEIGHTING_SCHEMES,
)
from pipelines.outputs import check_output_dir
from pipelines.prompts import CONCEPT_TYPES, DEFAULT_ANCHORS, concept_templates, expand_prompt_arguments
from pipelines.publishing import add_upload_choices

PROCESS_STARTED = time.time()  # the phase clock's zero when run as a script: the heavy imports count as loading
DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"
logger = logging.getLogger(__name__)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Ends every flag's help with its default (unless the help already states it)."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS or "default" in text.lower():
            return text
        if action.default is None or action.default == []:
            shown = "none"
        elif action.default is False:
            shown = "off"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})".strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Erase concepts from a Stable Diffusion (1.x/2.x, XL, 3/3.5) or FLUX.1 model with EraseDiff.",
        formatter_class=DefaultsHelpFormatter,
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--pretrained_model_name_or_path",
        default=DEFAULT_MODEL,
        help="Hub id or local folder of a diffusers pipeline: Stable Diffusion 1.x/2.x, SDXL, SD3/3.5 or FLUX.1 "
        "(the family is read from its model_index.json).",
    )
    model.add_argument(
        "--pretrained_vae_model_name_or_path",
        default=None,
        help="A VAE to use instead of the pipeline's, e.g. an fp16-safe SDXL VAE (madebyollin/sdxl-vae-fp16-fix).",
    )
    model.add_argument("--revision", default=None, help="Revision of the pretrained model on the Hub.")
    model.add_argument("--variant", default=None, help="Variant of the model files, e.g. fp16.")
    model.add_argument("--cache_dir", default=None, help="Where downloaded models and datasets are stored.")
    model.add_argument(
        "--prediction_type",
        choices=PREDICTION_TYPES,
        default=None,
        help="Override the scheduler's prediction type (epsilon or v_prediction; SD and SDXL only).",
    )
    model.add_argument(
        "--t5",
        choices=T5_PLACEMENTS,
        default=None,
        help="SD3 and FLUX's T5 encoder (default: device): on the device with the rest, kept on the CPU (its outputs are moved), "
        "or, for SD3 only, not loaded (its part of the prompt embedding is zeros, as StableDiffusion3Pipeline "
        "does with text_encoder_3=None; generate without T5 too, then).",
    )

    concept = parser.add_argument_group("what to erase (forget set) and what to keep (remain set)")
    concept.add_argument(
        "--concept",
        action="append",
        default=[],
        help="A concept to erase; repeat the flag to erase several in one run.",
    )
    concept.add_argument(
        "--concept_type",
        choices=CONCEPT_TYPES,
        default="style",
        help="Selects the built-in forget templates, remain prompts and anchor.",
    )
    concept.add_argument(
        "--forget_prompts",
        nargs="+",
        default=None,
        help="Forget prompts, or .txt files of prompts (one per line), used instead of the concept templates.",
    )
    concept.add_argument(
        "--remain_prompts",
        nargs="+",
        default=None,
        help="Remain prompts, or .txt files of prompts, used instead of the built-in remain set.",
    )
    concept.add_argument(
        "--num_forget_images",
        type=int,
        default=DEFAULT_NUM_FORGET_IMAGES,
        help="Forget images to generate (cycling over the forget prompts).",
    )
    concept.add_argument(
        "--num_remain_images",
        type=int,
        default=DEFAULT_NUM_REMAIN_IMAGES,
        help="Remain images to generate (cycling over the remain prompts).",
    )
    concept.add_argument(
        "--generation_steps",
        type=int,
        default=DEFAULT_GENERATION_STEPS,
        help="Denoising steps for generated data and validation images.",
    )
    concept.add_argument(
        "--generation_scheduler",
        choices=GENERATION_SCHEDULERS,
        default=None,
        help=f"Sampler for generated data and validation images: DPM-Solver++ (multistep) or the model's own "
        f"(default: {DEFAULT_GENERATION_SCHEDULER} for SD and SDXL, model for SD3 and FLUX).",
    )
    concept.add_argument(
        "--generation_guidance_scale",
        type=float,
        default=None,
        help="Guidance for generated data and validation images (default: the pipeline's own: 7.5 for SD and "
        "SDXL, 7.0 for SD3, FLUX.1 [dev]'s distilled guidance 3.5).",
    )
    concept.add_argument(
        "--remain_generation_guidance_scale",
        type=float,
        default=None,
        help="Classifier-free guidance for generated remain images (default: --generation_guidance_scale).",
    )
    concept.add_argument(
        "--generation_batch_size",
        type=int,
        default=None,
        help="Images generated (and VAE-encoded) per batch; default: as many as 40%% of free GPU memory holds "
        "(at most 16), 16 on the CPU.",
    )
    concept.add_argument(
        "--forget_data_dir",
        default=None,
        help="Forget images in the imagefolder layout (metadata.jsonl with file_name and text).",
    )
    concept.add_argument("--remain_data_dir", default=None, help="Remain images in the imagefolder layout.")
    concept.add_argument(
        "--forget_dataset_name", default=None, help="A `datasets` dataset (Hub name or local folder) of forget images."
    )
    concept.add_argument("--remain_dataset_name", default=None, help="A `datasets` dataset of remain images.")
    concept.add_argument("--image_column", default="image", help="Image column of the datasets.")
    concept.add_argument("--caption_column", default="text", help="Caption column of the datasets and image folders.")
    concept.add_argument(
        "--resolution",
        type=int,
        default=512,
        help="Training (and generation) resolution; a multiple of the VAE's downsampling factor.",
    )
    concept.add_argument(
        "--center_crop", action="store_true", help="Center-crop images instead of cropping at random."
    )
    concept.add_argument(
        "--random_flip",
        action="store_true",
        help="Flip images horizontally at random (latents are then encoded every step).",
    )
    concept.add_argument(
        "--proportion_empty_prompts",
        type=float,
        default=None,
        help="Fraction of remain samples trained with the empty prompt, so that the unconditional prediction, "
        f"which classifier-free guidance subtracts, is kept as well (default: {DEFAULT_PROPORTION_EMPTY_PROMPTS}; "
        "0 and nothing else for FLUX, which has no classifier-free guidance).",
    )

    objective = parser.add_argument_group("objective (docs/method.md)")
    objective.add_argument(
        "--remain_target",
        choices=REMAIN_TARGETS,
        default=DEFAULT_REMAIN_TARGET,
        help="What L_r regresses onto: data (the remain images' noise, the paper's L_r), teacher (the frozen base "
        "model's own prediction on the noised remain latents, which keeps the base model as the minimiser) or "
        "both (the mean of the two losses).",
    )
    objective.add_argument(
        "--forget_target",
        choices=FORGET_TARGETS,
        default="shifted_noise",
        help="shifted_noise (paper Eq. 2), anchor (later official code) or neggrad (baseline).",
    )
    objective.add_argument(
        "--forget_noise", choices=FORGET_NOISES, default="uniform", help="Distribution of ε_f for shifted_noise."
    )
    objective.add_argument("--forget_noise_mean", type=float, default=DEFAULT_FORGET_NOISE_MEAN, help="Mean μ of ε_f.")
    objective.add_argument(
        "--forget_noise_std",
        type=float,
        default=DEFAULT_FORGET_NOISE_STD,
        help="Standard deviation σ of ε_f (default 1/√12: U[0, 1) with μ = 0.5).",
    )
    objective.add_argument(
        "--anchor_prompt", default=None, help="Anchor condition for --forget_target anchor (default per concept type)."
    )
    objective.add_argument(
        "--lambda_mode",
        choices=LAMBDA_MODES,
        default=DEFAULT_LAMBDA_MODE,
        help="fixed λ, bome (the paper) or cosine (the official code).",
    )
    objective.add_argument(
        "--lambda_value", type=float, default=DEFAULT_LAMBDA_VALUE, help="λ for --lambda_mode fixed."
    )
    objective.add_argument("--eta", type=float, default=DEFAULT_ETA, help="η of the bome and cosine rules.")
    objective.add_argument(
        "--lambda_refresh_steps",
        type=int,
        default=DEFAULT_LAMBDA_REFRESH_STEPS,
        help="Compute the bome/cosine λ (two backward passes) every this many steps; the steps in between "
        "take one combined backward with the last λ.",
    )
    objective.add_argument(
        "--adversarial_refresh_steps",
        type=int,
        default=0,
        help="Adversarial erasure (docs/robustness.md): every this many steps, retrain a word that makes the "
        "current model draw the forget images, and take the forget loss under it too (0: off).",
    )
    objective.add_argument(
        "--adversarial_steps", type=int, default=10, help="Training steps of the adversarial word per refresh."
    )
    objective.add_argument(
        "--adversarial_learning_rate",
        type=float,
        default=5e-3,
        help="Adam learning rate of the adversarial word's embedding.",
    )
    objective.add_argument(
        "--relearn_resistance_steps",
        type=int,
        default=0,
        help="Relearning resistance (docs/robustness.md): also take f after this many simulated fine-tuning "
        "steps on the forget batch, so that erasure survives an attacker's fine-tuning (0: off).",
    )
    objective.add_argument(
        "--relearn_resistance_step_size",
        type=float,
        default=1e-4,
        help="Size of each simulated relearning step (sign steps, as Adam's first steps at this learning rate).",
    )
    objective.add_argument(
        "--relearn_resistance_weight", type=float, default=1.0, help="Weight of f after the simulated steps."
    )
    objective.add_argument(
        "--inner_steps",
        type=int,
        default=0,
        help="K: 0 uses the closed-form f*; K > 0 estimates f* by K gradient steps (logged only).",
    )
    objective.add_argument("--inner_learning_rate", type=float, default=1e-5, help="Step size of the K inner steps.")
    objective.add_argument(
        "--inner_refresh_steps",
        type=int,
        default=10,
        help="Recompute the K-step estimate of f* every this many steps.",
    )
    objective.add_argument(
        "--forget_batch_size",
        type=int,
        default=DEFAULT_FORGET_BATCH_SIZE,
        help="Forget samples per micro-batch and process.",
    )

    flow = parser.add_argument_group("flow matching (SD3 and FLUX)")
    flow.add_argument(
        "--weighting_scheme",
        choices=WEIGHTING_SCHEMES,
        default=None,
        help="SD3 and FLUX: how σ is drawn (and, for sigma_sqrt and cosmap, how each sample's loss is weighted), "
        "as in diffusers' SD3/FLUX scripts (default: their defaults, logit_normal for SD3, none for FLUX).",
    )
    for name, what in (("logit_mean", "Mean"), ("logit_std", "Standard deviation"), ("mode_scale", "Scale")):
        scheme = "mode" if name == "mode_scale" else "logit_normal"
        flow.add_argument(
            f"--{name}",
            type=float,
            default=None,
            help=f"{what} of the {scheme} scheme (default: {FLOW_MATCHING_DEFAULTS[name]}).",
        )
    flow.add_argument(
        "--precondition_outputs",
        type=int,
        choices=(0, 1),
        default=None,
        help="1: regress x̂₀ = x_t − σ·v̂ onto x₀ (the velocity loss weighted by σ²), as diffusers' SD3 scripts "
        "do by default (default: 1 for SD3, 0 for FLUX, whose scripts do not).",
    )
    flow.add_argument(
        "--guidance_scale",
        type=float,
        default=None,
        help="FLUX.1 [dev]: the value its guidance embedding takes in training (default 3.5, as diffusers' FLUX "
        "scripts; FLUX.1 [schnell] has no guidance embedding). Generation's guidance is --generation_guidance_scale.",
    )

    trained = parser.add_argument_group("what is trained")
    trained.add_argument(
        "--train_method",
        choices=TRAIN_METHODS,
        default="full",
        help="Part of the UNet or transformer to train (module names per family in docs/method.md).",
    )
    trained.add_argument("--use_lora", action="store_true", help="Train PEFT LoRA adapters instead of the weights.")
    trained.add_argument("--rank", type=int, default=4, help="LoRA rank.")
    trained.add_argument("--lora_alpha", type=float, default=None, help="LoRA alpha (default: the rank).")
    trained.add_argument(
        "--lora_target_modules",
        default=None,
        help="Comma-separated module names that get adapters (default: to_k,to_q,to_v,to_out.0 for SD and SDXL; "
        "for SD3 and FLUX those of diffusers' LoRA scripts, docs/method.md).",
    )

    training = parser.add_argument_group("training")
    training.add_argument(
        "--output_dir", default="erasediff-model", help="Where the result, checkpoints and generated data go."
    )
    training.add_argument(
        "--overwrite_output_dir",
        action="store_true",
        help="Write into a non-empty folder that holds no earlier run (nothing is deleted).",
    )
    training.add_argument("--seed", type=int, default=None, help="Seed for data order, noise and generated images.")
    training.add_argument(
        "--train_batch_size",
        type=int,
        default=DEFAULT_REMAIN_BATCH_SIZE,
        help="Remain samples per micro-batch and process (more remain than forget samples keeps the rest intact).",
    )
    training.add_argument("--max_train_steps", type=int, default=DEFAULT_MAX_TRAIN_STEPS, help="Optimizer steps.")
    training.add_argument(
        "--gradient_accumulation_steps", type=int, default=1, help="Micro-batches per optimizer step."
    )
    training.add_argument(
        "--gradient_checkpointing", action="store_true", help="Trade compute for memory in the UNet or transformer."
    )
    training.add_argument(
        "--learning_rate", type=float, default=None, help="Default 1e-5 for full fine-tuning, 1e-4 for LoRA."
    )
    training.add_argument(
        "--scale_lr",
        action="store_true",
        help="Scale the learning rate by accumulation steps, batch size and processes.",
    )
    training.add_argument(
        "--lr_scheduler",
        choices=LR_SCHEDULERS,
        default="constant",
        help="Learning-rate schedule (diffusers' get_scheduler).",
    )
    training.add_argument(
        "--lr_warmup_steps", type=int, default=0, help="Warm-up steps of the learning-rate schedule."
    )
    training.add_argument("--use_8bit_adam", action="store_true", help="bitsandbytes' 8-bit AdamW.")
    training.add_argument("--adam_beta1", type=float, default=0.9, help="AdamW's β1.")
    training.add_argument("--adam_beta2", type=float, default=0.999, help="AdamW's β2.")
    training.add_argument("--adam_weight_decay", type=float, default=1e-2, help="AdamW's decoupled weight decay.")
    training.add_argument("--adam_epsilon", type=float, default=1e-8, help="AdamW's ε.")
    training.add_argument(
        "--max_grad_norm", type=float, default=1.0, help="Gradient clipping (applied to ∇L_r + λ∇f)."
    )
    training.add_argument("--allow_tf32", action="store_true", help="Allow TF32 matmuls on Ampere and newer GPUs.")
    training.add_argument(
        "--allow_unverified_engine",
        action="store_true",
        help="Run under an FSDP or DeepSpeed setup whose GPU check has not passed yet (docs/usage.md, More than one GPU).",
    )
    training.add_argument(
        "--mixed_precision", choices=["no", "fp16", "bf16"], default=None, help="Default: accelerate's configuration."
    )
    training.add_argument(
        "--enable_xformers_memory_efficient_attention",
        action="store_true",
        help="xformers attention (GPU only); PyTorch SDPA otherwise.",
    )

    logging = parser.add_argument_group("logging, checkpoints and validation")
    logging.add_argument("--report_to", default="tensorboard", help='"tensorboard", "wandb", "all" or "none".')
    logging.add_argument("--logging_dir", default="logs", help="Tracker folder, relative to --output_dir.")
    logging.add_argument(
        "--checkpointing_steps", type=int, default=500, help="Save a resumable checkpoint every this many steps."
    )
    logging.add_argument(
        "--checkpoints_total_limit", type=int, default=None, help="Keep at most this many checkpoints."
    )
    logging.add_argument(
        "--resume_from_checkpoint", default=None, help='A checkpoint folder, or "latest" in --output_dir.'
    )
    logging.add_argument(
        "--validation_prompts",
        nargs="+",
        default=None,
        help="Prompts (or .txt files) for validation images (default: two forget and two remain prompts).",
    )
    logging.add_argument("--num_validation_images", type=int, default=2, help="Validation images per prompt.")
    logging.add_argument(
        "--validation_steps",
        type=int,
        default=None,
        help="Validation images every this many steps (always before and after).",
    )

    evaluation = parser.add_argument_group("evaluation at the end of training (docs/evaluation.md)")
    evaluation.add_argument(
        "--evaluate",
        action="store_true",
        help="Evaluate the erased model against its base (same seeds) into <output_dir>/evaluation; the figures go into the model card.",
    )
    evaluation.add_argument(
        "--evaluation_metrics", nargs="+", choices=METRICS, default=None, help="Metrics (default per --concept_type)."
    )
    evaluation.add_argument("--evaluation_num_images", type=int, default=4, help="Images per prompt and model.")
    evaluation.add_argument(
        "--evaluation_attacks",
        default=None,
        help=f"Also run these attacks (comma-separated, of {', '.join(ATTACKS)}, or all) at their default budgets "
        "and put the attack table into the card (docs/robustness.md).",
    )
    evaluation.add_argument(
        "--evaluation_clip_model", default=DEFAULT_CLIP_MODEL, help="CLIP model for the CLIP metrics."
    )
    evaluation.add_argument(
        "--evaluation_classifier_model",
        default=DEFAULT_CLASSIFIER_MODEL,
        help="Image classifier for the classifier metric.",
    )

    hub = parser.add_argument_group("output and publishing")
    hub.add_argument(
        "--save_as",
        choices=SAVE_AS_CHOICES,
        default=None,
        help="lora (default for LoRA runs), pipeline (the adapter fused into a standalone pipeline; the only choice "
        "for full fine-tuning) or both (LoRA at the root, the fused pipeline in fused/).",
    )
    hub.add_argument("--push_to_hub", action="store_true", help="Upload the output folder to the Hub at the end.")
    hub.add_argument("--hub_token", default=None, help="Hub token; prefer `hf auth login`.")
    hub.add_argument("--hub_model_id", default=None, help="Repo to push to (default: the output folder's name).")
    hub.add_argument("--hub_private_repo", action="store_true", help="Create the repo as private.")
    add_upload_choices(hub)
    return parser


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    """Parses and checks the arguments; a mistake exits with argparse's usage and a one-line error."""
    parser = build_parser()
    args = parser.parse_args(input_args)
    try:
        for name in ("forget_prompts", "remain_prompts", "validation_prompts"):
            if getattr(args, name) is not None:
                setattr(args, name, expand_prompt_arguments(getattr(args, name), f"--{name}"))
        check_arguments(args)
    except InputError as error:
        parser.error(str(error))
    for name in ("pretrained_model_name_or_path", "output_dir"):  # one spelling of a folder ("x/" is "x")
        if os.path.isdir(getattr(args, name)):
            setattr(args, name, os.path.normpath(getattr(args, name)))
    if args.lora_target_modules is not None:
        args.lora_target_modules = [m.strip() for m in args.lora_target_modules.split(",") if m.strip()]
    if args.lora_alpha is None:
        args.lora_alpha = float(args.rank)
    if args.learning_rate is None:
        args.learning_rate = 1e-4 if args.use_lora else 1e-5
    if args.anchor_prompt is None:
        args.anchor_prompt = DEFAULT_ANCHORS[args.concept_type]
    if args.save_as is None:
        args.save_as = "lora" if args.use_lora else "pipeline"
    return args


def apply_family_defaults(args: argparse.Namespace, family: str, denoiser_config: dict) -> None:
    """Fills in the defaults that depend on the model's family, once it is known (before anything is recorded):
    the sampler, the guidance, prompt dropout, the LoRA targets and flow matching's σ scheme."""
    from pipelines.families import FAMILIES, FLUX, family_for

    family_class = FAMILIES[family]
    if args.generation_scheduler is None:
        args.generation_scheduler = family_class.default_generation_scheduler
    if args.generation_guidance_scale is None:
        args.generation_guidance_scale = family_class.default_guidance_scale
    if args.remain_generation_guidance_scale is None:
        args.remain_generation_guidance_scale = args.generation_guidance_scale
    if args.proportion_empty_prompts is None:
        args.proportion_empty_prompts = (
            DEFAULT_PROPORTION_EMPTY_PROMPTS if family_class.classifier_free_guidance else 0.0
        )
    if args.lora_target_modules is None:
        args.lora_target_modules = list(family_class.lora_target_modules)
    if family_class.flow_matching:
        if args.weighting_scheme is None:
            args.weighting_scheme = family_class.default_weighting_scheme
        for name, value in FLOW_MATCHING_DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        if args.precondition_outputs is None:
            args.precondition_outputs = int(family_class.default_precondition_outputs)
        if args.t5 is None:
            args.t5 = "device"
    if family == FLUX:
        args.guidance_scale = family_for(family, denoiser_config, args.guidance_scale).guidance_scale


def main(args: argparse.Namespace, argv: list[str] | None = None, started: float | None = None) -> None:
    """Runs one erasure: data, models, training loop, saving. See README.md and docs/usage.md.

    ``argv`` (default: this process's command line) is what the resume command printed on a signal repeats;
    ``started`` (default: now) is when the run's clock starts.
    """
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    from pipelines.console import configure_logging
    from pipelines.engines import EngineSettings, check_engine, configure_deepspeed
    from pipelines.interruption import StopRequest
    from pipelines.models import (
        check_family_options,
        check_model_configs,
        check_model_reachable,
        check_runtime_support,
    )
    from pipelines.phases import PhaseClock
    from pipelines.publishing import check_hub_credentials
    from pipelines.resuming import raise_if_disk_full
    from pipelines.run_folder import OutputLock

    clock = PhaseClock(started)
    check_runtime_support(args)
    check_model_reachable(args)
    family, denoiser_config = check_model_configs(args)
    check_family_options(args, family, denoiser_config)
    apply_family_defaults(args, family, denoiser_config)
    if args.push_to_hub:
        check_hub_credentials(args.hub_token)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
        ),
    )
    configure_logging(accelerator.is_local_main_process)
    engine = EngineSettings.of(accelerator)
    check_engine(engine, run_shape(args, accelerator.num_processes), args.allow_unverified_engine)
    if engine.kind == "deepspeed":
        configure_deepspeed(
            accelerator.state.deepspeed_plugin, args.max_grad_norm, args.train_batch_size + args.forget_batch_size
        )
    args.distributed_engine = engine.name
    # The lock is held for the whole run; nothing is written into the folder before it is taken.
    lock = OutputLock(args.output_dir)
    try:
        if accelerator.is_main_process:
            took_over = lock.acquire()
            if took_over:
                logger.info("%s: %s", args.output_dir, took_over)
            # Again, now that no other run can write the folder: one may have finished since parsing.
            check_output_dir(
                args.output_dir, args.overwrite_output_dir, resuming=bool(args.resume_from_checkpoint), lock_held=True
            )
        with StopRequest() as stop:
            erase(args, accelerator, engine, sys.argv[1:] if argv is None else argv, clock, stop)
    except (InputError, TrainingError):
        raise
    except Exception as error:  # a full disk anywhere (data, logs, grid, card) is one line too
        raise_if_disk_full(error, args.output_dir, args.output_dir, getattr(args, "run_id", None))
        raise
    finally:
        lock.release()


def plain_denoiser(args: argparse.Namespace, models):
    """A fresh, unwrapped UNet or transformer of the trained layout (LoRA adapters included) on the main
    device, for the gathered state of a model FSDP or ZeRO-3 sharded."""
    import torch
    from diffusers.training_utils import cast_training_params

    from pipelines.models import load_base_denoiser
    from pipelines.trainable import add_lora_adapters, select_trainable_parameters

    denoiser = load_base_denoiser(args, models.family).to(models.denoiser.device, dtype=models.weight_dtype)
    parts = models.model_family.parts
    if args.use_lora:
        add_lora_adapters(denoiser, args.rank, args.lora_alpha, args.train_method, args.lora_target_modules, parts)
    else:
        select_trainable_parameters(denoiser, args.train_method, parts)
    cast_training_params(denoiser, dtype=torch.float32)
    return denoiser


def evaluation_settings_for(args: argparse.Namespace, plan):
    """The end-of-training evaluation of ``train_erasediff.py --evaluate``: the run's own forget and remain
    prompts (generated from, or the captions of the given images), checked before any training."""
    from pipelines.evaluation.measurements import check_metric_models
    from pipelines.evaluation.settings import EvaluationSettings, check_metric_packages
    from pipelines.options import MAX_AUTO_BATCH

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


def run_shape(args: argparse.Namespace, num_processes: int):
    """The settings that decide which distributed engines run this correctly (pipelines/engines.py)."""
    from pipelines.engines import RunShape

    return RunShape(
        lambda_mode=args.lambda_mode,
        use_lora=args.use_lora,
        remain_target=args.remain_target,
        inner_steps=args.inner_steps,
        max_grad_norm=args.max_grad_norm,
        validation_steps=args.validation_steps,
        num_processes=num_processes,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        relearn_resistance_steps=args.relearn_resistance_steps,
        adversarial_refresh_steps=args.adversarial_refresh_steps,
    )


def erase(args: argparse.Namespace, accelerator, engine, argv: list[str], clock, stop) -> None:
    """Everything after the output folder is locked, in the order it happens; ``engine`` (EngineSettings) is
    what accelerate wraps the model in; ``clock`` (PhaseClock) times each phase; ``stop`` (StopRequest)
    holds a Ctrl-C or SIGTERM."""
    import random

    import torch
    from accelerate.utils import broadcast_object_list, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params
    from tqdm.auto import tqdm

    from pipelines.adversarial import AdversarialWord, AdversarySettings
    from pipelines.checkpoints import (
        checkpoint_step,
        diverged_message,
        read_manifest,
        register_trainable_state_hooks,
        remove_leftovers,
    )
    from pipelines.console import SetSummary, end_summary, start_summary
    from pipelines.data_sets import build_data_sets, check_samples_per_step, content_digest, first_captions
    from pipelines.engines import check_prepared_model, gathered_model
    from pipelines.erasure_step import ErasureSettings, ErasureStep
    from pipelines.evaluation.attacks.detector import check_detector_metric
    from pipelines.evaluation.attacks.settings import AttackSettings
    from pipelines.evaluation.comparison import EVALUATION_DIR, evaluate_trained_unet
    from pipelines.export import save_erased_model
    from pipelines.generation import auto_batch_size
    from pipelines.interruption import resume_command
    from pipelines.latent_cache import EncodedImageSet
    from pipelines.model_card import load_snippet, summary_of, write_model_card
    from pipelines.models import load_base_denoiser, load_models, make_pipeline, mixed_precision_dtype
    from pipelines.objective import ForgetNoise, constraint_gap, known_forget_minimum
    from pipelines.options import effective_learning_rate
    from pipelines.outputs import public_arguments, recorded_form, save_arguments
    from pipelines.phases import DATA, ENCODING, EVALUATION, LOADING, PUBLISHING, SAVING, TRAINING, VALIDATION
    from pipelines.publishing import create_hub_repo, publish_folder, upload_ignore_patterns
    from pipelines.randomness import FORGET_STREAM, REMAIN_STREAM, SampleStream
    from pipelines.resuming import load_checkpoint, plan_resume, save_checkpoint
    from pipelines.teacher import FrozenTeacher
    from pipelines.trainable import add_lora_adapters, select_trainable_parameters
    from pipelines.validation import generate_validation_images, log_validation_images, save_validation_grid

    # What the run is: the precision and process count actually used are recorded with the arguments, and a
    # resumed run must match its checkpoint's record before anything is written.
    args.mixed_precision = accelerator.mixed_precision
    args.num_processes = accelerator.num_processes
    plan = plan_resume(args.resume_from_checkpoint, args.output_dir)
    for note in plan.notes:
        logger.info(note)
    # One seed and run id for every process, the main process's: a resumed run keeps the seed its first run
    # drew, and a new run draws its id (and, unless --seed is given, its seed) once.
    seed = args.seed
    if seed is None:
        seed = plan.recorded["seed"] if plan.recorded else random.randrange(2**31)
    args.seed, args.run_id = broadcast_object_list([seed, plan.run_id])

    set_seed(args.seed)
    if args.allow_tf32 and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True

    # User data first: a bad folder or dataset fails before any model loads. Its content is recorded, so a
    # resumed run also refuses data that changed.
    with clock.phase(DATA):
        data_plan = build_data_sets(args)
    check_samples_per_step(data_plan, args, accelerator.num_processes)
    args.forget_data_digest = content_digest(data_plan.forget_given)
    args.remain_data_digest = content_digest(data_plan.remain_given)
    plan.check_arguments(recorded_form(args))
    repo_id = None
    if args.push_to_hub and accelerator.is_main_process:  # created now, so a bad token or name fails before training
        repo_id = create_hub_repo(
            args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir)),
            args.hub_token,
            args.hub_private_repo,
        )
    evaluation_settings = evaluation_settings_for(args, data_plan) if args.evaluate else None
    attack_settings = None
    if args.evaluation_attacks:
        check_detector_metric(evaluation_settings)
        attack_settings = AttackSettings(attacks=args.evaluation_attacks, seed=args.seed)

    models = load_models(args, mixed_precision_dtype(accelerator.mixed_precision), accelerator.device)
    denoiser, parts = models.denoiser, models.model_family.parts
    # What trains: LoRA adapters (a no-op until trained: B starts at zero) or the selected denoiser weights;
    # trainable parameters stay in fp32.
    if args.use_lora:
        trainable = add_lora_adapters(
            denoiser, args.rank, args.lora_alpha, args.train_method, args.lora_target_modules, parts
        )
    else:
        trainable = select_trainable_parameters(denoiser, args.train_method, parts)
    cast_training_params(denoiser, dtype=torch.float32)
    if args.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
    base_pipeline = make_pipeline(models, denoiser)
    if args.generation_batch_size is None:  # resolved once, and recorded
        args.generation_batch_size = auto_batch_size(base_pipeline, args.resolution)
        if evaluation_settings is not None:
            evaluation_settings.batch_size = args.generation_batch_size
    if accelerator.is_main_process:  # every check has passed: from here on the folder is this run's
        remove_leftovers(args.output_dir)
        save_arguments(args, args.output_dir)

    # Forget/remain images (generating what is asked for with the base model), then the cached encodings.
    clock.switch(DATA)
    forget_images, remain_images = data_plan.materialize(args, base_pipeline, accelerator)
    validation_prompts = args.validation_prompts or [
        *first_captions(forget_images, 2),
        *first_captions(remain_images, 2),
    ]
    validation = dict(
        prompts=validation_prompts,
        num_images=args.num_validation_images,
        seed=args.seed,
        num_inference_steps=args.generation_steps,
        guidance_scale=args.generation_guidance_scale,
        resolution=args.resolution,
    )
    if accelerator.is_main_process:
        with clock.phase(VALIDATION), accelerator.autocast():
            images_before = generate_validation_images(base_pipeline, **validation, description="validation (before)")
    clock.switch(ENCODING)
    encode = dict(
        vae=models.vae,
        conditioner=models.conditioner,
        resolution=args.resolution,
        center_crop=args.center_crop,
        random_flip=args.random_flip,
        device=accelerator.device,
        batch_size=args.generation_batch_size,
    )
    forget_set = EncodedImageSet(forget_images, **encode)
    remain_set = EncodedImageSet(remain_images, **encode, empty_prompt_probability=args.proportion_empty_prompts)
    anchor_embeds = (
        models.conditioner.encode([args.anchor_prompt], accelerator.device) if args.forget_target == "anchor" else None
    )
    clock.switch(LOADING)

    optimizer_options = {}
    if args.use_8bit_adam:
        import bitsandbytes as bnb

        optimizer_class = bnb.optim.AdamW8bit
    else:
        optimizer_class = torch.optim.AdamW
        # One fused kernel instead of a loop over tensors (4× faster on the CPU); sharded engines keep the default.
        optimizer_options["fused"] = accelerator.device.type in ("cpu", "cuda") and not engine.sharded
    optimizer = optimizer_class(
        trainable,
        lr=effective_learning_rate(args),
        betas=(args.adam_beta1, args.adam_beta2),
        weight_decay=args.adam_weight_decay,
        eps=args.adam_epsilon,
        **optimizer_options,
    )
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    settings = ErasureSettings(
        forget_target=args.forget_target,
        forget_noise=ForgetNoise(args.forget_noise, args.forget_noise_mean, args.forget_noise_std),
        lambda_mode=args.lambda_mode,
        lambda_value=args.lambda_value,
        eta=args.eta,
        remain_target=args.remain_target,
        relearn_steps=args.relearn_resistance_steps,
        relearn_step_size=args.relearn_resistance_step_size,
        relearn_weight=args.relearn_resistance_weight,
    )
    # θ₀ for the teacher remain target, taken before prepare and before a checkpoint is loaded.
    teacher = FrozenTeacher(denoiser, args.use_lora, models.weight_dtype) if settings.uses_teacher else None
    if not engine.sharded:  # FSDP and DeepSpeed save and load their own (sharded) state
        register_trainable_state_hooks(accelerator, denoiser, models.family)
    denoiser, optimizer, lr_scheduler = accelerator.prepare(denoiser, optimizer, lr_scheduler)
    check_prepared_model(denoiser, settings.adaptive)
    # The prepared parameters: FSDP replaces the ones the optimizer was built with.
    trainable = [p for p in accelerator.unwrap_model(denoiser).parameters() if p.requires_grad]

    if accelerator.is_main_process:
        # Trackers take scalars only; secrets never reach them.
        tracker_config = {
            k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in public_arguments(args).items()
        }
        accelerator.init_trackers("erasediff", config=tracker_config)

    step = ErasureStep(
        accelerator,
        denoiser,
        models.model_family,
        models.noising,
        settings,
        forget_set,
        remain_set,
        SampleStream(args.seed, FORGET_STREAM, len(forget_set)),
        SampleStream(args.seed, REMAIN_STREAM, len(remain_set)),
        args.forget_batch_size,
        args.train_batch_size,
        trainable,
        models.model_dtype,
        anchor_embeds,
        teacher,
        # λ's three sums over FSDP's gradient shards; DDP's gradients are already whole on every process.
        (lambda sums: accelerator.reduce(sums, reduction="sum")) if engine.kind == "fsdp" else None,
    )
    adversary = None
    if args.adversarial_refresh_steps > 0:
        adversary = AdversarialWord(
            models.conditioner,
            concept_templates(data_plan.forget_prompts or forget_images.captions, args.concept, args.concept_type),
            AdversarySettings(args.adversarial_refresh_steps, args.adversarial_steps, args.adversarial_learning_rate),
            args.seed,
            accelerator.device,
        )

    def refresh_adversary(at_step: int) -> None:
        """Retrains the adversarial word against the denoiser as it is now (every process the same draws)."""
        unwrapped = accelerator.unwrap_model(denoiser)
        with accelerator.autocast():
            adversary.refresh(
                models.model_family,
                unwrapped,
                forget_set,
                models.noising,
                at_step // args.adversarial_refresh_steps,
                models.model_dtype,
            )
        step.adversarial_conditions = adversary.conditions

    forget_minimum = known_forget_minimum(args.forget_target, settings.forget_noise) if args.inner_steps == 0 else None

    global_step = 0
    if plan.checkpoint:
        load_checkpoint(accelerator, plan.checkpoint)
        global_step = checkpoint_step(plan.checkpoint)
        loop_state = read_manifest(plan.checkpoint).loop_state
        if settings.adaptive:  # None (a checkpoint from before λ was recorded): the first step computes it afresh
            step.last_lambda = loop_state.get("lambda")
        if adversary is not None and loop_state.get("adversarial_word"):  # else: the first step trains a word
            adversary.load_state(loop_state["adversarial_word"])
            step.adversarial_conditions = adversary.conditions
        logger.info("Resumed from %s at step %d.", plan.checkpoint, global_step)

    def checkpoint(at_step: int, wait: bool = True) -> str | None:
        if engine.sharded and not wait:  # the main process alone cannot write a sharded engine's state
            return None
        with clock.phase(SAVING):
            return save_checkpoint(
                accelerator,
                args.output_dir,
                at_step,
                args.run_id,
                recorded_form(args),
                args.checkpoints_total_limit,
                wait=wait,
                collective=engine.sharded,
                loop_state={"lambda": step.last_lambda, "adversarial_word": adversary and adversary.state()},
            )

    logger.info(
        start_summary(
            [
                SetSummary("forget set", len(forget_set), args.forget_batch_size),
                SetSummary("remain set", len(remain_set), args.train_batch_size),
            ],
            accelerator.num_processes,
            args.gradient_accumulation_steps,
            args.max_train_steps,
            global_step,
            ("LoRA adapters" if args.use_lora else f"{models.model_family.denoiser} weights")
            + f" (--train_method {args.train_method})",
            sum(p.numel() for p in trainable),
            f"{accelerator.mixed_precision} (trainable parameters in fp32, frozen ones in {str(models.weight_dtype).removeprefix('torch.')})",
            args.output_dir,
        )
    )
    progress = tqdm(
        range(args.max_train_steps), initial=global_step, desc="Steps", disable=not accelerator.is_local_main_process
    )
    micro_batch_index = global_step * args.gradient_accumulation_steps
    remain_total = forget_total = 0.0
    last_checkpoint = global_step
    denoiser.train()
    stop.stop_after_steps()
    clock.switch(TRAINING)

    def stop_here(requested: bool, every_process: bool = True) -> None:
        """Acts on a Ctrl-C/SIGTERM that every process agreed on (or, on the main process alone after
        training, its own): a checkpoint of this step unless one was just written, the resume command, and
        the signal's exit status."""
        if not requested:
            return
        saved = None
        if last_checkpoint != global_step:
            saved = checkpoint(global_step) if every_process else checkpoint(global_step, wait=False)
        raise TrainingError(
            f"stopped by {stop.signal_name or 'a signal to another process'} after step {global_step}"
            + (f"; saved {saved}" if saved else "")
            + f"; resume with: {resume_command(argv)}",
            exit_code=stop.exit_code,
        )

    with progress:
        while global_step < args.max_train_steps:
            refresh = global_step % args.lambda_refresh_steps == 0 or step.last_lambda is None
            starts_step = micro_batch_index % args.gradient_accumulation_steps == 0
            if adversary is not None and starts_step:
                # On schedule, or at once after resuming from a checkpoint that holds no word.
                if global_step % args.adversarial_refresh_steps == 0 or step.adversarial_conditions is None:
                    refresh_adversary(global_step)
            with accelerator.accumulate(denoiser):
                remain_value, forget_value, forget_batch = step.run(micro_batch_index, refresh)
                remain_total = remain_total + remain_value / args.gradient_accumulation_steps
                forget_total = forget_total + forget_value / args.gradient_accumulation_steps
                if accelerator.sync_gradients:
                    # One reduction over processes, so every rank takes the same branches below (stopping too).
                    status = torch.stack([remain_total.detach(), forget_total.detach()]).float()
                    status = torch.cat([status, torch.tensor([float(stop.requested)], device=status.device)])
                    remain_mean, forget_mean, stop_votes = accelerator.reduce(status, reduction="mean").tolist()
                    if not (math.isfinite(remain_mean) and math.isfinite(forget_mean)):
                        raise TrainingError(
                            diverged_message(args.output_dir, global_step + 1, remain_mean, forget_mean, args.run_id)
                        )
                    if args.inner_steps > 0 and global_step % args.inner_refresh_steps == 0:
                        forget_minimum = step.estimate_forget_minimum(
                            forget_batch, args.inner_steps, args.inner_learning_rate
                        )
                    lam = step.weigh_gradients(refresh)
                    if args.max_grad_norm > 0 and not engine.clips_itself:
                        accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            micro_batch_index += 1
            if not accelerator.sync_gradients:
                continue

            global_step += 1
            logs = {
                "remain_loss": remain_mean,
                "forget_loss": forget_mean,
                "lambda": float(lam),
                "lr": lr_scheduler.get_last_lr()[0],
            }
            if forget_minimum is not None:
                logs["constraint_gap"] = constraint_gap(forget_mean, forget_minimum)
            accelerator.log(logs, step=global_step)
            progress.update(1)
            progress.set_postfix(
                L_r=f"{remain_mean:.4f}",
                f=f"{forget_mean:.4f}",
                q=f"{logs.get('constraint_gap', float('nan')):.4f}",
                lam=f"{float(lam):.3f}",
            )
            remain_total = forget_total = 0.0

            if global_step % args.checkpointing_steps == 0:
                checkpoint(global_step)
                last_checkpoint = global_step
            stop_here(stop_votes > 0)
            if args.validation_steps and global_step % args.validation_steps == 0 and accelerator.is_main_process:
                denoiser.eval()
                with clock.phase(VALIDATION), accelerator.autocast():
                    images = generate_validation_images(
                        make_pipeline(models, accelerator.unwrap_model(denoiser)),
                        **validation,
                        description=f"validation (step {global_step})",
                    )
                log_validation_images(accelerator, images, validation_prompts, "validation", global_step)
                denoiser.train()

    # A signal that came during the last step; past this point only the main process works.
    status = torch.tensor([float(stop.requested)], device=accelerator.device)
    stop_here(accelerator.reduce(status, reduction="mean").item() > 0)
    accelerator.wait_for_everyone()
    clock.switch(SAVING)
    # Under FSDP or ZeRO-3 every process takes part in gathering the whole model; the main process then
    # works on a plain copy of it.
    trained_denoiser = gathered_model(accelerator, denoiser, engine, lambda: plain_denoiser(args, models))
    if accelerator.is_main_process:
        trained_denoiser.eval()
        with clock.phase(VALIDATION), accelerator.autocast():
            images_after = generate_validation_images(
                make_pipeline(models, trained_denoiser), **validation, description="validation (after)"
            )
        stop_here(stop.requested, every_process=False)
        log_validation_images(accelerator, images_before, validation_prompts, "before", global_step)
        log_validation_images(accelerator, images_after, validation_prompts, "after", global_step)
        grid = save_validation_grid(images_before, images_after, args.output_dir)
        log_validation_images(
            accelerator, [[grid]], ["rows: prompts; columns: before, then after"], "validation_grid", global_step
        )
        fused_folder = save_erased_model(args, trained_denoiser, models.family)  # a full disk: one line (main)
        card = dict(
            forget=summary_of(forget_images, data_plan.forget_prompts),
            remain=summary_of(remain_images, data_plan.remain_prompts),
            repo_id=repo_id,
            cross_attention_dim=getattr(trained_denoiser.config, "cross_attention_dim", None),
            fused_folder=fused_folder,
            family=models.family,
            validation_prompts=validation_prompts,
        )
        write_model_card(args, **card)
        # The model and its card are complete: a signal from here on stops at once.
        stop_here(stop.requested, every_process=False)
        stop.stop_at_once("after the model and its card were saved (what came after it was skipped)")
        if evaluation_settings is not None:
            clock.switch(EVALUATION)
            base_denoiser = (
                None
                if args.use_lora
                else load_base_denoiser(args, models.family).to(accelerator.device, dtype=models.model_dtype)
            )
            with accelerator.autocast():
                report = evaluate_trained_unet(
                    lambda unet_to_use: make_pipeline(models, unet_to_use),
                    trained_denoiser,
                    base_denoiser,
                    evaluation_settings,
                    os.path.join(args.output_dir, EVALUATION_DIR),
                    {"base": args.pretrained_model_name_or_path, "erased": args.output_dir},
                    attack_settings,
                )
            write_model_card(
                args, **card, evaluation=report.markdown_relative_to(args.output_dir, heading="## Evaluation")
            )
        if args.push_to_hub:
            clock.switch(PUBLISHING)
            ignore = upload_ignore_patterns(
                args.logging_dir, args.push_checkpoints, args.push_generated_data, args.push_logs
            )
            publish_folder(args.output_dir, repo_id, args.hub_token, ignore, "EraseDiff: erased model")
            logger.info("Pushed %s to the Hub as %s.", args.output_dir, repo_id)
        phase_seconds = clock.totals()
        accelerator.log({f"time/{name}": seconds for name, seconds in phase_seconds.items()}, step=global_step)
        logger.info(
            end_summary(
                written_files(args, fused_folder, evaluation_settings is not None, repo_id),
                phase_seconds,
                load_snippet(
                    args.pretrained_model_name_or_path,
                    repo_id or args.output_dir,
                    args.use_lora and args.save_as != "pipeline",
                    validation_prompts[-1],
                    models.family,
                    args.t5 == "drop",
                ),
            )
        )
    accelerator.end_training()


def written_files(args: argparse.Namespace, fused_folder: str | None, evaluated: bool, repo_id: str | None) -> list:
    """(path, what it is) for the end summary."""
    from pipelines.evaluation.comparison import EVALUATION_DIR
    from pipelines.model_card import CARD_FILE
    from pipelines.outputs import ARGS_FILE, LORA_WEIGHTS_FILE
    from pipelines.validation import VALIDATION_GRID_FILE

    root = args.output_dir
    lora_at_root = args.use_lora and args.save_as in ("lora", "both")
    written = [
        (os.path.join(root, LORA_WEIGHTS_FILE) if lora_at_root else root, "the erased model"),
        (os.path.join(root, CARD_FILE), "model card"),
        (os.path.join(root, VALIDATION_GRID_FILE), "before/after validation grid"),
        (os.path.join(root, ARGS_FILE), "the run's arguments"),
    ]
    if fused_folder:
        written.insert(1, (os.path.join(root, fused_folder), "standalone pipeline with the LoRA fused in"))
    if evaluated:
        written.append((os.path.join(root, EVALUATION_DIR), "evaluation against the base model"))
    if repo_id:
        written.append((f"https://huggingface.co/{repo_id}", "the Hub repo"))
    return written


if __name__ == "__main__":
    from pipelines.interruption import StopAtOnce

    arguments = parse_args()
    try:
        main(arguments, started=PROCESS_STARTED)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except StopAtOnce as stopped:
        print(f"error: {stopped}; continue with --resume_from_checkpoint latest", file=sys.stderr)
        sys.exit(stopped.exit_code)
    except KeyboardInterrupt:  # Ctrl-C before the handlers were installed (argument checks, imports)
        print("error: stopped at once by Ctrl-C", file=sys.stderr)
        sys.exit(130)
