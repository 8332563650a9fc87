"""Distributed engines: the guard as a function of accelerate's real distributed types and plugin objects,
the DDP bucket-view check on a real two-process gloo group, and λ's sums over gradient shards."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from accelerate.utils import (
    DeepSpeedPlugin,
    DistributedDataParallelKwargs,
    DistributedType,
    FullyShardedDataParallelPlugin,
)

from pipelines.engines import (
    EngineSettings,
    RunShape,
    check_engine,
    check_prepared_model,
    configure_deepspeed,
    engine_problem,
)
from pipelines.errors import InputError
from pipelines.gradients import ForgetGradientBuffer
from pipelines.objective import bome_lambda, cosine_lambda

FSDP2 = EngineSettings.from_accelerate(DistributedType.FSDP, FullyShardedDataParallelPlugin(fsdp_version=2))
FSDP1 = EngineSettings.from_accelerate(DistributedType.FSDP, FullyShardedDataParallelPlugin(fsdp_version=1))
ZERO2 = EngineSettings.from_accelerate(DistributedType.DEEPSPEED, deepspeed_plugin=DeepSpeedPlugin(zero_stage=2))
ZERO3 = EngineSettings.from_accelerate(DistributedType.DEEPSPEED, deepspeed_plugin=DeepSpeedPlugin(zero_stage=3))
DDP_BUCKET_VIEW = EngineSettings.from_accelerate(
    DistributedType.MULTI_GPU, ddp_kwargs=DistributedDataParallelKwargs(gradient_as_bucket_view=True)
)
DDP = EngineSettings.from_accelerate(DistributedType.MULTI_CPU, ddp_kwargs=DistributedDataParallelKwargs())
SINGLE = EngineSettings.from_accelerate(DistributedType.NO)


def shape(**changes) -> RunShape:
    run = dict(
        lambda_mode="fixed",
        use_lora=True,
        remain_target="teacher",
        inner_steps=0,
        max_grad_norm=1.0,
        validation_steps=None,
        num_processes=2,
    )
    return RunShape(**{**run, **changes})


def test_engine_settings_read_accelerates_plugins():
    assert (FSDP2.kind, FSDP2.fsdp_version, FSDP2.name, FSDP2.shards_parameters) == ("fsdp", 2, "FSDP2", True)
    assert (ZERO2.name, ZERO2.deepspeed_gradient_clipping, ZERO2.shards_parameters) == (
        "DeepSpeed ZeRO-2",
        "auto",
        False,
    )
    assert ZERO3.shards_parameters and ZERO2.clips_itself and not FSDP2.clips_itself
    assert (DDP.kind, DDP.gradient_as_bucket_view, DDP_BUCKET_VIEW.gradient_as_bucket_view) == ("ddp", False, True)
    assert (SINGLE.name, SINGLE.sharded) == ("one process", False)


@pytest.mark.parametrize(
    "engine, run, names",
    [
        (DDP_BUCKET_VIEW, shape(lambda_mode="bome"), "gradient_as_bucket_view"),
        (DDP_BUCKET_VIEW, shape(lambda_mode="cosine"), "gradient_as_bucket_view"),
        (ZERO2, shape(lambda_mode="bome"), "--lambda_mode bome"),
        (ZERO3, shape(lambda_mode="cosine", use_lora=False, remain_target="data"), "--lambda_mode cosine"),
        (FSDP1, shape(lambda_mode="bome"), "fsdp_version: 2"),
        (FSDP2, shape(lambda_mode="bome", gradient_accumulation_steps=2), "--gradient_accumulation_steps 2"),
        (FSDP1, shape(remain_target="teacher"), "fsdp_version: 2"),
        (FSDP2, shape(use_lora=False), "--remain_target teacher"),
        (ZERO3, shape(use_lora=False, remain_target="both"), "--remain_target both"),
        (FSDP2, shape(inner_steps=3), "--inner_steps"),
        (ZERO2, shape(inner_steps=3), "--inner_steps"),
        (ZERO3, shape(validation_steps=10), "--validation_steps"),
        (
            EngineSettings("deepspeed", zero_stage=2, deepspeed_gradient_clipping=0.5),
            shape(max_grad_norm=1.0),
            "gradient_clipping (0.5)",
        ),
        (FSDP2, shape(), "--allow_unverified_engine"),
        (FSDP2, shape(lambda_mode="bome", use_lora=False, remain_target="data"), "--allow_unverified_engine"),
        (ZERO2, shape(use_lora=False), "--allow_unverified_engine"),
    ],
)
def test_every_combination_that_would_run_wrong_is_refused_in_one_line(engine, run, names):
    problem = engine_problem(engine, run)
    assert problem and names in problem and "\n" not in problem
    with pytest.raises(InputError, match="^" + problem[:20]):
        check_engine(engine, run)


@pytest.mark.parametrize(
    "engine, run",
    [
        (SINGLE, shape(lambda_mode="bome", use_lora=False, inner_steps=2, validation_steps=5)),
        (DDP, shape(lambda_mode="cosine", use_lora=False)),
        (DDP_BUCKET_VIEW, shape()),  # one backward: nothing to keep apart
        (ZERO3, shape(validation_steps=10, num_processes=1)),
    ],
)
def test_what_runs_correctly_is_not_refused(engine, run):
    if engine.sharded:
        assert "--allow_unverified_engine" in engine_problem(engine, run)
        assert engine_problem(engine, run, allow_unverified=True) is None
    else:
        assert engine_problem(engine, run) is None


def test_unverified_combinations_run_only_when_asked():
    for engine, run in [
        (FSDP2, shape()),
        (FSDP2, shape(lambda_mode="bome", use_lora=False, remain_target="data")),
        (ZERO2, shape(use_lora=False)),  # ZeRO-2 keeps whole weights: the teacher's swap is fine
        (ZERO3, shape()),
    ]:
        assert engine_problem(engine, run) is not None
        assert engine_problem(engine, run, allow_unverified=True) is None


def test_deepspeed_config_takes_the_scripts_clipping_and_micro_batch():
    plugin = DeepSpeedPlugin(zero_stage=2)
    configure_deepspeed(plugin, 0.7, 16)
    assert plugin.deepspeed_config["gradient_clipping"] == 0.7
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 16
    plugin.deepspeed_config["gradient_clipping"] = 0.3
    configure_deepspeed(plugin, 0.7, 16)
    assert plugin.deepspeed_config["gradient_clipping"] == 0.3  # an explicit value is the user's (the guard compares)


# Two processes on a gloo group ---------------------------------------------------------------------------


def _init(rank: int, world: int, init_file: str) -> None:
    torch.set_num_threads(1)
    # A bounded wait: a collective that never completes fails the test instead of hanging the suite.
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timedelta(seconds=120)
    )


def _full_gradients(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(6, 3), (4,), (2, 2, 2)]
    remain = [torch.randn(s, generator=generator) for s in shapes]
    gap = [torch.randn(s, generator=generator) + 0.3 for s in shapes]
    return remain, gap


def _sharded_lambdas(rank: int, world: int, init_file: str, out_dir: str) -> None:
    """Each process holds its dim-0 chunk of every gradient tensor, as FSDP2 shards them."""
    _init(rank, world, init_file)
    calls = []

    def sum_across(sums: torch.Tensor) -> torch.Tensor:
        calls.append(sums.numel())
        summed = sums.clone()
        dist.all_reduce(summed)
        return summed

    remain, gap = _full_gradients()
    local_remain = [t.tensor_split(world)[rank] for t in remain]
    local_gap = [t.tensor_split(world)[rank] for t in gap]
    result = {
        "bome": float(bome_lambda(local_remain, local_gap, 0.2, sum_across)),
        "cosine": float(cosine_lambda(local_remain, local_gap, 0.4, sum_across)),
        "local_bome": float(bome_lambda(local_remain, local_gap, 0.2)),
        "calls": list(calls),
        # Hybrid sharding: every element on every process (replicated twice) scales the sums alike.
        "replicated_bome": float(bome_lambda(remain, gap, 0.2, sum_across)),
        "replicated_cosine": float(cosine_lambda(remain, gap, 0.4, sum_across)),
    }
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_lambda_over_gradient_shards_equals_lambda_over_the_whole_gradients(tmp_path):
    mp.spawn(_sharded_lambdas, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    remain, gap = _full_gradients()
    expected_bome, expected_cosine = float(bome_lambda(remain, gap, 0.2)), float(cosine_lambda(remain, gap, 0.4))
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["bome"] == pytest.approx(expected_bome, rel=1e-6)
        assert result["cosine"] == pytest.approx(expected_cosine, rel=1e-6)
        assert result["calls"] == [3, 3]  # one all-reduce of three scalars per λ, never a gathered gradient
        assert result["local_bome"] != pytest.approx(expected_bome, rel=1e-3)  # the sums are what makes it right
        assert result["replicated_bome"] == pytest.approx(expected_bome, rel=1e-6)
        assert result["replicated_cosine"] == pytest.approx(expected_cosine, rel=1e-6)


def _batches(rank: int, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1 + rank + 10 * iteration)
    return torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator)


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def _ddp_lambda(rank: int, world: int, init_file: str, out_dir: str, bucket_view: bool) -> None:
    """Two iterations of two backward passes through a real DDP model, kept apart by ForgetGradientBuffer
    (DDP maps .grad onto its buckets once it has rebuilt them after the first iteration)."""
    _init(rank, world, init_file)
    ddp = torch.nn.parallel.DistributedDataParallel(_tiny_model(), gradient_as_bucket_view=bucket_view)
    buffer = ForgetGradientBuffer(list(ddp.parameters()))
    lambdas = []
    for iteration in range(2):
        forget_x, remain_x = _batches(rank, iteration)
        with buffer.collecting_forget():
            (-ddp(forget_x).pow(2).mean()).backward()
        ddp(remain_x).pow(2).mean().backward()
        lambdas.append(float(buffer.apply_lambda("bome", 0.5)))
        ddp.zero_grad(set_to_none=True)
    refused = None
    try:
        check_prepared_model(ddp, adaptive=True)
    except InputError as error:
        refused = str(error)
    torch.save({"lambdas": lambdas, "refused": refused}, os.path.join(out_dir, f"ddp{int(bucket_view)}_{rank}.pt"))
    # DDP's reducer goes before the group it talks through: torn down the other way round, at the function's
    # return, it can wait forever on the gloo thread.
    del ddp, buffer
    dist.barrier()
    dist.destroy_process_group()


def _reference_lambda(world: int, iteration: int) -> float:
    """The same two gradients, averaged over the processes' batches by hand, in one process."""
    model = _tiny_model()
    forget_grads = remain_grads = None
    for rank in range(world):
        forget_x, remain_x = _batches(rank, iteration)
        f = torch.autograd.grad(-model(forget_x).pow(2).mean() / world, list(model.parameters()))
        r = torch.autograd.grad(model(remain_x).pow(2).mean() / world, list(model.parameters()))
        forget_grads = f if forget_grads is None else [a + b for a, b in zip(forget_grads, f)]
        remain_grads = r if remain_grads is None else [a + b for a, b in zip(remain_grads, r)]
    return float(bome_lambda(remain_grads, forget_grads, 0.5))


@pytest.mark.parametrize("bucket_view", [False, True])
def test_ddp_bucket_view_is_refused_because_it_merges_the_two_gradients(tmp_path, bucket_view):
    mp.spawn(_ddp_lambda, args=(2, str(tmp_path / "init"), str(tmp_path), bucket_view), nprocs=2)
    expected = [_reference_lambda(2, iteration) for iteration in range(2)]
    assert min(expected) > 0.01
    for rank in range(2):
        result = torch.load(tmp_path / f"ddp{int(bucket_view)}_{rank}.pt")
        if bucket_view:
            # From the second iteration both gradient sets are views of DDP's bucket: λ collapses to 0.
            assert result["lambdas"][1] == 0.0
            assert "gradient_as_bucket_view=True" in result["refused"]
        else:
            assert result["lambdas"] == pytest.approx(expected, rel=1e-5)
            assert result["refused"] is None
