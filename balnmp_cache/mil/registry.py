"""The head registry: heads are registered by name and built with validated options.

Adding a head is one class and one decorator::

    @register_head("my_head")
    class MyHead(MILHead):
        def __init__(self, *, in_dim, n_classes, clinical_dim=0, dropout=0.25, expand_times=10): ...

Its options are the keyword arguments of ``__init__`` after ``in_dim``, ``n_classes`` and
``clinical_dim``; :func:`create_head` rejects any other option with a :class:`ConfigError`.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

from balnmp_cache.errors import ConfigError
from balnmp_cache.mil.base import MILHead

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

    Raises:
        ValueError: ``name`` is already taken by another class, or the class is not a ``MILHead``.
    """

    def decorator(cls: H) -> H:
        if not (isinstance(cls, type) and issubclass(cls, MILHead)):
            raise ValueError(f"register_head({name!r}) decorates MILHead subclasses; got {cls!r}")
        if name in _HEADS and _HEADS[name] is not cls:
            raise ValueError(f"a MIL head named {name!r} is already registered ({_HEADS[name].__qualname__})")
        cls.name = name
        _HEADS[name] = cls
        return cls

    return decorator


def _ensure_builtin_heads() -> None:
    import balnmp_cache.mil.heads  # noqa: F401  (registers the built-in heads on import)


def list_heads() -> list[str]:
    """Names of the registered heads, sorted."""
    _ensure_builtin_heads()
    return sorted(_HEADS)


def _lookup(name: str) -> type[MILHead]:
    _ensure_builtin_heads()
    try:
        return _HEADS[name]
    except KeyError:
        raise ConfigError(
            f"unknown MIL head {name!r}; valid heads are: {', '.join(sorted(_HEADS))} "
            "(the `head` key of the train configuration, or --head)"
        ) from None


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
