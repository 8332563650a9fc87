"""Tiny pipelines of every family (SD, SDXL, SD3, FLUX) built from configs (real diffusers/transformers
classes, random weights, tokenizers written offline), so tests never download a model."""

from __future__ import annotations

import json
import os
import tempfile

import torch

# Whole words get their own token; anything else falls back to single characters.
VOCAB_WORDS = (
    "a an the of in by on at with and photo painting picture drawing style artwork portrait landscape "
    "still life city street van gogh claude monet pablo picasso cat dog car tree house kitchen beach "
    "person fully clothed night lake mountain bowl fruit table library books"
).split()
MAX_TOKENS = 24


def _byte_alphabet() -> list[str]:
    """CLIP's byte-level alphabet: printable bytes map to themselves, the rest to code points from 256."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    symbols, extra = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def write_tokenizer_files(folder: str, words=VOCAB_WORDS) -> int:
    """Writes vocab.json and merges.txt of a tiny CLIP BPE vocabulary in which each of ``words`` is one token
    (anything else falls back to single characters); returns the vocabulary size."""
    alphabet = _byte_alphabet()
    vocab: dict[str, int] = {}
    for symbol in alphabet + [s + "</w>" for s in alphabet]:
        vocab[symbol] = len(vocab)
    merges: list[str] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            merge = f"{pieces[0]} {pieces[1]}"
            if merge not in merges:
                merges.append(merge)
            vocab.setdefault(merged, len(vocab))
            pieces = [merged] + pieces[2:]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump(vocab, handle)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return len(vocab)


def _tiny_tokenizer():
    from transformers import CLIPTokenizer

    vocab_dir = tempfile.mkdtemp(prefix="tiny-clip-vocab-")
    vocab_size = write_tokenizer_files(vocab_dir)
    return CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=MAX_TOKENS), vocab_size


def _tiny_text_config(tokenizer, vocab_size: int, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def _tiny_vae(**extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
        **extra,
    )


def _scheduler(prediction_type: str):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )


def build_tiny_pipeline(folder: str, prediction_type: str = "epsilon", seed: int = 0) -> str:
    """Saves a tiny StableDiffusionPipeline (16-px images, 8x8 latents) to ``folder`` and returns it."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    tokenizer, vocab_size = _tiny_tokenizer()
    text_encoder = CLIPTextModel(_tiny_text_config(tokenizer, vocab_size))  # init order fixes the weights
    vae = _tiny_vae()
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(prediction_type),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder)
    return folder


def build_tiny_sdxl_pipeline(folder: str, seed: int = 0) -> str:
    """Saves a tiny StableDiffusionXLPipeline (two text encoders, the second with a projection; pooled
    embeddings and time ids condition the UNet) to ``folder`` and returns it."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer, vocab_size = _tiny_tokenizer()
    pooled_dim, time_embed_dim = 16, 8
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        cross_attention_dim=32,  # both encoders' hidden states, concatenated
        attention_head_dim=4,
        norm_num_groups=4,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + pooled_dim,
    )
    pipeline = StableDiffusionXLPipeline(
        vae=_tiny_vae(force_upcast=True),
        text_encoder=CLIPTextModel(_tiny_text_config(tokenizer, vocab_size)),
        text_encoder_2=CLIPTextModelWithProjection(
            _tiny_text_config(tokenizer, vocab_size, projection_dim=pooled_dim)
        ),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=_scheduler("epsilon"),
    )
    pipeline.save_pretrained(folder)
    return folder


T5_WIDTH = {"sd3": 48, "flux": 32}  # SD3's wider than both CLIPs together (32), so F.pad pads, never crops


def tiny_t5_tokenizer(max_length: int, words=VOCAB_WORDS):
    """A T5 tokenizer built offline: a unigram model in which each of ``words`` is one piece (SentencePiece's
    "▁" word marker in front) and anything else falls back to letters, then ``<unk>``; ``</s>`` ends each
    prompt, ``<pad>`` (id 0) fills it."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + word, -1.0) for word in words]
    pieces += [(letter, -8.0) for letter in "▁abcdefghijklmnopqrstuvwxyz0123456789"]
    backend = Tokenizer(models.Unigram(pieces, unk_id=2))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = T5TokenizerFast(
        tokenizer_object=backend, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0
    )
    tokenizer.model_max_length = max_length
    return tokenizer


