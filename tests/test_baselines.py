"""The digits benchmark's baselines, ESD and UCE (benchmarks/digits/esd.py, uce.py), on the committed digits
model: each changes what its paper says it changes, and nothing else."""

from __future__ import annotations

import pytest
import torch

from benchmarks.digits.data import prompt_for
from benchmarks.digits.esd import erase_with_esd
from benchmarks.digits.measure import EVAL_GUIDANCE, load_pipeline
from benchmarks.digits.train_base import DEFAULT_MODEL_DIR
from benchmarks.digits.uce import TARGET_PROMPT, erase_with_uce, first_differing_position, token_vectors
from pipelines.trainable import selected_by_train_method


@pytest.mark.parametrize("parameters", ["xattn", "noxattn"])
def test_esd_trains_only_the_part_its_variant_names(parameters):
    pipeline = load_pipeline(DEFAULT_MODEL_DIR)
    before = {name: p.detach().clone() for name, p in pipeline.unet.named_parameters()}
    erase_with_esd(pipeline, prompt_for(3), parameters, seed=0, sampling_guidance=EVAL_GUIDANCE, iterations=3)
    changed = {name for name, p in pipeline.unet.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(selected_by_train_method(name, parameters) for name in changed)
    if parameters == "xattn":
        assert all("attn2" in name for name in changed)


def test_uce_maps_the_erased_words_to_the_target_and_keeps_the_preserved_prompts():
    pipeline = load_pipeline(DEFAULT_MODEL_DIR)
    erased_prompt, preserved = prompt_for(3), [prompt_for(d) for d in range(10) if d != 3]
    start = first_differing_position(pipeline, erased_prompt, preserved)
    assert pipeline.tokenizer.convert_ids_to_tokens(pipeline.tokenizer(erased_prompt).input_ids[start]).startswith(
        "three"
    )
    erased = token_vectors(pipeline, erased_prompt)[start:]
    target = token_vectors(pipeline, TARGET_PROMPT)[start:]
    kept = torch.cat([token_vectors(pipeline, p) for p in preserved])
    old = {n: m.weight.detach().double().clone() for n, m in pipeline.unet.named_modules() if n.endswith("attn2.to_v")}
    erase_with_uce(pipeline, erased_prompt, preserved)
    for name, module in pipeline.unet.named_modules():
        if name not in old:
            continue
        new, before = module.weight.detach().double(), old[name]
        moved = (erased @ new.T - target @ before.T).norm() / (erased @ before.T - target @ before.T).norm()
        drift = (kept @ new.T - kept @ before.T).norm() / (kept @ before.T).norm()
        assert moved < 0.2 and drift < 0.05, (name, float(moved), float(drift))
