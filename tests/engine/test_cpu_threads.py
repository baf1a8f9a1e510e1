"""CPU threads: an explicit count wins; otherwise no more threads than free cores."""

from __future__ import annotations

import subprocess
import sys
import time

import torch

from sine.devices import THREADS_ENV, apply_cpu_threads, busy_cores, pick_cpu_threads, usable_cores


def test_explicit_counts_win_in_order(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv(THREADS_ENV, "2")
    assert pick_cpu_threads(5) == 5
    assert pick_cpu_threads() == 2
    monkeypatch.delenv(THREADS_ENV)
    assert pick_cpu_threads() == 3


def test_a_busy_neighbour_takes_a_core_away(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(usable_cores())]
    try:
        time.sleep(0.5)
        assert busy_cores() > 0.5 * usable_cores()
        assert apply_cpu_threads() == 1 == torch.get_num_threads()  # every core is busy: one thread
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
        torch.set_num_threads(before)


def test_a_small_model_runs_on_one_thread_even_on_an_idle_machine(monkeypatch):
    """The demo model's ops are too short to pay for waking a second (passively waiting) thread: on
    an idle 2-core machine two threads made its fine-tune 2.6x slower than one (docs/benchmarks.md)."""
    import sine.devices as devices
    from sine.models import load_base_model

    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(devices, "busy_cores", lambda interval_s=0.2: 0.0)  # as if the machine were idle
    monkeypatch.setattr(devices, "usable_cores", lambda: 4)
    before = torch.get_num_threads()
    try:
        assert pick_cpu_threads() == 4  # no model named: every free core
        assert pick_cpu_threads(model_params=860_000_000) == 4  # an SD-sized UNet: its ops are long
        assert pick_cpu_threads(model_params=1_500_000) == 1
        assert pick_cpu_threads(2, model_params=1_500_000) == 2  # an explicit count still wins
        load_base_model(None, device="cpu")  # the bundled demo model
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
