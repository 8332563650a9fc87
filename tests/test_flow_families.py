"""SD3 and FLUX through the same script: flow matching, joint-attention transformers, T5, FLUX's packed
latents and guidance embedding, and outputs that load with stock diffusers."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, one_step_image, tiny_run_args
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from fake_hub import FakeHub
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from tiny_models import T5_WIDTH, build_tiny_flux_pipeline

from pipelines.errors import InputError
from pipelines.evaluation.attacks.denoising import conditioner_of
from pipelines.evaluation.command import main as evaluate_main
from pipelines.evaluation.command import parse_args as evaluate_args
from pipelines.evaluation.comparison import EVALUATION_DIR
from pipelines.families import FAMILIES, family_of_pipeline
from pipelines.families.flux import image_position_ids, pack_latents, unpack_latents
from pipelines.loading import load_erased_pipeline
from pipelines.model_card import base_model_license, other_license
from pipelines.models import run_on_cpu
from pipelines.noising import FlowMatchingNoising, TimestepSampling
from pipelines.objective import ForgetNoise, shifted_noise_loss
from pipelines.randomness import SampleStream
from pipelines.trainable import lora_module_names, selected_by_train_method
from train_erasediff import main, parse_args

FORGET_PROMPT = "a painting in the style of van gogh"
REMAIN_PROMPTS = ["a photo of a cat", "a photo of a kitchen"]
PIPELINES = {"flux": FluxPipeline, "sd3": StableDiffusion3Pipeline}
RESPONSE_TIMESTEPS = torch.tensor([900.0, 700.0, 500.0, 300.0])


@pytest.fixture
def models(tiny_flux_model, tiny_sd3_model):
    return {"flux": tiny_flux_model, "sd3": tiny_sd3_model}


def train(model, output_dir, *extra):
    prompts = ["--forget_prompts", FORGET_PROMPT, "--remain_prompts", *REMAIN_PROMPTS, "--train_batch_size", "2"]
    main(parse_args(tiny_run_args(model, output_dir, *prompts, *extra)))


def responses(transformer, pipeline, prompts):
    """The transformer's velocity for the prompts at fixed noisy latents and timesteps."""
    family = family_of_pipeline(pipeline)
    generator = torch.Generator().manual_seed(5)
    latents = torch.randn(4, 4, 8, 8, generator=generator)
    timesteps = RESPONSE_TIMESTEPS
    conditioner = conditioner_of(pipeline)
    with torch.no_grad():
        return torch.stack(
            [
                family.denoise(
                    transformer, latents, timesteps, conditioner.encode([p] * 4, "cpu"), None, torch.float32
                )
                for p in prompts
            ]
        )


def assert_forget_noise_moved_towards_its_mean(before, after):
    """The implied noise x_t + (1 − σ)·v̂ of the forget prompt (row 0) came closer to ε_f's mean 0.5 than that
    of the remain prompts (``responses`` rows)."""
    generator = torch.Generator().manual_seed(5)
    latents = torch.randn(4, 4, 8, 8, generator=generator)
    keep = (1 - RESPONSE_TIMESTEPS / 1000).view(1, 4, 1, 1, 1)

    def distance(velocities):
        return (latents + keep * velocities - 0.5).abs().mean(dim=(1, 2, 3, 4))

    moved = distance(after) / distance(before)
    assert moved[0] < moved[1:].min() - 0.02, moved


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_prompt_embeddings_are_the_pipelines_own(family, models):
    pipeline = PIPELINES[family].from_pretrained(models[family])
    prompts = [FORGET_PROMPT, "a cat"]
    ours = conditioner_of(pipeline).encode(prompts, "cpu")
    if family == "flux":
        hidden, pooled, _ = pipeline.encode_prompt(prompts, prompt_2=None)
    else:
        hidden, _, pooled, _ = pipeline.encode_prompt(prompts, None, None, do_classifier_free_guidance=False)
        # CLIP's 24 tokens, padded from both encoders' 32 channels to T5's 48 with zeros (not cropped), then T5's 256.
        assert hidden.shape == (2, 24 + 256, T5_WIDTH["sd3"])
        assert torch.count_nonzero(ours.hidden[:, :24, 32:]) == 0 and torch.count_nonzero(ours.hidden[:, :24, :32]) > 0
    torch.testing.assert_close(ours.hidden, hidden, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.pooled, pooled, atol=1e-4, rtol=0)


