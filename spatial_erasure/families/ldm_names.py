"""diffusers UNet module names in the original (LDM / SGM) layout, the names kohya-ss and
AUTOMATIC1111 use for SDXL LoRAs:

    ldm_name("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", unet.config)
        -> "input_blocks.4.1.transformer_blocks.0.attn2.to_k"
    ldm_name("add_embedding.linear_1", unet.config) -> "label_emb.0.0"

The LDM UNet numbers its blocks straight through: input block 0 is conv_in, then each down block's
`layers_per_block` layers (a resnet, and its attention as sub-module 1) and its downsampler (`op`);
the middle block is resnet, attention, resnet; each up block has `layers_per_block + 1` layers
(resnet 0, attention 1, the upsampler after them). Inside a resnet, diffusers' norm1 / conv1 /
time_emb_proj / norm2 / conv2 / conv_shortcut are in_layers.0 / in_layers.2 / emb_layers.1 /
out_layers.0 / out_layers.3 / skip_connection. Attention blocks keep their inner names.
"""
import re

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
          "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
TOP = {"conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
       "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
       "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def _resnet(rest):
    head, _, tail = rest.partition(".")
    return RESNET.get(head, head) + (f".{tail}" if tail else "")


def ldm_name(module, config):
    """The LDM name of diffusers UNet module `module` (a parameter's name less .weight/.bias);
    `config` is the UNet's config (layers_per_block, up_block_types). ValueError for a name outside
    the layout."""
    if module in TOP:
        return TOP[module]
    n = config["layers_per_block"]
    n = n if isinstance(n, int) else n[0]
    m = re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)", module)
    if m:
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        if kind == "downsamplers":
            return f"input_blocks.{(b + 1) * (n + 1)}.0." + rest.replace("conv", "op", 1)
        return f"input_blocks.{b * (n + 1) + j + 1}." + ("0." + _resnet(rest) if kind == "resnets" else f"1.{rest}")
    m = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", module)
    if m:
        kind, j, rest = m[1], int(m[2]), m[3]
        return f"middle_block.{2 * j}.{_resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)", module)
    if m:
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        if kind == "upsamplers":
            attention = "CrossAttn" in config["up_block_types"][b]
            return f"output_blocks.{b * (n + 1) + n}.{2 if attention else 1}.{rest}"
        return f"output_blocks.{b * (n + 1) + j}." + ("0." + _resnet(rest) if kind == "resnets" else f"1.{rest}")
    raise ValueError(f"{module} has no place in the LDM UNet layout")
