"""The attack suite and adversarial erasure. Efficacy on a case built to show it: the committed digits model
with the word "three" made to mean "seven" in its text encoder, an erasure that only hides the digit (the
UNet still draws threes). Every optimising attack must beat its same-budget control there. The command,
the card and the defence's checkpoints on the tiny pipelines."""

import json
import os
import re
import shutil

import pytest
import torch
from conftest import tiny_run_args, write_image_folder
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from benchmarks.digits.attack_setup import digit_detector, digit_evaluation, paraphrases
from benchmarks.digits.judge import Judge
from benchmarks.digits.measure import load_pipeline
from benchmarks.digits.train_base import DEFAULT_MODEL_DIR
from pipelines.evaluation.attacks.paraphrase import misspelled_concepts, misspellings, paraphrase_prompts
from pipelines.evaluation.attacks.settings import AttackSettings
from pipelines.evaluation.attacks.suite import run_attack_suite
from pipelines.evaluation.command import main as evaluate_main
from pipelines.evaluation.command import parse_args as evaluate_args
from pipelines.learned_tokens import LearnedTokens
from pipelines.model_family import SD
from pipelines.objective import relearned_forget_gradient
from pipelines.prompts import concept_templates
from train_erasediff import main, parse_args

HIDDEN_DIGIT, STAND_IN = 3, 7


@pytest.fixture(scope="module")
def hidden_erasure_attacks(tmp_path_factory):
    """The attack suite on the digits model whose word for three reads as seven (the base model is the
    untouched digits model), with small budgets."""
    base = load_pipeline(DEFAULT_MODEL_DIR)
    hidden = load_pipeline(DEFAULT_MODEL_DIR)
    table = hidden.text_encoder.get_input_embeddings().weight
    three, seven = hidden.tokenizer.convert_tokens_to_ids(["three</w>", "seven</w>"])
    with torch.no_grad():
        table[three] = table[seven]
    before = {name: p.detach().clone() for name, p in hidden.unet.named_parameters()}
    settings = AttackSettings(
        paraphrase_prompts=paraphrases(HIDDEN_DIGIT),
        images=8,
        steps=50,
        learning_rate=0.05,
        embedding_tokens=2,
        relearn_steps=20,
        relearn_every=10,
        relearn_learning_rate=5e-4,
    )
    output = tmp_path_factory.mktemp("hidden-attacks")
    results = run_attack_suite(
        hidden,
        base,
        digit_evaluation(HIDDEN_DIGIT, num_images=8, steps=10),
        settings,
        digit_detector(Judge.load(), HIDDEN_DIGIT),
        str(output),
    )
    return results, hidden, before, output


def test_the_hidden_erasure_hides_the_digit_from_its_prompt(hidden_erasure_attacks):
    results = hidden_erasure_attacks[0]
    assert results["no_attack"]["base_success"] >= 0.9
    assert results["no_attack"]["success"] <= 0.1


@pytest.mark.parametrize("attack", ["inversion", "embedding", "relearn"])
def test_each_optimising_attack_beats_its_same_budget_control_on_a_hidden_erasure(hidden_erasure_attacks, attack):
    result = hidden_erasure_attacks[0]["attacks"][attack]
    assert result["success"] >= 0.6, result
    assert result["control_success"] <= 0.1, result
    assert result["beyond_control"] >= 0.5


def test_relearning_records_a_curve_and_the_steps_to_half(hidden_erasure_attacks):
    result = hidden_erasure_attacks[0]["attacks"]["relearn"]
    assert [step for step, _ in result["curve"]] == [0, 10, 20]
    assert result["curve"][0][1] <= 0.1 and result["steps_to_half"] in (10, 20)
    assert result["control_steps_to_half"] is None  # fine-tuning on other digits does not bring it back


def test_the_attacks_change_neither_pipeline_and_write_images_grids_and_results(hidden_erasure_attacks):
    results, hidden, before, output = hidden_erasure_attacks
    assert all(torch.equal(p, before[name]) for name, p in hidden.unet.named_parameters())
    assert len(hidden.tokenizer) == len(load_pipeline(DEFAULT_MODEL_DIR).tokenizer)
    folder = output / "attacks"
    assert json.loads((folder / "attacks.json").read_text())["attacks"].keys() == results["attacks"].keys()
    for attack in ("paraphrase", "inversion", "embedding", "relearn"):
        assert (folder / f"grid_{attack}.png").is_file()
        assert len(list((folder / attack / "attack").glob("*.png"))) >= 8
    assert results["attacks"]["inversion"]["budget"] == {
        "images": 8,
        "batch_size": 4,
        "steps": 50,
        "learning_rate": 0.05,
        "tokens": 1,
    }


