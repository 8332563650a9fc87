"""The distributed engine accelerate runs the script under, and which of the script's settings run correctly
under it.

``accelerate config`` picks one process, DDP, FSDP or DeepSpeed; the script itself never chooses. The
adaptive λ rules need ∇f and ∇L_r apart until the optimizer steps, the teacher target swaps θ₀ into the
trainable parameters, and the K-step f* estimate updates them in place: not every engine allows each. Every
combination either runs as the one-process script does or is refused in one line before a model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError

SUPPORT_DOC = "docs/usage.md, 'More than one GPU'"

# (engine family, λ rule family, trained parts) whose GPU line in benchmarks/gpu_suite.py (group `engines`)
# has passed: equal to the one-process run on the same seeds. Only such a line may add an entry.
VERIFIED_ON_GPU: frozenset[tuple[str, str, str]] = frozenset()


@dataclass(frozen=True)
class EngineSettings:
    """What accelerate will wrap the model in, read from its state (or built directly in tests)."""

    kind: str = "single"  # "single", "ddp", "fsdp" or "deepspeed"
    fsdp_version: int | None = None
    zero_stage: int | None = None
    deepspeed_gradient_clipping: float | str | None = None  # as the DeepSpeed config holds it ("auto": unset)
    gradient_as_bucket_view: bool = False

    @classmethod
    def from_accelerate(cls, distributed_type, fsdp_plugin=None, deepspeed_plugin=None, ddp_kwargs=None):
        """From accelerate's distributed type and plugin objects (``accelerator.state``)."""
        name = getattr(distributed_type, "value", str(distributed_type)).upper()
        bucket_view = bool(getattr(ddp_kwargs, "gradient_as_bucket_view", False))
        if name == "FSDP":
            return cls("fsdp", fsdp_version=getattr(fsdp_plugin, "fsdp_version", 1))
        if name == "DEEPSPEED":
            config = getattr(deepspeed_plugin, "deepspeed_config", {}) or {}
            return cls(
                "deepspeed",
                zero_stage=int(config.get("zero_optimization", {}).get("stage", 0)),
                deepspeed_gradient_clipping=config.get("gradient_clipping"),
            )
        if name == "NO":
            return cls("single", gradient_as_bucket_view=bucket_view)
        return cls("ddp", gradient_as_bucket_view=bucket_view)  # MULTI_GPU, MULTI_CPU and the other DDP types

    @classmethod
    def of(cls, accelerator) -> EngineSettings:
        """The engine of a created ``Accelerator``."""
        state = accelerator.state
        return cls.from_accelerate(
            accelerator.distributed_type,
            getattr(state, "fsdp_plugin", None),
            getattr(state, "deepspeed_plugin", None),
            getattr(accelerator, "ddp_handler", None),
        )

    @property
    def name(self) -> str:
        if self.kind == "fsdp":
            return f"FSDP{self.fsdp_version}"
        if self.kind == "deepspeed":
            return f"DeepSpeed ZeRO-{self.zero_stage}"
        return {"single": "one process", "ddp": "DDP"}[self.kind]

    @property
    def sharded(self) -> bool:
        """Whether the engine holds gradients or optimizer state in shards (FSDP or DeepSpeed)."""
        return self.kind in ("fsdp", "deepspeed")

    @property
    def shards_parameters(self) -> bool:
        """Whether no process holds the whole model between forwards (FSDP, ZeRO-3)."""
        return self.kind == "fsdp" or (self.kind == "deepspeed" and (self.zero_stage or 0) >= 3)

    @property
    def clips_itself(self) -> bool:
        """DeepSpeed clips from its config; accelerate's ``clip_grad_norm_`` does nothing there."""
        return self.kind == "deepspeed"


@dataclass(frozen=True)
class RunShape:
    """The settings of a run that decide whether an engine runs it correctly."""

    lambda_mode: str
    use_lora: bool
    remain_target: str
    inner_steps: int
    max_grad_norm: float
    validation_steps: int | None
    num_processes: int
    gradient_accumulation_steps: int = 1
    relearn_resistance_steps: int = 0
    adversarial_refresh_steps: int = 0

    @property
    def adaptive(self) -> bool:
        return self.lambda_mode != "fixed"


