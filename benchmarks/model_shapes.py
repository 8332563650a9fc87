"""The models the benchmarks build, as configs with random weights: speed depends on the shapes, not on
the weights, so no checkpoint is downloaded.

``sd15`` is the Stable Diffusion 1.5 configuration (UNet 860 M parameters, VAE, CLIP ViT-L/14 text encoder);
``tiny`` is a small UNet of the same block layout, big enough that a CPU step takes about a second.
``sdxl`` is the SDXL-base-1.0 UNet (2.57 G parameters), conditioned on two text encoders' hidden states
(768 + 1280 = 2048 wide), the second encoder's pooled projection (1280) and six time ids; ``tiny_sdxl`` is a
small UNet of SDXL's block layout and conditioning, for the CPU smoke test.
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

# Hidden sizes of an SDXL-shaped model's two text encoders: their penultimate hidden states are concatenated
# into the UNet's cross-attention input, so they add up to cross_attention_dim. SD-shaped models have one
# encoder of the UNet's cross-attention width.
SDXL_TEXT_WIDTHS = {"sdxl": (768, 1280), "tiny_sdxl": (24, 40)}

# Pixels per latent side: the SD VAE downsamples by 8.
VAE_SCALE = 8
# Text-encoder sequence length the UNets are conditioned on (CLIP's 77 tokens).
TEXT_LENGTH = 77
DEFAULT_RESOLUTION = {"sd15": 512, "tiny": 128, "sdxl": 1024, "tiny_sdxl": 128}
# Remain samples per step when --batch_size is not given (as many forget samples again).
DEFAULT_BATCH_SIZE = {"sd15": 8, "tiny": 4, "sdxl": 1, "tiny_sdxl": 4}
# The VAE's latent scaling factor (vae/config.json): SD-1.x 0.18215, SDXL 0.13025.
VAE_SCALING_FACTOR = {"sd15": 0.18215, "tiny": 0.18215, "sdxl": 0.13025, "tiny_sdxl": 0.13025}


def is_sdxl(model: str) -> bool:
    """Whether the UNet is conditioned the SDXL way (pooled text embedding and time ids)."""
    return UNETS[model].get("addition_embed_type") == "text_time"


def text_encoder_widths(model: str) -> tuple[int, ...]:
    """Hidden sizes of the model's text encoder(s), in pipeline order."""
    widths = SDXL_TEXT_WIDTHS[model] if is_sdxl(model) else (UNETS[model]["cross_attention_dim"],)
    assert sum(widths) == UNETS[model]["cross_attention_dim"], (model, widths)
    return widths


def pooled_width(model: str) -> int | None:
    """Width of the pooled text embedding an SDXL-shaped UNet takes (the second encoder's projection_dim)."""
    if not is_sdxl(model):
        return None
    config = UNETS[model]
    return config["projection_class_embeddings_input_dim"] - 6 * config["addition_time_embed_dim"]


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
    """The UNet's input shape for images of ``resolution`` pixels."""
    if resolution % VAE_SCALE:
        raise ValueError(f"--resolution must be a multiple of {VAE_SCALE}, got {resolution}")
    side = resolution // VAE_SCALE
    return (UNETS[model]["in_channels"], side, side)


def counted_flop_per_sample(model: str, resolution: int, lora: bool) -> float:
    """FLOP of one sample's UNet forward and backward, counted on the meta device (no memory, no compute).

    With ``lora`` the base weights are frozen and only LoRA adapters train, so the backward pass computes
    input gradients and the adapters' weight gradients.
    """
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from pipelines.options import DEFAULT_LORA_TARGET_MODULES
    from pipelines.trainable import add_lora_adapters

    config = UNETS[model]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        if lora:
            add_lora_adapters(unet, 4, 4.0, "full", DEFAULT_LORA_TARGET_MODULES)
        latents = torch.zeros(1, *latent_shape(model, resolution))
        embeds = torch.zeros(1, TEXT_LENGTH, config["cross_attention_dim"])
        timesteps = torch.zeros(1, dtype=torch.long)
        conditioning = {"encoder_hidden_states": embeds}
        if is_sdxl(model):
            conditioning["added_cond_kwargs"] = {
                "text_embeds": torch.zeros(1, pooled_width(model)),
                "time_ids": torch.zeros(1, 6),
            }
    with FlopCounterMode(display=False) as counter:
        output = unet(latents, timesteps, **conditioning, return_dict=False)[0]
        output.float().pow(2).mean().backward()
    return float(counter.get_total_flops())


def flop_per_sample(model: str, resolution: int, lora: bool) -> float:
    """FLOP per UNet sample for MFU: the issue's SD-1.5 figures at 512 px, counted otherwise.

    Counted rather than scaled by pixels: self-attention grows with the square of the token count, so
    (resolution / 512)² is 12 % high at 256 px and 16 % low at 768 px.
    """
    if model == "sd15" and resolution == 512:
        return SD15_FLOP_PER_SAMPLE_512["lora" if lora else "full"]
    return counted_flop_per_sample(model, resolution, lora)