def test_learned_tokens_train_their_vectors_and_nothing_else(tiny_model):
    pipeline = StableDiffusionPipeline.from_pretrained(tiny_model)
    tokens = LearnedTokens(
        SD, [pipeline.tokenizer], [pipeline.text_encoder], 2, generator=torch.Generator().manual_seed(0)
    )
    embeds = tokens.embed([f"a photo of {tokens.phrase()}"], "cpu")
    embeds.hidden.sum().backward()
    assert tokens.vectors[0].grad is not None and tokens.vectors[0].grad.abs().sum() > 0
    assert all(p.grad is None for p in tokens.text_encoders[0].parameters())
    assert "<learned-0>" not in pipeline.tokenizer.get_vocab()  # the pipeline's own tokenizer is untouched
    with torch.no_grad():
        plain = tokens.conditioner.encode(["a photo of"], "cpu").hidden
        tokens.vectors[0].add_(1.0)
        moved = tokens.embed([f"a photo of {tokens.phrase()}"], "cpu").hidden
    assert not torch.allclose(moved, embeds.hidden.detach()) and plain.shape == moved.shape


def test_concept_templates_put_a_placeholder_where_the_concept_was():
    prompts = ["a painting in the style of Van Gogh", "van gogh's sunflowers", "a cat"]
    assert concept_templates(prompts, ["Van Gogh"], "style") == ["a painting in the style of {}", "{}'s sunflowers"]
    assert concept_templates(["a cat"], ["Van Gogh"], "style")[0] == "a painting in the style of {}"


def test_built_in_paraphrases_include_misspellings_and_other_languages():
    assert misspellings("gogh") == ["goh", "goggh", "ggoh"]
    assert misspelled_concepts("golf ball") == ["gof ball", "gollf ball", "glof ball"]  # a word, not the space
    prompts = paraphrase_prompts(["Van Gogh"], "style")
    assert "in the manner of Van Gogh" in prompts and "ein Gemälde im Stil von Van Gogh" in prompts
    assert any("Van Gogh" not in p and "Van" in p for p in prompts)  # a misspelling


def _classifier_arguments(tiny_model, tiny_classifier, output, *extra):
    return [
        *("--model", tiny_model, "--base_model", tiny_model, "--concept", "golf ball", "--concept_type", "object"),
        *("--metrics", "classifier", "--classifier_model", tiny_classifier, "--num_images", "2"),
        *("--num_inference_steps", "2", "--resolution", "16", "--output_dir", str(output)),
        *("--attack_images", "2", "--attack_steps", "2", "--attack_relearn_steps", "2", "--attack_relearn_every", "1"),
        *extra,
    ]


def test_the_command_runs_the_attacks_into_metrics_json_and_md(tiny_model, tiny_classifier, tmp_path):
    paraphrase_file = tmp_path / "paraphrases.txt"
    paraphrase_file.write_text("a round white golf ball\n")
    output = tmp_path / "evaluation"
    args = evaluate_args(
        _classifier_arguments(
            tiny_model, tiny_classifier, output, "--attacks", "all", "--paraphrase_prompts", str(paraphrase_file)
        )
    )
    evaluate_main(args)
    results = json.loads((output / "metrics.json").read_text())
    assert list(results["attacks"]["attacks"]) == ["paraphrase", "inversion", "embedding", "relearn"]
    assert "a round white golf ball" in results["attacks"]["attacks"]["paraphrase"]["per_prompt"]
    assert "golf ball" in results["attacks"]["detector"]
    markdown = (output / "metrics.md").read_text()
    assert "## Attacks" in markdown and "| relearn: fine-tuning on concept images |" in markdown
    assert "Not run" not in markdown
    assert "![relearn: attack | control](attacks/grid_relearn.png)" in markdown
    assert (output / "attacks" / "grid_relearn.png").is_file()


