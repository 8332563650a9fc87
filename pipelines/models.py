"""Loading the base pipeline's components for training (any family of pipelines/families/), and the checks
that need torch but no weights (device support, the model folder, the VAE's downsampling factor, the options
a family cannot take)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import torch

from .errors import InputError, first_line
from .families import FAMILIES, FLUX, SD3, ModelFamily, TextConditioner, family_for, family_of
from .loading import looks_like_hub_id
from .noising import Noising, TimestepSampling, training_noising
from .options import FLOW_MATCHING_FLAGS

_PIPELINE_COMPONENTS = ("vae", "text_encoder", "tokenizer", "scheduler")
_DENOISERS = ("unet", "transformer")


@dataclass
class LoadedModels:
    """The base model's parts, with the dtypes the run uses."""

    family: str  # the family's name: sd, sdxl, sd3 or flux
    model_family: ModelFamily  # with the run's conditioning settings
    encoder_slots: list  # the family's TextEncoderSlots that were loaded (SD3 without T5: two)
    tokenizers: list  # one per loaded text encoder
    text_encoders: list
    conditioner: TextConditioner
    vae: torch.nn.Module
    denoiser: torch.nn.Module  # the UNet or transformer that is trained
    noising: Noising  # how it was trained to denoise (pipelines/noising.py), for training
    inference_scheduler: object  # for generation and validation: --generation_scheduler over the model's schedule
    weight_dtype: torch.dtype  # frozen parts (and a LoRA run's denoiser)
    model_dtype: torch.dtype  # what the denoiser computes in


def check_model_location(path: str) -> None:
    """A local model must be a diffusers pipeline folder of a supported family; anything else must look like a
    Hub id."""
    if os.path.isdir(path):
        index_path = os.path.join(path, "model_index.json")
        if not os.path.isfile(index_path):
            raise InputError(
                f"--pretrained_model_name_or_path {path} has no model_index.json; give a diffusers pipeline folder "
                "(Stable Diffusion 1.x/2.x, SDXL, SD3 or FLUX.1)"
            )
        with open(index_path, encoding="utf-8") as handle:
            index = json.load(handle)
        missing = [c for c in _PIPELINE_COMPONENTS if c not in index]
        if not any(d in index for d in _DENOISERS):
            missing.append("unet or transformer")
        if missing:
            raise InputError(
                f"--pretrained_model_name_or_path {path} is not a Stable Diffusion, SDXL, SD3 or FLUX pipeline "
                f"(no {', '.join(missing)} in model_index.json)"
            )
    elif not looks_like_hub_id(path):
        raise InputError(
            f"--pretrained_model_name_or_path {path} does not exist; give a local pipeline folder or a Hub id such as CompVis/stable-diffusion-v1-4"
        )


def xformers_problem() -> str | None:
    """Why xformers' attention does not run here (a wheel built for another torch imports, then fails), or None."""
    try:
        import xformers.ops

        # This process's own card: the probe runs before accelerate picks it, and cuda:0 would take a
        # context on the first card for every process.
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        probe = torch.zeros(1, 8, 1, 8, device=device, dtype=torch.float16)
        xformers.ops.memory_efficient_attention(probe, probe, probe)
    except Exception as error:  # noqa: BLE001 - any failure means it cannot be used
        return first_line(error)
    return None


def check_runtime_support(args) -> None:
    """Refuses options this machine cannot run, before any model loads."""
    from diffusers.utils.import_utils import is_xformers_available

    if args.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise InputError("--mixed_precision fp16 needs a CUDA GPU; use bf16 or no on the CPU")
    if args.enable_xformers_memory_efficient_attention:
        problem = (
            xformers_problem()
            if torch.cuda.is_available() and is_xformers_available()
            else "no CUDA GPU or no xformers"
        )
        if problem:
            raise InputError(
                f"--enable_xformers_memory_efficient_attention needs a CUDA GPU and a working xformers ({problem}); "
                "install requirements-gpu.txt with the torch it names, or drop the flag to use PyTorch SDPA"
            )
    if args.use_8bit_adam:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as error:
            raise InputError(
                f"--use_8bit_adam needs bitsandbytes ({error}); pip install bitsandbytes or drop the flag"
            ) from error
    check_model_location(args.pretrained_model_name_or_path)


