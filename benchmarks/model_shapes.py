"""The models the benchmarks build, as configs with random weights: speed depends on the shapes, not on
the weights, so no checkpoint is downloaded.

``sd15`` is the Stable Diffusion 1.5 configuration (UNet 860 M parameters, VAE, CLIP ViT-L/14 text encoder);
``tiny`` is a small UNet of the same block layout, big enough that a CPU step takes about a second.
``sdxl`` is the SDXL-base-1.0 UNet (2.57 G parameters), conditioned on two text encoders' hidden states
(768 + 1280 = 2048 wide), the second encoder's pooled projection (1280) and six time ids; ``tiny_sdxl`` is a
small UNet of SDXL's block layout and conditioning, for the CPU smoke test.
``flux`` is the FLUX.1-dev transformer (11.9 G parameters) and ``sd3`` the SD3.5-Large one (8.06 G), both
flow-matching transformers conditioned on T5's 4096-wide hidden states and a pooled CLIP embedding;
``tiny_flux`` and ``tiny_sd3`` are small ones of the same layout and conditioning, for the CPU.

Only this module's functions import torch or pipelines, so the configs can be read without either.
"""

from __future__ import annotations

SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)

TINY_UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64, 128),
    layers_per_block=2,
    cross_attention_dim=64,
    attention_head_dim=8,
    norm_num_groups=8,
)

# SDXL-base-1.0's unet/config.json (stabilityai/stable-diffusion-xl-base-1.0): 2,567,463,684 parameters.
# attention_head_dim is diffusers' legacy name for the number of heads (64 channels each).
SDXL_UNET = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 10),
    cross_attention_dim=2048,  # CLIP ViT-L (768) and OpenCLIP ViT-bigG (1280) hidden states, concatenated
    attention_head_dim=(5, 10, 20),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_embed_type_num_heads=64,
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,  # 6 time ids x 256 + the pooled 1280
    norm_num_groups=32,
)

TINY_SDXL_UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(32, 64, 128),
    layers_per_block=2,
    transformer_layers_per_block=(1, 1, 2),
    cross_attention_dim=64,
    attention_head_dim=(1, 2, 4),
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=6 * 8 + 32,
    norm_num_groups=8,
)

UNETS = {"sd15": SD15_UNET, "tiny": TINY_UNET, "sdxl": SDXL_UNET, "tiny_sdxl": TINY_SDXL_UNET}

# FLUX.1-dev's transformer/config.json (black-forest-labs/FLUX.1-dev): 11,901,408,320 parameters. 19 double-stream
# (joint) blocks and 38 single-stream ones, 24 heads of 128 channels (3072 wide); in_channels 64 are the VAE's 16
# latent channels in 2×2 packed patches; rotary axes (16, 56, 56) for (text, row, column). Guidance-distilled:
# the guidance value goes in through an embedding.
FLUX_DEV_TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,  # T5-XXL's hidden states
    pooled_projection_dim=768,  # CLIP ViT-L's pooled output
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)

TINY_FLUX_TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    num_layers=2,
    num_single_layers=4,
    attention_head_dim=16,
    num_attention_heads=4,
    joint_attention_dim=32,
    pooled_projection_dim=16,
    guidance_embeds=True,
    axes_dims_rope=(4, 6, 6),
)

# SD3.5 Large's transformer/config.json (stabilityai/stable-diffusion-3.5-large): 8,056,627,520 parameters. 38 joint
# (MMDiT) blocks of 38 heads × 64 = 2432 channels, the text stream projected to the same width
# (caption_projection_dim); RMS-normed queries and keys; 2×2 patches of 16 latent channels, positions for up to
# 192 patches a side. No dual-attention blocks (those are SD3.5 Medium's: 24 blocks, 13 of them dual, 1536 wide).
SD35_LARGE_TRANSFORMER = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    num_layers=38,
    attention_head_dim=64,
    num_attention_heads=38,
    joint_attention_dim=4096,  # T5-XXL's width; the two CLIPs' 768 + 1280 are zero-padded to it
    caption_projection_dim=2432,
    pooled_projection_dim=2048,  # both CLIP projections side by side
    out_channels=16,
    pos_embed_max_size=192,
    qk_norm="rms_norm",
)

TINY_SD3_TRANSFORMER = dict(
    sample_size=16,
    patch_size=2,
    in_channels=16,
    num_layers=4,
    attention_head_dim=16,
    num_attention_heads=4,
    joint_attention_dim=48,
    caption_projection_dim=64,  # = heads × head width, as SD3's text stream must be
    pooled_projection_dim=32,
    out_channels=16,
    pos_embed_max_size=32,
    qk_norm="rms_norm",
)

