"""Model card, loading, export and Hub push of an erased model."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, lora_strength_arguments, pipeline_as_trained, tiny_run_args
from diffusers import StableDiffusionPipeline
from fake_hub import FakeHub
from huggingface_hub import ModelCard

from pipelines.errors import InputError
from pipelines.loading import load_erased_pipeline
from pipelines.model_card import base_model_license, card_tags
from train_erasediff import main, parse_args

SECTIONS = (
    "## How to use",
    "## Before and after",
    "## Training data",
    "## Method and hyper-parameters",
    "## Limitations",
    "## Citation",
)


def train(model, output_dir, *extra):
    main(parse_args(tiny_run_args(model, output_dir, "--max_train_steps", "2", "--concept", "van gogh", *extra)))


def images(pipeline):
    return pipeline(
        ["a cat", "a painting in the style of van gogh"],
        num_inference_steps=2,
        height=16,
        width=16,
        output_type="np",
        generator=[torch.Generator().manual_seed(i) for i in range(2)],
    ).images


def run_card_snippet(card_text):
    """Executes the card's own load snippet, all but the line that renders a full-size image."""
    snippet = re.search(r"```python\n(.*?)```", card_text, re.S).group(1)
    code = "\n".join(line for line in snippet.splitlines() if not line.startswith("image = "))
    namespace = {}
    exec(code, namespace)  # noqa: S102 (the card's snippet, run as a user would)
    return namespace["pipe"]


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("published") / "lora"
    train(tiny_model, output, "--use_lora", "--save_as", "both", "--learning_rate", "1e-2")
    return output


def test_lora_loads_and_fuses_at_the_strength_it_was_trained_at(tiny_model, tmp_path):
    output = tmp_path / "alpha"
    main(parse_args(tiny_run_args(tiny_model, output, "--concept", "van gogh", *lora_strength_arguments())))
    trained = images(pipeline_as_trained(StableDiffusionPipeline, tiny_model, str(output / "checkpoint-2"), 4, 16.0))
    stock = StableDiffusionPipeline.from_pretrained(tiny_model)
    stock.load_lora_weights(str(output))
    fused = StableDiffusionPipeline.from_pretrained(str(output / "fused"))
    np.testing.assert_allclose(images(stock), trained, atol=1e-4)
    np.testing.assert_allclose(images(fused), trained, atol=1e-4)
    np.testing.assert_allclose(images(load_erased_pipeline(str(output))), trained, atol=1e-4)
    untrained = images(StableDiffusionPipeline.from_pretrained(tiny_model))
    assert np.abs(untrained - trained).max() > 1e-2  # the adapter matters, so equality above means something

    # The checkpoint holds loadable LoRA weights too, and the kohya file loads to the same images.
    for folder, weight_name in ((output / "checkpoint-2", None), (output, "lora_kohya.safetensors")):
        other = StableDiffusionPipeline.from_pretrained(tiny_model)
        other.load_lora_weights(str(folder), weight_name=weight_name)
        np.testing.assert_allclose(images(other), trained, atol=1e-4)


def test_the_kohya_file_uses_kohyas_sd_names_and_the_true_alpha(tiny_model, tmp_path):
    from safetensors import safe_open

    output = tmp_path / "kohya"
    main(parse_args(tiny_run_args(tiny_model, output, "--concept", "van gogh", *lora_strength_arguments(1))))
    with safe_open(str(output / "lora_kohya.safetensors"), "pt") as handle:
        keys, metadata = set(handle.keys()), handle.metadata()
        alphas = {key: handle.get_tensor(key).item() for key in keys if key.endswith(".alpha")}
    module = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    assert {f"{module}.lora_down.weight", f"{module}.lora_up.weight", f"{module}.alpha"} <= keys
    assert "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0_attn2_to_out_0.lora_up.weight" in keys
    assert all(key.startswith("lora_unet_") for key in keys)
    assert set(alphas.values()) == {16.0} and len(alphas) == len(keys) // 3
    assert metadata["ss_network_dim"] == "4" and metadata["ss_network_alpha"] == "16"


