"""Is the demo model any good? Sample held-out captions and check colour, shape, position, background.

Run: `python -m sine.shapes.evaluate MODEL_DIR [--n 48] [--probe]`. It uses its own plain classifier-free-guidance
DDIM loop (not the SINE sampler) so that it measures the base model alone.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

from .metrics import (
    classify_shape,
    color_index,
    color_labels,
    components,
    fill_holes,
    majority_color,
    object_pixels,
)
from .train import HELD_OUT_SEED, to_tensor
from .world import BACKGROUND_COLORS, GRID, OBJECT_COLORS, SHAPES, Background, Scene, Shape


def to_images(x: torch.Tensor) -> list[Image.Image]:
    """NCHW in [-1, 1] -> PIL RGB images (the inverse of `train.to_tensor`)."""
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, "RGB") for a in arr]


@dataclass
class ShapesModel:
    """The five SD components of a demo-model folder, loaded the way diffusers loads SD."""

    vae: AutoencoderKL
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDIMScheduler

    @classmethod
    def load(cls, folder: str | Path) -> ShapesModel:
        folder = Path(folder)
        return cls(
            vae=AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32).eval(),
            unet=UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32).eval(),
            text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=torch.float32).eval(),
            tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
            scheduler=DDIMScheduler.from_pretrained(folder / "scheduler"),
        )

    @torch.no_grad()
    def embed(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(texts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids).last_hidden_state

    @torch.no_grad()
    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        """Scaled latents (the VAE's mean, no sampling): what the UNet was trained on."""
        return self.vae.encode(to_tensor(images)).latent_dist.mean * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        return to_images(self.vae.decode(latents / self.vae.config.scaling_factor).sample)

    @torch.no_grad()
    def sample(self, prompts: list[str], seed: int = 0, steps: int = 40, guidance: float = 6.0,
               width: int = 64, height: int = 64) -> list[Image.Image]:
        """Plain CFG with DDIM (eta 0) from pure noise, one seeded generator per prompt."""
        n = len(prompts)
        cond = self.embed(prompts)
        uncond = self.embed([""]).expand(n, -1, -1)
        ctx = torch.cat([uncond, cond])
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        shape = (1, self.unet.config.in_channels, height // f, width // f)
        z = torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(n)])
        sched = DDIMScheduler.from_config(self.scheduler.config)
        sched.set_timesteps(steps)
        for t in sched.timesteps:
            eps = self.unet(torch.cat([z, z]), t, ctx).sample
            e_u, e_c = eps.chunk(2)
            z = sched.step(e_u + guidance * (e_c - e_u), t, z).prev_sample
        return self.decode(z)


def held_out_scenes(n: int, first_seed: int = HELD_OUT_SEED) -> list[Scene]:
    """Single objects (medium/large) on plain backgrounds: each attribute readable from pixels."""
    out = []
    for k in range(n):
        rng = random.Random(first_seed + k)
        color = rng.choice(OBJECT_COLORS)
        bg = rng.choice([c for c in BACKGROUND_COLORS if c != color])
        shape = Shape(rng.choice(SHAPES), color, rng.choice(("medium", "large")), rng.randrange(3), rng.randrange(3))
        out.append(Scene((shape,), Background("plain", (bg,)), seed=first_seed + k))
    return out


def judged_shape(image: Image.Image, scene: Scene) -> str | None:
    """The shape the judge reads in the scene's object colour (None: no such object drawn)."""
    blobs = object_pixels(image, scene.objects[0].color)
    return classify_shape(blobs[0]) if blobs else None


def judged_shape_at(image: Image.Image, scene: Scene, index: int, region: np.ndarray,
                    min_pixels: int = 6) -> str | None:
    """The shape the judge reads where object `index` of `scene` is or is asked to be (`region`): the
    blob covering `region` most, gaps filled, of what stands out from a plain background (so a
    textured object counts whole), or of the object's own colour on any other background. None when
    no blob of `min_pixels` is there: a fragment's fill ratio reads as any shape."""
    bg = scene.background
    labels = color_labels(image)
    if bg.kind == "plain":
        mask = labels != color_index(bg.colors[0])
    else:
        mask = labels == color_index(scene.objects[index].color)
    blobs = [b for b in components(mask, min_pixels=min_pixels) if (b & region).any()]
    if not blobs:
        return None
    return classify_shape(fill_holes(max(blobs, key=lambda b: int((b & region).sum()))))


def judge(image: Image.Image, scene: Scene) -> dict[str, bool]:
    """Per-attribute correctness of one generated single-object image."""
    shape = scene.objects[0]
    bg = scene.background.colors[0]
    labels = color_labels(image)
    not_bg = labels != color_index(bg)
    drawn = majority_color(image, not_bg)
    blobs = object_pixels(image, shape.color)
    ok_shape = ok_pos = False
    if blobs:
        ok_shape = classify_shape(blobs[0]) == shape.kind
        ys, xs = np.nonzero(blobs[0])
        h, w = labels.shape
        row = int(np.abs(np.array(GRID) - ys.mean() / h).argmin())
        col = int(np.abs(np.array(GRID) - xs.mean() / w).argmin())
        ok_pos = (row, col) == (shape.row, shape.col)
    return {
        "color": drawn == shape.color,
        "shape": ok_shape,
        "position": ok_pos,
        "background": majority_color(image) == bg,
        "single": len(blobs) == 1,
    }


