"""Background threads of a CPU extract run yield to the encoder: lower priority for them, never the caller."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from balnmp_cache.extract import run_extract
from balnmp_cache.hardware import BACKGROUND_NICE, lower_thread_priority
from tests.extract.conftest import config, write_precut_cohort

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")


def _nice(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def _thread_nices() -> set[int]:
    """The nice value of every thread of this process, as the kernel reports it."""
    nices = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            nices.add(_nice(int(task.name)))
        except OSError:  # the thread ended meanwhile
            pass
    return nices


def _in_thread(work) -> None:
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


def test_a_lowered_thread_sits_steps_below_the_main_thread_and_the_caller_keeps_its_priority():
    base, seen = _nice(threading.get_native_id()), {}

    def child() -> None:
        seen["inherited"] = _nice(threading.get_native_id())
        lower_thread_priority(5)  # already there: relative to the main thread, not to this one
        seen["child"] = _nice(threading.get_native_id())

    def work() -> None:
        lower_thread_priority(5)
        seen["once"] = _nice(threading.get_native_id())
        lower_thread_priority(5)
        seen["twice"] = _nice(threading.get_native_id())
        _in_thread(child)
        lower_thread_priority(40)  # capped at the lowest priority
        seen["capped"] = _nice(threading.get_native_id())

    _in_thread(work)
    lowered = min(base + 5, 19)
    assert seen == {"once": lowered, "twice": lowered, "inherited": lowered, "child": lowered, "capped": 19}
    assert _nice(threading.get_native_id()) == base


def test_a_cpu_run_lowers_its_reader_and_writer_threads_only(tmp_path):
    base = _nice(threading.get_native_id())
    observed: list[set[int]] = []
    result = run_extract(config([write_precut_cohort(tmp_path / "in", [5, 3, 7])], tmp_path / "cache", batch_size=4),
                         progress=lambda event: observed.append(_thread_nices()))
    assert result.exit_code == 0 and result.n_ok == 3
    lowered = min(base + BACKGROUND_NICE, 19)
    assert observed and any(lowered in nices for nices in observed)  # reader, decoders or writer at work
    assert all(nices <= {base, lowered} for nices in observed), observed
    assert _nice(threading.get_native_id()) == base  # the encoder's thread (the caller's) is untouched
