"""Environment variables a user (or their shell profile) sets: valid ones work, wrong ones are named in one line."""

from __future__ import annotations

import pytest

from sine.devices import MAX_CPU_THREADS, pick_cpu_threads
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


@pytest.mark.parametrize("value", ["1000000000", "99999999999999999999999"])
def test_a_thread_count_no_machine_has_is_named(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """SINE_THREADS=1000000000 reached torch.set_num_threads: the next parallel step died in libgomp
    ("Out of memory allocating 216000001344 bytes"), taking `sine edit` or the whole daemon with it."""
    monkeypatch.setenv("SINE_THREADS", value)
    with pytest.raises(BadInput, match="SINE_THREADS"):
        pick_cpu_threads()


def test_an_openmp_thread_count_no_machine_has_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SINE_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1000000000")
    assert 1 <= pick_cpu_threads(model_params=10**9) <= MAX_CPU_THREADS
