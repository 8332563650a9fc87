"""End to end: the script on tiny pipelines, outputs loaded back with stock diffusers."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, one_step_image, tiny_run_args, write_image_folder
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file

from pipelines.data_sets import GENERATED_DATA_DIR
from pipelines.generation import SETTINGS_FILE
from pipelines.options import MAX_AUTO_BATCH
from train_erasediff import main, parse_args

FORGET_PROMPT = "a painting in the style of van gogh"
REMAIN_PROMPTS = ["a photo of a cat", "a photo of a kitchen"]


def common_args(model: str, output_dir, *extra: str) -> list[str]:
    return tiny_run_args(model, output_dir, "--train_batch_size", "2", *extra)


def run(model, output_dir, *extra):
    args = parse_args(common_args(model, output_dir, *extra))
    main(args)
    return args


def unet_response(unet, pipeline, prompts):
    """The UNet's predictions for the prompts at fixed noisy latents and timesteps."""
    generator = torch.Generator().manual_seed(123)
    latents = torch.randn(8, 4, 8, 8, generator=generator)
    timesteps = torch.randint(0, 1000, (8,), generator=generator)
    outputs = []
    with torch.no_grad():
        for prompt in prompts:
            ids = pipeline.tokenizer(
                [prompt] * 8,
                padding="max_length",
                max_length=pipeline.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            embeds = pipeline.text_encoder(ids)[0]
            outputs.append(unet(latents, timesteps, encoder_hidden_states=embeds).sample)
    return torch.stack(outputs)


def test_full_fine_tuning_erases_the_forget_prompt_more_than_remain_prompts(tiny_model, tmp_path):
    # A random tiny model also learns the remain data, so erasure is measured against a control run that
    # fine-tunes on the remain set alone (λ = 0) with the same data, noise and seeds.
    data = [
        "--forget_prompts",
        FORGET_PROMPT,
        "--remain_prompts",
        *REMAIN_PROMPTS,
        "--max_train_steps",
        "30",
        "--learning_rate",
        "2e-3",
        "--checkpointing_steps",
        "1000",
    ]
    # The data target (η = 1): its control (λ = 0) learns the same remain data, so the difference is the forget
    # effect alone. The default teacher target is compared with it in the next test.
    data += ["--remain_target", "data", "--eta", "1"]
    output, control = tmp_path / "full", tmp_path / "control"
    run(tiny_model, output, *data, "--lambda_mode", "bome")
    run(tiny_model, control, *data, "--lambda_mode", "fixed", "--lambda_value", "0")

    erased = StableDiffusionPipeline.from_pretrained(str(output))
    base = StableDiffusionPipeline.from_pretrained(tiny_model)
    assert one_step_image(erased).shape == (1, 16, 16, 3)
    prompts = [FORGET_PROMPT, *REMAIN_PROMPTS]
    before = unet_response(base.unet, base, prompts)
    after = unet_response(erased.unet, base, prompts)
    remain_only = unet_response(UNet2DConditionModel.from_pretrained(str(control), subfolder="unet"), base, prompts)
    change = (after - remain_only).pow(2).mean(dim=(1, 2, 3, 4))
    assert change[0] > 2 * change[1:].max(), change
    # The forget prediction moved towards the shifted-noise mean 0.5; the remain predictions did not.
    distance_to_mean = lambda outputs: (outputs - 0.5).abs().mean(dim=(1, 2, 3, 4))  # noqa: E731
    assert distance_to_mean(after)[0] < 0.5 * distance_to_mean(before)[0]
    assert (distance_to_mean(after)[1:] > 0.8 * distance_to_mean(before)[1:]).all()

    assert os.path.isfile(output / "validation_grid.png")
    recorded = json.loads((output / "erasediff_args.json").read_text())
    assert recorded["forget_prompts"] == [FORGET_PROMPT] and recorded["lambda_mode"] == "bome"
    forget_metadata = (output / "data" / "forget" / "metadata.jsonl").read_text().splitlines()
    assert len(forget_metadata) == 4 and json.loads(forget_metadata[0]) == {
        "file_name": "00000.png",
        "text": FORGET_PROMPT,
    }


def test_the_teacher_target_keeps_remain_prompts_closer_to_the_base_than_the_data_target(tiny_model, tmp_path):
    # Generated D_r, the same steps and everything else at the script's defaults (η, batch split, empty prompts).
    data = [
        *("--forget_prompts", FORGET_PROMPT, "--remain_prompts", *REMAIN_PROMPTS),
        *("--max_train_steps", "30", "--learning_rate", "2e-3", "--train_batch_size", "16"),
    ]
    base = StableDiffusionPipeline.from_pretrained(tiny_model)
    prompts = [FORGET_PROMPT, *REMAIN_PROMPTS]
    before = unet_response(base.unet, base, prompts)
    moved, erased = {}, {}
    for target in ("teacher", "data"):
        run(tiny_model, tmp_path / target, *data, "--remain_target", target)
        after = unet_response(
            UNet2DConditionModel.from_pretrained(str(tmp_path / target), subfolder="unet"), base, prompts
        )
        moved[target] = (after - before).pow(2).mean(dim=(1, 2, 3, 4))
        # How far the forget prediction still is from the shifted-noise mean, relative to the base model.
        erased[target] = ((after[0] - 0.5).abs().mean() / (before[0] - 0.5).abs().mean()).item()
    # Measured: remain prompts moved 0.022 (teacher) against 0.40 (data); forget 0.34 against 0.50 of its distance.
    assert moved["teacher"][1:].max() < 0.2 * moved["data"][1:].min(), moved
    assert erased["teacher"] <= erased["data"], erased


def test_lora_on_cross_attention_of_a_v_prediction_model_loads_into_the_base_pipeline(tiny_v_model, tmp_path):
    forget_dir = write_image_folder(tmp_path / "forget", [FORGET_PROMPT] * 3, size=(20, 16))
    remain_dir = write_image_folder(tmp_path / "remain", REMAIN_PROMPTS, seed=1)
    output = tmp_path / "lora"
    run(
        tiny_v_model,
        output,
        "--forget_data_dir",
        forget_dir,
        "--remain_data_dir",
        remain_dir,
        "--use_lora",
        "--train_method",
        "xattn",
        "--rank",
        "2",
        "--forget_target",
        "anchor",
        "--anchor_prompt",
        "a painting",
        "--lambda_mode",
        "cosine",
        "--max_train_steps",
        "3",
        "--random_flip",
        "--proportion_empty_prompts",
        "0.5",
    )

    weights = load_file(str(output / "pytorch_lora_weights.safetensors"))
    assert weights and all("attn2" in key for key in weights)
    assert not (output / "data").exists()  # nothing was generated: both sets came from folders
    assert "| remain samples with the empty prompt | 50% |" in (output / "README.md").read_text()
    pipeline = StableDiffusionPipeline.from_pretrained(tiny_v_model)
    reference = one_step_image(pipeline)
    pipeline.load_lora_weights(str(output))
    assert one_step_image(pipeline).shape == reference.shape


def test_dataset_sources_with_neggrad_and_inner_steps(tiny_model, tmp_path):
    from datasets import Dataset
    from datasets import Image as ImageFeature

    forget_dir = write_image_folder(tmp_path / "forget_images", [FORGET_PROMPT] * 2)
    remain_dir = write_image_folder(tmp_path / "remain_images", REMAIN_PROMPTS)

    def dataset_from(folder, target):
        rows = [json.loads(line) for line in open(os.path.join(folder, "metadata.jsonl"))]
        data = Dataset.from_dict(
            {"img": [os.path.join(folder, r["file_name"]) for r in rows], "caption": [r["text"] for r in rows]}
        )
        data.cast_column("img", ImageFeature()).save_to_disk(str(target))
        return str(target)

    output = tmp_path / "datasets"
    run(
        tiny_model,
        output,
        "--forget_dataset_name",
        dataset_from(forget_dir, tmp_path / "forget_ds"),
        "--remain_dataset_name",
        dataset_from(remain_dir, tmp_path / "remain_ds"),
        "--image_column",
        "img",
        "--caption_column",
        "caption",
        "--forget_target",
        "neggrad",
        "--lambda_mode",
        "fixed",
        "--lambda_value",
        "0.5",
        "--max_train_steps",
        "2",
        "--center_crop",
        "--use_8bit_adam",
    )
    assert one_step_image(StableDiffusionPipeline.from_pretrained(str(output))).shape == (1, 16, 16, 3)


def test_shifted_noise_with_inner_steps_and_gradient_accumulation(tiny_v_model, tmp_path):
    output = tmp_path / "inner"
    run(
        tiny_v_model,
        output,
        "--concept",
        "van gogh",
        "--concept",
        "claude monet",
        "--train_method",
        "noxattn",
        "--inner_steps",
        "2",
        "--inner_learning_rate",
        "1e-3",
        "--inner_refresh_steps",
        "1",
        "--gradient_accumulation_steps",
        "2",
        "--max_train_steps",
        "2",
        "--forget_noise",
        "gaussian",
        "--forget_noise_mean",
        "1.0",
        "--forget_noise_std",
        "0.5",
    )
    metadata = [json.loads(line)["text"] for line in open(output / "data" / "forget" / "metadata.jsonl")]
    assert any("van gogh" in text for text in metadata) and any("claude monet" in text for text in metadata)
    remain = [json.loads(line)["text"] for line in open(output / "data" / "remain" / "metadata.jsonl")]
    assert not any("van gogh" in text.lower() or "claude monet" in text.lower() for text in remain)
    unet = UNet2DConditionModel.from_pretrained(str(output), subfolder="unet")
    base = UNet2DConditionModel.from_pretrained(tiny_v_model, subfolder="unet")
    trained = dict(unet.named_parameters())
    for name, parameter in base.named_parameters():
        moved = not torch.equal(parameter, trained[name])
        frozen_part = "attn2" in name or name.startswith(("time_embedding", "conv_out", "conv_norm_out"))
        assert not (moved and frozen_part), name
    assert any(not torch.equal(p, trained[n]) for n, p in base.named_parameters())
    assert one_step_image(StableDiffusionPipeline.from_pretrained(str(output))).shape == (1, 16, 16, 3)


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tiny_model, tmp_path):
    output = tmp_path / "resume"
    extra = [
        "--concept",
        "van gogh",
        "--use_lora",
        "--max_train_steps",
        "4",
        "--checkpointing_steps",
        "2",
        "--lambda_mode",
        "bome",
        "--gradient_accumulation_steps",
        "2",
        "--lr_scheduler",
        "linear",
    ]
    run(tiny_model, output, *extra)
    uninterrupted = load_file(str(output / "pytorch_lora_weights.safetensors"))
    assert sorted(os.listdir(output)).count("checkpoint-2") == 1

    # Interrupt after step 2: drop what came later, then resume from the latest checkpoint.
    shutil.rmtree(output / "checkpoint-4")
    os.remove(output / "pytorch_lora_weights.safetensors")
    run(tiny_model, output, *extra, "--resume_from_checkpoint", "latest")
    resumed = load_file(str(output / "pytorch_lora_weights.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=0, atol=1e-6)
    pipeline = StableDiffusionPipeline.from_pretrained(tiny_model)
    pipeline.load_lora_weights(str(output))
    assert one_step_image(pipeline).shape == (1, 16, 16, 3)


def recorded_lambdas(output) -> dict[int, float]:
    """The λ each checkpoint's manifest carries for the steps after it, by step."""
    lambdas = {}
    for name in os.listdir(output):
        if name.startswith("checkpoint-"):
            with open(output / name / "erasediff_checkpoint.json", encoding="utf-8") as handle:
                lambdas[int(name.split("-")[1])] = json.load(handle)["loop_state"]["lambda"]
    return lambdas


def test_the_adaptive_lambda_is_computed_on_refresh_steps_only_and_checkpointed(tiny_model, tmp_path):
    extra = ["--concept", "van gogh", "--max_train_steps", "5", "--checkpointing_steps", "1", "--eta", "1"]
    run(tiny_model, tmp_path / "every_third", *extra, "--lambda_refresh_steps", "3")
    lambdas = recorded_lambdas(tmp_path / "every_third")
    # Steps 0 and 3 compute λ (two passes); steps 1, 2 and 4 reuse it in one combined pass.
    assert lambdas[1] == lambdas[2] == lambdas[3] and lambdas[4] == lambdas[5]
    assert lambdas[4] != lambdas[3] and lambdas[1] > 0  # η = 1 keeps λ positive: a real second refresh

    run(tiny_model, tmp_path / "every_step", *extra, "--lambda_refresh_steps", "1")
    every_step = recorded_lambdas(tmp_path / "every_step")
    assert every_step[1] == lambdas[1] and len(set(every_step.values())) == 5


def test_data_is_generated_with_dpm_solver_by_default_in_batches_chosen_and_recorded(tiny_model, tmp_path):
    flags = tiny_run_args(tiny_model, tmp_path / "chosen", "--concept", "van gogh", "--max_train_steps", "1")
    at = flags.index("--generation_batch_size")
    main(parse_args(flags[:at] + flags[at + 2 :]))  # no --generation_batch_size: chosen by the script
    with open(tmp_path / "chosen" / "erasediff_args.json", encoding="utf-8") as handle:
        assert json.load(handle)["generation_batch_size"] == MAX_AUTO_BATCH  # the CPU's choice, recorded
    forget = tmp_path / "chosen" / GENERATED_DATA_DIR / "forget"
    with open(forget / SETTINGS_FILE, encoding="utf-8") as handle:
        assert json.load(handle)["scheduler"] == "dpm_solver"

    run(
        tiny_model,
        tmp_path / "own",
        "--concept",
        "van gogh",
        "--max_train_steps",
        "1",
        "--generation_scheduler",
        "model",
    )
    own = tmp_path / "own" / GENERATED_DATA_DIR / "forget"
    with open(own / SETTINGS_FILE, encoding="utf-8") as handle:
        assert json.load(handle)["scheduler"] == "model"
    assert (forget / "00000.png").read_bytes() != (own / "00000.png").read_bytes()  # another sampler, same seed


def test_rerun_reuses_generated_data_and_completes_a_partial_set(tiny_model, tmp_path):
    output = tmp_path / "rerun"
    extra = ["--concept", "van gogh", "--use_lora", "--max_train_steps", "1"]
    run(tiny_model, output, *extra)
    forget_dir = output / "data" / "forget"
    first_bytes = (forget_dir / "00001.png").read_bytes()
    mtimes = {name: os.path.getmtime(forget_dir / name) for name in ("00000.png", "00002.png")}
    # As if the first run had died while writing image 1, before anything was trained or saved.
    os.remove(forget_dir / "00001.png")
    os.remove(output / "pytorch_lora_weights.safetensors")

    run(tiny_model, output, *extra, "--resume_from_checkpoint", "latest")
    assert (forget_dir / "00001.png").read_bytes() == first_bytes
    assert {name: os.path.getmtime(forget_dir / name) for name in mtimes} == mtimes

    os.remove(output / "pytorch_lora_weights.safetensors")
    with pytest.raises(Exception, match="other settings"):
        run(tiny_model, output, *extra, "--generation_steps", "3", "--resume_from_checkpoint", "latest")


def test_checkpoints_total_limit_keeps_the_newest(tiny_model, tmp_path):
    output = tmp_path / "limit"
    run(
        tiny_model,
        output,
        "--concept",
        "van gogh",
        "--use_lora",
        "--max_train_steps",
        "3",
        "--checkpointing_steps",
        "1",
        "--checkpoints_total_limit",
        "2",
        "--lambda_mode",
        "fixed",
        "--mixed_precision",
        "bf16",
        "--gradient_checkpointing",
    )
    assert sorted(n for n in os.listdir(output) if n.startswith("checkpoint")) == ["checkpoint-2", "checkpoint-3"]
    assert not [n for n in os.listdir(output) if n.endswith(".partial")]


def test_accelerate_launch_runs_the_script(tiny_model, tmp_path):
    output = tmp_path / "launched"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        os.path.join(ROOT, "train_erasediff.py"),
        *common_args(
            tiny_model,
            output,
            "--concept",
            "van gogh",
            "--use_lora",
            "--max_train_steps",
            "2",
            "--lambda_mode",
            "fixed",
            "--report_to",
            "tensorboard",
            "--validation_steps",
            "1",
            "--validation_prompts",
            "a photo of a cat",
        ),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.isfile(output / "pytorch_lora_weights.safetensors")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(output / "logs" / "erasediff"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    for name in ("remain_loss", "forget_loss", "constraint_gap", "lambda", "lr"):
        assert name in scalars and len(events.Scalars(name)) == 2
    images = events.Tags()["images"]
    assert any(tag.startswith("validation/") for tag in images) and any(
        tag.startswith("validation_grid") for tag in images
    )
    assert any(tag.startswith("before/") for tag in images) and any(tag.startswith("after/") for tag in images)


@pytest.mark.parametrize(
    "remain_target, atol",
    [
        ("data", 1e-4),
        # The teacher's L_r starts at exactly 0, so its gradients are tiny and Adam (which divides by their
        # root mean square) turns the processes' different summation order into differences of about 1% of
        # one step (lr 1e-2): 1.1e-4 measured.
        ("teacher", 1e-3),
    ],
)
def test_two_processes_end_where_one_process_with_the_same_global_batch_ends(
    remain_target, atol, tiny_model, tmp_path
):
    extra = [
        "--concept",
        "van gogh",
        "--use_lora",
        "--max_train_steps",
        "3",
        "--learning_rate",
        "1e-2",
        "--lambda_mode",
        "bome",
        "--proportion_empty_prompts",
        "0.5",  # each sample's choice is its own, so the processes must agree on it too
        "--remain_target",
        remain_target,
    ]
    run(tiny_model, tmp_path / "one", *extra, "--train_batch_size", "4", "--forget_batch_size", "4")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        os.path.join(ROOT, "train_erasediff.py"),
        *common_args(tiny_model, tmp_path / "two", *extra, "--train_batch_size", "2", "--forget_batch_size", "2"),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one = load_file(str(tmp_path / "one" / "pytorch_lora_weights.safetensors"))
    two = load_file(str(tmp_path / "two" / "pytorch_lora_weights.safetensors"))
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=atol)
    assert any((one[key].abs() > 1e-3).any() for key in one if "lora_B" in key or "lora.up" in key)