def test_sd3_without_t5_conditions_as_the_pipeline_does_without_it(tiny_sd3_model):
    pipeline = StableDiffusion3Pipeline.from_pretrained(tiny_sd3_model, text_encoder_3=None, tokenizer_3=None)
    ours = conditioner_of(pipeline).encode([FORGET_PROMPT], "cpu")
    hidden, _, pooled, _ = pipeline.encode_prompt([FORGET_PROMPT], None, None, do_classifier_free_guidance=False)
    torch.testing.assert_close(ours.hidden, hidden, atol=1e-5, rtol=0)
    assert torch.count_nonzero(ours.hidden[:, 24:]) == 0


def test_flow_matching_noises_as_the_scheduler_and_recovers_the_noise_of_an_euler_step():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    noising = FlowMatchingNoising(FlowMatchEulerDiscreteScheduler(shift=3.0))
    generator = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(3, 4, 8, 8, generator=generator), torch.randn(3, 4, 8, 8, generator=generator)
    indices = [10, 400, 990]
    timesteps = scheduler.timesteps[indices]
    noisy = noising.add_noise(latents, noise, timesteps)
    for k, index in enumerate(indices):
        torch.testing.assert_close(
            noisy[k : k + 1], scheduler.scale_noise(latents[k : k + 1], timesteps[k : k + 1], noise[k : k + 1])
        )
    # The true velocity implies exactly the noise that was added.
    torch.testing.assert_close(
        noising.implied_noise(noising.target(latents, noise, timesteps), noisy, timesteps), noise
    )
    # Any prediction: the noise implied by the scheduler's own Euler step from x_t is what implied_noise gives.
    prediction = torch.randn(3, 4, 8, 8, generator=generator)
    scheduler.set_timesteps(sigmas=[0.9, 0.6, 0.3, 0.1])
    sigma, sigma_next = scheduler.sigmas[1], scheduler.sigmas[2]
    t = torch.full((3,), float(scheduler.timesteps[1]))
    x_t = noising.add_noise(latents, noise, t)
    stepped = scheduler.step(prediction, scheduler.timesteps[1], x_t).prev_sample
    velocity = (stepped - x_t) / (sigma_next - sigma)
    torch.testing.assert_close(
        noising.implied_noise(prediction, x_t, t), x_t + (1 - sigma) * velocity, atol=1e-4, rtol=0
    )
    # f's minimiser predicts the implied noise μ of ε_f: then f = σ_f², the closed-form f*.
    forget_noise = ForgetNoise()
    drawn = forget_noise.sample((64, 4, 8, 8), torch.Generator().manual_seed(1))
    x_t = torch.randn(64, 4, 8, 8)
    t = torch.full((64,), 500.0)
    to_mean = (forget_noise.mean - x_t) / (1 - t[:, None, None, None] / 1000)
    f = shifted_noise_loss(noising.implied_noise(to_mean, x_t, t), drawn)
    assert abs(float(f) - forget_noise.std**2) < 2e-3


def test_timesteps_follow_the_weighting_scheme_and_each_sample_draws_its_own():
    scheduler = FlowMatchEulerDiscreteScheduler()  # no shift: σ = u's schedule entry
    uniform = FlowMatchingNoising(scheduler, TimestepSampling("none"))
    centred = FlowMatchingNoising(scheduler, TimestepSampling("logit_normal", 0.0, 0.5))
    whole = SampleStream(0, 1, 4).draw(list(range(400)), (1,), centred).timesteps
    part = SampleStream(0, 1, 4).draw([398, 399], (1,), centred).timesteps
    torch.testing.assert_close(whole[-2:], part)
    spread = SampleStream(0, 1, 4).draw(list(range(400)), (1,), uniform).timesteps
    assert whole.dtype == torch.float32 and ((whole > 0) & (whole <= 1000)).all()
    # logit-normal with std 0.5 keeps σ near 0.5; uniform spreads it.
    assert (whole - 500).abs().mean() < 0.6 * (spread - 500).abs().mean()
    assert uniform.loss_weights(whole) is None
    weights = FlowMatchingNoising(scheduler, TimestepSampling("sigma_sqrt")).loss_weights(torch.tensor([500.0]))
    torch.testing.assert_close(weights, torch.tensor([4.0]))


