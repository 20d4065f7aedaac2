"""Command lines generated from the specs: every spec field is a flag, every entry point one parser family.

A field's flag is its name with hyphens (``batch_size`` → ``--batch-size``) unless its metadata
names another (``ModelSpec.name`` → ``--model``); its help is the field's one-line ``help``.
Nested specs are flattened (``--lr`` sets ``run.training.lr``), so flags must be unique over the
whole tree, which :func:`spec_flags` checks. ``--config FILE`` loads a whole spec (JSON or YAML,
the form ``--print-config`` writes); flags then override single fields.

Why a small generator rather than tyro, jsonargparse or simple-parsing: the specs are frozen,
nested, validated dataclasses with OpenLTH-style step strings and comma lists; argparse keeps
errors to one line and adds no dependency, and the generator is all the glue they need.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earlyphase.errors import SpecError
from earlyphase.specs import Spec


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (exit 2), like every other bad input."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class SpecFlag:
    """One command-line flag and the spec field it sets."""

    path: tuple[str, ...]  # field names from the root spec, e.g. ("run", "training", "lr")
    flag: str  # without the leading dashes
    kind: Any  # the field's type: int, float, str, bool, tuple[int, ...]...
    help: str
    steps: bool  # a tuple of iterations that may be written as steps ("0,500,2ep")

    @property
    def dest(self) -> str:
        return "spec__" + "__".join(self.path)


def _optional_spec(kind: Any) -> type[Spec] | None:
    """``X`` for a field typed ``X`` or ``X | None`` where X is a spec class, else None."""
    if isinstance(kind, type) and issubclass(kind, Spec):
        return kind
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        specs = [a for a in typing.get_args(kind) if isinstance(a, type) and issubclass(a, Spec)]
        return specs[0] if len(specs) == 1 else None
    return None


def spec_flags(cls: type[Spec], path: tuple[str, ...] = ()) -> list[SpecFlag]:
    """Every leaf field of ``cls`` (nested specs flattened) as a flag; duplicate flags are a bug."""
    flags = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        nested = _optional_spec(hints[f.name])
        if nested is not None:
            flags += spec_flags(nested, (*path, f.name))
            continue
        flag = f.metadata.get("flag", f.name.replace("_", "-"))
        flags.append(
            SpecFlag((*path, f.name), flag, hints[f.name], f.metadata.get("help", ""), "steps" in f.metadata)
        )
    seen: dict[str, SpecFlag] = {}
    for spec_flag in flags:
        if spec_flag.flag in seen:
            raise TypeError(f"--{spec_flag.flag} sets both {seen[spec_flag.flag].path} and {spec_flag.path}")
        seen[spec_flag.flag] = spec_flag
    return flags


def finite_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _comma_list(item):
    def parse(text: str) -> tuple:
        return tuple(item(x.strip()) for x in text.split(",") if x.strip())

    return parse


_SCALARS = {int: _integer, float: finite_number, str: str}
_METAVARS = {int: "INT", float: "FLOAT", str: "TEXT"}


def _argument_type(spec_flag: SpecFlag):
    kind = spec_flag.kind
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        return _comma_list(str if spec_flag.steps else _SCALARS[item]), f"{_METAVARS[item]},..."
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return _SCALARS[kind], _METAVARS[kind]


def add_spec_arguments(parser: argparse.ArgumentParser, cls: type[Spec]) -> list[SpecFlag]:
    """Add a flag for every field of ``cls``, grouped by nested spec; returns them for :func:`apply_flags`."""
    flags = spec_flags(cls)
    groups: dict[tuple[str, ...], Any] = {}
    for spec_flag in flags:
        section = spec_flag.path[:-1]
        if section not in groups:
            title = " ".join(section) if section else cls.__name__
            groups[section] = parser.add_argument_group(f"{title} (spec fields)")
        group, kind = groups[section], spec_flag.kind
        if kind is bool or kind == (bool | None):
            group.add_argument(
                f"--{spec_flag.flag}", dest=spec_flag.dest, action=argparse.BooleanOptionalAction,
                default=None, help=spec_flag.help,
            )  # fmt: skip
            continue
        parse, metavar = _argument_type(spec_flag)
        group.add_argument(
            f"--{spec_flag.flag}", dest=spec_flag.dest, type=parse, metavar=metavar, help=spec_flag.help
        )
    return flags


def apply_flags(spec: Spec, args: argparse.Namespace, flags: list[SpecFlag]) -> Spec:
    """``spec`` with every field whose flag was given replaced; step lists resolved against the
    resulting run beside them. Each spec is rebuilt (and validated) once with all its new fields, so
    fields valid only together (a pretraining mode and its length) can be given together.

    A flag of an optional nested spec that is ``None`` creates it from its defaults."""
    given = {f.path: getattr(args, f.dest) for f in flags if getattr(args, f.dest) is not None}
    steps = {f.path for f in flags if f.steps and f.path in given}
    for path in steps:  # against the run beside the field (``run``, or ``sweep.run`` in a wrapping spec)
        run_path = (*path[:-1], "run")
        run_changes = [(p[len(run_path) :], v) for p, v in given.items() if p[: len(run_path)] == run_path]
        run = _replace_fields(functools.reduce(getattr, run_path, spec), _tree(run_changes))
        given[path] = tuple(run.iterations(v) for v in given[path])
    return _replace_fields(spec, _tree(list(given.items())))


def _tree(changes: list[tuple[tuple[str, ...], Any]]) -> dict:
    """``[(("run", "training", "lr"), 0.1)]`` → ``{"run": {"training": {"lr": 0.1}}}``."""
    tree: dict = {}
    for path, value in changes:
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = value
    return tree


def _replace_fields(spec: Spec, tree: dict) -> Spec:
    if not tree:
        return spec
    hints = typing.get_type_hints(type(spec))
    values = {}
    for name, change in tree.items():
        nested = _optional_spec(hints[name])
        if nested is not None and isinstance(change, dict):
            inner = getattr(spec, name)
            values[name] = _replace_fields(nested() if inner is None else inner, change)
        else:
            values[name] = change
    return dataclasses.replace(spec, **values)


def add_config_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"a whole {what} (JSON or YAML, as --print-config writes it)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help=f"print the resolved {what} as JSON and exit"
    )


def load_config(cls: type[Spec], path: Path) -> Spec:
    """A spec from a JSON or YAML file; one-line SpecError if it cannot be read or is not one."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError(f"cannot read --config {path}: {error.strerror or error}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except ValueError as error:  # json.JSONDecodeError and yaml.YAMLError's parse errors
        raise SpecError(
            f"--config {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {error}"
        ) from None
    except Exception as error:  # yaml.YAMLError is not a ValueError
        raise SpecError(f"--config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise SpecError(f"--config {path} must hold a mapping of {cls.__name__} fields")
    try:
        return cls.from_dict(values)
    except TypeError as error:
        raise SpecError(f"--config {path}: {error}") from None


def print_config(spec: Spec) -> None:
    """The spec as indented JSON with sorted keys: what ``--config`` reads back to the same key."""
    json.dump(spec.to_dict(), sys.stdout, indent=2, sort_keys=True)
    print()


def spec_arguments(spec: Spec, sections: tuple[str, ...]) -> list[str]:
    """The flags that set ``spec``'s fields under ``sections`` (first names of the field paths, e.g.
    ``("data", "training")`` of a RunSpec) to their values: ``--lr 0.1 --milestones 80ep,120ep
    --no-augment``; fields that are None are left out. What :func:`apply_flags` reads back."""
    arguments = []
    for spec_flag in spec_flags(type(spec)):
        if spec_flag.path[0] not in sections:
            continue
        value = spec
        for name in spec_flag.path:
            value = getattr(value, name)
        if value is None:
            continue
        if isinstance(value, bool):
            arguments.append(f"--{'' if value else 'no-'}{spec_flag.flag}")
        else:
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            arguments += [f"--{spec_flag.flag}", text]
    return arguments
