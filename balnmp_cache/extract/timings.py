"""Where the time of an extract run goes: one record of seconds per stage, summed over slides and batches.

The stages run on three threads that overlap, so their seconds do not add up to the wall time:

* the **reader thread** reads slides (``read``: opening, planning, reading regions through the slide
  reader, which decodes its tiles as it reads, masks and the patch filter; for pre-cut patches the
  file reads) and decodes JPEG patches itself (``decode``: pre-cut patches with PIL or on the GPU,
  and whole plain-JPEG slides decoded on the GPU);
* the **encoder loop** (the main thread) copies each batch to the device (``h2d``, 0 on the CPU) and
  runs the eval transform and the model (``forward``, the features' copy back included); ``wait`` is
  the time it spent waiting for the reader, and ``loader_wait`` that share of its wall time;
* the **writer thread** builds, writes and fsyncs slide files and journals their manifest rows (``write``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["StageTimes"]


@dataclass
class StageTimes:
    """Seconds per stage (see the module docstring); ``loop`` is the encoder loop's wall time."""

    read: float = 0.0
    decode: float = 0.0
    h2d: float = 0.0
    forward: float = 0.0
    write: float = 0.0
    wait: float = 0.0
    loop: float = 0.0

    def add(self, other: StageTimes) -> None:
        """Add ``other``'s seconds to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def loader_wait(self) -> float:
        """The share of the encoder loop's wall time spent waiting for input (0 when it did not run)."""
        return self.wait / self.loop if self.loop > 0 else 0.0

    def summary(self) -> str:
        """One line: every stage's seconds and ``loader_wait`` as a percentage."""
        return (
            f"read {self.read:.1f} s, decode {self.decode:.1f} s, host→device {self.h2d:.1f} s, "
            f"forward {self.forward:.1f} s, write {self.write:.1f} s; the encoder waited for input "
            f"{100 * self.loader_wait:.0f}% of the time"
        )
