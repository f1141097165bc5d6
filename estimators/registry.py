"""A small named registry of configurable functions, shared by `estimators` and `rewards`.

A registered function takes its inputs positionally (or by the reserved keyword names) and its configuration as
keyword-only parameters with defaults. `Registry.bind` validates a configuration against those parameters: unknown
names, values outside a `Literal[...]` annotation or of another type than annotated, and non-finite numbers raise
`ValueError` naming what is allowed.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """Maps names to functions; `kind` names the registry in error messages ("estimator", "reward")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._functions: dict[str, F] = {}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._signatures: dict[str, tuple[dict[str, inspect.Parameter], dict[str, Any]]] = {}

    def register(self, name: str, **metadata: Any) -> Callable[[F], F]:
        """Decorator registering a function under `name`; a name already taken raises `ValueError`."""

        def decorator(fn: F) -> F:
            if name in self._functions:
                raise ValueError(f"{self.kind} {name!r} is already registered (by {self._functions[name].__module__})")
            self._functions[name] = fn
            self._metadata[name] = metadata
            return fn

        return decorator

    def available(self) -> list[str]:
        """Sorted names of every registered function."""
        return sorted(self._functions)

    def function(self, name: str) -> F:
        """The function registered as `name`; unknown names raise `ValueError` listing the known ones."""
        if name not in self._functions:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}")
        return self._functions[name]

    def metadata(self, name: str) -> dict[str, Any]:
        """The keyword arguments given to `register` for `name`."""
        self.function(name)
        return self._metadata[name]

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        """The configurable (keyword-only) parameters of `name`, in declaration order."""
        return self._signature(name)[0]

    def hints(self, name: str) -> dict[str, Any]:
        """The resolved annotations of `name`."""
        return self._signature(name)[1]

    def _signature(self, name: str) -> tuple[dict[str, inspect.Parameter], dict[str, Any]]:
        """The keyword-only parameters and resolved annotations of `name`, read once (a sweep binds every trial's
        configuration, and `typing.get_type_hints` compiles each string annotation again on every call)."""
        if name not in self._signatures:
            fn = self.function(name)
            keyword_only = {p.name: p for p in inspect.signature(fn).parameters.values()
                            if p.kind is inspect.Parameter.KEYWORD_ONLY}
            self._signatures[name] = keyword_only, typing.get_type_hints(fn)
        return self._signatures[name]

    def bind(self, name: str, **params: Any) -> dict[str, Any]:
        """Full configuration of `name`: defaults updated by `params`, each value validated."""
        allowed = self.parameters(name)
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)} for {self.kind} {name!r}; "
                f"allowed: {', '.join(allowed) or '(none)'}"
            )
        hints = self.hints(name)
        resolved = {key: p.default for key, p in allowed.items()}
        for key, value in params.items():
            _check_value(f"{self.kind} {name!r} parameter {key!r}", hints.get(key), value)
            resolved[key] = value
        return resolved


def _check_value(where: str, annotation: Any, value: Any) -> None:
    """Raise `ValueError` when `value` is outside a Literal's choices, not of its annotated type (`int | None`,
    `bool`, `str`, ...; an int passes for a float, a bool never for a number) or a non-finite number."""
    if annotation is None or annotation is Any:
        return
    choices = _literal_choices(annotation)
    if choices is not None:
        if value not in choices:
            raise ValueError(f"{where} is {value!r}; allowed values: {', '.join(map(repr, choices))}")
        return
    try:
        _adapter(annotation).validate_python(value, strict=True)
    except ValidationError:
        raise ValueError(f"{where} is {value!r}; expected {_type_name(annotation)}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))


def _type_name(annotation: Any) -> str:
    """`float`, `int | None`, ... as written in a signature."""
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _literal_choices(annotation: Any) -> tuple[Any, ...] | None:
    """The allowed values of a `Literal[...]` annotation (also inside `Optional`), else None."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        literals = [a for a in typing.get_args(annotation) if typing.get_origin(a) is typing.Literal]
        if literals:
            nested = tuple(v for lit in literals for v in typing.get_args(lit))
            return nested + ((None,) if type(None) in typing.get_args(annotation) else ())
    return None
