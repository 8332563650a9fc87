"""Evaluation: the metrics on real inputs (images the tests create, tiny CLIP and classifier models built
from configs) and the command end to end on a tiny pipeline and a LoRA folder made from it."""

import json
import os
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_run_args
from PIL import Image
from tiny_models import CLASSES, MAX_TOKENS, random_images, write_tokenizer_files

from pipelines.errors import InputError
from pipelines.evaluation.classifier import ImageClassifier, label_ids_for
from pipelines.evaluation.clip import ClipModel, clip_scores, zero_shot_predictions
from pipelines.evaluation.command import main, parse_args
from pipelines.evaluation.comparison import evaluate_erasure
from pipelines.evaluation.fid import inception_fid
from pipelines.evaluation.frechet import feature_frechet_distance, frechet_distance
from pipelines.evaluation.measurements import measure_erasure
from pipelines.evaluation.nudenet import NUDENET_EXPOSED_LABELS, count_exposed, detect_nudity
from pipelines.evaluation.settings import EvaluationSettings, expand_evaluation_prompts


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    """A tiny CLIPModel with its processor (the CLIP BPE vocabulary of the tiny pipelines, 16-px images)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = str(tmp_path_factory.mktemp("tiny-clip"))
    vocab_size = write_tokenizer_files(folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)
    layers = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=vocab_size,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **layers,
        ),
        vision_config=dict(image_size=16, patch_size=8, **layers),
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lora_model(tiny_model, tmp_path_factory) -> str:
    """A LoRA output folder as train_erasediff.py writes it: adapter weights in diffusers' format and the
    run's arguments naming the base model. The adapters are random, so the images differ from the base's."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    folder = str(tmp_path_factory.mktemp("lora-model"))
    unet = UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")
    unet.add_adapter(
        LoraConfig(
            r=2, lora_alpha=2, init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"]
        )
    )
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=layers, safe_serialization=True)
    with open(os.path.join(folder, "erasediff_args.json"), "w", encoding="utf-8") as handle:
        json.dump({"pretrained_model_name_or_path": tiny_model, "use_lora": True}, handle)
    return folder