def shape_confusion(images: list[Image.Image], scenes: list[Scene]) -> dict[str, dict[str, int]]:
    """Asked shape → {shape the judge reads ("none": nothing in the object's colour): count}."""
    table: dict[str, dict[str, int]] = {kind: {} for kind in SHAPES}
    for image, scene in zip(images, scenes, strict=True):
        row = table[scene.objects[0].kind]
        read = judged_shape(image, scene) or "none"
        row[read] = row.get(read, 0) + 1
    return table


def rates(results: list[dict[str, bool]]) -> dict[str, float]:
    """Per attribute, the share of judged images that got it right."""
    return {k: float(np.mean([r[k] for r in results])) for k in results[0]}


def judged_rates(images: list[Image.Image], scenes: list[Scene]) -> dict[str, float]:
    """Judge each image against its scene, and give the rates."""
    return rates([judge(im, s) for im, s in zip(images, scenes, strict=True)])


def held_out_samples(model: ShapesModel, n: int = 48, steps: int = 40, guidance: float = 6.0,
                     batch: int = 16) -> tuple[list[Image.Image], list[Scene]]:
    """The base model's pictures of n held-out captions, and their scenes."""
    scenes = held_out_scenes(n)
    images: list[Image.Image] = []
    for start in range(0, n, batch):
        chunk = scenes[start : start + batch]
        images += model.sample([s.caption() for s in chunk], seed=start, steps=steps, guidance=guidance)
    return images, scenes


def evaluate(model: ShapesModel, n: int = 48, steps: int = 40, guidance: float = 6.0, batch: int = 16,
             save_grid: str | Path | None = None) -> dict[str, float]:
    """Rates (0..1) of correct colour / shape / position / background / single object over n captions."""
    images, scenes = held_out_samples(model, n, steps, guidance, batch)
    if save_grid:
        save_sheet(images, save_grid)
    return judged_rates(images, scenes)


def save_sheet(images: list[Image.Image], path: str | Path, cols: int = 8) -> None:
    grid = Image.new("RGB", (64 * cols, 64 * ((len(images) + cols - 1) // cols)))
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * 64, (i // cols) * 64))
    grid.save(path)


def vae_round_trip(model: ShapesModel, scenes: list[Scene]) -> list[Image.Image]:
    """The world's own pictures of the scenes, encoded and decoded."""
    return model.decode(model.encode([s.render()[0] for s in scenes]))


@torch.no_grad()
def vae_ceiling(model: ShapesModel, n: int = 48) -> dict[str, float]:
    """The same rates on the world's own pictures of the same captions after a VAE round trip: the
    most a sample can score (the shipped VAE fills in every star's points: its shape rate is about 0.7)."""
    scenes = held_out_scenes(n)
    return judged_rates(vae_round_trip(model, scenes), scenes)


@torch.no_grad()
def text_probe(model: ShapesModel, n: int = 128, timesteps: tuple[int, ...] = (200, 300, 400, 500, 700),
               seed: int = 0) -> dict[int, dict[str, dict[str, float]]]:
    """What does the caption tell the UNet, at each noise level? Held-out pictures are noised to t and
    denoised in one step (the x0 estimate), once with their caption and once with the empty prompt;
    both are judged. Where the two score alike, the model reads the attribute off z_t, not the text:
    if that holds for the shape at every t, sampling can only draw the asked shape by chance."""
    scenes = held_out_scenes(n)
    z0 = model.encode([s.render()[0] for s in scenes])
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed))
    prompts = {"caption": model.embed([s.caption() for s in scenes]), "empty": model.embed([""] * n)}
    alphas = model.scheduler.alphas_cumprod
    out: dict[int, dict[str, dict[str, float]]] = {}
    for t in timesteps:
        ts = torch.full((n,), t)
        zt = model.scheduler.add_noise(z0, noise, ts)
        out[t] = {}
        for name, ctx in prompts.items():
            eps = model.unet(zt, ts, ctx).sample
            x0 = (zt - (1 - alphas[t]).sqrt() * eps) / alphas[t].sqrt()
            judged = judged_rates(model.decode(x0), scenes)
            out[t][name] = {k: judged[k] for k in ("color", "shape", "position")}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model")
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--guidance", type=float, default=6.0)
    p.add_argument("--grid", default=None, help="save the samples as one PNG")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--probe", action="store_true", help="also run text_probe (what the caption adds per noise level)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = ShapesModel.load(args.model)
    images, scenes = held_out_samples(model, args.n, args.steps, args.guidance)
    if args.grid:
        save_sheet(images, args.grid)
    trip = vae_round_trip(model, scenes)
    report = {"samples": judged_rates(images, scenes), "vae_ceiling": judged_rates(trip, scenes),
              # where the shape goes wrong: in the base model's drawing, or already in the VAE's round trip
              "shape_confusion": {"samples": shape_confusion(images, scenes),
                                  "vae_round_trip": shape_confusion(trip, scenes)}}
    if args.probe:
        report["text_probe"] = text_probe(model, args.n)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