def test_flux_packs_latents_and_numbers_their_positions_as_the_pipeline_does():
    latents = torch.randn(2, 4, 8, 6)
    packed = pack_latents(latents)
    torch.testing.assert_close(packed, FluxPipeline._pack_latents(latents, 2, 4, 8, 6))
    torch.testing.assert_close(unpack_latents(packed, 8, 6), latents)
    torch.testing.assert_close(
        image_position_ids(8, 6, "cpu", torch.float32),
        FluxPipeline._prepare_latent_image_ids(2, 4, 3, "cpu", torch.float32),
    )


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_train_method_selects_the_text_stream_of_joint_attention(family, models):
    model_class = FluxTransformer2DModel if family == "flux" else SD3Transformer2DModel
    transformer = model_class.from_pretrained(models[family], subfolder="transformer")
    parts = FAMILIES[family].parts
    names = [n for n, _ in transformer.named_parameters()]
    chosen = {
        m: {n for n in names if selected_by_train_method(n, m, parts)}
        for m in ("xattn", "noxattn", "selfattn", "notime")
    }
    text_stream = {n for n in names if any(p in n for p in ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"))}
    assert text_stream and text_stream <= chosen["xattn"]
    single_stream = {n for n in names if n.startswith("single_transformer_blocks.") and ".attn." in n}
    assert (single_stream <= chosen["xattn"]) if family == "flux" else not single_stream
    assert not chosen["xattn"] & chosen["noxattn"]
    assert all(n.startswith("transformer_blocks.") and ".attn" in n and "add_" not in n for n in chosen["selfattn"])
    outer = {n for n in names if n.split(".")[0] in ("time_text_embed", "norm_out", "proj_out")}
    assert outer and not outer & (chosen["noxattn"] | chosen["notime"])
    assert set(names) - outer == chosen["notime"]
    # The default LoRA targets exist in the transformer, in both streams.
    targeted = lora_module_names(transformer, "full", FAMILIES[family].lora_target_modules, parts)
    assert any("add_q_proj" in n for n in targeted) and any(n.endswith("attn.to_q") for n in targeted)


def test_t5_kept_on_the_cpu_returns_its_output_on_the_device(tiny_flux_model):
    pipeline = FluxPipeline.from_pretrained(tiny_flux_model)
    encoder = pipeline.text_encoder_2
    ids = pipeline.tokenizer_2(["a cat"], return_tensors="pt").input_ids
    expected = encoder(ids)[0]
    run_on_cpu(encoder, torch.device("meta"))
    output = encoder(ids)
    assert output[0].device.type == "meta" and output[0].shape == expected.shape
    assert next(encoder.parameters()).device.type == "cpu"


@pytest.mark.parametrize(
    "family, extra, message",
    [
        ("flux", ["--proportion_empty_prompts", "0.1"], "FLUX has no classifier-free guidance"),
        ("flux", ["--t5", "drop"], "--t5 drop is for SD3"),
        ("sd3", ["--prediction_type", "epsilon"], "--prediction_type is for SD and SDXL"),
        ("sd3", ["--generation_scheduler", "dpm_solver"], "use --generation_scheduler model"),
        ("sd3", ["--guidance_scale", "3.5"], "--guidance_scale is FLUX's guidance embedding"),
        ("sd", ["--weighting_scheme", "logit_normal"], "--weighting_scheme is for SD3 and FLUX"),
        ("sd", ["--t5", "cpu"], "has no T5 encoder"),
        ("sd", ["--logit_mean", "0.5"], "--logit_mean is for SD3 and FLUX"),
        ("flux", ["--t5", "cpu", "--adversarial_refresh_steps", "2", "--concept", "van gogh"], "--t5 cpu cannot"),
    ],
)
def test_options_a_family_cannot_take_are_refused_before_loading(family, extra, message, models, tiny_model, tmp_path):
    model = {**models, "sd": tiny_model}[family]
    with pytest.raises(InputError, match=message):
        train(model, tmp_path / "out", *extra)
    assert not (tmp_path / "out" / "erasediff_args.json").exists()


def test_flux_lora_erases_against_a_control_and_loads_into_a_stock_flux_pipeline(tiny_flux_model, tmp_path):
    # The main command's objective (teacher remain target, bome): against a control that trains the same remain
    # data with λ = 0, erasure moved the forget prompt's prediction and hardly any other.
    lora = ["--max_train_steps", "30", "--use_lora", "--rank", "4", "--lora_alpha", "8", "--learning_rate", "1e-2"]
    train(tiny_flux_model, tmp_path / "erased", *lora)
    train(tiny_flux_model, tmp_path / "control", *lora, "--lambda_mode", "fixed", "--lambda_value", "0")
    recorded = json.loads((tmp_path / "erased" / "erasediff_args.json").read_text())
    assert recorded["guidance_scale"] == 3.5 and recorded["weighting_scheme"] == "none"
    assert recorded["proportion_empty_prompts"] == 0 and recorded["generation_scheduler"] == "model"
    assert not (tmp_path / "erased" / "lora_kohya.safetensors").exists()
    assert all(
        key.startswith("transformer.")
        for key in load_file(str(tmp_path / "erased" / "pytorch_lora_weights.safetensors"))
    )

    base = FluxPipeline.from_pretrained(tiny_flux_model)
    erased, control = FluxPipeline.from_pretrained(tiny_flux_model), FluxPipeline.from_pretrained(tiny_flux_model)
    erased.load_lora_weights(str(tmp_path / "erased"))
    control.load_lora_weights(str(tmp_path / "control"))
    assert np.abs(one_step_image(erased) - one_step_image(base)).max() > 1e-3
    prompts = [FORGET_PROMPT, *REMAIN_PROMPTS]
    before, after = responses(base.transformer, base, prompts), responses(erased.transformer, base, prompts)
    change = (after - responses(control.transformer, base, prompts)).pow(2).mean(dim=(1, 2, 3, 4))
    assert change[0] > 10 * change[1:].max(), change
    assert_forget_noise_moved_towards_its_mean(before, after)
    torch.testing.assert_close(
        torch.from_numpy(one_step_image(load_erased_pipeline(str(tmp_path / "erased")))),
        torch.from_numpy(one_step_image(erased)),
    )
    card = ModelCard.load(str(tmp_path / "erased" / "README.md"))
    assert "flux" in card.data.tags and "stable-diffusion" not in card.data.tags
    assert "pipe = FluxPipeline.from_pretrained(" in card.text and "guidance embedding 3.5" in card.text
    # The card's snippet, run as written, gives the base pipeline with this LoRA.
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    namespace = {}
    exec("\n".join(line for line in snippet.splitlines() if not line.startswith("image = ")), namespace)  # noqa: S102
    np.testing.assert_allclose(one_step_image(namespace["pipe"]), one_step_image(erased), atol=1e-6)


def test_sd3_full_run_erases_against_a_control_and_loads_as_a_stock_pipeline(tiny_sd3_model, tmp_path):
    steps = ["--max_train_steps", "30", "--learning_rate", "2e-3"]
    train(tiny_sd3_model, tmp_path / "erased", *steps)
    train(tiny_sd3_model, tmp_path / "control", *steps, "--lambda_mode", "fixed", "--lambda_value", "0")
    erased = StableDiffusion3Pipeline.from_pretrained(str(tmp_path / "erased"))
    base = StableDiffusion3Pipeline.from_pretrained(tiny_sd3_model)
    control = SD3Transformer2DModel.from_pretrained(str(tmp_path / "control"), subfolder="transformer")
    assert np.abs(one_step_image(erased) - one_step_image(base)).max() > 1e-3
    prompts = [FORGET_PROMPT, *REMAIN_PROMPTS]
    before, after = responses(base.transformer, base, prompts), responses(erased.transformer, base, prompts)
    change = (after - responses(control, base, prompts)).pow(2).mean(dim=(1, 2, 3, 4))
    assert change[0] > 10 * change[1:].max(), change
    assert_forget_noise_moved_towards_its_mean(before, after)
    card = ModelCard.load(str(tmp_path / "erased" / "README.md"))
    assert "sd3" in card.data.tags and "StableDiffusion3Pipeline.from_pretrained" in card.text
    assert "σ drawn logit-normally" in card.text and "outputs preconditioned" in card.text


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(family, models, tmp_path):
    output = tmp_path / "resume"
    extra = ["--concept", "van gogh", "--use_lora", "--max_train_steps", "4", "--checkpointing_steps", "2"]
    extra += ["--gradient_accumulation_steps", "2", "--lr_scheduler", "linear"]
    train(models[family], output, *extra)
    uninterrupted = load_file(str(output / "pytorch_lora_weights.safetensors"))
    shutil.rmtree(output / "checkpoint-4")
    os.remove(output / "pytorch_lora_weights.safetensors")
    train(models[family], output, *extra, "--resume_from_checkpoint", "latest")
    resumed = load_file(str(output / "pytorch_lora_weights.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=0, atol=1e-6)


def test_other_transformer_pipelines_are_refused_by_name(tiny_flux_model, tmp_path):
    kontext = tmp_path / "kontext"
    shutil.copytree(tiny_flux_model, kontext)
    index = json.loads((kontext / "model_index.json").read_text())
    (kontext / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxKontextPipeline"}))
    with pytest.raises(InputError, match="is a FluxKontextPipeline; train_erasediff.py erases from"):
        train(str(kontext), tmp_path / "out")


def test_a_full_sd3_run_without_t5_is_saved_whole_and_loaded_without_t5(tiny_sd3_model, tmp_path):
    train(tiny_sd3_model, tmp_path / "full", "--t5", "drop", "--max_train_steps", "1")
    assert StableDiffusion3Pipeline.from_pretrained(str(tmp_path / "full")).text_encoder_3 is not None  # stock loads
    assert load_erased_pipeline(str(tmp_path / "full")).text_encoder_3 is None  # as it was trained
    card = (tmp_path / "full" / "README.md").read_text()
    assert f"from_pretrained({str(tmp_path / 'full')!r}, text_encoder_3=None, tokenizer_3=None)" in card


def test_sd3_without_t5_trains_and_loads_into_a_pipeline_without_it(tiny_sd3_model, tmp_path):
    output = tmp_path / "no-t5"
    train(
        tiny_sd3_model,
        output,
        *("--mixed_precision", "bf16"),  # LoRA on bf16 weights
        "--t5",
        "drop",
        "--use_lora",
        "--max_train_steps",
        "2",
        "--learning_rate",
        "1e-2",
        "--save_as",
        "both",
    )
    pipeline = StableDiffusion3Pipeline.from_pretrained(tiny_sd3_model, text_encoder_3=None, tokenizer_3=None)
    pipeline.load_lora_weights(str(output))
    assert one_step_image(pipeline).shape == (1, 16, 16, 3)
    assert isinstance(StableDiffusion3Pipeline.from_pretrained(str(output / "fused")), StableDiffusion3Pipeline)
    card = (output / "README.md").read_text()
    assert "T5 dropped" in card and "text_encoder_3=None, tokenizer_3=None)" in card
    loaded = load_erased_pipeline(str(output))
    assert loaded.text_encoder_3 is None
    np.testing.assert_allclose(one_step_image(loaded), one_step_image(pipeline), atol=1e-6)


def test_flux_schnell_has_no_guidance_embedding_and_trains(tmp_path):
    model = build_tiny_flux_pipeline(str(tmp_path / "schnell"), guidance_embeds=False)
    with pytest.raises(InputError, match="no guidance embedding"):
        train(model, tmp_path / "refused", "--guidance_scale", "3.5")
    train(
        model,
        tmp_path / "out",
        "--max_train_steps",
        "1",
        "--t5",
        "cpu",
        "--forget_target",
        "anchor",
        "--anchor_prompt",
        "a photo",
    )
    recorded = json.loads((tmp_path / "out" / "erasediff_args.json").read_text())
    assert recorded["guidance_scale"] is None and recorded["t5"] == "cpu"
    assert one_step_image(FluxPipeline.from_pretrained(str(tmp_path / "out"))).shape == (1, 16, 16, 3)


def test_flux_training_with_evaluate_measures_the_base_and_the_erased_model(
    tiny_flux_model, tiny_classifier, tmp_path
):
    train(
        tiny_flux_model,
        tmp_path / "out",
        *("--concept", "golf ball", "--concept_type", "object", "--use_lora", "--max_train_steps", "1"),
        *("--mixed_precision", "bf16"),  # LoRA on bf16 weights
        *("--evaluate", "--evaluation_num_images", "1"),
        *("--evaluation_metrics", "classifier", "--evaluation_classifier_model", tiny_classifier),
    )
    metrics = json.loads((tmp_path / "out" / EVALUATION_DIR / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"classifier"}
    assert "## Evaluation" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_the_attack_suite_runs_on_a_flow_matching_model(family, models, tiny_classifier, tmp_path):
    output = tmp_path / "evaluation"
    evaluate_main(
        evaluate_args(
            [
                *("--model", models[family], "--base_model", models[family], "--concept", "golf ball"),
                *("--concept_type", "object", "--metrics", "classifier", "--classifier_model", tiny_classifier),
                *(
                    "--num_images",
                    "1",
                    "--num_inference_steps",
                    "2",
                    "--resolution",
                    "16",
                    "--output_dir",
                    str(output),
                ),
                *("--attack_images", "2", "--attack_steps", "2", "--attack_relearn_steps", "2"),
                *("--attack_relearn_every", "1", "--attacks", "all"),
            ]
        )
    )
    attacks = json.loads((output / "metrics.json").read_text())["attacks"]["attacks"]
    assert list(attacks) == ["paraphrase", "inversion", "embedding", "relearn"]
    assert all(np.isfinite(attacks[name]["final_loss"]) for name in ("inversion", "embedding"))


def test_a_flux_lora_is_pushed_to_the_hub_with_its_card(tiny_flux_model, tmp_path):
    output = tmp_path / "pushed"
    command = [sys.executable, os.path.join(ROOT, "train_erasediff.py"), *tiny_run_args(tiny_flux_model, output)]
    command += ["--max_train_steps", "1", "--concept", "van gogh", "--use_lora", "--learning_rate", "1e-2"]
    command += ["--push_to_hub", "--hub_model_id", "someone/erased-flux"]
    with FakeHub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1"}
        env.update(HF_HOME=str(tmp_path / "hf-home"), HF_TOKEN="hf_TestToken1234567890")
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    uploaded = hub.commits["someone/erased-flux"]
    assert {"README.md", "pytorch_lora_weights.safetensors", "erasediff_args.json"} <= set(uploaded)
    card = ModelCard(uploaded["README.md"].decode())
    assert "flux" in card.data.tags and "template:sd-lora" in card.data.tags
    assert "pipe.load_lora_weights('someone/erased-flux')" in uploaded["README.md"].decode()


@pytest.mark.parametrize(
    "model_class, blocks",
    [
        (FluxTransformer2DModel, "FluxTransformerBlock,FluxSingleTransformerBlock"),
        (SD3Transformer2DModel, "JointTransformerBlock"),
    ],
)
def test_fsdp_wraps_the_transformer_blocks_named_on_the_launch_line(model_class, blocks, monkeypatch):
    from accelerate.commands import launch
    from accelerate.utils import launch as launch_utils

    monkeypatch.setattr(launch_utils, "is_port_in_use", lambda port: False)
    config = os.path.join(ROOT, "examples", "accelerate", "fsdp.yaml")
    arguments = ["--config_file", config, "--fsdp_transformer_layer_cls_to_wrap", blocks, "train_erasediff.py"]
    args, _, _ = launch._validate_launch_command(launch.launch_command_parser().parse_args(arguments))
    assert launch_utils.prepare_multi_gpu_env(args)["FSDP_TRANSFORMER_CLS_TO_WRAP"] == blocks
    assert blocks.split(",") == model_class._no_split_modules  # the blocks docs/usage.md names exist


def test_flux_and_sd3_bases_under_their_own_licences_name_them():
    assert base_model_license("black-forest-labs/FLUX.1-schnell") == "apache-2.0" and not other_license(
        "black-forest-labs/FLUX.1-schnell"
    )
    assert base_model_license("black-forest-labs/FLUX.1-dev") == "other"
    named = other_license("stabilityai/stable-diffusion-3.5-large")
    assert named["license_name"] == "stabilityai-ai-community" and named["license_link"].endswith(
        "3.5-large/blob/main/LICENSE.md"
    )
