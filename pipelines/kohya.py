"""The LoRA adapter in the kohya layout that AUTOMATIC1111 and ComfyUI read (``lora_unet_…`` keys with
``lora_down``/``lora_up`` weights and one ``.alpha`` per module), written beside diffusers' file.

Key names follow kohya-ss/sd-scripts (``networks/lora.py``: ``lora_unet_`` + the module name with dots as
underscores):
- SD 1.x/2.x: the diffusers module names, e.g. ``lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q``;
- SDXL: kohya's SDXL scripts use the original (SGM) UNet names, e.g.
  ``lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q``. The block mapping is the inverse of the
  one diffusers applies when it loads such files (``_maybe_map_sgm_blocks_to_diffusers`` in
  diffusers/loaders/lora_conversion_utils.py; ComfyUI's ``comfy.utils.unet_to_diffusers`` is the same map):
  ``down_blocks.b.attentions.j`` → ``input_blocks.{b·(L+1)+j+1}.1``, ``mid_block.attentions.0`` →
  ``middle_block.1``, ``up_blocks.b.attentions.j`` → ``output_blocks.{b·(L+1)+j}.1``, L = layers_per_block.

diffusers' own ``convert_state_dict_to_kohya`` is not used: it writes alpha = rank whatever ``--lora_alpha``
was (so the adapter would load at another strength), expects ``unet.``-prefixed keys and has no SGM names.
"""

from __future__ import annotations

import re

from .families import SDXL

KOHYA_WEIGHTS_FILE = "lora_kohya.safetensors"
SD2_CROSS_ATTENTION_DIM = 1024


def base_model_version(unet, family: str) -> str:
    """kohya's ``ss_base_model_version`` value for the UNet's family."""
    if family == SDXL:
        return "sdxl_base_v1-0"
    return "sd_v2" if unet.config.cross_attention_dim == SD2_CROSS_ATTENTION_DIM else "sd_v1"


def sgm_module_name(name: str, layers_per_block: int) -> str:
    """The SGM (original SDXL) name of a diffusers UNet module inside an attention block; others unchanged."""
    per_block = layers_per_block + 1
    down = re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", name)
    if down:
        block, layer, rest = int(down.group(1)), int(down.group(2)), down.group(3)
        return f"input_blocks.{block * per_block + layer + 1}.1.{rest}"
    mid = re.match(r"mid_block\.attentions\.0\.(.*)", name)
    if mid:
        return f"middle_block.1.{mid.group(1)}"
    up = re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", name)
    if up:
        block, layer, rest = int(up.group(1)), int(up.group(2)), up.group(3)
        return f"output_blocks.{block * per_block + layer}.1.{rest}"
    return name


def kohya_state_dict(unet, family: str) -> dict:
    """The adapter's tensors under kohya's key names, with the true alpha of every module."""
    import torch
    from peft.utils import get_peft_model_state_dict

    config = unet.peft_config["default"]
    layers_per_block = unet.config.layers_per_block
    if not isinstance(layers_per_block, int):
        layers_per_block = layers_per_block[0]
    converted = {}
    for key, tensor in get_peft_model_state_dict(unet).items():
        module, part = key.rsplit(".lora_", 1)  # "<module>.lora_A.weight" → ("<module>", "A.weight")
        if family == SDXL:
            module = sgm_module_name(module, layers_per_block)
        kohya_name = "lora_unet_" + module.replace(".", "_")
        direction = {"A.weight": "lora_down.weight", "B.weight": "lora_up.weight"}[part]
        converted[f"{kohya_name}.{direction}"] = tensor.detach().contiguous()
        if part == "A.weight":  # one alpha per module (add_lora_adapters gives every module the same)
            converted[f"{kohya_name}.alpha"] = torch.tensor(float(config.lora_alpha))
    return converted


def save_kohya_lora(unet, path: str, family: str) -> str:
    """Writes kohya_state_dict to ``path`` with the rank and alpha in the metadata kohya's tools write."""
    from safetensors.torch import save_file

    config = unet.peft_config["default"]
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(config.r),
        "ss_network_alpha": f"{config.lora_alpha:g}",
        "ss_base_model_version": base_model_version(unet, family),
    }
    save_file(kohya_state_dict(unet, family), path, metadata=metadata)
    return path
