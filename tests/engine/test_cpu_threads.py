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
