"""The head registry: heads are registered by name and built with validated options.

Adding a head is one class and one decorator, in any module::

    @register_head("my_head")
    class MyHead(MILHead):
        needs_clinical = False  # capabilities (uses_features, needs_clinical, closed_form): see MILHead

        def __init__(self, *, in_dim, n_classes, clinical_dim=0, dropout=0.25, expand_times=10): ...

        def pool(self, features, mask): ...  # (B, N, D), (B, N) -> pooled (B, P), attention (B, N)

        def loss(self, logits, target, weight=None): ...  # optional: a loss of its own

Once its module is imported, the head is listed, checked and trained like the built-in ones
(``--head my_head``); no trainer edit is needed. Its options are the keyword arguments of
``__init__`` after ``in_dim``, ``n_classes`` and ``clinical_dim``; :func:`create_head` rejects any
other option with a :class:`ConfigError`. Names and capabilities are also kept in
:mod:`balnmp_cache.mil.catalog`, readable without torch.
"""

from __future__ import annotations

import importlib
import inspect
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

from balnmp_cache.errors import ConfigError
from balnmp_cache.mil import catalog
from balnmp_cache.mil.base import MILHead
from balnmp_cache.mil.catalog import HeadSpec, list_heads

__all__ = ["create_head", "head_options", "list_heads", "register_head"]

H = TypeVar("H", bound=type[MILHead])

_HEADS: dict[str, type[MILHead]] = {}
_CORE_ARGS = ("in_dim", "n_classes", "clinical_dim")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# option -> (check, description of the valid values); options not listed here are passed unchecked.
_OPTION_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dropout": (lambda v: _is_real(v) and 0.0 <= v < 1.0, "a number in [0, 1)"),
    "expand_times": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "embed_dim": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "attn_dim": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "classifier_hidden": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0 = a single linear layer)"),
}


def register_head(name: str) -> Callable[[H], H]:
    """Class decorator that registers a :class:`MILHead` subclass under ``name``.

    The class's capabilities (``uses_features``, ``needs_clinical``, ``closed_form``) are recorded in
    :mod:`balnmp_cache.mil.catalog`, so help texts and checks see the head without importing torch.

    Raises:
        ValueError: ``name`` is already taken by another class, the class is not a ``MILHead``, it
            declares other capabilities than the catalog lists for a built-in name, or it is
            ``closed_form`` but reads features.
    """

    def decorator(cls: H) -> H:
        if not (isinstance(cls, type) and issubclass(cls, MILHead)):
            raise ValueError(f"register_head({name!r}) decorates MILHead subclasses; got {cls!r}")
        if name in _HEADS and _HEADS[name] is not cls:
            raise ValueError(f"a MIL head named {name!r} is already registered ({_HEADS[name].__qualname__})")
        if cls.closed_form and cls.uses_features:
            raise ValueError(f"MIL head {name!r}: a closed_form head is fitted on one input per patient, not on bags; "
                             "set uses_features = False or closed_form = False")
        spec = HeadSpec(name, uses_features=cls.uses_features, needs_clinical=cls.needs_clinical,
                        closed_form=cls.closed_form, module=cls.__module__)
        known = catalog.declared(name)
        if known is not None and known != spec:
            raise ValueError(f"MIL head {name!r}: {cls.__qualname__} declares {spec} but the catalog lists {known}; "
                             "make them agree (balnmp_cache/mil/catalog.py)")
        cls.name = name
        _HEADS[name] = cls
        catalog.add(spec)
        return cls

    return decorator


def _lookup(name: str) -> type[MILHead]:
    spec = catalog.head_spec(name)
    if name not in _HEADS:
        importlib.import_module(spec.module)  # a built-in head registers itself when its module is imported
    return _HEADS[name]


def head_options(name: str) -> dict[str, Any]:
    """The options head ``name`` accepts, with their defaults.

    Raises:
        ConfigError: ``name`` is not a registered head.
    """
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters
    return {
        key: p.default
        for key, p in params.items()
        if key not in ("self", *_CORE_ARGS) and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def create_head(name: str, *, in_dim: int, n_classes: int, clinical_dim: int = 0, **options: Any) -> MILHead:
    """Build head ``name`` for D = ``in_dim`` features, C = ``n_classes`` and K = ``clinical_dim``.

    Args:
        name: a name from :func:`list_heads`.
        in_dim: feature dimension D of the cache the head will read.
        n_classes: number of classes C (>= 2).
        clinical_dim: clinical vector length K; 0 = image-only.
        **options: head options, see :func:`head_options` (e.g. ``dropout``, ``expand_times``).

    Returns:
        The head in training mode, PyTorch default initialisation, on the CPU.

    Raises:
        ConfigError: unknown head or option, or an invalid value; the message lists the valid choices.
    """
    cls = _lookup(name)
    valid = head_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listing = ", ".join(f"{k}={v!r}" for k, v in valid.items())
        raise ConfigError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for MIL head {name!r}; "
            f"valid options (with defaults) are: {listing} (the `head_options` table of the train configuration)"
        )
    for key, value in options.items():
        rule = _OPTION_RULES.get(key)
        if rule is not None and not rule[0](value):
            raise ConfigError(
                f"MIL head {name!r}: option {key}={value!r} is invalid; it must be {rule[1]} "
                "(the `head_options` table of the train configuration)"
            )
    if not (_is_int(in_dim) and in_dim >= 1):
        raise ConfigError(
            f"MIL head {name!r}: in_dim={in_dim!r} is invalid; it must be the cache's feature dimension (>= 1)"
        )
    if not (_is_int(n_classes) and n_classes >= 2):
        raise ConfigError(f"MIL head {name!r}: n_classes={n_classes!r} is invalid; it must be an integer >= 2")
    if not (_is_int(clinical_dim) and clinical_dim >= 0):
        raise ConfigError(
            f"MIL head {name!r}: clinical_dim={clinical_dim!r} is invalid; it must be an integer >= 0 (0 = image-only)"
        )
    return cls(in_dim=int(in_dim), n_classes=int(n_classes), clinical_dim=int(clinical_dim), **options)