TRANSFORMERS = {
    "flux": FLUX_DEV_TRANSFORMER,
    "tiny_flux": TINY_FLUX_TRANSFORMER,
    "sd3": SD35_LARGE_TRANSFORMER,
    "tiny_sd3": TINY_SD3_TRANSFORMER,
}
DENOISERS = {**UNETS, **TRANSFORMERS}
# Each model's family (pipelines.families): what conditions its denoiser and how it was trained to denoise.
FAMILY = {
    "sd15": "sd",
    "tiny": "sd",
    "sdxl": "sdxl",
    "tiny_sdxl": "sdxl",
    "flux": "flux",
    "tiny_flux": "flux",
    "sd3": "sd3",
    "tiny_sd3": "sd3",
}

# Hidden sizes of the CLIP encoders where two share what the denoiser takes: SDXL's penultimate hidden states
# are concatenated into the UNet's cross-attention input (so they add up to cross_attention_dim); SD3's
# projections, each as wide as its encoder, are concatenated into the pooled embedding. SD's one CLIP is
# cross_attention_dim wide, FLUX's pooled_projection_dim, and every T5 joint_attention_dim.
CLIP_WIDTHS = {"sdxl": (768, 1280), "tiny_sdxl": (24, 40), "sd3": (768, 1280), "tiny_sd3": (16, 16)}

# Pixels per latent side: the SD, SDXL, SD3 and FLUX VAEs all downsample by 8.
VAE_SCALE = 8
# CLIP's sequence length: the UNets' text tokens, and SD3's first 77 (its T5 tokens follow).
TEXT_LENGTH = 77
DEFAULT_RESOLUTION = {
    "sd15": 512,
    "tiny": 128,
    "sdxl": 1024,
    "tiny_sdxl": 128,
    "flux": 1024,
    "tiny_flux": 128,
    "sd3": 1024,
    "tiny_sd3": 128,
}
# Remain samples per step when --batch_size is not given (as many forget samples again).
DEFAULT_BATCH_SIZE = {
    "sd15": 8,
    "tiny": 4,
    "sdxl": 1,
    "tiny_sdxl": 4,
    "flux": 1,
    "tiny_flux": 4,
    "sd3": 1,
    "tiny_sd3": 4,
}
# The VAE's latent scaling factor (vae/config.json): SD-1.x 0.18215, SDXL 0.13025, FLUX.1 0.3611, SD3.5 1.5305.
VAE_SCALING_FACTOR = {
    "sd15": 0.18215,
    "tiny": 0.18215,
    "sdxl": 0.13025,
    "tiny_sdxl": 0.13025,
    "flux": 0.3611,
    "tiny_flux": 0.3611,
    "sd3": 1.5305,
    "tiny_sd3": 1.5305,
}
# The shift FLUX.1's and SD3.5's VAEs subtract before scaling, (z − shift) · scale; the SD VAE has none.
VAE_SHIFT_FACTOR = {"flux": 0.1159, "tiny_flux": 0.1159, "sd3": 0.0609, "tiny_sd3": 0.0609}

# The flow-matching training schedules (scheduler/scheduler_config.json): FLUX.1-dev's shift depends on the
# image's token count (use_dynamic_shifting), SD3.5's is a fixed 3.0.
FLOW_NOISE_SCHEDULE = {
    "flux": dict(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    ),
    "sd3": dict(num_train_timesteps=1000, shift=3.0),
}


def model_family(model: str):
    """The ``pipelines.families`` ModelFamily of ``model``, with the settings its denoiser's config implies
    (FLUX.1-dev: diffusers' training guidance value; SD3: the text width)."""
    from pipelines.families import family_for

    return family_for(FAMILY[model], DENOISERS[model])


def text_encoder_widths(model: str) -> tuple[int, ...]:
    """Hidden sizes of the model's text encoder(s), in pipeline order (CLIP first, then T5)."""
    family, config = FAMILY[model], DENOISERS[model]
    if family == "sd":
        return (config["cross_attention_dim"],)
    if family == "flux":
        return (config["pooled_projection_dim"], config["joint_attention_dim"])
    widths = CLIP_WIDTHS[model]
    if family == "sdxl":
        assert sum(widths) == config["cross_attention_dim"], (model, widths)
        return widths
    assert sum(widths) == config["pooled_projection_dim"] <= config["joint_attention_dim"], (model, widths)
    return (*widths, config["joint_attention_dim"])


def pooled_width(model: str) -> int | None:
    """Width of the pooled text embedding the denoiser takes (SDXL: the second encoder's projection_dim);
    None for SD, which takes none."""
    family, config = FAMILY[model], DENOISERS[model]
    if family == "sdxl":
        return config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]
    return config.get("pooled_projection_dim")