# Fréchet distance ---------------------------------------------------------------------------------------


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    expected = ((mean_a - mean_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    assert frechet_distance(mean_a, np.diag(var_a), mean_b, np.diag(var_b)) == pytest.approx(expected)


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_the_shift():
    features = np.random.default_rng(0).normal(size=(300, 8))
    distances = [feature_frechet_distance(features, features + shift) for shift in (0.0, 0.25, 0.5, 1.0)]
    assert distances[0] == pytest.approx(0.0, abs=1e-9)
    assert distances[1] < distances[2] < distances[3]
    assert distances[3] == pytest.approx(8 * 1.0**2, rel=1e-6)  # a pure shift adds ‖Δμ‖² = D·shift²
    other_sample = np.random.default_rng(1).normal(size=(300, 8))
    assert feature_frechet_distance(features, other_sample) < distances[1]


def test_frechet_distance_stays_real_when_there_are_fewer_samples_than_dimensions():
    features = np.random.default_rng(0).normal(size=(5, 32))
    assert feature_frechet_distance(features, features) == pytest.approx(0.0, abs=1e-9)
    assert 0 < feature_frechet_distance(features, features + 1) < np.inf


def test_fd_on_clip_features_of_synthetic_image_sets_orders_identical_below_shifted(tiny_clip):
    clip = ClipModel(tiny_clip)
    images = random_images(12, seed=0)
    reference = clip.image_embeddings(images).double().numpy()
    identical = feature_frechet_distance(reference, clip.image_embeddings(images).double().numpy())
    shifted = feature_frechet_distance(reference, clip.image_embeddings(random_images(12, 0, brightness=55)).numpy())
    assert identical == pytest.approx(0.0, abs=1e-6)
    assert shifted > 1e-3


# CLIP and classifier -----------------------------------------------------------------------------------


def test_clip_score_and_zero_shot_prediction_agree_with_the_clip_model_itself(tiny_clip):
    from transformers import CLIPModel, CLIPProcessor

    images = random_images(3, seed=3)
    prompts = ["a photo of a cat", "a painting in the style of van gogh", "a photo of a kitchen"]
    clip = ClipModel(tiny_clip, batch_size=2)
    image_embeddings, text_embeddings = clip.image_embeddings(images), clip.text_embeddings(prompts)
    assert torch.allclose(image_embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)

    model, processor = CLIPModel.from_pretrained(tiny_clip).eval(), CLIPProcessor.from_pretrained(tiny_clip)
    with torch.no_grad():
        output = model(**processor(text=prompts, images=images, return_tensors="pt", padding=True))
    cosine = (output.image_embeds * output.text_embeds).sum(-1)
    torch.testing.assert_close(clip_scores(image_embeddings, text_embeddings), 100 * cosine.clamp(min=0))
    assert zero_shot_predictions(image_embeddings, text_embeddings) == output.logits_per_image.argmax(-1).tolist()


def test_classifier_counts_images_whose_top_class_is_the_forget_class(tiny_classifier, tiny_clip, tmp_path):
    classifier = ImageClassifier(tiny_classifier)
    assert classifier.top1(random_images(4, 5, brightness=55)) == [2] * 4
    assert classifier.top1(random_images(4, 6, brightness=-150)) == [1] * 4

    # Base draws the forget class (bright: golf ball), the erased model something else (dark: church).
    settings = EvaluationSettings.for_concepts(
        ["golf ball"],
        "object",
        forget_prompts=["a photo of a golf ball"],
        remain_prompts=["a photo of a church"],
        metrics=["classifier", "clip_accuracy"],
        num_images=3,
        classifier_model=tiny_classifier,
        clip_model=tiny_clip,
        device="cpu",
    )
    images = {
        "base": {"forget": [random_images(3, 7, brightness=55)], "remain": [random_images(3, 8, brightness=-150)]},
        "erased": {"forget": [random_images(3, 9, brightness=-150)], "remain": [random_images(3, 10, brightness=55)]},
    }
    results = measure_erasure(images, settings, image_dirs={}, device="cpu")
    assert results["classifier"]["forget_labels"] == ["golf ball"]
    assert results["classifier"]["forget"] == {"base": 1.0, "erased": 0.0}
    assert results["classifier"]["remain"]["agreement"] == 0.0
    accuracy = results["clip_accuracy"]
    assert accuracy["concept_texts"] == ["a photo of a golf ball"]
    assert "a photo of a golf ball" not in accuracy["alternatives"]
    assert accuracy["chance"] == pytest.approx(1 / (1 + len(accuracy["alternatives"])))
    assert all(0.0 <= accuracy["forget"][m] <= 1.0 for m in ("base", "erased"))


def test_forget_labels_match_imagenet_synonyms_and_unknown_labels_name_close_ones():
    assert label_ids_for(CLASSES, ["Church"], "tiny") == [1]
    assert label_ids_for(CLASSES, ["tinca tinca", "golf ball"], "tiny") == [0, 2]
    with pytest.raises(InputError, match="golf balls.*close labels: golf ball"):
        label_ids_for(CLASSES, ["golf balls"], "tiny")


# NudeNet and optional packages -------------------------------------------------------------------------


def test_count_exposed_counts_detections_per_label_from_the_threshold():
    detections = [
        [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.9}, {"class": "FACE_FEMALE", "score": 0.95}],
        [{"class": "FEMALE_BREAST_EXPOSED", "score": 0.6}, {"class": "BELLY_EXPOSED", "score": 0.59}],
        [{"class": "BELLY_COVERED", "score": 0.99}],
        [],
    ]
    counts = count_exposed(detections, threshold=0.6)
    assert counts["images"] == 4 and counts["images_with_exposed"] == 2 and counts["exposed_detections"] == 2
    assert counts["detections"]["FEMALE_BREAST_EXPOSED"] == 2 and counts["detections"]["BELLY_EXPOSED"] == 0
    assert set(counts["detections"]) == set(NUDENET_EXPOSED_LABELS)


def test_nudenet_runs_offline_on_images_the_test_creates():
    nudenet = pytest.importorskip("nudenet")
    assert os.path.isfile(os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx"))  # shipped in the wheel
    gray = Image.new("RGB", (64, 48), (128, 128, 128))
    images = [gray, *random_images(2, seed=4, size=32)]
    detections = detect_nudity(images, batch_size=2)
    assert len(detections) == 3
    for image_detections in detections:
        assert all({"class", "score", "box"} <= set(d) for d in image_detections)
    assert count_exposed(detections, 0.6)["exposed_detections"] == 0


def test_fid_without_torch_fidelity_is_one_line_naming_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # as if not installed
    with pytest.raises(InputError, match="--metrics fid needs the torch_fidelity package.*pip install torch-fidelity"):
        inception_fid(str(tmp_path), str(tmp_path))


def test_a_missing_metric_package_stops_the_command_before_any_model_loads(monkeypatch, capsys, tiny_model):
    monkeypatch.setitem(sys.modules, "nudenet", None)
    with pytest.raises(SystemExit):
        parse_args(
            ["--model", tiny_model, "--base_model", tiny_model, "--concept", "nudity", "--concept_type", "nudity"]
        )
    error = capsys.readouterr().err
    assert "--metrics nudenet needs the nudenet package" in error and "pip install nudenet==3.4.2" in error


# Prompts and arguments ---------------------------------------------------------------------------------


def test_prompt_files_i2p_and_coco_style_csv_and_txt(tmp_path):
    i2p = tmp_path / "i2p.csv"
    i2p.write_text('prompt,categories,sd_seed\n"a nude person, oil",sexual,1\n,sexual,2\nsecond prompt,violence,3\n')
    coco = tmp_path / "coco.csv"
    coco.write_text("image_id,caption\n1,A cat on a mat.\n2,A bowl of fruit.\n")
    text = tmp_path / "prompts.txt"
    text.write_text("one\n\ntwo\n")
    assert expand_evaluation_prompts([str(i2p), "extra"], "--forget_prompts") == [
        "a nude person, oil",
        "second prompt",
        "extra",
    ]
    assert expand_evaluation_prompts([str(coco), str(text)], "--remain_prompts") == [
        "A cat on a mat.",
        "A bowl of fruit.",
        "one",
        "two",
    ]
    assert expand_evaluation_prompts([str(i2p)], "--forget_prompts", column="categories") == [
        "sexual",
        "sexual",
        "violence",
    ]
    with pytest.raises(InputError, match="no column 'label'.*categories"):
        expand_evaluation_prompts([str(i2p)], "--forget_prompts", column="label")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "missing-folder/sub/dir", "--concept", "x"], "does not exist"),
        (["--concept", "x", "--metrics", "classifier", "clip_accuracy", "--classifier_labels", "x"], None),
        (["--forget_prompts", "a cat", "--metrics", "clip_accuracy"], "clip_accuracy needs --concept"),
        (["--concept", "x", "--num_images", "1", "--max_prompts", "1"], "need at least 2 forget images"),
        (["--concept", "x", "--reference_dir", "nowhere"], "--reference_dir nowhere is not a folder"),
        (["--metrics", "clip_score"], "give --concept or --forget_prompts"),
    ],
)
def test_bad_arguments_exit_with_one_line(extra, message, tiny_model, lora_model, capsys):
    arguments = ["--model", lora_model, *extra] if "--model" not in extra else extra
    if message is None:  # the good case: parsing recovers the base model from erasediff_args.json
        assert parse_args(arguments).base_model == tiny_model
        return
    with pytest.raises(SystemExit):
        parse_args(arguments)
    assert message in capsys.readouterr().err


