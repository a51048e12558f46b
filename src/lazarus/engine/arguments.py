"""Where the argument checks of `engine.checks` are applied: to a `Model` method's keyword
arguments (`checked`, `builds`) and to a command's options when they are made (`Options`), so
that every argument is checked once, by its name, whichever route it came by."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from lazarus.engine.checks import CHECKS

F = TypeVar("F", bound=Callable[..., Any])


def checked(method: F) -> F:
    """`method` with every argument checked (and normalised) by its name in `CHECKS` first; an
    argument whose default is None may be None."""
    return _checking(method, ())


def builds(options: type[Options]) -> Callable[[F], F]:
    """A `Model` method that builds `options` from its keyword arguments: those named like the
    options' fields are checked when the options are made (as the CLI's are), only the others
    (its inputs: prompts, a corpus, a callback) here, so each argument is checked once. At
    import, every field must be an argument with the field's default, so that the method and
    the options cannot drift apart."""
    fields = {field.name: field for field in dataclasses.fields(options)}  # type: ignore[arg-type]

    def decorate(method: F) -> F:
        arguments = dict(list(inspect.signature(method).parameters.items())[1:])
        drifted = [name for name, field in fields.items() if name not in arguments
                   or arguments[name].default != (inspect.Parameter.empty if field.default
                                                  is dataclasses.MISSING else field.default)]
        if drifted:  # a programming error, found at import
            raise TypeError(f"{method.__qualname__}: {', '.join(drifted)} missing, or with "
                            f"another default than in {options.__name__}")
        return _checking(method, tuple(fields))
    return decorate


def _checking(method: F, skipped: tuple[str, ...]) -> F:
    """`method` with its arguments but `skipped` checked by name (see `checked`)."""
    signature = inspect.signature(method)
    parameters = [p for p in list(signature.parameters.values())[1:]  # after self
                  if p.name not in skipped]
    checks = {p.name: CHECKS.get((method.__name__, p.name)) or CHECKS.get(p.name)
              for p in parameters}
    unchecked = [name for name, check in checks.items() if check is None]
    if unchecked:  # a programming error, found at import
        raise TypeError(f"{method.__qualname__}: no check for {', '.join(unchecked)} in CHECKS")

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        for parameter in parameters:
            if parameter.name not in bound.arguments:
                continue
            value = bound.arguments[parameter.name]
            if value is None and parameter.default is None:
                continue
            bound.arguments[parameter.name] = checks[parameter.name](parameter.name, value)
        return method(*bound.args, **bound.kwargs)

    return wrapper  # type: ignore[return-value]


class Options:
    """Base of each command's options, a frozen dataclass: every field is checked (and
    normalised) by its name in `CHECKS` when the options are made, then the rules between
    fields (`check`), so that the CLI (which builds them from argv) and the API (from keyword
    arguments) share one check. A field whose default is None may be None; `command` names the
    command for the checks that differ by command (`("steer", "layer")`)."""

    command: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        annotations = cls.__dict__.get("__annotations__", {})
        unchecked = [name for name, kind in annotations.items() if "ClassVar" not in str(kind)
                     and (cls.command, name) not in CHECKS and name not in CHECKS]
        if unchecked:  # a programming error, found at import
            raise TypeError(f"{cls.__qualname__}: no check for {', '.join(unchecked)} in CHECKS")

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if value is None and field.default is None:
                continue
            check = CHECKS.get((self.command, field.name)) or CHECKS[field.name]
            self._set(field.name, check(field.name, value))
        self.check()

    def check(self) -> None:
        """The command's rules between fields, and what a field's value must be beyond its type
        (a count from 1, a known method), that need no model; none here."""

    def _set(self, name: str, value: Any) -> None:
        """Normalise a field of these frozen options while they are made."""
        object.__setattr__(self, name, value)
