"""Unit-carrying type aliases so microns, level-0 pixels and patch pixels never mix silently."""

from __future__ import annotations

from typing import NewType

Microns = NewType("Microns", float)
"""A physical length in micrometres."""

MPP = NewType("MPP", float)
"""Microns per pixel of a given level (level 0 unless named otherwise)."""

Level0Px = NewType("Level0Px", int)
"""A length or coordinate in pixels of the slide's full-resolution level."""

PatchPx = NewType("PatchPx", int)
"""A length in pixels of an extracted patch, before the encoder's resize."""
