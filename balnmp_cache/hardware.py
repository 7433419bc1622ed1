"""What the machine computes well: used to resolve ``precision = "auto"`` in both stages, and to keep
background threads out of the way of a CPU encoder."""

from __future__ import annotations

import contextlib
import os
import sys
import threading

__all__ = ["BACKGROUND_NICE", "bf16_is_native", "cpu_has_native_bf16", "lower_thread_priority", "resolve_device"]

BACKGROUND_NICE = 15  # nice steps added to a background thread of a CPU encoder (19 is the lowest priority)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast runs ~3x faster."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(bool(getattr(cpu, name)()) for name in checks if hasattr(cpu, name))
    except RuntimeError:
        return False


def bf16_is_native(device_type: str) -> bool:
    """``precision = "auto"`` means bf16 on CUDA devices and on CPUs with native bf16, fp32 elsewhere."""
    return device_type == "cuda" or (device_type == "cpu" and cpu_has_native_bf16())


def resolve_device(requested: str, *, flag: str = "--device") -> str:
    """``auto`` -> ``cuda`` when a CUDA device is usable, else ``cpu``; ``cuda`` without one is an error.

    Raises:
        ConfigError: ``cuda`` was asked for on a machine without a usable CUDA device.
    """
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        from balnmp_cache.errors import ConfigError

        raise ConfigError(f"device 'cuda' was requested but no CUDA device is usable here; pass {flag} cpu or auto")
    return requested


def lower_thread_priority(steps: int = BACKGROUND_NICE) -> None:
    """Run the calling thread ``steps`` nice levels below the process's main thread (Linux; elsewhere nothing).

    For the reader and writer threads of an extract run whose encoder runs on the CPU: the encoder's
    intra-op threads meet at a barrier after every operator, so a decoding thread that preempts one
    of them stalls them all; at a lower priority, decoding and writing take the cycles the encoder
    leaves and still get the whole CPU whenever the encoder waits for them. The level is relative to
    the main thread, not to the caller (threads inherit their creator's level), so calling it again,
    or from a thread started by a lowered one, changes nothing. A thread cannot raise its priority
    again without privileges: call this only on threads that do background work.
    """
    if not sys.platform.startswith("linux"):  # elsewhere a thread id is no target for setpriority
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):  # a sandbox refusing it: the thread keeps its priority
        target = min(os.getpriority(os.PRIO_PROCESS, os.getpid()) + steps, 19)
        if os.getpriority(os.PRIO_PROCESS, tid) < target:
            os.setpriority(os.PRIO_PROCESS, tid, target)
