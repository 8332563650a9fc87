"""SDXL through the same script: two text encoders, pooled embeddings and time ids."""

import re

import numpy as np
import torch
from conftest import lora_strength_arguments, one_step_image, pipeline_as_trained, tiny_run_args, write_image_folder
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from pipelines.data_sources import read_image_folder
from pipelines.latent_cache import EncodedImageSet
from pipelines.loading import load_erased_pipeline
from pipelines.model_family import SDXL, TextConditioner
from pipelines.randomness import SampleStream
from train_erasediff import main, parse_args

FORGET_PROMPT = "a painting in the style of van gogh"
REMAIN_PROMPTS = ["a photo of a cat", "a photo of a kitchen"]


def train(model, output_dir, *extra):
    prompts = ["--forget_prompts", FORGET_PROMPT, "--remain_prompts", *REMAIN_PROMPTS, "--train_batch_size", "2"]
    main(parse_args(tiny_run_args(model, output_dir, *prompts, *extra)))


def responses(unet, pipeline, prompts):
    """UNet predictions for the prompts at fixed noisy latents, timesteps and time ids."""
    generator = torch.Generator().manual_seed(5)
    latents = torch.randn(4, 4, 8, 8, generator=generator)
    timesteps = torch.randint(0, 1000, (4,), generator=generator)
    time_ids = torch.tensor([[16.0, 16.0, 0.0, 0.0, 16.0, 16.0]]).repeat(4, 1)
    outputs = []
    with torch.no_grad():
        for prompt in prompts:
            hidden, _, pooled, _ = pipeline.encode_prompt([prompt] * 4, do_classifier_free_guidance=False)
            conditioning = {"text_embeds": pooled, "time_ids": time_ids}
            outputs.append(
                unet(latents, timesteps, encoder_hidden_states=hidden, added_cond_kwargs=conditioning).sample
            )
    return torch.stack(outputs)


def test_sdxl_full_run_erases_the_forget_prompt_and_loads_with_stock_diffusers(tiny_sdxl_model, tmp_path):
    # The data target at η = 1: the tiny random text encoders embed all prompts alike (cosine ≈ 0.95), and
    # against a control that learns the same remain data it isolates the forget effect (the default teacher
    # target is compared with it on SD in test_train_script.py).
    data = ["--max_train_steps", "30", "--learning_rate", "2e-3", "--eta", "1", "--remain_target", "data"]
    train(tiny_sdxl_model, tmp_path / "erased", *data)
    train(tiny_sdxl_model, tmp_path / "control", *data, "--lambda_mode", "fixed", "--lambda_value", "0")

    erased = StableDiffusionXLPipeline.from_pretrained(str(tmp_path / "erased"))
    assert one_step_image(erased).shape == (1, 16, 16, 3)
    base = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model)
    prompts = [FORGET_PROMPT, *REMAIN_PROMPTS]
    control = UNet2DConditionModel.from_pretrained(str(tmp_path / "control"), subfolder="unet")
    before, after = responses(base.unet, base, prompts), responses(erased.unet, base, prompts)
    # Against a remain-only control (λ = 0, same data and seeds), erasure moved the forget prompt most.
    # The tiny random text encoders embed all prompts alike (cosine ≈ 0.95), so the margin is smaller than SD's.
    change = (after - responses(control, base, prompts)).pow(2).mean(dim=(1, 2, 3, 4))
    assert change[0] > 1.5 * change[1:].max(), change
    distance_to_mean = (after - 0.5).abs().mean(dim=(1, 2, 3, 4)) / (before - 0.5).abs().mean(dim=(1, 2, 3, 4))
    assert distance_to_mean[0] < 0.5 and (distance_to_mean[1:] > 0.6).all(), distance_to_mean

    card = ModelCard.load(str(tmp_path / "erased" / "README.md"))
    assert "stable-diffusion-xl" in card.data.tags and "stable-diffusion" not in card.data.tags
    assert "StableDiffusionXLPipeline.from_pretrained" in card.text


def test_sdxl_lora_loads_into_the_base_pipeline_and_through_the_loader(tiny_sdxl_model, tmp_path):
    output = tmp_path / "lora"
    train(
        tiny_sdxl_model,
        output,
        "--use_lora",
        "--max_train_steps",
        "2",
        "--learning_rate",
        "1e-2",
        "--forget_target",
        "anchor",
        "--gradient_checkpointing",
    )
    by_hand = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model)
    by_hand.load_lora_weights(str(output))
    loaded = load_erased_pipeline(str(output))
    assert isinstance(loaded, StableDiffusionXLPipeline)
    torch.testing.assert_close(torch.from_numpy(one_step_image(loaded)), torch.from_numpy(one_step_image(by_hand)))
    card = (output / "README.md").read_text()
    assert re.search(r"pipe = StableDiffusionXLPipeline.from_pretrained\(.*\)\npipe.load_lora_weights", card)


def test_sdxl_lora_loads_and_fuses_at_the_strength_it_was_trained_at(tiny_sdxl_model, tmp_path):
    output = tmp_path / "alpha"
    train(tiny_sdxl_model, output, *lora_strength_arguments())
    trained = pipeline_as_trained(StableDiffusionXLPipeline, tiny_sdxl_model, str(output / "checkpoint-2"), 4, 16.0)
    stock = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model)
    stock.load_lora_weights(str(output))
    fused = StableDiffusionXLPipeline.from_pretrained(str(output / "fused"))
    expected = one_step_image(trained)
    np.testing.assert_allclose(one_step_image(stock), expected, atol=1e-4)
    np.testing.assert_allclose(one_step_image(fused), expected, atol=1e-4)
    # The LoRA moved the image by several times that tolerance, so the two checks above could fail.
    assert np.abs(one_step_image(StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model)) - expected).max() > 5e-4

    kohya = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model)
    kohya.load_lora_weights(str(output), weight_name="lora_kohya.safetensors")
    np.testing.assert_allclose(one_step_image(kohya), expected, atol=1e-4)
    # kohya's SDXL scripts name modules as the original (SGM) UNet does: input block 0 is conv_in, so
    # down_blocks.0.attentions.0 is input_blocks.1.1 (SDXL's down_blocks.1.attentions.0 is input_blocks.4.1).
    keys = set(load_file(str(output / "lora_kohya.safetensors")))
    assert all(key.startswith("lora_unet_") for key in keys)
    assert not [key for key in keys if "down_blocks" in key or "up_blocks" in key or "mid_block" in key]
    assert "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert any(key.startswith("lora_unet_output_blocks_") for key in keys)


def test_sdxl_time_ids_carry_the_original_size_and_the_crop(tiny_sdxl_model, tmp_path):
    pipeline = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model)
    conditioner = TextConditioner(
        SDXL, [pipeline.tokenizer, pipeline.tokenizer_2], [pipeline.text_encoder, pipeline.text_encoder_2]
    )
    images = read_image_folder(write_image_folder(tmp_path / "imgs", ["a cat"], size=(32, 16)), "--forget_data_dir")
    encoded = EncodedImageSet(
        images, pipeline.vae, conditioner, 16, center_crop=True, random_flip=False, device=torch.device("cpu")
    )
    latents, embeds, time_ids = encoded.batch(
        SampleStream(0, 1, 1).draw([0], encoded.latent_shape, 1000), torch.device("cpu")
    )
    assert embeds.hidden.shape[-1] == 32 and embeds.pooled.shape == (1, 16)
    # 32×16 (w×h) is resized to 32×16 and centre-cropped to 16×16 at left 8.
    assert time_ids.tolist() == [[16.0, 32.0, 0.0, 8.0, 16.0, 16.0]]