def test_card_metadata_and_sections(lora_run, tiny_model):
    card = ModelCard.load(str(lora_run / "README.md"))
    assert card.data.base_model == tiny_model and card.data.library_name == "diffusers"
    assert set(card_tags("sd", is_lora=True)) == set(card.data.tags)
    assert {"stable-diffusion", "erasediff", "concept-erasure", "lora"} <= set(card.data.tags)
    for section in SECTIONS:
        assert section in card.text
    assert "van gogh" in card.text and "bome" in card.text and "@article{wu2024erasediff" in card.text
    assert "| remain objective | teacher (the frozen base model's prediction" in card.text
    assert "| remain samples per step | 4 per process × 1 processes × 1 accumulation = 4 |" in card.text
    assert "| precision | no |" in card.text and "template:sd-lora" in card.data.tags
    assert card.text.index("from diffusers import") < card.text.index("load_erased_pipeline")
    assert "local folder" in card.text  # the base was a local path, and the card says so
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card.text):
        assert os.path.isfile(lora_run / image), image


def test_card_snippet_loads_the_lora_artifact(lora_run, tiny_model):
    pipe = run_card_snippet((lora_run / "README.md").read_text())
    by_hand = StableDiffusionPipeline.from_pretrained(tiny_model)
    by_hand.load_lora_weights(str(lora_run))
    np.testing.assert_allclose(images(pipe), images(by_hand), atol=1e-6)


def test_loader_matches_loading_by_hand_and_the_fused_export(lora_run, tiny_model):
    by_hand = StableDiffusionPipeline.from_pretrained(tiny_model)
    by_hand.load_lora_weights(str(lora_run))
    expected = images(by_hand)
    np.testing.assert_allclose(images(load_erased_pipeline(str(lora_run))), expected, atol=1e-6)
    fused = StableDiffusionPipeline.from_pretrained(str(lora_run / "fused"))
    np.testing.assert_allclose(images(fused), expected, atol=1e-4)
    np.testing.assert_allclose(images(load_erased_pipeline(str(lora_run / "fused"))), images(fused), atol=1e-6)
    np.testing.assert_allclose(images(load_erased_pipeline(str(lora_run), fuse=True)), expected, atol=1e-4)
    assert np.abs(images(StableDiffusionPipeline.from_pretrained(tiny_model)) - expected).max() > 1e-3


def test_full_run_card_snippet_and_loader(tiny_model, tmp_path):
    train(tiny_model, tmp_path / "full", "--train_method", "xattn")
    card = ModelCard.load(str(tmp_path / "full" / "README.md"))
    assert "lora" not in card.data.tags
    pipe = run_card_snippet(card.text)
    np.testing.assert_allclose(images(load_erased_pipeline(str(tmp_path / "full"))), images(pipe), atol=1e-6)


def test_lora_run_saved_as_pipeline_is_standalone(tiny_model, tmp_path):
    train(tiny_model, tmp_path / "fusedonly", "--use_lora", "--save_as", "pipeline")
    assert not (tmp_path / "fusedonly" / "pytorch_lora_weights.safetensors").exists()
    assert images(StableDiffusionPipeline.from_pretrained(str(tmp_path / "fusedonly"))).shape == (2, 16, 16, 3)


def test_loader_needs_a_base_when_the_recorded_one_is_gone(lora_run, tmp_path):
    moved = tmp_path / "copy"
    moved.mkdir()
    (moved / "pytorch_lora_weights.safetensors").write_bytes(
        (lora_run / "pytorch_lora_weights.safetensors").read_bytes()
    )
    (moved / "erasediff_args.json").write_text('{"pretrained_model_name_or_path": "/gone/base"}')
    with pytest.raises(InputError, match="pass base_model="):
        load_erased_pipeline(str(moved))


