"""The ready `accelerate config` files in examples/accelerate/: each loads with accelerate's own loader, and
`accelerate launch`'s own handling turns it into the engine its header promises, as the script will see it.

The launcher functions used here are accelerate's private ones (`_validate_launch_command`); requirements.txt
pins accelerate, so a change there shows up as a failure here rather than on someone's cluster.
"""

from __future__ import annotations

import glob
import os
import shlex

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.utils import DistributedType

from benchmarks.model_shapes import TINY_UNET
from pipelines.engines import EngineSettings, engine_problem

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "accelerate")
CONFIG_PATHS = sorted(glob.glob(os.path.join(CONFIG_DIR, "*.yaml")))
CONFIG_NAMES = [os.path.basename(path) for path in CONFIG_PATHS]


def config_path(name: str) -> str:
    return os.path.join(CONFIG_DIR, name)


def launched_environment(name: str, monkeypatch) -> dict[str, str]:
    """The environment `accelerate launch --config_file examples/accelerate/NAME train_erasediff.py` gives
    each process (computed, nothing is started)."""
    from accelerate.commands import launch
    from accelerate.utils import launch as launch_utils

    monkeypatch.setattr(launch_utils, "is_port_in_use", lambda port: False)  # a busy 29500 changes nothing here
    args = launch.launch_command_parser().parse_args(["--config_file", config_path(name), "train_erasediff.py"])
    args, _, _ = launch._validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = "zero_stage"  # what launch_command sets; unused by the plugin
        _, environment = launch_utils.prepare_deepspeed_cmd_env(args)
    else:
        environment = launch_utils.prepare_multi_gpu_env(args)
    return {key: value for key, value in environment.items() if key.startswith(("ACCELERATE_", "FSDP_"))}


def header_launch_line(name: str) -> list[str]:
    """The `accelerate launch` command in the file's comment header, with its continuation lines, as argv."""
    with open(config_path(name), encoding="utf-8") as handle:
        header = [line[1:].strip() for line in handle.read().split("\ncompute_environment:")[0].splitlines()]
    start = next(i for i, line in enumerate(header) if line.startswith("accelerate launch"))
    command = header[start]
    while command.endswith("\\"):
        start += 1
        command = command[:-1] + header[start]
    return shlex.split(command)


def launched_engine(name: str, monkeypatch) -> EngineSettings:
    """The engine the script reads from accelerate's state in a process started with this file."""
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin

    config = load_config_from_file(config_path(name))
    environment = launched_environment(name, monkeypatch)
    if config.distributed_type == DistributedType.FSDP:
        plugin = plugin_in(environment, monkeypatch, FullyShardedDataParallelPlugin)
        return EngineSettings.from_accelerate(config.distributed_type, fsdp_plugin=plugin)
    if config.distributed_type == DistributedType.DEEPSPEED:
        plugin = plugin_in(environment, monkeypatch, DeepSpeedPlugin)
        return EngineSettings.from_accelerate(config.distributed_type, deepspeed_plugin=plugin)
    return EngineSettings.from_accelerate(config.distributed_type)


def plugin_in(environment: dict[str, str], monkeypatch, plugin_class):
    """The plugin a launched process builds from its environment."""
    for key in list(os.environ):
        if key.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return plugin_class()


def test_there_is_one_config_per_engine():
    assert CONFIG_NAMES == [
        "ddp.yaml",
        "deepspeed_zero2.yaml",
        "deepspeed_zero3.yaml",
        "fsdp.yaml",
        "multi_node.yaml",
    ]


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_each_config_loads_with_accelerates_loader_in_bf16(name):
    config = load_config_from_file(config_path(name))
    assert isinstance(config, ClusterConfig)
    assert config.mixed_precision == "bf16"
    assert config.use_cpu is False


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_each_config_header_gives_its_launch_line(name):
    with open(config_path(name), encoding="utf-8") as handle:
        header = handle.read().split("\ncompute_environment:")[0]
    assert header.startswith("# ")
    assert f"accelerate launch --config_file examples/accelerate/{name} train_erasediff.py" in header


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_each_config_header_launch_line_is_one_the_script_accepts_under_that_engine(name, monkeypatch):
    from train_erasediff import parse_args, run_shape

    argv = header_launch_line(name)
    assert argv[:4] == ["accelerate", "launch", "--config_file", f"examples/accelerate/{name}"]
    args = parse_args(argv[argv.index("train_erasediff.py") + 1 :])
    num_processes = load_config_from_file(config_path(name)).num_processes
    engine = launched_engine(name, monkeypatch)
    assert engine_problem(engine, run_shape(args, num_processes), args.allow_unverified_engine) is None


@pytest.mark.parametrize("name", ["ddp.yaml", "fsdp.yaml", "deepspeed_zero2.yaml", "deepspeed_zero3.yaml"])
def test_single_machine_configs_run_two_processes_on_one_machine(name):
    config = load_config_from_file(config_path(name))
    assert (config.num_machines, config.machine_rank, config.num_processes) == (1, 0, 2)


