"""Shared fixtures: tiny pipelines (SD epsilon and v_prediction, SDXL, SD3, FLUX) and small image folders."""

from __future__ import annotations

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tiny_models import (  # noqa: E402
    build_tiny_brightness_classifier,
    build_tiny_flux_pipeline,
    build_tiny_pipeline,
    build_tiny_sd3_pipeline,
    build_tiny_sdxl_pipeline,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A tiny epsilon-prediction Stable Diffusion pipeline folder."""
    return build_tiny_pipeline(str(tmp_path_factory.mktemp("tiny-sd-epsilon")), "epsilon")


@pytest.fixture(scope="session")
def tiny_v_model(tmp_path_factory) -> str:
    """A tiny v_prediction Stable Diffusion pipeline folder (SD 2.x style)."""
    return build_tiny_pipeline(str(tmp_path_factory.mktemp("tiny-sd-v")), "v_prediction", seed=1)


@pytest.fixture(scope="session")
def tiny_sdxl_model(tmp_path_factory) -> str:
    """A tiny Stable Diffusion XL pipeline folder."""
    return build_tiny_sdxl_pipeline(str(tmp_path_factory.mktemp("tiny-sdxl")))


@pytest.fixture(scope="session")
def tiny_flux_model(tmp_path_factory) -> str:
    """A tiny FLUX.1 [dev]-style pipeline folder (guidance embedding, no classifier-free guidance)."""
    return build_tiny_flux_pipeline(str(tmp_path_factory.mktemp("tiny-flux")))


@pytest.fixture(scope="session")
def tiny_sd3_model(tmp_path_factory) -> str:
    """A tiny SD3 pipeline folder (two CLIP encoders and T5)."""
    return build_tiny_sd3_pipeline(str(tmp_path_factory.mktemp("tiny-sd3")))


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> str:
    """A tiny ResNet image classifier with ImageNet-style labels that calls bright images golf balls and dark ones churches."""
    return build_tiny_brightness_classifier(str(tmp_path_factory.mktemp("tiny-classifier")))


def write_image_folder(folder, captions: list[str], size: tuple[int, int] = (16, 16), seed: int = 0) -> str:
    """An imagefolder layout of random images with the given captions."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "metadata.jsonl"), "w", encoding="utf-8") as handle:
        for i, caption in enumerate(captions):
            name = f"img{i}.png"
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
                os.path.join(folder, name)
            )
            handle.write(json.dumps({"file_name": name, "text": caption}) + "\n")
    return str(folder)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each in-process run starts with a new Accelerator state, as a fresh `accelerate launch` would."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def tiny_run_args(model: str, output_dir, *extra: str) -> list[str]:
    """train_erasediff.py arguments for a quick run on a tiny pipeline; later flags in ``extra`` override."""
    return [
        *("--pretrained_model_name_or_path", model, "--output_dir", str(output_dir), "--resolution", "16"),
        *("--num_forget_images", "4", "--num_remain_images", "4", "--generation_steps", "2"),
        *("--generation_batch_size", "4", "--num_validation_images", "1", "--seed", "0", "--report_to", "none"),
        *("--train_batch_size", "4"),  # 4 remain samples a step (the default is 16): quick steps
        *extra,
    ]


def one_step_image(pipeline):
    """One denoising step of a tiny pipeline from a fixed seed, as an array."""
    import torch

    return pipeline(
        "a cat",
        num_inference_steps=1,
        height=16,
        width=16,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images


def pipeline_as_trained(pipeline_class, base_model: str, checkpoint: str, rank: int, alpha: float):
    """The base pipeline with the LoRA adapters exactly as training held them in memory: adapters added as the
    script adds them, loaded with a checkpoint's trainable parameters (what resuming restores)."""
    from safetensors.torch import load_file

    from pipelines.checkpoints import TRAINABLE_WEIGHTS_FILE
    from pipelines.options import DEFAULT_LORA_TARGET_MODULES
    from pipelines.trainable import add_lora_adapters

    pipeline = pipeline_class.from_pretrained(base_model)
    add_lora_adapters(pipeline.unet, rank, alpha, "full", DEFAULT_LORA_TARGET_MODULES)
    state = load_file(os.path.join(checkpoint, TRAINABLE_WEIGHTS_FILE))
    missing = pipeline.unet.load_state_dict(state, strict=False)
    assert not missing.unexpected_keys and all("lora" not in key for key in missing.missing_keys)
    return pipeline


def lora_strength_arguments(steps: int = 2) -> list[str]:
    """A LoRA run whose alpha differs from its rank (scale 4), checkpointed at its last step, saved both ways."""
    return [
        *("--use_lora", "--rank", "4", "--lora_alpha", "16", "--learning_rate", "1e-2", "--save_as", "both"),
        *("--max_train_steps", str(steps), "--checkpointing_steps", str(steps)),
    ]
