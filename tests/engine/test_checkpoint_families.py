"""Files of other model families, and parts of models, that painters pass as "the model": each is
named for what it is, with what to do instead, by sine edit's instant check (`check_model`, the
installer's `file_problem`), doctor and the loader. Real safetensors files; the keys are those the
families' published files carry (shapes shrunk: nothing is loaded before the refusal)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from sine.checkpoint_contents import file_problem
from sine.errors import BadModel
from sine.models import describe_model, load_base_model
from sine.preflight import check_model

_UNET = "model.diffusion_model."
_FILES = {
    "clip_l.safetensors": ("a text encoder alone", ["text_model.embeddings.token_embedding.weight",
                                                   "text_model.encoder.layers.0.self_attn.q_proj.weight",
                                                   "text_model.final_layer_norm.weight"]),
    "clip_g.safetensors": ("a text encoder alone", ["transformer.resblocks.0.attn.in_proj_weight", "ln_final.weight",
                                                   "token_embedding.weight", "text_projection"]),
    "t5xxl_fp16.safetensors": ("a text encoder alone", ["shared.weight", "encoder.final_layer_norm.weight",
                                                       "encoder.block.0.layer.0.SelfAttention.q.weight"]),
    "t5_encoder_only.safetensors": ("a text encoder alone", ["encoder.block.0.layer.0.SelfAttention.q.weight",
                                                            "encoder.block.0.layer.1.DenseReluDense.wi_0.weight",
                                                            "encoder.final_layer_norm.weight"]),
    "clip_vision_h.safetensors": ("an image encoder", ["vision_model.encoder.layers.0.self_attn.q_proj.weight",
                                                      "vision_model.post_layernorm.weight", "visual_projection.weight"]),
    "stable_cascade_stage_c.safetensors": ("a Stable Cascade", ["clip_txt_mapper.weight", "clip_txt_pooled_mapper.weight",
                                                                "down_blocks.0.0.channelwise.0.weight", "clf.1.weight"]),
    "stable_cascade_stage_b.safetensors": ("a Stable Cascade", ["effnet_mapper.0.weight", "pixels_mapper.0.weight",
                                                                "down_blocks.0.0.channelwise.0.weight"]),
    "kandinsky-2-2-decoder.safetensors": ("a Kandinsky", ["conv_in.weight", "down_blocks.0.resnets.0.conv1.weight",
                                                          "encoder_hid_proj.image_embeds.weight"]),
    "mm_sd_v15_v2.safetensors": ("an AnimateDiff motion module", [
        "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight",
        "down_blocks.0.motion_modules.0.temporal_transformer.norm.weight"]),
    "svd_xt.safetensors": ("a Stable Video Diffusion", [
        _UNET + "input_blocks.0.0.weight", _UNET + "input_blocks.1.0.time_stack.in_layers.0.weight",
        _UNET + "input_blocks.1.1.time_mixer.mix_factor", "conditioner.embedders.0.open_clip.model.visual.conv1.weight",
        "first_stage_model.decoder.conv_in.weight"]),
    "PixArt-Sigma-XL-2-1024-MS.safetensors": ("a PixArt", ["x_embedder.proj.weight", "t_embedder.mlp.0.weight",
                                                          "y_embedder.y_proj.fc1.weight", "blocks.0.attn.qkv.weight"]),
    "pixart_diffusers.safetensors": ("a PixArt", ["pos_embed.proj.weight", "adaln_single.linear.weight",
                                                  "caption_projection.linear_1.weight",
                                                  "transformer_blocks.0.attn1.to_q.weight"]),
    "flux1-dev-diffusers.safetensors": ("a Flux model", ["x_embedder.weight", "context_embedder.weight",
                                                        "time_text_embed.timestep_embedder.linear_1.weight",
                                                        "single_transformer_blocks.0.attn.to_q.weight"]),
    "sd3.5_diffusers.safetensors": ("a Stable Diffusion 3 model", ["pos_embed.proj.weight", "context_embedder.weight",
                                                                   "transformer_blocks.0.attn.add_k_proj.weight"]),
    "hunyuan_dit.safetensors": ("a Hunyuan-DiT", ["x_embedder.proj.weight", "mlp_t5.0.weight",
                                                  "text_embedding_padding", "blocks.0.attn1.q_proj.weight"]),
    "Kolors-unet-fp16.safetensors": ("a Kolors model.*ChatGLM", [  # its unet/ weights, as ComfyUI users get it
        "conv_in.weight", "down_blocks.0.resnets.0.conv1.weight", "add_embedding.linear_1.weight",
        "encoder_hid_proj.weight", "encoder_hid_proj.bias"]),
    "kolors_ldm.safetensors": ("a Kolors model.*ChatGLM", [  # the same saved whole in the original layout
        _UNET + "input_blocks.0.0.weight", _UNET + "label_emb.0.0.weight", _UNET + "encoder_hid_proj.weight",
        "first_stage_model.decoder.conv_in.weight", "text_encoders.chatglm3.transformer.embedding.weight"]),
    "playground-v2.5-1024px-aesthetic.safetensors": ("a Playground v2.5 model.*EDM.*use SDXL base", [
        _UNET + "input_blocks.0.0.weight", "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
        "conditioner.embedders.1.model.ln_final.weight", "first_stage_model.decoder.conv_in.weight",
        "edm_mean", "edm_std"]),
}


@pytest.mark.parametrize("name", sorted(_FILES))
def test_files_of_other_families_and_parts_are_named_by_every_entry_point(tmp_path, name):
    """They were "a UNet alone" (Stable Cascade, Kandinsky, AnimateDiff), "a VAE alone" (a T5 encoder),
    "an InstructPix2Pix model" (SVD), "not a Stable Diffusion checkpoint, its keys start with…" (text
    encoders, PixArt, diffusers-format Flux/SD3), or passed the instant check (Playground v2.5)."""
    what, keys = _FILES[name]
    path = tmp_path / name
    save_file({k: torch.zeros(2, 2) for k in keys}, str(path))
    assert file_problem(path) is not None and f"is {what.split('.*')[0]}" in file_problem(path)
    for call in (check_model, describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match=f"{name} is {what}"):
            call(str(path))


def test_a_lora_says_how_to_edit_with_it(tmp_path):
    """A LoRA was refused with "pass the checkpoint itself" only; a painter who wants its look is told
    to merge it into its base checkpoint and pass the merged file."""
    path = tmp_path / "watercolor_style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4)}, str(path))
    for call in (check_model, describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match=r"is a LoRA .*merge it into the checkpoint it was trained for.*pass the "
                                           r"merged file"):
            call(str(path))


def test_a_kolors_folder_is_named_with_or_without_its_model_index(tmp_path):
    """A Kolors diffusers folder (SDXL-shaped UNet whose encoder_hid_proj takes ChatGLM's 4096-wide states)
    is named by its model_index.json; without one (components copied alone) it was "a UNet of another
    pipeline, e.g. DeepFloyd IF, Kandinsky, unCLIP or the x4 upscaler"; now Kolors, with what to use."""
    import json

    from sine.tiny_models import make_tiny_sdxl

    folder = make_tiny_sdxl(tmp_path / "Kolors")
    config = json.loads((folder / "unet" / "config.json").read_text())
    config.update(encoder_hid_dim=64, encoder_hid_dim_type="text_proj")
    (folder / "unet" / "config.json").write_text(json.dumps(config))
    (folder / "text_encoder" / "config.json").write_text(json.dumps({"architectures": ["ChatGLMModel"],
                                                                     "model_type": "chatglm", "hidden_size": 64}))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "KolorsPipeline",
                                                         "text_encoder": ["kolors", "ChatGLMModel"],
                                                         "unet": ["diffusers", "UNet2DConditionModel"],
                                                         "vae": ["diffusers", "AutoencoderKL"]}))
    for call in (describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match="KolorsPipeline model .text encoder: ChatGLMModel, not CLIP"):
            call(str(folder))
    (folder / "model_index.json").unlink()
    for call in (describe_model, lambda p: load_base_model(p, device="cpu")):
        with pytest.raises(BadModel, match="is a Kolors model .* ChatGLM text encoder.*use SDXL base"):
            call(str(folder))
