"""Loading, dumping and describing the configuration tree of :mod:`fedlib.config.schema`: a generic
walker over the dataclass fields and type hints (so a new key only needs a field there), YAML
line numbers for errors, dotted ``--set`` overrides, and the key table for the README.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError, _require
from .schema import RunConfig


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: '{p}' is not a section")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`over`'s keys on top of `base`'s, section by section. A section that `base` gives as a
    scalar (`client: 5`) is refused rather than silently replaced by `over`'s keys."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and k != "overrides":
            if isinstance(out.get(k), dict):
                out[k] = _merge(out[k], v, f"{prefix}{k}.")
                continue
            if out.get(k) is not None:
                keys = ", ".join(f"{prefix}{k}.{x}" for x in v)
                raise ConfigError(f"{prefix}{k}: must be a mapping (a section of {prefix}{k}.* keys), got "
                                  f"{out[k]!r}; so {keys} cannot go into it")
        out[k] = v
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " / ".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in typing.get_args(tp) else "")
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        _require(value in choices, key, f"must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            _require(type(None) in args, key, "must not be null")
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is dict or tp is dict:
        _require(isinstance(value, dict), key, f"must be a mapping, got {value!r}")
        return dict(value)
    if origin in (list, tuple):
        _require(isinstance(value, (list, tuple)), key, f"must be a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        return tuple(value) if inner is Any else tuple(_coerce(v, inner, key) for v in value)
    if tp is Any:
        return value
    if tp is bool:
        _require(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        _require(
            isinstance(value, int) and not isinstance(value, bool),
            key,
            f"must be an integer, got {value!r}",
        )
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        _require(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            key,
            f"must be a number, got {value!r}",
        )
        _require(math.isfinite(value), key, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        _require(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix or "config"
    if data is None:
        data = {}
    _require(isinstance(data, dict), where, f"must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            near = [n for n in sorted(names) if n[:3] == str(k)[:3]]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(
                f"{prefix + '.' if prefix else ''}{k}: unknown key{hint}; "
                f"allowed: {', '.join(sorted(names))}"
            )
    kwargs = {k: _coerce(v, hints[k], f"{prefix + '.' if prefix else ''}{k}") for k, v in data.items()}
    return cls(**kwargs)


def from_dict(data: dict[str, Any]) -> RunConfig:
    return _build(RunConfig, data, "")


def replace(cfg: RunConfig, **changes: Any) -> RunConfig:
    """`cfg` with dotted-key overrides, validated like a fresh load:
    ``config.replace(cfg, **{"federation.rounds": 3})``."""
    return from_dict(_merge(cfg.to_dict(), _nest(changes)))


def _yaml(text: str, where: str, prefix: str = "") -> tuple[Any, dict[str, int]]:
    """The YAML document and its dotted key -> 1-based line map (for error messages). A key given
    twice in one mapping is refused naming both lines: YAML keeps the last one silently, so a
    pasted block would override an earlier setting unseen."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                key = f"{prefix}.{k.value}" if prefix else str(k.value)
                line = k.start_mark.line + 1
                if key in seen and one_line:
                    raise ConfigError(f"{where} {key}: duplicate key; keep one")
                if key in seen:
                    raise ConfigError(f"{where}:{line}: {key}: duplicate key (also on line {seen[key]}); "
                                      "keep one")
                seen[key] = lines[key] = line
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{prefix}[{i}]")

    one_line = "\n" not in text.strip()
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, lines
        walk(root, prefix)
        return loader.construct_document(root), lines
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark is not None and not one_line else f"{where} {prefix}".strip()
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{at}: not valid YAML: {what}") from None
    finally:
        loader.dispose()


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; other bytes are refused naming the file, line and byte offset."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        bad = raw[e.start : e.start + 1]
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {e.start}: {bad!r}); save the file as "
                          "UTF-8") from None


def parse_overrides(items: typing.Iterable[str]) -> dict[str, Any]:
    """`key=value` strings (value parsed as YAML) -> flat dotted dict."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = _yaml(v, "--set", k.strip())[0] if v.strip() else None
    return out


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML file (optional) and apply dotted overrides (`--set` or papermill values)."""
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if path is not None:
        if Path(path).is_dir():
            raise ConfigError(f"{path}: is a directory; expected a YAML file (e.g. params/quickstart.yaml)")
        data, lines = _yaml(_read_text(Path(path)), str(path))
        data = data or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
    over = _nest(overrides or {})
    try:
        return from_dict(_merge(data, over))
    except ConfigError as e:
        key = str(e).split(":", 1)[0]
        if key in lines and key not in (overrides or {}):
            raise ConfigError(f"{path}:{lines[key]}: {e}") from None
        raise


def dump(cfg: RunConfig) -> str:
    return yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False)


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return [_plain(v) for v in x]
    return x


def _comments(cls: type) -> dict[str, str]:
    """Field name -> its trailing `# comment` in the class source: the keys' help text."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^#]*#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def describe() -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, help) for every config key; the README table comes from here."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        helps = _comments(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(tp):
                walk(tp, key + ".")
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            rows.append((key, _type_name(tp), repr(default), helps.get(f.name, "")))

    walk(RunConfig, "")
    return rows
