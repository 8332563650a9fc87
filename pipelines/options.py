"""The choices and defaults that argument parsing needs, importable without torch (parsing runs first)."""

import math

FORGET_TARGETS = ("shifted_noise", "anchor", "neggrad")
REMAIN_TARGETS = ("data", "teacher", "both")
FORGET_NOISES = ("uniform", "gaussian")
LAMBDA_MODES = ("fixed", "bome", "cosine")
PREDICTION_TYPES = ("epsilon", "v_prediction")
# Flow matching (SD3, FLUX): how σ is drawn and weighted, the names of diffusers' SD3/FLUX training scripts.
WEIGHTING_SCHEMES = ("sigma_sqrt", "logit_normal", "mode", "cosmap", "none")
T5_PLACEMENTS = ("device", "cpu", "drop")  # --t5: with the rest, kept on the CPU, or (SD3) not loaded
# The flags only SD3 and FLUX take: unset (None) for SD and SDXL, filled in for the flow-matching families.
FLOW_MATCHING_FLAGS = (
    "weighting_scheme",
    "logit_mean",
    "logit_std",
    "mode_scale",
    "precondition_outputs",
    "guidance_scale",
    "t5",
)
# diffusers' SD3/FLUX scripts' defaults of the σ schemes' parameters (filled in for those families only).
FLOW_MATCHING_DEFAULTS = {"logit_mean": 0.0, "logit_std": 1.0, "mode_scale": 1.29}
TRAIN_METHODS = ("full", "xattn", "noxattn", "selfattn", "notime")
DEFAULT_LORA_TARGET_MODULES = ("to_k", "to_q", "to_v", "to_out.0")  # a UNet's attention (SD3/FLUX: families/)
# diffusers.optimization.SchedulerType values, listed here so that parsing needs no diffusers import.
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "piecewise_constant",
)

DEFAULT_FORGET_NOISE_MEAN = 0.5
DEFAULT_FORGET_NOISE_STD = 1.0 / math.sqrt(12.0)  # with mean 0.5: U[0, 1), the paper's choice
SAVE_AS_CHOICES = ("lora", "pipeline", "both")  # --save_as: pipelines/export.py
# --report_to: accelerate's trackers (accelerate.utils.LoggerType), plus "all" and "none".
REPORT_TO_CHOICES = (
    "tensorboard",
    "wandb",
    "comet_ml",
    "aim",
    "mlflow",
    "clearml",
    "dvclive",
    "swanlab",
    "trackio",
    "all",
    "none",
)

# The objective's defaults, in one place (the script's flags and ErasureSettings read them from here);
# docs/usage.md "Keeping the rest of the model intact" gives the measurements that chose them.
DEFAULT_REMAIN_TARGET = "teacher"
DEFAULT_LAMBDA_MODE = "bome"
DEFAULT_LAMBDA_VALUE = 1.0
DEFAULT_ETA = 0.05
DEFAULT_LAMBDA_REFRESH_STEPS = 10  # --lambda_refresh_steps: two backward passes on one step in ten
# Digits, 400 against 300 steps: 1.6 points more Fréchet growth with generated D_r, 2.5 less with real D_r.
DEFAULT_MAX_TRAIN_STEPS = 400
DEFAULT_REMAIN_BATCH_SIZE = 16  # --train_batch_size: remain samples per micro-batch and process
DEFAULT_FORGET_BATCH_SIZE = 4
DEFAULT_PROPORTION_EMPTY_PROMPTS = 0.1
# Generated data and validation images: DPM-Solver++ (multistep, 2nd order) needs about half the steps of the
# model's own DDIM/PNDM scheduler for the same images (docs/performance.md "The whole run").
GENERATION_SCHEDULERS = ("dpm_solver", "model")
DEFAULT_GENERATION_SCHEDULER = "dpm_solver"
DEFAULT_GENERATION_STEPS = 25
MAX_AUTO_BATCH = 16  # --generation_batch_size's most when chosen: past it a call gains little throughput
DEFAULT_NUM_FORGET_IMAGES = 64
DEFAULT_NUM_REMAIN_IMAGES = 64


def effective_learning_rate(args) -> float:
    """The optimizer's learning rate: ``--learning_rate``, times accumulation × batch × processes with
    ``--scale_lr`` (diffusers' examples' rule). The recorded arguments keep the unscaled value."""
    if not args.scale_lr:
        return args.learning_rate
    return args.learning_rate * args.gradient_accumulation_steps * args.train_batch_size * args.num_processes
