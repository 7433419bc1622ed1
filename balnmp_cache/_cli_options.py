"""Command-line parameters generated from a stage configuration's pydantic fields.

Each option is declared once, as a field of the stage's configuration class. For the field
``bag_size: int = Field(10, description="N: patches per bag")`` the command gets
``--bag-size <int>  N: patches per bag  [default: 10]``: the flag from the field name, the help from
the description, the default shown from the field default (the value used when neither the
configuration file nor the flag sets it). ``bool`` fields become ``--x/--no-x``, ``Literal`` fields
list their choices and refuse any other value naming them, list fields are repeatable options or
positional arguments.

A flag the user did not give overrides nothing: :func:`given_values` keeps only the values that click
says came from the command line, so the configuration file's value wins unless the flag is given.
Rendering-free: this module builds parameters; the commands live in :mod:`balnmp_cache.cli`.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer
from pydantic.fields import FieldInfo

from balnmp_cache.config import StageConfig

__all__ = ["FieldParameters", "given_values"]

_SCALARS = (bool, int, float, str, PurePath)
_UNSET_SOURCES = ("DEFAULT", "DEFAULT_MAP")


@dataclass(frozen=True)
class _Shape:
    """What a field's annotation means for the command line."""

    base: type
    is_list: bool
    choices: tuple[Any, ...] = ()


def _shape(name: str, annotation: Any) -> _Shape:
    """Strip ``X | None``, then read ``list[X]`` and ``Literal[...]``; anything else is refused."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            annotation = members[0]
    is_list = get_origin(annotation) is list
    if is_list:
        (annotation,) = get_args(annotation)
    if get_origin(annotation) is Literal:
        choices = get_args(annotation)
        return _Shape(str, is_list, choices)
    if isinstance(annotation, type) and issubclass(annotation, _SCALARS):
        return _Shape(annotation, is_list)
    raise TypeError(
        f"the field {name!r} ({annotation!r}) has no command-line form; list it in the command's `exclude`"
    )


def _choice_parser(choices: tuple[Any, ...]) -> Callable[[str], Any]:
    by_text = {str(c): c for c in choices}
    listing = ", ".join(repr(c) for c in by_text)

    def parse(value: Any) -> Any:
        if str(value) not in by_text:
            raise typer.BadParameter(f"{value!r} is not one of {listing}")
        return by_text[str(value)]

    return parse


def _checked(check: Callable[[Any], Any]) -> Callable[..., Any]:
    """A click callback running ``check`` on a value given on the command line (not on the default).

    ``check`` raises ``ValueError`` with a message naming the valid choices; it may import heavy modules,
    since it runs only when the flag is used.
    """

    def callback(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        if param.name is None or _is_unset(ctx, param.name) or value is None:
            return value
        try:
            return check(value)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None

    return callback


def _is_unset(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is None or source.name in _UNSET_SOURCES


def given_values(ctx: typer.Context, values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that the user gave on the command line (unset flags override nothing)."""
    return {name: value for name, value in values.items() if not _is_unset(ctx, name)}


@dataclass(frozen=True)
class FieldParameters:
    """Which fields of a stage configuration a command exposes, and how.

    Attributes:
        model: the stage's configuration class.
        arguments: fields taken as positional arguments, in order (``SOURCE...``); the rest are options.
        required: arguments the command line must give even though the field has a default.
        exclude: fields without a command-line form (dict-valued tables such as ``head_options``).
        help: help texts that replace a field's description (e.g. one that would list a registry).
        checks: field -> function validating a value given on the command line; it raises ``ValueError``.
    """

    model: type[StageConfig]
    arguments: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    help: Mapping[str, str] = field(default_factory=dict)
    checks: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)

    def names(self) -> list[str]:
        """The exposed fields: the arguments in order, then the options in field order."""
        fields = self.model.model_fields
        named = {*self.arguments, *self.required, *self.exclude, *self.help, *self.checks}
        unknown = sorted(named - set(fields))
        if unknown:
            raise ValueError(f"{self.model.__name__} has no field(s) {', '.join(unknown)}")
        options = [name for name in fields if name not in self.arguments and name not in self.exclude]
        return [*self.arguments, *options]

    def parameters(self) -> list[inspect.Parameter]:
        """One keyword-only :class:`inspect.Parameter` per exposed field, annotated for typer."""
        return [self._parameter(name, self.model.model_fields[name]) for name in self.names()]

    def _parameter(self, name: str, info: FieldInfo) -> inspect.Parameter:
        shape = _shape(name, info.annotation)
        required = info.is_required() or name in self.required
        default = None if required else info.get_default(call_default_factory=True)
        if default == []:
            default = None  # nothing to show; an unset list overrides nothing either way
        settings: dict[str, Any] = {"help": self.help.get(name, info.description or "")}
        if shape.choices:
            settings["parser"] = _choice_parser(shape.choices)
            settings["metavar"] = "<" + "|".join(str(c) for c in shape.choices) + ">"
        if name in self.checks:
            settings["callback"] = _checked(self.checks[name])
        flag = "--" + name.replace("_", "-")
        if name in self.arguments:
            kind: Any = typer.Argument(**settings)
        elif shape.base is bool and not shape.is_list:
            kind = typer.Option(f"{flag}/--no-{name.replace('_', '-')}", **settings)
        else:
            kind = typer.Option(flag, **settings)
        annotation: Any = list[shape.base] if shape.is_list else shape.base  # type: ignore[name-defined]
        if default is None and not required:
            annotation = annotation | None
        return inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if required else default,
            annotation=Annotated[annotation, kind],
        )
