"""UNet calls compiled on CUDA (torch.compile, mode "reduce-overhead": replayed from CUDA graphs), with
the eager call as the fallback: on the CPU, when not asked for, and whenever compiling or a compiled
call fails (the failure is logged once and the eager call answers, so an edit never fails for it).

A guided step is launch-bound on a big GPU (about 64 ms per step at 512² where the bare batch-2 call
takes about 25 ms eager and 12 ms from a graph on an H100), which is what graphs remove. It is opt-in
($SINE_COMPILE=1) until its first-call cost and speed are measured on a GPU (bench/edit_speed.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from .devices import COMPILE_ENV, compile_setting  # noqa: F401 - COMPILE_ENV: the tests set it

log = logging.getLogger("sine.compiled")

_ATTR = "_sine_unet_call"


class UNetCall:
    """`call(z, t, states)` → the UNet's noise prediction: compiled when enabled, else eager."""

    def __init__(self, unet: torch.nn.Module, compiled: Callable[..., Any] | None) -> None:
        self.unet = unet
        self.compiled = compiled
        self.fell_back = False  # a compiled call failed once: eager from now on

    def __deepcopy__(self, memo: dict) -> None:
        return None  # a copied UNet (a fine-tune's starting point) makes its own call

    def __call__(self, z: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                # graphs reuse their output buffers: copy the result out before the next replay
                return self.compiled(z, t, states).sample.clone()
            except Exception as exc:  # noqa: BLE001 - any compiler/graph failure: eager answers
                log.warning("compiled UNet call failed (%s: %s); using the eager call", type(exc).__name__, exc)
                self.compiled = None
                self.fell_back = True
        return self.unet(z, t, states).sample


def compile_wanted(device: torch.device) -> bool:
    setting = compile_setting()
    return setting == "force" or (setting == "cuda" and device.type == "cuda")


def unet_call(unet: torch.nn.Module, backend: Any = "inductor") -> UNetCall:
    """The call to use for `unet` (made once per UNet and kept on it, so compiled graphs are reused)."""
    call = getattr(unet, _ATTR, None)
    if call is None or call.unet is not unet:
        compiled = None
        if compile_wanted(next(unet.parameters()).device):
            try:
                mode = "reduce-overhead" if backend == "inductor" else None
                compiled = torch.compile(unet, mode=mode, backend=backend, dynamic=False)
            except Exception as exc:  # noqa: BLE001
                log.warning("torch.compile unavailable (%s); eager UNet calls", exc)
        call = UNetCall(unet, compiled)
        object.__setattr__(unet, _ATTR, call)
    return call