def test_licenses_of_known_and_sd1_bases():
    assert base_model_license("CompVis/stable-diffusion-v1-4") == "creativeml-openrail-m"
    assert base_model_license("someone/sd1-finetune", cross_attention_dim=768) == "creativeml-openrail-m"
    assert base_model_license("stabilityai/stable-diffusion-2-1") == "openrail++"
    assert base_model_license("someone/unknown", cross_attention_dim=1024) is None


def test_full_run_accepts_only_pipeline_and_token_is_refused_with_wandb(capsys, tmp_path):
    for argv, message in (
        (["--save_as", "lora"], "--save_as lora needs --use_lora"),
        (["--hub_token", "hf_x", "--report_to", "wandb"], "--hub_token cannot be used with --report_to wandb"),
    ):
        with pytest.raises(SystemExit):
            parse_args(["--concept", "x", "--output_dir", str(tmp_path / "o"), *argv])
        assert message in capsys.readouterr().err


def test_push_without_credentials_is_refused(tiny_model, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    with pytest.raises(InputError, match="--push_to_hub needs Hub credentials: run `hf auth login`"):
        train(tiny_model, tmp_path / "out", "--push_to_hub")


def test_the_login_command_we_name_exists_and_the_old_one_is_named_nowhere():
    hf = os.path.join(os.path.dirname(sys.executable), "hf")
    assert subprocess.run([hf, "auth", "login", "--help"], capture_output=True).returncode == 0
    for folder, _, names in os.walk(ROOT):
        if any(part.startswith(".") for part in folder.split(os.sep)):
            continue
        for name in names:
            if name.endswith((".py", ".md")) and name != os.path.basename(__file__):
                assert "huggingface-cli" not in open(os.path.join(folder, name), encoding="utf-8").read(), name


def test_push_uploads_the_folder_without_checkpoints_data_or_logs_and_never_writes_the_token(tiny_model, tmp_path):
    token = "hf_SecretTestToken1234567890"
    output = tmp_path / "pushed"
    with FakeHub() as hub:
        command = [
            sys.executable,
            os.path.join(ROOT, "train_erasediff.py"),
            "--pretrained_model_name_or_path",
            tiny_model,
            "--output_dir",
            str(output),
            "--resolution",
            "16",
            "--num_forget_images",
            "2",
            "--num_remain_images",
            "2",
            "--generation_steps",
            "2",
            "--num_validation_images",
            "1",
            "--seed",
            "0",
            "--max_train_steps",
            "2",
            "--checkpointing_steps",
            "1",
            "--concept",
            "van gogh",
            "--use_lora",
            "--report_to",
            "tensorboard",
            "--push_to_hub",
            "--hub_token",
            token,
            "--hub_model_id",
            "someone/erased-van-gogh",
            "--hub_private_repo",
        ]
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.endpoint,
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(tmp_path / "hf-home"),
        }
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [created] = hub.created
    assert (created["organization"], created["name"], created["visibility"]) == (
        "someone",
        "erased-van-gogh",
        "private",
    )
    assert hub.validated and "base_model:" not in hub.validated[0]  # a local base: no Hub id to name
    assert all(header == f"Bearer {token}" for header in hub.authorizations)
    uploaded = set(hub.commits["someone/erased-van-gogh"])
    assert {"README.md", "pytorch_lora_weights.safetensors", "erasediff_args.json", "validation_grid.png"} <= uploaded
    assert not [p for p in uploaded if p.startswith(("checkpoint-", "data/", "logs/"))]
    assert os.path.isdir(output / "checkpoint-1") and os.path.isdir(output / "data") and os.path.isdir(output / "logs")
    card = hub.commits["someone/erased-van-gogh"]["README.md"].decode()
    assert "pipe.load_lora_weights('someone/erased-van-gogh')" in card
    assert_publishes_no_local_path(hub.commits["someone/erased-van-gogh"], tiny_model, output)
    published = ModelCard(card)
    assert published.data.base_model is None and "BASE_MODEL" in card  # a local base with no Hub id
    assert "template:sd-lora" in published.data.tags
    assert [example["output"]["url"] for example in published.data.widget][:1] == ["validation/after_0.png"]
    assert {"validation/after_0.png", "validation/before_0.png"} <= uploaded

    assert token not in result.stdout + result.stderr
    for folder, _, files in os.walk(output):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                assert token.encode() not in handle.read(), os.path.join(folder, name)


