"""Names and capabilities of the MIL heads, readable without importing torch.

Help texts, configuration descriptions and cheap checks (before anything is loaded) read the heads
from here: :func:`list_heads` and :func:`head_spec` never import torch. The built-in heads are
declared below; each head class states the same capabilities as class attributes of
:class:`~balnmp_cache.mil.MILHead`, and :func:`~balnmp_cache.mil.register_head` refuses a class that
disagrees with its declaration here. A head added elsewhere with ``register_head`` appears here
once its module has been imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from balnmp_cache.errors import ConfigError

__all__ = ["HeadSpec", "head_spec", "head_specs", "list_heads"]


@dataclass(frozen=True)
class HeadSpec:
    """What a head needs, as the trainer and the grid expansion see it.

    Attributes:
        name: the registry name.
        uses_features: reads the patch features (``False``: it ignores the encoder and the cache).
        needs_clinical: needs a clinical vector (``clinical = true``).
        closed_form: fitted once to convergence by its own ``fit_closed_form`` instead of epoch by epoch.
        module: the module that defines (and registers) the head; imported when the head is built.
    """

    name: str
    uses_features: bool = True
    needs_clinical: bool = False
    closed_form: bool = False
    module: str = "balnmp_cache.mil.heads"


_SPECS: dict[str, HeadSpec] = {
    spec.name: spec
    for spec in (
        HeadSpec("balnmp"),
        HeadSpec("abmil"),
        HeadSpec("gated_abmil"),
        HeadSpec("mean"),
        HeadSpec("max"),
        HeadSpec("clinical_only", uses_features=False, needs_clinical=True, closed_form=True),
    )
}


def list_heads() -> list[str]:
    """Names of the known heads (built-in and registered), sorted."""
    return sorted(_SPECS)


def head_specs() -> list[HeadSpec]:
    """The specs of the known heads, sorted by name."""
    return [_SPECS[name] for name in list_heads()]


def head_spec(name: str) -> HeadSpec:
    """The spec of head ``name``.

    Raises:
        ConfigError: ``name`` is not a known head; the message lists the valid ones.
    """
    try:
        return _SPECS[name]
    except KeyError:
        raise ConfigError(
            f"unknown MIL head {name!r}; valid heads are: {', '.join(list_heads())} "
            "(the `head` key of the train configuration, or --head)"
        ) from None


def declared(name: str) -> HeadSpec | None:
    """The spec recorded for ``name``, or ``None`` (used by ``register_head`` to check a class)."""
    return _SPECS.get(name)


def add(spec: HeadSpec) -> None:
    """Record the spec of a registered head (called by ``register_head``)."""
    _SPECS[spec.name] = spec