def _vae_config_source(args) -> dict:
    """Where the VAE comes from: ``--pretrained_vae_model_name_or_path`` (a VAE folder) or the pipeline's."""
    if getattr(args, "pretrained_vae_model_name_or_path", None):
        return {"pretrained_model_name_or_path": args.pretrained_vae_model_name_or_path}
    return {"pretrained_model_name_or_path": args.pretrained_model_name_or_path, "subfolder": "vae"}


def check_model_reachable(args) -> None:
    """A Hub model that is neither cached nor downloadable ends in one line, at once: with HF_HUB_OFFLINE set
    or no connection to the Hub, instead of huggingface_hub's retries and a traceback."""
    from huggingface_hub import constants, get_session, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import LocalEntryNotFoundError

    path = args.pretrained_model_name_or_path
    if os.path.isdir(path):
        return
    try:
        hf_hub_download(
            path, "model_index.json", revision=args.revision, cache_dir=args.cache_dir, local_files_only=True
        )
        return  # cached: loading needs no network
    except LocalEntryNotFoundError:
        pass
    advice = "--pretrained_model_name_or_path also takes a local diffusers folder"
    if constants.HF_HUB_OFFLINE:
        raise InputError(f"could not download {path}: HF_HUB_OFFLINE is set and it is not in the Hub cache; {advice}")
    try:  # one request, no retries: any answer (even 401/404) means the Hub is reachable
        get_session().head(hf_hub_url(path, "model_index.json", revision=args.revision), timeout=10)
    except Exception as error:  # httpx's connection and timeout errors alike
        raise InputError(
            f"could not download {path}: the Hub ({constants.ENDPOINT}) cannot be reached ({type(error).__name__}); {advice}"
        ) from error


def check_model_configs(args) -> tuple[str, dict]:
    """Reads the pipeline's configs once (no weights) and returns its family's name and the denoiser's config.
    Refuses a transformer pipeline of another kind, and a resolution that is not a multiple of the VAE's
    downsampling factor, times the transformer's patch (FLUX packs 2×2 latents), and of what the family's
    pipeline requires of an image size."""
    from diffusers import AutoencoderKL

    try:
        config = AutoencoderKL.load_config(
            **_vae_config_source(args), revision=args.revision, cache_dir=args.cache_dir
        )
        index = load_model_index(args)
        name = family_of(index)
        check_pipeline_class(args.pretrained_model_name_or_path, index, name)
        denoiser_config = load_denoiser_config(args, name)
    except OSError as error:
        raise InputError(
            f"--pretrained_model_name_or_path {args.pretrained_model_name_or_path}: cannot load its configuration "
            f"({first_line(error)}); give a diffusers pipeline folder or Hub id"
        ) from error
    family = FAMILIES[name]()
    factor = 2 ** (len(config["block_out_channels"]) - 1)
    patch = family.latent_multiple(denoiser_config)
    multiple = math.lcm(factor * patch, family.resolution_multiple)
    if args.resolution % multiple:
        patch_words = f" times the {patch}×{patch} latent patch" if patch > 1 else ""
        raise InputError(
            f"--resolution {args.resolution} is not a multiple of {multiple} (the VAE's downsampling factor is "
            f"{factor}{patch_words}; {family.pipeline_class_name} needs a multiple of {family.resolution_multiple})"
        )
    return name, denoiser_config


def check_pipeline_class(path: str, index: dict, name: str) -> None:
    """A transformer pipeline must be SD3's or FLUX's own: others (PixArt, Sana, FLUX Fill or Kontext, …)
    condition their transformer otherwise and would fail deep in training, or train the wrong thing."""
    pipeline = index.get("_class_name")
    if FAMILIES[name].flow_matching and pipeline != FAMILIES[name].pipeline_class_name:
        supported = ", ".join(f.pipeline_class_name for f in FAMILIES.values())
        raise InputError(
            f"--pretrained_model_name_or_path {path} is a {pipeline}; train_erasediff.py erases from {supported}"
        )


