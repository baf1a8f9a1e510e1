"""Environment variables a user (or their shell profile) sets: valid ones work, wrong ones are named in one line."""

from __future__ import annotations

import pytest

from sine.devices import pick_cpu_threads
from sine.errors import BadInput


def test_an_openmp_list_of_thread_counts_takes_its_outer_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """OMP_NUM_THREADS=4,2 is valid OpenMP (nested levels); `sine edit` died on int('4,2') after the model loaded."""
    monkeypatch.delenv("SINE_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")
    assert pick_cpu_threads() == 4


def test_a_wrong_sine_threads_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINE_THREADS", "abc")
    with pytest.raises(BadInput, match="SINE_THREADS"):
        pick_cpu_threads()
