"""Typed stage configs: defaults < --config YAML < key=value overrides.

Every stage has one dataclass. A string literal placed under a field is that
field's documentation (as in cleanrl); `describe()` turns it into `--help`.
Values are merged as plain dicts first, then the dataclass is built once and
`validate()` checks the final values, so an error names the key that is wrong.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import inspect
import os
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config value or key the user gave is wrong; the message says how to fix it."""


def field_docs(cls: type) -> dict[str, str]:
    """Map field name -> the string literal written under it in the class body."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nested_type(tp: Any) -> type | None:
    """The dataclass type of a field, or None if the field is a leaf."""
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _closest(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else f" (valid keys: {', '.join(sorted(options))})"


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check and convert one leaf value to the annotated type, naming `key` on failure."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v] if value else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp in (int, float) and isinstance(value, str):
        # YAML 1.1 reads "1e-5" (no dot) as a string; users write it that way everywhere.
        try:
            value = float(value) if tp is float or any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Construct dataclass `cls` from a nested dict, refusing unknown keys."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'{_closest(key, names)}")
        nested = _nested_type(hints[key])
        if nested is not None:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{full}: expected a mapping of {nested.__name__} keys, got {value!r}")
            kwargs[key] = build(nested, value, prefix=f"{full}.")
        else:
            kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`lora.r=8` -> ("lora.r", 8). Values are parsed as YAML, so lists and bools work."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # A bare path like runs/sft/final parses as a string already; keep exotic YAML
    # types (dates, ...) as the text the user typed.
    if not isinstance(value, (str, int, float, bool, list, dict, type(None))):
        value = raw
    return key, value


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None) -> Any:
    """Defaults < YAML file < overrides; then build once and validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
        tree = loaded
        try:  # the file's own keys first, so that an error names where the bad key really is
            build(cls, tree)
        except ConfigError as e:
            raise ConfigError(f"{e} (from {path})") from None
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    try:
        config = build(cls, tree)
    except ConfigError as e:
        where = " (from the command line)" if path else ""
        raise ConfigError(f"{e}{where}") from None
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _own_fields_first(cls: type) -> list[dataclasses.Field]:
    """A config's fields, those its own class introduces first, then each base's (the shared blocks), so --help
    opens with what is particular to the stage. A field a class only re-declares (a new default) stays with
    the block that introduced it."""
    fields = dataclasses.fields(cls)

    def introduced_by(name: str) -> int:  # MRO position of the most basic class declaring it
        return max(i for i, klass in enumerate(cls.__mro__) if name in vars(klass).get("__annotations__", {}))

    return sorted(fields, key=lambda f: introduced_by(f.name))  # stable: declaration order within a class


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """Rows (dotted key, default, doc) for --help, nested configs flattened."""
    rows = []
    docs = field_docs(cls)
    hints = _hints(cls)
    defaults = cls()
    for f in _own_fields_first(cls):
        nested = _nested_type(hints[f.name])
        if nested is not None:
            rows.extend(describe(nested, prefix=f"{prefix}{f.name}."))
            continue
        default = getattr(defaults, f.name)
        rows.append((f"{prefix}{f.name}", repr(default), docs.get(f.name, "")))
    return rows


def require(condition: bool, message: str) -> None:
    """validate() helper: raise ConfigError(message) unless condition holds."""
    if not condition:
        raise ConfigError(message)


def load_callable(spec: str, what: str = "callable"):
    """`package.module:function` named by a config value (eval's judge, PPO's reward_fn) -> the function;
    ConfigErrors for the usual mistakes, naming `what`. The working directory is searched first, as
    `python -m` does: the `rlhf` console script and `accelerate launch` leave it off sys.path, and a
    user's my_rewards.py sits there."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ConfigError(f"{what}={spec}: expected module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{what}={spec}: cannot import {module_name} ({e})") from e
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{what}={spec}: {module_name} has no callable {name}")
    return fn