def engine_problem(engine: EngineSettings, run: RunShape, allow_unverified: bool = False) -> str | None:
    """Why ``engine`` cannot run ``run`` correctly (one line naming the setting and what to do), or None."""
    rule = f"--lambda_mode {run.lambda_mode}"
    if engine.kind == "ddp" and engine.gradient_as_bucket_view and run.adaptive:
        return (
            f"{rule} keeps ∇f and ∇L_r in separate tensors, but DDP's gradient_as_bucket_view=True makes both "
            "views of one bucket (λ would collapse to 0); leave gradient_as_bucket_view False or use --lambda_mode fixed"
        )
    if not engine.sharded:
        return None
    if engine.kind == "deepspeed" and run.adaptive:
        return (
            f"{rule} needs two gradients per optimizer step, but DeepSpeed steps inside every backward of a "
            "synchronising micro-step, so they cannot be kept apart; use --lambda_mode fixed, or FSDP"
        )
    if engine.kind == "fsdp" and run.adaptive and engine.fsdp_version != 2:
        return (
            f"{rule} under {engine.name} is not supported: FSDP1 keeps gradients in flat shards, not in the "
            "parameters' .grad that ∇f is kept apart in; set fsdp_version: 2, or use --lambda_mode fixed"
        )
    if engine.kind == "fsdp" and run.adaptive and run.gradient_accumulation_steps > 1:
        return (
            f"{rule} with --gradient_accumulation_steps {run.gradient_accumulation_steps} under {engine.name}: "
            "FSDP2 accumulates unsynchronised micro-steps in its own buffer, where ∇f and ∇L_r would mix; "
            "use --gradient_accumulation_steps 1 with a larger batch, or --lambda_mode fixed"
        )
    if engine.kind == "fsdp" and engine.fsdp_version != 2 and run.remain_target != "data":
        return (
            f"--remain_target {run.remain_target} under {engine.name}: the teacher runs the unwrapped model, whose "
            "root parameters FSDP1 keeps sharded; set fsdp_version: 2, or use --remain_target data"
        )
    if engine.shards_parameters and run.remain_target != "data" and not run.use_lora:
        return (
            f"--remain_target {run.remain_target} with full or partial fine-tuning swaps θ₀ into the parameters "
            f"{engine.name} shards; use --use_lora, --remain_target data, or DeepSpeed ZeRO-2"
        )
    for flag, value in (
        ("--relearn_resistance_steps", run.relearn_resistance_steps),
        ("--adversarial_refresh_steps", run.adversarial_refresh_steps),
    ):
        if value > 0:
            return (
                f"{flag} runs the unwrapped model outside {engine.name}'s engine and has no GPU check; leave it at 0"
            )
    if run.inner_steps > 0:
        return (
            f"--inner_steps updates the parameters outside {engine.name}'s engine; leave it at 0 (it only measures f*)"
        )
    if engine.shards_parameters and run.validation_steps and run.num_processes > 1:
        return (
            f"--validation_steps generates on the main process alone, which {engine.name} cannot do while the "
            "model is sharded; drop it (the before/after grid is still made from the gathered model)"
        )
    clipping = engine.deepspeed_gradient_clipping
    if engine.kind == "deepspeed" and clipping not in (None, "auto") and float(clipping) != run.max_grad_norm:
        return (
            f"the DeepSpeed config's gradient_clipping ({clipping}) differs from --max_grad_norm "
            f"({run.max_grad_norm}); DeepSpeed clips from its config: set it to 'auto' or to the same value"
        )
    cell = (engine.kind, "adaptive" if run.adaptive else "fixed", "lora" if run.use_lora else "full")
    if cell not in VERIFIED_ON_GPU and not allow_unverified:
        parts = "LoRA" if run.use_lora else "full fine-tuning"
        return (
            f"{engine.name} with {rule} and {parts} has not passed its GPU check yet ({SUPPORT_DOC}); "
            "run it under DDP, or pass --allow_unverified_engine to run it anyway"
        )
    return None


def check_engine(engine: EngineSettings, run: RunShape, allow_unverified: bool = False) -> None:
    """Raises InputError with :func:`engine_problem`'s line, if any."""
    problem = engine_problem(engine, run, allow_unverified)
    if problem:
        raise InputError(problem)


def check_prepared_model(model, adaptive: bool) -> None:
    """After ``prepare``: the DDP wrapper really keeps gradients out of its buckets when λ is adaptive (any
    way of passing ``gradient_as_bucket_view=True`` would make both gradient sets views of one bucket)."""
    if adaptive and getattr(model, "gradient_as_bucket_view", False):
        raise InputError(
            "the prepared model has DDP's gradient_as_bucket_view=True, under which ∇f and ∇L_r share one "
            "bucket; leave it False or use --lambda_mode fixed"
        )


def configure_deepspeed(deepspeed_plugin, max_grad_norm: float, micro_batch_size: int) -> None:
    """Fills what a DeepSpeed config leaves 'auto' and accelerate cannot fill without a prepared dataloader
    (before ``prepare``): ``gradient_clipping`` from ``--max_grad_norm``, since the engine clips as the
    script would otherwise, and the per-GPU micro-batch size (the samples of one micro-step, remain and forget; accelerate derives train_batch_size from it)."""
    config = deepspeed_plugin.deepspeed_config
    if config.get("gradient_clipping") in (None, "auto"):
        config["gradient_clipping"] = max_grad_norm
    if config.get("train_micro_batch_size_per_gpu") in (None, "auto"):
        config["train_micro_batch_size_per_gpu"] = micro_batch_size


def gathered_model(accelerator, model, engine: EngineSettings, plain_copy):
    """The trained model, whole, on the main process; None on the others.

    Under FSDP or ZeRO-3 no process holds the whole model, so every process takes part in gathering its
    state dict (accelerate's ``get_state_dict``) and the main process loads it into ``plain_copy()``, an
    unwrapped model of the same layout; elsewhere the prepared model is simply unwrapped.
    """
    if not engine.shards_parameters:
        return accelerator.unwrap_model(model) if accelerator.is_main_process else None
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return None
    whole = plain_copy()
    whole.load_state_dict(state, strict=True)
    return whole