def tiny_t5(tokenizer, width: int):
    """A one-layer T5 encoder. Its weights start at 3× T5's initialisation scale: at the usual scale the
    hundreds of padding positions come out alike for every prompt (sequences 99 % similar), where a trained
    T5's differ; at 3× two prompts' sequences are about 15 % similar."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=width,
            d_kv=8,
            d_ff=2 * width,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
            initializer_factor=3.0,
        )
    )


def _flow_scheduler(**dynamic):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=3.0, **dynamic)


def build_tiny_flux_pipeline(folder: str, seed: int = 0, guidance_embeds: bool = True) -> str:
    """Saves a tiny FluxPipeline (16-px images, 8×8 latents packed into 16 tokens of 4×4 channels; CLIP's
    pooled embedding and T5's hidden states condition it; ``guidance_embeds`` as FLUX.1 [dev], off as
    [schnell]) to ``folder`` and returns it."""
    from diffusers import FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    tokenizer, vocab_size = _tiny_tokenizer()
    t5_tokenizer = tiny_t5_tokenizer(512)
    text_encoder = CLIPTextModel(_tiny_text_config(tokenizer, vocab_size))
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_WIDTH["flux"],
        pooled_projection_dim=16,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 4, 8),
    )
    pipeline = FluxPipeline(
        scheduler=_flow_scheduler(
            use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
        ),
        vae=_tiny_vae(shift_factor=0.1, scaling_factor=1.5),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=tiny_t5(t5_tokenizer, T5_WIDTH["flux"]),
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )
    pipeline.save_pretrained(folder)
    return folder


def build_tiny_sd3_pipeline(folder: str, seed: int = 0) -> str:
    """Saves a tiny StableDiffusion3Pipeline (two CLIP encoders with projections and T5; an MMDiT with 2×2
    patches on 8×8 latents) to ``folder`` and returns it."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer, vocab_size = _tiny_tokenizer()
    t5_tokenizer = tiny_t5_tokenizer(256)
    encoders = [CLIPTextModelWithProjection(_tiny_text_config(tokenizer, vocab_size, projection_dim=16)) for _ in "12"]
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_projection_dim=16,
        joint_attention_dim=T5_WIDTH["sd3"],
        pooled_projection_dim=32,  # both CLIP projections side by side
        out_channels=4,
    )
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=_flow_scheduler(),
        vae=_tiny_vae(shift_factor=0.1, scaling_factor=1.5),
        text_encoder=encoders[0],
        tokenizer=tokenizer,
        text_encoder_2=encoders[1],
        tokenizer_2=tokenizer,
        text_encoder_3=tiny_t5(t5_tokenizer, T5_WIDTH["sd3"]),
        tokenizer_3=t5_tokenizer,
    )
    pipeline.save_pretrained(folder)
    return folder


CLASSES = {0: "tench, Tinca tinca", 1: "church, church building", 2: "golf ball"}


def random_images(count: int, seed: int, size: int = 16, brightness: float = 0.0) -> list:
    """``count`` random RGB images, shifted by ``brightness`` (clipped to [0, 255])."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 200, (count, size, size, 3)) + brightness
    return [Image.fromarray(np.clip(p, 0, 255).astype(np.uint8)) for p in pixels]


def build_tiny_brightness_classifier(folder: str) -> str:
    """A tiny ResNet classifier with ImageNet-style labels whose last layer tells bright images (golf ball)
    from dark ones (church): a probe on the pooled features of the two kinds of images."""
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        id2label=CLASSES,
        label2id={label: i for i, label in CLASSES.items()},
    )
    torch.manual_seed(0)
    model = ResNetForImageClassification(config).eval()
    processor = ConvNextImageProcessor(size={"shortest_edge": 16})

    def pooled(images):
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            return model.resnet(pixels).pooler_output.flatten(1)

    bright, dark = pooled(random_images(8, 1, brightness=55)), pooled(random_images(8, 2, brightness=-150))
    direction = bright.mean(0) - dark.mean(0)
    middle = (bright.mean(0) + dark.mean(0)) / 2 @ direction
    head = model.classifier[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[2], head.bias[2] = direction, -middle  # golf ball: brighter than the middle
        head.weight[1], head.bias[1] = -direction, middle  # church: darker
        head.bias[0] = -1e3  # tench: never
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
