"""Loading the base Stable Diffusion components for training, and the checks that need torch but no
weights (device support, the model folder, the VAE's downsampling factor)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import torch

from .errors import InputError, first_line
from .loading import looks_like_hub_id
from .model_family import (
    PIPELINE_CLASS_NAMES,
    RESOLUTION_MULTIPLE,
    SD,
    SDXL,
    TextConditioner,
    family_of,
    pipeline_class,
)

_PIPELINE_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


@dataclass
class LoadedModels:
    """The base model's parts, with the dtypes the run uses."""

    family: str  # model_family.SD or SDXL
    tokenizers: list  # one per text encoder
    text_encoders: list
    conditioner: TextConditioner
    vae: torch.nn.Module
    unet: torch.nn.Module
    noise_scheduler: object  # DDPM, for training
    inference_scheduler: object  # for generation and validation: --generation_scheduler over the model's schedule
    weight_dtype: torch.dtype  # frozen parts (and a LoRA run's UNet)
    model_dtype: torch.dtype  # what the UNet computes in


def check_model_location(path: str) -> None:
    """A local model must be a diffusers Stable Diffusion folder; anything else must look like a Hub id."""
    if os.path.isdir(path):
        index_path = os.path.join(path, "model_index.json")
        if not os.path.isfile(index_path):
            raise InputError(
                f"--pretrained_model_name_or_path {path} has no model_index.json; give a diffusers Stable Diffusion pipeline folder"
            )
        with open(index_path, encoding="utf-8") as handle:
            index = json.load(handle)
        missing = [c for c in _PIPELINE_COMPONENTS if c not in index]
        if missing:
            raise InputError(
                f"--pretrained_model_name_or_path {path} is not a Stable Diffusion pipeline (no {', '.join(missing)} in model_index.json)"
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


def check_resolution(args) -> None:
    """The resolution must be a multiple of the VAE's downsampling factor (read from its config only) and of
    what the family's pipeline requires of an image size."""
    from diffusers import AutoencoderKL

    try:
        config = AutoencoderKL.load_config(
            **_vae_config_source(args), revision=args.revision, cache_dir=args.cache_dir
        )
        family = family_of(load_model_index(args))
    except OSError as error:
        raise InputError(
            f"--pretrained_model_name_or_path {args.pretrained_model_name_or_path}: cannot load its configuration "
            f"({first_line(error)}); give a diffusers pipeline folder or Hub id"
        ) from error
    factor = 2 ** (len(config["block_out_channels"]) - 1)
    multiple = math.lcm(factor, RESOLUTION_MULTIPLE[family])
    if args.resolution % multiple:
        raise InputError(
            f"--resolution {args.resolution} is not a multiple of {multiple} (the VAE's downsampling factor is "
            f"{factor}; {PIPELINE_CLASS_NAMES[family]} needs a multiple of {RESOLUTION_MULTIPLE[family]})"
        )


def load_model_index(args) -> dict:
    """The pipeline's model_index.json (small: no weights)."""
    import diffusers

    return diffusers.DiffusionPipeline.load_config(
        args.pretrained_model_name_or_path, revision=args.revision, cache_dir=args.cache_dir
    )


def load_base_unet(args):
    """The base model's UNet (fp32, on the CPU)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(
        args.pretrained_model_name_or_path,
        subfolder="unet",
        revision=args.revision,
        variant=args.variant,
        cache_dir=args.cache_dir,
    )


def load_models(args, weight_dtype: torch.dtype, device: torch.device) -> LoadedModels:
    """Loads tokenizer(s), text encoder(s), VAE, UNet and schedulers of an SD or SDXL pipeline; freezes
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
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    path, revision, variant, cache = args.pretrained_model_name_or_path, args.revision, args.variant, args.cache_dir
    index = load_model_index(args)
    family = family_of(index)
    encoder_classes = [("tokenizer", "text_encoder", CLIPTextModel)]
    if family == SDXL:
        encoder_classes.append(("tokenizer_2", "text_encoder_2", CLIPTextModelWithProjection))
    tokenizers, text_encoders = [], []
    for tokenizer_folder, encoder_folder, encoder_class in encoder_classes:
        tokenizers.append(
            CLIPTokenizer.from_pretrained(path, subfolder=tokenizer_folder, revision=revision, cache_dir=cache)
        )
        text_encoders.append(
            encoder_class.from_pretrained(
                path, subfolder=encoder_folder, revision=revision, variant=variant, cache_dir=cache
            )
        )
    vae_variant = None if getattr(args, "pretrained_vae_model_name_or_path", None) else variant
    vae = AutoencoderKL.from_pretrained(
        **_vae_config_source(args), revision=revision, variant=vae_variant, cache_dir=cache
    )
    unet = load_base_unet(args)
    noise_scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler", revision=revision, cache_dir=cache)
    inference_scheduler = getattr(diffusers, index["scheduler"][1]).from_pretrained(
        path, subfolder="scheduler", revision=revision, cache_dir=cache
    )
    if args.prediction_type is not None:
        noise_scheduler.register_to_config(prediction_type=args.prediction_type)
        inference_scheduler.register_to_config(prediction_type=args.prediction_type)
    if args.generation_scheduler == "dpm_solver":  # the model's noise schedule, another sampler
        inference_scheduler = diffusers.DPMSolverMultistepScheduler.from_config(inference_scheduler.config)

    model_dtype = weight_dtype if args.use_lora else torch.float32
    # SDXL's VAE overflows in fp16 (its config says force_upcast): it then stays in fp32.
    vae_dtype = torch.float32 if weight_dtype == torch.float16 and vae.config.get("force_upcast") else weight_dtype
    placements = [(vae, vae_dtype), (unet, model_dtype), *((encoder, weight_dtype) for encoder in text_encoders)]
    for module, dtype in placements:
        module.requires_grad_(False)
        module.to(device)
        if dtype != torch.float32:  # cast only when needed: diffusers warns on every dtype cast
            module.to(dtype=dtype)
    if args.enable_xformers_memory_efficient_attention:
        unet.enable_xformers_memory_efficient_attention()
    return LoadedModels(
        family,
        tokenizers,
        text_encoders,
        TextConditioner(family, tokenizers, text_encoders),
        vae,
        unet,
        noise_scheduler,
        inference_scheduler,
        weight_dtype,
        model_dtype,
    )


def make_pipeline(models: LoadedModels, unet):
    """An SD or SDXL pipeline over the loaded parts and the given UNet, without a safety checker (it would
    black out the forget images that erasing nudity needs)."""
    parts = {"vae": models.vae, "unet": unet, "scheduler": models.inference_scheduler}
    for number, (tokenizer, encoder) in enumerate(zip(models.tokenizers, models.text_encoders), start=1):
        suffix = "" if number == 1 else f"_{number}"
        parts[f"tokenizer{suffix}"], parts[f"text_encoder{suffix}"] = tokenizer, encoder
    if models.family == SD:
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipeline_class(models.family)(**parts)


def mixed_precision_dtype(mixed_precision: str) -> torch.dtype:
    """The dtype of frozen weights under accelerate's mixed-precision setting."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)
