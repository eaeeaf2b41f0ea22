"""How a command's options are declared: once, as the fields of a dataclass.

Each field carries its type (the annotation), default, help text, allowed values, range and checks,
and whether it is a positional argument or a flag. From that one declaration:

- cli/ generates the command's Typer signature (`cli/declared.py`): `num_beams` -> `--num-beams`,
  booleans as `--x/--no-x`, lists as a repeatable flag;
- `pefomed study` builds each cell's argv with `to_argv` (only the values that differ from the
  defaults), and a test parses every such argv back through the CLI to the same options;
- `validate` checks every value, in Python as on the command line, and its errors name the key in
  backticks (`num_beams`), which cli/ spells as the flag the user typed (pefomed.errors);
- docs and messages that point at another command spell its flags through `flag_of`.

Options shared with the recipe (infer's generation settings) name the recipe field
(`recipe="infer.num_beams"`): its description is the help text and its pydantic constraints are the
range, so `--num-beams` and `infer.num_beams` take the same values by construction.

Groups of options that a stage passes around as one object (an inference's prompting) are a nested
Options class (`nested(PromptOptions)`); on the command line their fields are flags of the command
like any other. Flag names are unique within a command (checked by `flat_fields`).

Hand-written rather than pydantic: the declaration has to drive Typer's signature, study argv and
the messages' key spelling from one place; pydantic would still need all of that written around it,
and importing it for `pefomed --help` is slower than a dataclass.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from pefomed.errors import UserError

Check = tuple  # (predicate, "requirement"), or a tuple of them, each its own message


def option(default: Any = MISSING, help: str = "", *, choices: tuple | Callable[[], Iterable] | None = None,
           check: Check | None = None, low: float | None = None, high: float | None = None,
           flag: str | None = None, short: str | None = None, positional: bool = False,
           metavar: str | None = None, cli: bool = True, recipe: str | None = None,
           factory: Callable[[], Any] | None = None, negatable: bool | None = None) -> Any:
    """One declared option (a dataclass field). `default` MISSING: required. `choices`: the allowed
    values (or a function returning them, resolved only when validating, so declaring a command
    imports nothing heavy). `low`/`high`: an inclusive range. `flag`: the flag's name when it is not
    the key (`flag="workers"` -> `--workers`). `recipe`: the recipe key it shares its help and range with.
    `cli=False`: settable from Python only. `negatable=False`: a boolean without its `--no-x`."""
    meta = {"help": help, "choices": choices, "check": check, "low": low, "high": high, "flag": flag,
            "short": short, "positional": positional, "metavar": metavar, "cli": cli, "recipe": recipe,
            "negatable": negatable, "nested": False}
    if factory is not None:
        return field(default_factory=factory, kw_only=True, metadata=meta)
    return field(default=default, kw_only=True, metadata=meta)


def nested(cls: type) -> Any:
    """A group of options declared by another Options class, flattened on the command line."""
    return field(default_factory=cls, kw_only=True, metadata={"nested": True, "cli": True})


@dataclass(frozen=True)
class Declared:
    """One command-line option of a command, after flattening nested groups."""

    name: str  # the key (`num_beams`)
    path: tuple[str, ...]  # the nested groups it sits in (("options", "prompting"))
    owner: type  # the Options class declaring it
    kinds: tuple  # the allowed types: bool, int, float, str, Path (several: `int | str`)
    optional: bool  # None is allowed
    repeated: bool  # a list: the flag may be given several times (or several positionals)
    default: Any
    meta: dict

    @property
    def kind(self) -> Any:
        """The type the command line parses: the one allowed type, else text (`int | str`: a
        number or "auto", which the option's check reads)."""
        return self.kinds[0] if len(self.kinds) == 1 else str

    @property
    def flag(self) -> str:
        return "--" + (self.meta["flag"] or self.name).replace("_", "-")

    @property
    def negatable(self) -> bool:
        """A boolean flag also has its `--no-x` (every one does unless declared otherwise: a study
        cell or a script can then state either value explicitly)."""
        return self.meta["negatable"] is not False

    @property
    def negated_flag(self) -> str:
        """A boolean's off switch (`--no-meteor`)."""
        return _negated(self.flag)

    @property
    def help(self) -> str:
        text = self.meta["help"]
        if self.meta["recipe"]:
            description = _recipe_field(self.meta["recipe"]).description or ""
            text = " ".join(p for p in (description[:1].upper() + description[1:] + "." if description else "",
                                        text, f"Default: the source's {self.meta['recipe']}.") if p)
        choices = self.meta["choices"]
        if isinstance(choices, tuple) and "one of:" not in text:
            text += f" (one of: {', '.join(map(str, choices))})"
        return text


def _negated(flag: str) -> str:
    return flag[:2] + "no-" + flag[2:]


def _recipe_field(key: str):
    from pefomed.recipe import Recipe

    section, name = key.split(".")
    return Recipe.model_fields[section].annotation.model_fields[name]


def _base_type(annotation: Any) -> tuple[tuple, bool, bool]:
    """(the allowed types, optional, repeated) of a field annotation such as `list[str] | None`."""
    args = typing.get_args(annotation)
    union = typing.get_origin(annotation) in (typing.Union, _UnionType)
    optional = union and type(None) in args
    kinds = tuple(a for a in args if a is not type(None)) if union else (annotation,)
    repeated = typing.get_origin(kinds[0]) in (list, tuple)
    if repeated:
        kinds = (typing.get_args(kinds[0])[0],)
    return kinds, optional, repeated


try:  # `X | Y` annotations are types.UnionType, `Optional[X]` is typing.Union
    from types import UnionType as _UnionType
except ImportError:  # pragma: no cover
    _UnionType = typing.Union


class Options:
    """Base of every command's options (a dataclass with `option` fields). Subclasses are
    `@dataclass(kw_only=True)`; `__post_init__` validates, so an instance is always valid."""

    def __post_init__(self) -> None:
        self.validate()

    # ---- the declaration, flattened ------------------------------------------------------------
    @classmethod
    def flat_fields(cls) -> list[Declared]:
        """Every command-line option of this class and its nested groups, in declaration order."""
        found: list[Declared] = []
        cls._collect(found, ())
        names = [d.name for d in found]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        assert not duplicated, f"{cls.__name__}: option keys declared twice: {duplicated}"
        return found

    @classmethod
    def _collect(cls, found: list, path: tuple) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.metadata.get("cli", False):
                continue
            if f.metadata.get("nested"):
                hints[f.name]._collect(found, path + (f.name,))
                continue
            kinds, optional, repeated = _base_type(hints[f.name])
            default = f.default if f.default is not MISSING else (
                f.default_factory() if f.default_factory is not MISSING else MISSING)
            found.append(Declared(f.name, path, cls, kinds, optional, repeated, default, dict(f.metadata)))

    @classmethod
    def declared(cls, name: str) -> Declared:
        for d in cls.flat_fields():
            if d.name == name:
                return d
        raise KeyError(f"{cls.__name__} declares no option {name!r}")

    @classmethod
    def flag(cls, name: str) -> str:
        return cls.declared(name).flag

    # ---- building and reading instances --------------------------------------------------------
    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> "Options":
        """An instance from keyword options (Python callers); an unknown key is a bug of the caller."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}; known: {', '.join(known)}")
        return cls(**options)

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> "Options":
        """An instance from {key: value} of the flattened options (what the CLI parsed); keys not
        given keep their defaults."""
        return cls._build(dict(values))

    @classmethod
    def _build(cls, values: dict[str, Any]):
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.metadata.get("nested"):
                kwargs[f.name] = hints[f.name]._build(values)
            elif f.name in values and f.metadata.get("cli", False):
                kwargs[f.name] = values.pop(f.name)
        return cls(**kwargs)

    def flat(self) -> dict[str, Any]:
        """{key: value} of every command-line option, nested groups flattened."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("nested"):
                out.update(value.flat())
            elif f.metadata.get("cli", False):
                out[f.name] = value
        return out

    def to_argv(self) -> list[str]:
        """The command-line arguments that give these options: the positionals in order, then each
        flag whose value differs from its default (`pefomed study` builds its cells' commands so)."""
        values = self.flat()
        positional, flags = [], []
        for d in self.flat_fields():
            value = values[d.name]
            if d.meta["positional"]:
                positional += [str(v) for v in value] if d.repeated else ([] if value is None else [str(value)])
                continue
            if d.default is not MISSING and _same(value, d.default):
                continue
            if d.kind is bool:
                flags.append(d.flag if value else d.negated_flag)
            elif d.repeated:
                for item in value or ():
                    flags += [d.flag, str(item)]
            elif value is not None:
                flags += [d.flag, str(value)]
        return positional + flags

    # ---- validation ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Every declared value against its declaration; nested groups validate themselves when
        built. Errors name the key in backticks."""
        for f in dataclasses.fields(self):
            if "positional" in f.metadata:  # declared with option(); nested groups and plain fields are not
                self.check_value(f.name, getattr(self, f.name))

    @classmethod
    def check_value(cls, name: str, value: Any) -> None:
        """One option's value against its declaration (type, choices, range, checks): what
        `validate` applies to each field, and what `pefomed study` applies to the settings its
        cells will pass, so a study is refused by the very rule the command would apply."""
        f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
        if f is None:
            raise TypeError(f"{cls.__name__} declares no option {name!r}")
        meta = f.metadata
        kinds, optional, repeated = _base_type(typing.get_type_hints(cls)[name])
        label = f"`{name}`"
        if value is None or value is MISSING:
            if not optional:
                raise UserError(f"{label} needs a value")
            return
        for item in (value if repeated else [value]):
            _check_type(label, kinds, item)
            choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
            if choices and item not in tuple(choices):
                raise UserError(f"{label} must be one of {', '.join(map(str, choices))}; got {_shown(item)}")
            if meta["low"] is not None and item < meta["low"]:
                raise UserError(f"{label} must be at least {meta['low']}, got {_shown(item)}")
            if meta["high"] is not None and item > meta["high"]:
                raise UserError(f"{label} must be at most {meta['high']}, got {_shown(item)}")
            checks = meta["check"] or ()
            for predicate, requirement in ([checks] if checks and callable(checks[0]) else checks):
                if not predicate(item):
                    raise UserError(f"{label} must be {requirement}, got {_shown(item)}")
        if meta["recipe"]:
            _check_recipe_value(meta["recipe"], name, value)


def _check_type(label: str, kinds: tuple, value: Any) -> None:
    def fits(kind) -> bool:
        return (isinstance(value, bool) if kind is bool else
                isinstance(value, int) and not isinstance(value, bool) if kind is int else
                isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else
                isinstance(value, (str, os.PathLike)) if kind in (str, Path) else
                isinstance(value, kind))

    if not any(fits(kind) for kind in kinds):
        names = {bool: "true or false", int: "a whole number", float: "a number", str: "a text", Path: "a path"}
        expected = " or ".join(names.get(k, getattr(k, "__name__", str(k))) for k in kinds)
        raise UserError(f"{label} must be {expected}, got {_shown(value)}")


def _check_recipe_value(key: str, name: str, value: Any) -> None:
    """The recipe field's own constraints (pydantic), with the option's key in the message."""
    from pydantic import ValidationError

    from pefomed.recipe import Recipe

    section = key.split(".")[0]
    try:
        Recipe.model_fields[section].annotation.model_validate({key.split(".")[1]: value})
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"`{name}`: {first['msg']} (got {_shown(first.get('input'))})") from None


def _shown(value: Any) -> str:
    from pefomed.io import short

    return short(value, 80)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b

