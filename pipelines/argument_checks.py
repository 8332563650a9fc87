"""The checks of train_erasediff.py's arguments that need neither torch nor a model (parsing runs them
before the heavy imports): each mistake is one line naming the argument and what to do."""

from __future__ import annotations

import math
import os

from .errors import InputError
from .evaluation.attacks.settings import parse_attack_names
from .options import REPORT_TO_CHOICES
from .outputs import check_output_dir


def check_arguments(args) -> None:
    """Cheap checks of the parsed arguments that need no model; raises InputError with a one-line message."""
    positive = (
        "train_batch_size",
        "forget_batch_size",
        "max_train_steps",
        "gradient_accumulation_steps",
        "resolution",
        "num_forget_images",
        "num_remain_images",
        "generation_steps",
        "checkpointing_steps",
        "num_validation_images",
        "inner_refresh_steps",
        "lambda_refresh_steps",
        "rank",
        "adversarial_steps",
    )
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"--{name} must be a finite number, got {value}")
    for name in positive:
        if getattr(args, name) <= 0:
            raise InputError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    for name in ("validation_steps", "checkpoints_total_limit", "generation_batch_size"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise InputError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    for name in (
        "lambda_value",
        "eta",
        "adversarial_refresh_steps",
        "relearn_resistance_steps",
        "relearn_resistance_weight",
        "inner_steps",
        "inner_learning_rate",
        "lr_warmup_steps",
        "adam_weight_decay",
        "adam_epsilon",
        "max_grad_norm",
        "generation_guidance_scale",
        "remain_generation_guidance_scale",
    ):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise InputError(f"--{name} must not be negative, got {getattr(args, name)}")
    if args.logit_std is not None and args.logit_std <= 0:
        raise InputError(f"--logit_std must be positive, got {args.logit_std}")
    if args.guidance_scale is not None and args.guidance_scale < 0:
        raise InputError(f"--guidance_scale must not be negative, got {args.guidance_scale}")
    if args.learning_rate is not None and args.learning_rate <= 0:
        raise InputError(f"--learning_rate must be positive, got {args.learning_rate}")
    for name in ("adversarial_learning_rate", "relearn_resistance_step_size"):
        if getattr(args, name) <= 0:
            raise InputError(f"--{name} must be positive, got {getattr(args, name)}")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(args, name) < 1:
            raise InputError(f"--{name} must be in [0, 1), got {getattr(args, name)}")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        raise InputError(f"--seed must be in [0, 2**32), got {args.seed}")
    if args.report_to not in REPORT_TO_CHOICES:
        raise InputError(f"--report_to {args.report_to} is not a tracker; choose from {', '.join(REPORT_TO_CHOICES)}")
    if args.lr_warmup_steps > 0 and args.lr_scheduler in ("constant", "piecewise_constant"):
        # diffusers' get_scheduler ignores the warm-up of these two without a word.
        raise InputError(
            f"--lr_warmup_steps has no effect with --lr_scheduler {args.lr_scheduler}; "
            "use --lr_scheduler constant_with_warmup"
        )
    if args.proportion_empty_prompts is not None and not 0 <= args.proportion_empty_prompts < 1:
        raise InputError(
            f"--proportion_empty_prompts must be in [0, 1), got {args.proportion_empty_prompts}; 0.1 is typical"
        )
    if args.forget_noise_std <= 0:
        raise InputError(f"--forget_noise_std must be positive, got {args.forget_noise_std}")
    if args.forget_target == "neggrad" and args.lambda_mode != "fixed":
        raise InputError("--forget_target neggrad has no minimum f*, so only --lambda_mode fixed applies to it")
    if args.evaluation_attacks is not None:
        if not args.evaluate:
            raise InputError("--evaluation_attacks runs with the evaluation: add --evaluate")
        args.evaluation_attacks = parse_attack_names(args.evaluation_attacks, "--evaluation_attacks")
        if args.mixed_precision in ("fp16", "bf16"):
            raise InputError(
                "--evaluation_attacks optimise in float32: drop --mixed_precision, or attack the saved model "
                "later with python -m pipelines.evaluation --attacks"
            )
    if args.adversarial_refresh_steps > 0 and not args.concept:
        raise InputError(
            "--adversarial_refresh_steps needs --concept: the adversarial word takes the concept's place in the forget prompts"
        )
    if args.lora_alpha is not None and args.lora_alpha <= 0:
        raise InputError(f"--lora_alpha must be positive, got {args.lora_alpha}")
    if args.lora_target_modules is not None and not [m for m in args.lora_target_modules.split(",") if m.strip()]:
        raise InputError(
            "--lora_target_modules names no module; give a comma-separated list such as to_k,to_q,to_v,to_out.0"
        )
    if not (args.concept or args.forget_prompts or args.forget_data_dir or args.forget_dataset_name):
        raise InputError(
            "no forget data: give --concept, --forget_prompts, --forget_data_dir or --forget_dataset_name"
        )
    if any(not c.strip() for c in args.concept):
        raise InputError('--concept is empty; name the concept to erase, e.g. --concept "Van Gogh"')
    for name in ("forget_data_dir", "remain_data_dir"):
        folder = getattr(args, name)
        if folder is not None and not os.path.isdir(folder):
            raise InputError(f"--{name} {folder} is not a folder")
    if args.resume_from_checkpoint not in (None, "latest") and not os.path.isdir(args.resume_from_checkpoint):
        raise InputError(
            f'--resume_from_checkpoint {args.resume_from_checkpoint} does not exist; give a checkpoint-<step> folder or "latest"'
        )
    if args.hub_token and args.report_to in ("wandb", "all"):
        raise InputError(
            "--hub_token cannot be used with --report_to wandb: the tracker would record it; run `hf auth login` instead"
        )
    if args.save_as in ("lora", "both") and not args.use_lora:
        raise InputError(f"--save_as {args.save_as} needs --use_lora; a full fine-tuning run is saved as a pipeline")
    check_output_dir(args.output_dir, args.overwrite_output_dir, resuming=bool(args.resume_from_checkpoint))