def text_width(model: str) -> int:
    """Width of the text sequence the denoiser attends to."""
    config = DENOISERS[model]
    return config.get("cross_attention_dim") or config["joint_attention_dim"]


def t5_tokens(model: str) -> int | None:
    """How many T5 tokens the family's pipeline encodes a prompt to (FLUX 512, SD3 256); None without T5."""
    from pipelines.families import flux, sd3

    return {"flux": flux.T5_TOKENS, "sd3": sd3.T5_TOKENS}.get(FAMILY[model])


def text_tokens(model: str) -> int:
    """Length of the text sequence the denoiser attends to: CLIP's 77 tokens for a UNet, T5's for FLUX, and
    CLIP's followed by T5's for SD3."""
    return {"flux": 0, "sd3": TEXT_LENGTH}.get(FAMILY[model], TEXT_LENGTH) + (t5_tokens(model) or 0)


def latent_channels(model: str) -> int:
    """Channels of the VAE's latents (FLUX's transformer takes them in 2×2 packed patches)."""
    channels = DENOISERS[model]["in_channels"]
    return channels // 4 if FAMILY[model] == "flux" else channels


SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)

# CLIP ViT-L/14's text tower, as in SD-1.5's text_encoder/config.json (vocabulary size comes from the tokenizer).
SD15_TEXT_ENCODER = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
)

# The training noise schedule of SD-1.x (scheduler/scheduler_config.json); SDXL-base-1.0 trains with the same.
SD_NOISE_SCHEDULE = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
)

# FLOP per 512-px sample of the SD-1.5 UNet (issue 5; counted with torch.utils.flop_counter on the meta device:
# 0.803 forward, 2.407 forward + backward, 1.71 forward + input-gradient backward + LoRA weight gradients).
SD15_FLOP_PER_SAMPLE_512 = {"full": 2.41e12, "lora": 1.73e12}

# Dense bf16 peak of the cards we report MFU against (vendor datasheets, without sparsity).
DENSE_BF16_PEAK = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))


def dense_bf16_peak(device_name: str) -> float | None:
    """The card's dense bf16 FLOP/s from its name, or None when we do not know it (CPUs among others)."""
    for name, peak in DENSE_BF16_PEAK:
        if name in device_name:
            return peak
    return None


def latent_shape(model: str, resolution: int) -> tuple[int, int, int]:
    """The latents' shape for images of ``resolution`` pixels (what the VAE gives and the denoiser takes)."""
    if resolution % VAE_SCALE:
        raise ValueError(f"--resolution must be a multiple of {VAE_SCALE}, got {resolution}")
    side = resolution // VAE_SCALE
    return (latent_channels(model), side, side)


def counted_flop_per_sample(model: str, resolution: int, lora: bool) -> float:
    """FLOP of one sample's denoiser forward and backward, counted on the meta device (no memory, no
    compute), through the family's own call of the denoiser (FLUX: its latent packing and position ids).

    With ``lora`` the base weights are frozen and only LoRA adapters (rank 4, on the family's default target
    modules) train, so the backward pass computes input gradients and the adapters' weight gradients.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipelines.families import PromptEmbeddings
    from pipelines.trainable import add_lora_adapters

    family = model_family(model)
    pooled = pooled_width(model)
    with torch.device("meta"):
        denoiser = family.denoiser_class()(**DENOISERS[model])
        if lora:
            add_lora_adapters(denoiser, 4, 4.0, "full", family.lora_target_modules, family.parts)
        latents = torch.zeros(1, *latent_shape(model, resolution))
        timesteps = torch.zeros(1, dtype=torch.float32 if family.flow_matching else torch.long)
        embeddings = PromptEmbeddings(
            torch.zeros(1, text_tokens(model), text_width(model)), None if pooled is None else torch.zeros(1, pooled)
        )
        time_ids = torch.zeros(1, 6) if FAMILY[model] == "sdxl" else None
    with FlopCounterMode(display=False) as counter:
        output = family.denoise(denoiser, latents, timesteps, embeddings, time_ids, torch.float32)
        output.float().pow(2).mean().backward()
    return float(counter.get_total_flops())


def flop_per_sample(model: str, resolution: int, lora: bool) -> float:
    """FLOP per denoiser sample for MFU: the issue's SD-1.5 figures at 512 px, counted otherwise.

    Counted rather than scaled by pixels: self-attention grows with the square of the token count, so
    (resolution / 512)² is 12 % high at 256 px and 16 % low at 768 px.
    """
    if model == "sd15" and resolution == 512:
        return SD15_FLOP_PER_SAMPLE_512["lora" if lora else "full"]
    return counted_flop_per_sample(model, resolution, lora)