def test_a_subset_of_attacks_says_which_were_not_run(tiny_model, tiny_classifier, tmp_path):
    output = tmp_path / "evaluation"
    evaluate_main(evaluate_args(_classifier_arguments(tiny_model, tiny_classifier, output, "--attacks", "paraphrase")))
    markdown = (output / "metrics.md").read_text()
    assert "Not run: inversion, embedding, relearn" in markdown


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--attacks", "invert"], "--attacks: unknown attack 'invert'"),
        (["--attacks", "all", "--metrics", "clip_score"], "add nudenet, classifier or clip_accuracy to --metrics"),
        (["--attacks", "all", "--mixed_precision", "bf16"], "drop --mixed_precision"),
        (["--attacks", "all", "--attack_steps", "0"], "--attack_steps must be a positive integer"),
        (["--attacks", "all", "--attack_images_dir", "missing"], "--attack_images_dir missing is not a folder"),
        (["--attacks", "all", "--attack_learning_rate", "inf"], "must be a positive finite number, got inf"),
        (["--attacks", "all,relearn"], "all names every attack by itself"),
        (["--paraphrase_prompts", "a golf ball"], "--paraphrase_prompts is for the attacks: add --attacks"),
    ],
)
def test_bad_attack_arguments_exit_with_one_line(extra, message, tiny_model, tiny_classifier, tmp_path, capsys):
    arguments = _classifier_arguments(tiny_model, tiny_classifier, tmp_path / "out", *extra)
    if "--metrics" in extra:
        first = arguments.index("--metrics")
        del arguments[first : first + 2]
    with pytest.raises(SystemExit):
        evaluate_args(arguments)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_attack_images_can_be_the_users_own(tiny_model, tiny_classifier, tmp_path):
    concept = write_image_folder(tmp_path / "golf", ["a photo of a golf ball"] * 3)
    control = write_image_folder(tmp_path / "other", ["a photo of a church"] * 3, seed=1)
    output = tmp_path / "evaluation"
    extra = ["--attacks", "inversion", "--attack_images_dir", concept, "--attack_control_images_dir", control]
    extra += ["--attack_images", "5"]  # more than the folder holds: the record says how many there were
    evaluate_main(evaluate_args(_classifier_arguments(tiny_model, tiny_classifier, output, *extra)))
    results = json.loads((output / "attacks" / "attacks.json").read_text())
    assert results["attacks"]["inversion"]["budget"]["images"] == 3


def test_an_attack_image_folder_it_cannot_read_fails_before_any_model_loads(
    tiny_model, tiny_classifier, tmp_path, capsys
):
    (tmp_path / "empty").mkdir()
    extra = ["--attacks", "inversion", "--attack_images_dir", str(tmp_path / "empty")]
    with pytest.raises(SystemExit):
        evaluate_args(_classifier_arguments(tiny_model, tiny_classifier, tmp_path / "out", *extra))
    assert "--attack_images_dir" in capsys.readouterr().err and not (tmp_path / "out").exists()


def _train(model, output, *extra):
    main(parse_args(tiny_run_args(model, output, *extra)))


def test_training_with_evaluation_attacks_puts_the_attack_table_into_the_card(tiny_model, tiny_classifier, tmp_path):
    output = tmp_path / "run"
    _train(
        tiny_model,
        output,
        *("--concept", "golf ball", "--concept_type", "object", "--max_train_steps", "1", "--use_lora"),
        *("--evaluate", "--evaluation_metrics", "classifier", "--evaluation_classifier_model", tiny_classifier),
        *("--evaluation_num_images", "1", "--evaluation_attacks", "paraphrase,relearn"),
    )
    card = (output / "README.md").read_text()
    assert "### Attacks" in card and "| relearn: fine-tuning on concept images |" in card
    assert "Not run: inversion, embedding" in card
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card)
    assert "evaluation/attacks/grid_relearn.png" in links
    assert all((output / link).is_file() for link in links), links
    assert (output / "evaluation" / "attacks" / "attacks.json").is_file()