def check_family_options(args, name: str, denoiser_config: dict) -> None:
    """Refuses, in one line and before any weights load, the options the model's family cannot take (the
    flags as given: family defaults are filled in afterwards)."""
    family = FAMILIES[name]
    pipeline = family.pipeline_class_name
    if family.flow_matching:
        if args.prediction_type is not None:
            raise InputError(
                f"--prediction_type is for SD and SDXL; {pipeline} is trained by flow matching (a velocity "
                "target), so drop the flag"
            )
        if args.generation_scheduler == "dpm_solver":
            raise InputError(
                f"--generation_scheduler dpm_solver is for SD and SDXL; {pipeline} samples with its own "
                "flow-matching scheduler: use --generation_scheduler model"
            )
    else:
        for flag in FLOW_MATCHING_FLAGS:
            if getattr(args, flag) is not None:
                reason = "has no T5 encoder" if flag == "t5" else "is not trained by flow matching"
                raise InputError(f"--{flag} is for SD3 and FLUX; {pipeline} {reason}, so drop it")
    if args.t5 == "cpu" and (args.adversarial_refresh_steps or args.evaluation_attacks):
        raise InputError(
            "--t5 cpu cannot be combined with --adversarial_refresh_steps or --evaluation_attacks: their learned "
            "words train through a copy of T5 on the device; use --t5 device"
        )
    if name == SD3 and args.guidance_scale is not None:
        raise InputError(
            "--guidance_scale is FLUX's guidance embedding; SD3 uses classifier-free guidance (--generation_guidance_scale)"
        )
    if name == FLUX and args.guidance_scale is not None and not denoiser_config.get("guidance_embeds"):
        raise InputError(
            "--guidance_scale: this FLUX model has no guidance embedding (FLUX.1 [schnell]); drop the flag"
        )
    if name == FLUX and args.t5 == "drop":
        raise InputError("--t5 drop is for SD3: FluxPipeline needs its T5 encoder; --t5 cpu keeps it off the GPU")
    if not family.classifier_free_guidance and args.proportion_empty_prompts:
        raise InputError(
            f"--proportion_empty_prompts {args.proportion_empty_prompts}: FLUX has no classifier-free guidance "
            "(the empty prompt plays no part in generation), so it must be 0"
        )


def load_denoiser_config(args, name: str) -> dict:
    """The denoiser's config.json (no weights)."""
    family = FAMILIES[name]
    return family.denoiser_class().load_config(
        args.pretrained_model_name_or_path, subfolder=family.denoiser, revision=args.revision, cache_dir=args.cache_dir
    )


def load_model_index(args) -> dict:
    """The pipeline's model_index.json (small: no weights)."""
    import diffusers

    return diffusers.DiffusionPipeline.load_config(
        args.pretrained_model_name_or_path, revision=args.revision, cache_dir=args.cache_dir
    )


def load_base_denoiser(args, name: str | None = None):
    """The base model's UNet or transformer (fp32, on the CPU); ``name`` is the family's, read if not given."""
    family = FAMILIES[name or family_of(load_model_index(args))]
    return family.denoiser_class().from_pretrained(
        args.pretrained_model_name_or_path,
        subfolder=family.denoiser,
        revision=args.revision,
        variant=args.variant,
        cache_dir=args.cache_dir,
    )


def load_models(args, weight_dtype: torch.dtype, device: torch.device) -> LoadedModels:
    """Loads the tokenizers, text encoders, VAE, denoiser and schedulers of the pipeline's family; freezes
    everything (the caller picks what trains). Files that cannot be loaded (a missing --variant, a wrong
    --revision) end in one line."""
    try:
        return _load_models(args, weight_dtype, device)
    except OSError as error:
        raise InputError(
            f"--pretrained_model_name_or_path {args.pretrained_model_name_or_path}: cannot load its weights "
            f"({first_line(error)}); check --variant and --revision"
        ) from error


