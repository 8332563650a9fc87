"""What SD3 and FLUX share: a flow-matching transformer whose joint-attention blocks run a text stream beside
the image stream (MMDiT), and the names ``--train_method`` selects in it (docs/method.md, "What is trained").

In a joint block the image tokens (``to_q``/``to_k``/``to_v``/``to_out.0``) and the text tokens
(``add_q_proj``/``add_k_proj``/``add_v_proj``/``to_add_out``) attend over both sequences together. The text
stream's projections are the only weights that read or write text tokens inside attention, which makes them
the nearest counterpart of a UNet's cross-attention: the image queries find the concept through the text keys
and values they produce.
"""

from __future__ import annotations

from .base import ModelFamily, ModuleParts, piece

TEXT_STREAM_ATTENTION = piece("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "norm_added_q", "norm_added_k")
# The image stream's projections in the joint blocks; SD3.5's dual-attention blocks add a second image
# self-attention, ``attn2`` (not cross-attention, unlike a UNet's).
IMAGE_STREAM_ATTENTION = r"^transformer_blocks\.\d+\.attn2?\.(to_q|to_k|to_v|to_out|norm_q|norm_k)(\.|$)"
TIME_AND_OUTPUT = r"^(time_text_embed|norm_out|proj_out)(\.|$)"


def joint_attention_parts(*more_cross_attention: str) -> ModuleParts:
    """The joint-attention parts, with ``more_cross_attention`` patterns counted as where text meets image."""
    return ModuleParts(
        cross_attention=(TEXT_STREAM_ATTENTION, *more_cross_attention),
        self_attention=(IMAGE_STREAM_ATTENTION,),
        time_and_output=(TIME_AND_OUTPUT,),
    )


class FlowMatchingTransformer(ModelFamily):
    """A transformer trained by flow matching (``FlowMatchEulerDiscreteScheduler``)."""

    denoiser = "transformer"
    flow_matching = True
    resolution_multiple = 8
    default_generation_scheduler = "model"  # Euler on the model's own (shifted) sigmas