def test_ddp_config_is_plain_ddp(monkeypatch):
    config = load_config_from_file(config_path("ddp.yaml"))
    assert config.distributed_type == DistributedType.MULTI_GPU
    assert config.fsdp_config == {} and config.deepspeed_config == {}
    environment = launched_environment("ddp.yaml", monkeypatch)
    assert "ACCELERATE_USE_FSDP" not in environment and "ACCELERATE_USE_DEEPSPEED" not in environment
    assert environment["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert EngineSettings.from_accelerate(config.distributed_type).kind == "ddp"


def test_fsdp_config_is_fsdp2_full_shard_with_sharded_checkpoints(monkeypatch):
    config = load_config_from_file(config_path("fsdp.yaml"))
    assert config.distributed_type == DistributedType.FSDP
    assert config.fsdp_config["fsdp_version"] == 2
    assert config.fsdp_config["fsdp_reshard_after_forward"] is True  # FSDP2's FULL_SHARD; it takes a bool
    assert config.fsdp_config["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    assert config.fsdp_config["fsdp_cpu_ram_efficient_loading"] is False

    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import CPUOffloadPolicy, StateDictType
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    environment = launched_environment("fsdp.yaml", monkeypatch)
    assert environment["ACCELERATE_USE_FSDP"] == "true"
    plugin = plugin_in(environment, monkeypatch, FullyShardedDataParallelPlugin)
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True
    assert plugin.state_dict_type == StateDictType.SHARDED_STATE_DICT
    assert plugin.cpu_ram_efficient_loading is False
    assert not isinstance(plugin.cpu_offload, CPUOffloadPolicy)  # FSDP2's "no offload" is a plain OffloadPolicy
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy
    assert plugin.transformer_cls_names_to_wrap == ["BasicTransformerBlock", "ResnetBlock2D"]

    engine = EngineSettings.from_accelerate(config.distributed_type, fsdp_plugin=plugin)
    assert (engine.kind, engine.fsdp_version) == ("fsdp", 2)


def test_fsdp_wrap_classes_are_blocks_of_a_stable_diffusion_unet(monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**TINY_UNET)  # the SD-shaped tiny UNet of the step benchmark
    plugin = plugin_in(launched_environment("fsdp.yaml", monkeypatch), monkeypatch, FullyShardedDataParallelPlugin)
    is_unit = fsdp2_prepare_auto_wrap_policy(plugin, unet)  # accelerate's own test of each module
    units = {type(module).__name__ for module in unet.modules() if is_unit(module)}
    assert units == {"BasicTransformerBlock", "ResnetBlock2D"}


@pytest.mark.parametrize(("name", "stage"), [("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)])
def test_deepspeed_configs_set_the_stage_and_leave_accumulation_and_clipping_to_the_script(name, stage, monkeypatch):
    config = load_config_from_file(config_path(name))
    assert config.distributed_type == DistributedType.DEEPSPEED
    assert config.deepspeed_config["zero_stage"] == stage
    assert config.deepspeed_config["offload_optimizer_device"] == "none"
    assert config.deepspeed_config["offload_param_device"] == "none"
    assert config.deepspeed_config["zero3_init_flag"] is False  # else ZeRO-3 partitions the frozen models too
    assert "gradient_accumulation_steps" not in config.deepspeed_config
    assert "gradient_clipping" not in config.deepspeed_config

    from accelerate.utils import DeepSpeedPlugin

    environment = launched_environment(name, monkeypatch)
    assert environment["ACCELERATE_USE_DEEPSPEED"] == "true"
    # Set, this variable would override Accelerator(gradient_accumulation_steps=...), the script's flag.
    assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" not in environment
    plugin = plugin_in(environment, monkeypatch, DeepSpeedPlugin)  # DeepSpeed itself need not be installed
    deepspeed_config = plugin.deepspeed_config
    assert deepspeed_config["zero_optimization"]["stage"] == stage
    assert deepspeed_config["gradient_accumulation_steps"] == "auto"  # filled from the Accelerator at prepare
    assert deepspeed_config["gradient_clipping"] == "auto"  # the script writes --max_grad_norm into it
    assert deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is (stage == 3)
    assert plugin.zero3_init_flag is False

    engine = EngineSettings.from_accelerate(config.distributed_type, deepspeed_plugin=plugin)
    assert (engine.kind, engine.zero_stage, engine.deepspeed_gradient_clipping) == ("deepspeed", stage, "auto")


def test_multi_node_config_is_ddp_over_two_machines_with_a_placeholder_address(monkeypatch):
    config = load_config_from_file(config_path("multi_node.yaml"))
    assert config.distributed_type == DistributedType.MULTI_GPU
    assert (config.num_machines, config.machine_rank, config.num_processes) == (2, 0, 16)
    assert (config.main_process_ip, config.main_process_port) == ("10.0.0.1", 29500)
    with open(config_path("multi_node.yaml"), encoding="utf-8") as handle:
        text = handle.read()
    assert "machine_rank 1" in text or "machine_rank: 1" in text  # the header says what the second node changes

    from accelerate.commands import launch
    from accelerate.utils import launch as launch_utils

    monkeypatch.setattr(launch_utils, "is_port_in_use", lambda port: False)
    args = launch.launch_command_parser().parse_args(
        ["--config_file", config_path("multi_node.yaml"), "--machine_rank", "1", "train_erasediff.py"]
    )
    args, _, _ = launch._validate_launch_command(args)
    launch_utils.prepare_multi_gpu_env(args)
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "8", 1)  # the flag overrides the file
    assert args.rdzv_endpoint == "10.0.0.1:29500"  # torchrun's static rendezvous at the first machine