def test_adversarial_erasure_checkpoints_its_word_and_resumes_exactly(tiny_model, tmp_path):
    output = tmp_path / "adversarial"
    extra = [
        *("--concept", "van gogh", "--use_lora", "--max_train_steps", "4", "--checkpointing_steps", "2"),
        *("--adversarial_refresh_steps", "3", "--adversarial_steps", "2"),
    ]
    _train(tiny_model, output, *extra)
    uninterrupted = load_file(str(output / "pytorch_lora_weights.safetensors"))
    manifest = json.loads((output / "checkpoint-2" / "erasediff_checkpoint.json").read_text())
    word = manifest["loop_state"]["adversarial_word"]
    assert len(word) == 1 and len(word[0]) == 1 and len(word[0][0]) == 16  # one encoder, one word, 16 dims
    assert (
        "| adversarial erasure | the adversarial word retrained every 3 steps (2 Adam steps at 0.005) |"
        in (output / "README.md").read_text()
    )

    shutil.rmtree(output / "checkpoint-4")
    os.remove(output / "pytorch_lora_weights.safetensors")
    _train(tiny_model, output, *extra, "--resume_from_checkpoint", "latest")
    resumed = load_file(str(output / "pytorch_lora_weights.safetensors"))
    for key in resumed:
        torch.testing.assert_close(resumed[key], uninterrupted[key], rtol=0, atol=1e-6)

    _train(tiny_model, tmp_path / "plain", *extra[:-4])
    plain = load_file(str(tmp_path / "plain" / "pytorch_lora_weights.safetensors"))
    assert any(not torch.equal(plain[k], uninterrupted[k]) for k in plain)  # the word changed the training


def test_training_attacks_refuse_mixed_precision(tiny_model, tmp_path, capsys):
    extra = ["--concept", "cat", "--evaluate", "--evaluation_attacks", "all", "--mixed_precision", "bf16"]
    with pytest.raises(SystemExit):
        parse_args(tiny_run_args(tiny_model, tmp_path / "out", *extra))
    assert "--evaluation_attacks optimise in float32" in capsys.readouterr().err


def test_adversarial_erasure_needs_a_concept(tiny_model, tmp_path, capsys):
    arguments = tiny_run_args(
        tiny_model, tmp_path / "out", "--forget_prompts", "a cat", "--adversarial_refresh_steps", "5"
    )
    with pytest.raises(SystemExit):
        parse_args(arguments)
    assert "--adversarial_refresh_steps needs --concept" in capsys.readouterr().err


def test_the_relearned_forget_gradient_is_taken_after_sign_steps_and_restores_the_parameters():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(3))
    data = torch.randn(3)
    start = weight.detach().clone()

    def relearn_loss():
        return ((weight - data) ** 2).sum()

    def forget_value():
        return (weight**3).sum()

    gradients = relearned_forget_gradient([weight], relearn_loss, forget_value, steps=2, step_size=0.1)
    assert torch.equal(weight.detach(), start) and weight.grad is None
    relearned = start.clone()
    for _ in range(2):
        relearned -= 0.1 * torch.sign(2 * (relearned - data))
    torch.testing.assert_close(gradients[0], 3 * relearned**2)


def test_relearning_resistance_changes_the_training_and_is_refused_without_steps(tiny_model, tmp_path, capsys):
    common = ("--concept", "van gogh", "--use_lora", "--max_train_steps", "2", "--lambda_mode", "fixed")
    _train(tiny_model, tmp_path / "plain", *common)
    _train(tiny_model, tmp_path / "resistant", *common, "--relearn_resistance_steps", "2")
    plain = load_file(str(tmp_path / "plain" / "pytorch_lora_weights.safetensors"))
    resistant = load_file(str(tmp_path / "resistant" / "pytorch_lora_weights.safetensors"))
    assert any(not torch.equal(plain[k], resistant[k]) for k in plain)
    with pytest.raises(SystemExit):
        parse_args(tiny_run_args(tiny_model, tmp_path / "bad", "--relearn_resistance_step_size", "0"))
    assert "--relearn_resistance_step_size must be positive, got 0.0" in capsys.readouterr().err


def test_the_attacks_run_on_sdxl_with_both_text_encoders(tiny_sdxl_model, tiny_classifier):
    from diffusers import StableDiffusionXLPipeline

    from pipelines.evaluation.attacks.detector import detector_for
    from pipelines.evaluation.settings import EvaluationSettings

    evaluation = EvaluationSettings.for_concepts(
        ["golf ball"],
        "object",
        metrics=["classifier"],
        classifier_model=tiny_classifier,
        num_images=1,
        num_inference_steps=2,
        resolution=32,
        batch_size=4,
    )
    settings = AttackSettings(images=2, steps=2, batch_size=2, embedding_tokens=1, relearn_steps=1, relearn_every=1)
    pipelines = [StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_model) for _ in range(2)]
    results = run_attack_suite(*pipelines, evaluation, settings, detector_for(evaluation, "cpu"))
    assert list(results["attacks"]) == ["paraphrase", "inversion", "embedding", "relearn"]
    norms = results["attacks"]["inversion"]["tokens"]["norms"]
    assert len(norms) == 2  # the word was learned in both text encoders
