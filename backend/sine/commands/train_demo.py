"""`sine train-demo`: train the shapes-world demo model (see sine.shapes.train)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from sine.devices import MAX_CPU_THREADS
from sine.errors import printable
from sine.preflight import float_in, int_in


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train-demo", aliases=["train_demo"], help="train the bundled shapes-world demo model")
    p.add_argument("--out", required=True, help="folder to write the diffusers model to")
    p.add_argument("--config", choices=("auto", "cpu", "gpu"), default="auto",
                   help="model size and budget; auto picks gpu when CUDA is available")
    p.add_argument("--minutes", type=float_in(0.0, 100_000.0, low_open=True), default=None,
                   help="wall-clock budget for both stages")
    p.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0)
    p.add_argument("--threads", type=int_in(1, MAX_CPU_THREADS), default=None, help="torch CPU threads")
    p.add_argument("--vae-steps", type=int_in(1, 10**7), default=None)
    p.add_argument("--unet-steps", type=int_in(1, 10**7), default=None)
    p.add_argument("--unet-batch", type=int_in(1, 4096), default=None)
    p.add_argument("--unet-lr", type=float_in(0.0, 1.0, low_open=True), default=None,
                   help="peak learning rate of the UNet stage")
    p.add_argument("--latent-scenes", type=int_in(1, 10**7), default=None,
                   help="training scenes encoded for the UNet stage")
    p.add_argument("--decoder-steps", type=int_in(1, 10**7), default=None)
    p.add_argument("--vae-latent-channels", type=int_in(1, 64), default=None, help="channels of the latent (SD's 4)")
    p.add_argument("--stage", choices=("all", "decoder", "resume"), default="all",
                   help="all: train from scratch; decoder: only refine the VAE decoder of the model in --out; "
                        "resume: continue training the UNet and text encoder of the model in --out")
    p.add_argument("--raw-out", default=None, help="resume: also save the non-EMA weights here")
    p.add_argument("--ema-decay", type=float_in(0.0, 1.0), default=None)
    p.add_argument("--offset-noise", type=float_in(0.0, 1.0), default=None)
    p.add_argument("--object-weight", type=float_in(0.0, 1000.0), default=None,
                   help="extra loss weight on the latent cells objects cover (0: plain eps-MSE)")
    return p


def model_folder_problem(out: str, stage: str, flag: str = "--out") -> str | None:
    """What is wrong with --out (or --raw-out) for `stage`, or None: training writes model_index.json, unet/,
    vae/ ... there, so a folder of the user's other files is refused (only a new or empty folder, or a model's)."""
    path = Path(out).expanduser()
    holds_model = (path / "model_index.json").is_file()
    if stage != "all" and not holds_model:
        return f"{flag} {path} holds no model (no model_index.json): --stage {stage} continues a trained model"
    if path.exists() and not path.is_dir():
        return f"{flag} {path} is a file; name a new folder for the model"
    if path.is_dir() and not holds_model and any(path.iterdir()):
        return f"{flag} {path} holds other files and no model; name a new or empty folder"
    return None


def run(args: argparse.Namespace) -> int:
    problem = model_folder_problem(args.out, args.stage)
    if problem is None and args.raw_out is not None:  # receives a whole model folder too (a new one is fine)
        problem = model_folder_problem(args.raw_out, "all", "--raw-out")
    if problem:  # before torch loads and minutes of training
        print(f"sine train-demo: error: {printable(problem)}", file=sys.stderr)
        return 2
    import torch

    from sine.shapes.train import CONFIGS, refine_decoder, resume_unet, train

    name = args.config
    if name == "auto":
        name = "gpu" if torch.cuda.is_available() else "cpu"
    overrides = {"vae_steps": args.vae_steps, "unet_steps": args.unet_steps, "unet_batch": args.unet_batch,
                 "unet_lr": args.unet_lr, "latent_scenes": args.latent_scenes, "offset_noise": args.offset_noise,
                 "ema_decay": args.ema_decay, "decoder_steps": args.decoder_steps,
                 "object_weight": args.object_weight, "vae_latent_channels": args.vae_latent_channels}
    cfg = dataclasses.replace(CONFIGS[name], seed=args.seed, minutes=args.minutes, threads=args.threads,
                              **{k: v for k, v in overrides.items() if v is not None})

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    log(f"training config {cfg.name}: {cfg}")
    if args.stage == "decoder":
        refine_decoder(args.out, cfg, log=log, minutes=args.minutes)
    elif args.stage == "resume":
        resume_unet(args.out, cfg, log=log, minutes=args.minutes, raw_out=args.raw_out)
    else:
        train(args.out, cfg, log=log)
    return 0


if __name__ == "__main__":
    from sine.cli import main

    sys.exit(main(["train-demo", *sys.argv[1:]]))