def test_the_module_command_reports_a_bad_model_as_one_line(tmp_path):
    import subprocess

    from conftest import ROOT

    (tmp_path / "not-a-model").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.evaluation", "--model", str(tmp_path / "not-a-model"), "--concept", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "holds neither pytorch_lora_weights.safetensors nor model_index.json; give the output folder of train_erasediff.py"
        )
    )


# End to end --------------------------------------------------------------------------------------------


def test_command_evaluates_a_lora_model_against_its_base(lora_model, tiny_model, tiny_clip, tiny_classifier, tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    for i, image in enumerate(random_images(4, seed=11)):
        image.save(reference / f"{i}.png")
    metrics = ["clip_score", "clip_accuracy", "classifier", "fd_clip", *(["nudenet"] if _has_nudenet() else [])]
    output = tmp_path / "evaluation"
    args = parse_args(
        [
            "--model",
            lora_model,
            "--concept",
            "van gogh",
            "--metrics",
            *metrics,
            "--classifier_labels",
            "church",
            "--clip_model",
            tiny_clip,
            "--classifier_model",
            tiny_classifier,
            "--reference_dir",
            str(reference),
            "--max_prompts",
            "3",
            "--num_images",
            "2",
            "--batch_size",
            "4",
            "--num_inference_steps",
            "2",
            "--resolution",
            "16",
            "--grid_prompts",
            "2",
            "--grid_images",
            "1",
            "--output_dir",
            str(output),
        ]
    )
    report = main(args)

    results = json.loads((output / "metrics.json").read_text())
    assert results["models"] == {"base": tiny_model, "erased": lora_model}
    assert results["prompts"]["forget"] == [
        "a painting in the style of van gogh",
        "an artwork by van gogh",
        "a landscape painted by van gogh",
    ]
    assert len(results["prompts"]["remain"]) == 3
    measured = results["metrics"]
    assert set(measured) == set(metrics)
    assert measured["clip_score"]["forget"]["base"] != measured["clip_score"]["forget"]["erased"]
    assert measured["fd_clip"]["forget"]["base_vs_erased"] > 0
    assert {"base_vs_erased", "reference_vs_base", "reference_vs_erased"} <= set(measured["fd_clip"]["remain"])
    table = (output / "metrics.md").read_text()
    assert "| CLIP score | forget |" in table and "FD on CLIP features, base ↔ erased" in table
    assert "![forget prompts, base | erased](grid_forget.png)" in table
    assert report.markdown == table and report.results == results

    for prompt_set in ("forget", "remain"):
        grid = Image.open(output / f"grid_{prompt_set}.png")
        assert grid.size == (2 * 1 * 16, 2 * 16)  # base | erased, 1 image each; 2 prompts
        base_rows = (output / "images" / "base" / prompt_set / "metadata.jsonl").read_text().splitlines()
        erased_rows = (output / "images" / "erased" / prompt_set / "metadata.jsonl").read_text().splitlines()
        assert len(base_rows) == 6 and base_rows == erased_rows  # same prompts, same seeds, same file names
        assert len({json.loads(row)["seed"] for row in base_rows}) == 6


def test_evaluating_a_model_against_itself_finds_no_change(tiny_model, tiny_clip, tmp_path):
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(tiny_model)
    settings = EvaluationSettings.for_concepts(
        ["van gogh"],
        "style",
        forget_prompts=["a painting in the style of van gogh", "an artwork by van gogh"],
        remain_prompts=["a photo of a cat", "a photo of a kitchen"],
        metrics=["clip_score", "fd_clip"],
        num_images=2,
        num_inference_steps=2,
        resolution=16,
        batch_size=3,  # batches that cut across prompts must not change any image
        clip_model=tiny_clip,
        device="cpu",
    )
    report = evaluate_erasure(pipeline, pipeline, settings, str(tmp_path / "same"))
    measured = report.results["metrics"]
    for prompt_set in ("forget", "remain"):
        assert measured["clip_score"][prompt_set]["base"] == pytest.approx(
            measured["clip_score"][prompt_set]["erased"]
        )
        assert measured["fd_clip"][prompt_set]["base_vs_erased"] == pytest.approx(0.0, abs=1e-6)
    assert os.path.relpath(report.grid_paths["forget"], tmp_path) == os.path.join("same", "grid_forget.png")
    assert "(same/grid_forget.png)" in report.markdown_relative_to(str(tmp_path))


def _has_nudenet() -> bool:
    try:
        import nudenet  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("lora", [True, False])
def test_training_with_evaluate_puts_the_figures_into_the_model_card(tiny_model, tiny_clip, tmp_path, lora):
    import re

    from huggingface_hub import ModelCard

    from train_erasediff import main as train
    from train_erasediff import parse_args as train_args

    output = tmp_path / "erased"
    evaluation = ["--evaluate", "--evaluation_metrics", "clip_score", "fd_clip", "--evaluation_clip_model", tiny_clip]
    extra = ["--concept", "van gogh", "--max_train_steps", "2", "--evaluation_num_images", "1", *evaluation]
    train(train_args(tiny_run_args(tiny_model, output, *extra, *(["--use_lora"] if lora else []))))
    metrics = json.loads((output / "evaluation" / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"clip_score", "fd_clip"}
    card = ModelCard.load(str(output / "README.md")).text
    assert "## Evaluation" in card and "CLIP score" in card
    assert "No attack was run" in card  # the card says plainly that robustness was not measured
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card):
        assert (output / image).is_file(), image
