"""SDXL adaptation memory, measured on the CPU: the peak bytes of live tensor storages (weights included,
each storage counted once) of one SINE LoRA fine-tune step of the SDXL-shaped UNet (random weights, built
from the shipped configs), frozen weights in bf16 and the step under bf16 autocast as on CUDA; with and
without gradient checkpointing; plus the text encoders and the VAE encode, and the `full` recipe's
weights + grads + AdamW states by arithmetic from the measured parameter count.

    OMP_NUM_THREADS=2 python bench/sdxl_memory.py --latents 64 96 128 --out docs/results/cpu/sdxl_memory.json

Each measurement runs in its own process (`--one`), so ru_maxrss (printed for reference) is its own.
No CUDA workspace, allocator caching or fragmentation is counted: real VRAM is higher (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
import weakref
from contextlib import nullcontext
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map_only
from torch.utils.weak import WeakIdKeyDictionary

from sine.finetune import FinetuneSettings
from sine.positional import PositionalHook

GIB = 2**30


class LiveStorages(TorchDispatchMode):
    """Bytes of the live tensor storages: every storage an op returns, counted once until it is freed,
    plus those registered with `track` (weights made before the mode)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen = WeakIdKeyDictionary()
        self.live = 0
        self.peak = 0

    def _free(self, n: int) -> None:
        self.live -= n

    def track(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        if st in self._seen:
            return
        n = st.nbytes()
        self._seen[st] = n
        weakref.finalize(st, self._free, n)
        self.live += n
        self.peak = max(self.peak, self.live)

    def track_module(self, module: torch.nn.Module) -> None:
        for t in (*module.parameters(), *module.buffers()):
            self.track(t)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 - torch's protocol
        out = func(*args, **(kwargs or {}))
        tree_map_only(torch.Tensor, self.track, out)
        return out


def _bf16_on_meta(build) -> torch.nn.Module:  # noqa: ANN001 - a constructor
    """A model built on the meta device in bf16: shapes and dtypes, no storage yet."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("meta"):
            return build()
    finally:
        torch.set_default_dtype(previous)


def _materialize(model: torch.nn.Module, fake: bool) -> torch.nn.Module:
    """Give a meta model CPU storage: random values, or (`fake`, inside FakeTensorMode) fake tensors,
    set parameter by parameter (`Module.to` cannot convert fake parameters)."""
    if not fake:
        model.to_empty(device="cpu")
        torch.manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.02)
        return model
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                module._parameters[name] = torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype),
                                                              requires_grad=p.requires_grad)
        for name, b in module._buffers.items():
            if b is not None:
                module._buffers[name] = torch.zeros(b.shape, dtype=b.dtype)
    return model


def sdxl_unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    from sine.checkpoints import CONFIGS_DIR

    config = UNet2DConditionModel.load_config(CONFIGS_DIR / "sdxl" / "unet")
    return _bf16_on_meta(lambda: UNet2DConditionModel.from_config(config))


def lora_step(latent: int, checkpointing: bool, fake: FakeTensorMode | None) -> dict:
    """One step of `finetune`'s loop (LoRA recipe, patches + PE, SDXL crop conditioning), mirrored here
    with CPU bf16 autocast standing in for the CUDA autocast the product uses."""
    from sine import xl
    from sine.finetune import _lora_params_fp32, add_unet_lora
    from sine.model_kind import model_kind
    from sine.models import kind_recipes
    from sine.recipes import RECIPES

    unet = sdxl_unet()
    n_unet = sum(p.numel() for p in unet.parameters())
    kind = model_kind(dict(unet.config), {}, None, 8)
    s = FinetuneSettings(method="lora").resolved(kind_recipes(kind, RECIPES))
    add_unet_lora(unet, s)
    _lora_params_fp32(unet)
    unet.conv_in.float().requires_grad_(True)  # train_conv_in: on with the PE
    xl.install_hook(unet, kind.size)
    unet.train()
    if checkpointing:
        unet.enable_gradient_checkpointing()
    hook = PositionalHook(unet)
    grid = 2 * int(unet.config.sample_size)
    with fake or nullcontext():
        return _lora_step(unet, s, hook, grid, latent, checkpointing, n_unet, fake is not None)


def _lora_step(unet: torch.nn.Module, s: FinetuneSettings, hook: PositionalHook, grid: int, latent: int,
               checkpointing: bool, n_unet: int, fake: bool) -> dict:
    from sine import xl
    from sine.finetune import adamw, denoising_loss
    from sine.positional import crop_embedding, positional_table

    _materialize(unet, fake)
    table = positional_table(int(unet.config.block_out_channels[0]), grid)
    params = [p for p in unet.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    optimizer = adamw(params, s.lr, s.weight_decay, torch.device("cpu"))
    alphas = torch.linspace(0.9991, 0.0047, 1000)
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(1, 4, latent, latent, generator=gen)
    noise = torch.randn(z0.shape, generator=gen)
    t = torch.tensor([700])
    states = torch.randn(1, 78, 2048, generator=gen).to(torch.bfloat16)  # packed: 77 tokens + the pooled one
    box = (0, 0, grid, grid)

    mem = LiveStorages()
    t0 = time.perf_counter()
    with mem:
        mem.track_module(unet)
        for x in (table, z0, noise, t, states, alphas):
            mem.track(x)
        weights = mem.live
        pe = crop_embedding(table, box, (latent, latent), "bilinear")[None]
        with xl.size_conditioning(*xl.crop_time_ids(box, grid, latent * 8)):  # the fine-tune's own loss, bf16 autocast as on CUDA
            loss = denoising_loss(unet, hook, z0, states, t, noise, pe, 1.0, alphas, "epsilon", torch.bfloat16)
        forward_peak = mem.peak
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        del loss, pe
    seconds = time.perf_counter() - t0
    opt_state = sum(v.untyped_storage().nbytes() for st in optimizer.state.values() for v in st.values()
                    if isinstance(v, torch.Tensor))
    return {"part": "unet_lora_step", "latent": latent, "pixels": latent * 8, "gradient_checkpointing": checkpointing,
            "unet_params": n_unet, "trainable_params": trainable, "lora_rank": s.lora_rank,
            "lora_conv_rank": s.lora_conv_rank, "weights_gib": weights / GIB, "forward_peak_gib": forward_peak / GIB,
            "peak_gib": mem.peak / GIB, "activation_peak_gib": (mem.peak - weights) / GIB,
            "adamw_state_gib": opt_state / GIB, "step_s": seconds}


def text_encoders(fake: FakeTensorMode | None) -> dict:
    """Both SDXL text encoders (bf16) encoding one prompt, as `encode_prompts` does once per fine-tune."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from sine.checkpoints import CONFIGS_DIR

    src = CONFIGS_DIR / "sdxl"
    encoders = [_bf16_on_meta(lambda: CLIPTextModel(CLIPTextConfig.from_pretrained(src / "text_encoder"))),
                _bf16_on_meta(lambda: CLIPTextModelWithProjection(
                    CLIPTextConfig.from_pretrained(src / "text_encoder_2")))]
    mem = LiveStorages()
    with fake or nullcontext():
        for e in encoders:
            _materialize(e, fake is not None)
        ids = torch.randint(0, 49407, (1, 77))
        t0 = time.perf_counter()
        with mem, torch.no_grad():
            for e in encoders:
                mem.track_module(e)
            weights = mem.live
            for e in encoders:
                e(ids, output_hidden_states=True)
    return {"part": "text_encoders", "params": sum(p.numel() for e in encoders for p in e.parameters()),
            "weights_gib": weights / GIB, "peak_gib": mem.peak / GIB, "activation_peak_gib": (mem.peak - weights) / GIB,
            "step_s": time.perf_counter() - t0}


def vae_encode(pixels: int, fake: FakeTensorMode | None) -> dict:
    """The SDXL VAE (bf16) encoding one `pixels`² view, as each patch step of the fine-tune does."""
    from diffusers import AutoencoderKL

    from sine.checkpoints import CONFIGS_DIR

    config = AutoencoderKL.load_config(CONFIGS_DIR / "sdxl" / "vae")
    vae = _bf16_on_meta(lambda: AutoencoderKL.from_config(config))
    mem = LiveStorages()
    with fake or nullcontext():
        _materialize(vae, fake is not None)
        x = torch.rand(1, 3, pixels, pixels).to(torch.bfloat16)
        t0 = time.perf_counter()
        with mem, torch.no_grad():
            mem.track_module(vae)
            mem.track(x)
            weights = mem.live
            z = vae.encode(x).latent_dist.mean
        del z
    return {"part": "vae_encode", "pixels": pixels, "params": sum(p.numel() for p in vae.parameters()),
            "weights_gib": weights / GIB, "peak_gib": mem.peak / GIB, "activation_peak_gib": (mem.peak - weights) / GIB,
            "step_s": time.perf_counter() - t0}


def full_recipe_arithmetic(unet_params: int) -> dict:
    """`method=full`: what weights, grads and AdamW states of every UNet parameter take, beside the
    frozen bf16 base UNet the fine-tune copies (activations come on top)."""
    from sine.memory import full_finetune_bytes

    rows = {}
    for name, (w, g, opt) in {"fp32 weights+grads, fp32 AdamW (as built)": (4, 4, 8),
                              "fp32 weights+grads, 8-bit AdamW": (4, 4, 2),
                              "bf16 weights+grads, bf16 AdamW": (2, 2, 4),
                              "bf16 weights+grads, 8-bit AdamW": (2, 2, 2)}.items():
        rows[name] = (unet_params * (w + g + opt) + unet_params * 2) / GIB
    return {"unet_params": unet_params, "gib_without_activations": rows,
            "as_built_gib": full_finetune_bytes(unet_params, unet_params * 2) / GIB}


def lora_totals(result: dict) -> dict:
    """Per measured LoRA step: what the device holds at the fine-tune's peak, in GiB. The loop keeps the
    frozen base UNet (bf16, beside its trained copy), both text encoders and the VAE loaded; each patch
    step encodes its view with the VAE before the UNet step (sequential, so the larger of the two counts).
    Only steps at the VAE row's size: the fine-tune works at the model's native size."""
    rows = {r["part"]: r for r in result["rows"] if r["part"] != "unet_lora_step"}
    base_unet = next(r["unet_params"] for r in result["rows"] if r["part"] == "unet_lora_step") * 2 / GIB
    others = rows["text_encoders"]["weights_gib"] + rows["vae_encode"]["weights_gib"]
    out = {}
    for r in result["rows"]:
        if r["part"] == "unet_lora_step" and r["fake_tensors"] and r["pixels"] == rows["vae_encode"]["pixels"]:
            step = max(r["peak_gib"] + r["adamw_state_gib"], r["weights_gib"] + rows["vae_encode"]["activation_peak_gib"])
            key = f"{r['pixels']}px, {'checkpointed' if r['gradient_checkpointing'] else 'no checkpointing'}"
            out[key] = round(base_unet + others + step, 2)
    return out


def run_one(spec: str) -> dict:
    """One measurement; `fake-` in front: under FakeTensorMode (the same ops, shapes and storages, no
    arithmetic), how the 1024² step is measured on this CPU (a real 256² step took 133–217 s)."""
    torch.set_num_threads(2)
    fake = FakeTensorMode(allow_non_fake_inputs=True) if spec.startswith("fake-") else None
    kind, _, arg = spec.removeprefix("fake-").partition(":")
    if kind == "lora":
        latent, ckpt = arg.split(",")
        out = lora_step(int(latent), ckpt == "ckpt", fake)
    elif kind == "text":
        out = text_encoders(fake)
    else:
        out = vae_encode(int(arg), fake)
    out["fake_tensors"] = fake is not None
    out["ru_maxrss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--vae-pixels", type=int, default=1024)
    parser.add_argument("--validate-latent", type=int, default=32,
                        help="also run this latent for real (arithmetic done) to check the fake-tensor count; 0: skip")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    specs = ["fake-text:", f"fake-vae:{args.vae_pixels}"]
    specs += [f"fake-lora:{n},{c}" for n in args.latents for c in ("ckpt", "nockpt")]
    if args.validate_latent:
        specs.append(f"lora:{args.validate_latent},nockpt")
    result = {"what": "peak bytes of live tensor storages (weights included), CPU, SDXL-shaped random model; "
                      "fake_tensors: counted under FakeTensorMode (same ops and storages, no arithmetic)",
              "machine": f"{platform.processor() or platform.machine()}, 2 threads, shared 2-core CPU",
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "rows": []}
    for spec in specs:
        done = subprocess.run([sys.executable, __file__, "--one", spec], capture_output=True, text=True, check=True)
        result["rows"].append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(result["rows"][-1]), flush=True)
        if spec.startswith("fake-lora") and "full_recipe" not in result:
            result["full_recipe"] = full_recipe_arithmetic(result["rows"][-1]["unet_params"])
            print(json.dumps(result["full_recipe"], indent=2), flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    result["lora_finetune_total_gib"] = lora_totals(result)
    print(json.dumps(result["lora_finetune_total_gib"], indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