def _load_models(args, weight_dtype: torch.dtype, device: torch.device) -> LoadedModels:
    import diffusers
    import transformers
    from diffusers import AutoencoderKL

    path, revision, variant, cache = args.pretrained_model_name_or_path, args.revision, args.variant, args.cache_dir
    index = load_model_index(args)
    name = family_of(index)
    slots = [s for s in FAMILIES[name].text_encoders if not (s.is_t5 and args.t5 == "drop")]
    tokenizers, text_encoders = [], []
    for slot in slots:
        tokenizers.append(
            getattr(transformers, slot.tokenizer_class).from_pretrained(
                path, subfolder=slot.tokenizer, revision=revision, cache_dir=cache
            )
        )
        text_encoders.append(
            getattr(transformers, slot.encoder_class).from_pretrained(
                path, subfolder=slot.encoder, revision=revision, variant=variant, cache_dir=cache
            )
        )
    vae_variant = None if getattr(args, "pretrained_vae_model_name_or_path", None) else variant
    vae = AutoencoderKL.from_pretrained(
        **_vae_config_source(args), revision=revision, variant=vae_variant, cache_dir=cache
    )
    denoiser = load_base_denoiser(args, name)
    family = family_for(name, denoiser.config, args.guidance_scale)
    scheduler_class_name = index["scheduler"][1]
    scheduler_config = getattr(diffusers, scheduler_class_name).load_config(
        path, subfolder="scheduler", revision=revision, cache_dir=cache
    )
    if args.prediction_type is not None:
        scheduler_config = {**scheduler_config, "prediction_type": args.prediction_type}
    inference_scheduler = getattr(diffusers, scheduler_class_name).from_config(scheduler_config)
    if args.generation_scheduler == "dpm_solver":  # the model's noise schedule, another sampler
        inference_scheduler = diffusers.DPMSolverMultistepScheduler.from_config(inference_scheduler.config)
    sampling = None
    if family.flow_matching:
        sampling = TimestepSampling(
            args.weighting_scheme, args.logit_mean, args.logit_std, args.mode_scale, bool(args.precondition_outputs)
        )

    model_dtype = weight_dtype if args.use_lora else torch.float32
    # SDXL's VAE overflows in fp16 (its config says force_upcast): it then stays in fp32.
    vae_dtype = torch.float32 if weight_dtype == torch.float16 and vae.config.get("force_upcast") else weight_dtype
    placements = [(vae, vae_dtype, False), (denoiser, model_dtype, False)]
    placements += [(e, weight_dtype, s.is_t5 and args.t5 == "cpu") for s, e in zip(slots, text_encoders)]
    for module, dtype, on_cpu in placements:
        module.requires_grad_(False)
        if on_cpu:
            run_on_cpu(module, device)
        else:
            module.to(device)
        if dtype != torch.float32:  # cast only when needed: diffusers warns on every dtype cast
            module.to(dtype=dtype)
    if args.enable_xformers_memory_efficient_attention:
        denoiser.enable_xformers_memory_efficient_attention()
    return LoadedModels(
        name,
        family,
        slots,
        tokenizers,
        text_encoders,
        TextConditioner(family, tokenizers, text_encoders),
        vae,
        denoiser,
        training_noising(family, scheduler_class_name, scheduler_config, sampling),
        inference_scheduler,
        weight_dtype,
        model_dtype,
    )


def run_on_cpu(encoder: torch.nn.Module, device: torch.device) -> None:
    """Keeps ``encoder`` (T5, the largest frozen part) on the CPU for ``--t5 cpu``: its inputs move there and
    its outputs back to ``device``, so the pipeline and the prompt cache call it as if it were on ``device``."""

    def to(value, target):
        return value.to(target) if torch.is_tensor(value) else value

    def before(module, args, kwargs):
        return tuple(to(a, "cpu") for a in args), {k: to(v, "cpu") for k, v in kwargs.items()}

    def after(module, args, kwargs, output):
        if isinstance(output, tuple):
            return tuple(to(value, device) for value in output)
        for key in list(output.keys()):
            output[key] = to(output[key], device)
        return output

    encoder.register_forward_pre_hook(before, with_kwargs=True)
    encoder.register_forward_hook(after, with_kwargs=True)


def make_pipeline(models: LoadedModels, denoiser):
    """The family's pipeline over the loaded parts and the given denoiser, without a safety checker (it would
    black out the forget images that erasing nudity needs); SD3 without T5 when it was dropped."""
    family = models.model_family
    parts = {"vae": models.vae, family.denoiser: denoiser, "scheduler": models.inference_scheduler}
    for slot in family.text_encoders:
        parts[slot.tokenizer], parts[slot.encoder] = None, None  # a dropped T5 stays None
    for slot, tokenizer, encoder in zip(models.encoder_slots, models.tokenizers, models.text_encoders):
        parts[slot.tokenizer], parts[slot.encoder] = tokenizer, encoder
    if family.safety_checker:
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return family.pipeline_class()(**parts)


def mixed_precision_dtype(mixed_precision: str) -> torch.dtype:
    """The dtype of frozen weights under accelerate's mixed-precision setting."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)