def assert_publishes_no_local_path(commit: dict, *local_paths) -> None:
    """No uploaded text file mentions a local path (the base model, the output folder, the temp folders)."""
    for path, content in commit.items():
        if path.endswith((".md", ".json", ".txt")):
            text = content.decode()
            for local in local_paths:
                assert str(local) not in text, (path, str(local))
            assert "/tmp/" not in text, path


def hub_cache_copy(model: str, root) -> str:
    """The tiny model where a Hub download would have put it: <cache>/models--owner--name/snapshots/<sha>."""
    import shutil

    snapshot = root / "hub" / "models--someone--tiny-sd" / "snapshots" / "0123456789abcdef"
    shutil.copytree(model, snapshot)
    return str(snapshot)


def test_a_base_model_from_the_hub_cache_is_published_as_its_hub_id(tiny_model, tmp_path):
    from pipelines.publishing import public_arguments_record, public_base_model, public_card_text

    cached = hub_cache_copy(tiny_model, tmp_path)  # a local copy of the tiny model, named as the Hub cache names one
    hub_id = "someone/tiny-sd"  # only a name here: nothing is downloaded or loaded by it
    assert public_base_model(cached) == hub_id
    assert public_base_model("CompVis/stable-diffusion-v1-4") == "CompVis/stable-diffusion-v1-4"
    assert public_base_model(tiny_model) is None
    output = tmp_path / "cached-base"
    train(cached, output, "--use_lora")
    recorded = json.loads((output / "erasediff_args.json").read_text())
    card = public_card_text((output / "README.md").read_text(), recorded, "someone/erased")
    assert ModelCard(card).data.base_model == hub_id
    assert f"StableDiffusionPipeline.from_pretrained('{hub_id}')" in card  # the card's snippet names the base
    assert cached not in card and str(output) not in card
    assert public_arguments_record(recorded)["pretrained_model_name_or_path"] == hub_id
    assert public_arguments_record(recorded)["output_dir"] is None


def test_a_finished_folder_can_be_published_later_with_the_same_rules(lora_run, tiny_model, tmp_path):
    with FakeHub() as hub:
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.endpoint,
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(tmp_path / "hf-home"),
            "HF_TOKEN": "hf_LaterToken1234567890",
        }
        command = [sys.executable, "-m", "pipelines.publishing", str(lora_run), "--hub_model_id", "someone/later"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("to https://huggingface.co/someone/later")
    commit = hub.commits["someone/later"]
    assert {"README.md", "pytorch_lora_weights.safetensors", "lora_kohya.safetensors", "erasediff_args.json"} <= set(
        commit
    )
    assert not [p for p in commit if p.startswith(("checkpoint-", "data/", "logs/"))]
    assert_publishes_no_local_path(commit, tiny_model, lora_run)
    assert "pipe.load_lora_weights('someone/later')" in commit["README.md"].decode()
    assert json.loads(commit["erasediff_args.json"])["pretrained_model_name_or_path"] is None


def test_publishing_later_refuses_a_folder_without_a_model(tmp_path, capsys):
    from pipelines.publishing import main as publish

    assert publish([str(tmp_path), "--hub_model_id", "someone/x"]) == 2
    assert "holds no finished model" in capsys.readouterr().err
