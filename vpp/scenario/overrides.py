"""Overrides by dotted path: ``fleets.0.n_devices=500``, validated exactly as a scenario file is.

An override never patches a validated :class:`Scenario` (``model_copy`` would
skip validation): it sets the value in the scenario's *mapping* and the whole
mapping is parsed again by :func:`vpp.scenario.parse_scenario`. A path must
name a field the scenario has (its keys after defaults are filled in, so
``platform.non_compliance_share`` exists even when the file does not mention
``platform``); list items are addressed by integer index (``fleets.0``).
Errors are :class:`ScenarioError` lines naming the path.

Values given as text (``--set path=value``) are read as YAML 1.2 scalars or
flow collections, as in a scenario file: ``0.2`` is a number, ``true`` a
bool, ``edf`` a string, ``[1, 2]`` a list, ``'007'`` the string 007.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vpp.fleets.config import short
from vpp.scenario.load import ScenarioError, _parse_yaml, _yaml_error, load_scenario, parse_scenario
from vpp.scenario.schema import Scenario

__all__ = ["parse_assignment", "split_path", "check_path", "set_path", "scenario_data", "with_overrides",
           "load_with_overrides"]

_MISSING = object()


def split_path(path: str) -> tuple[str | int, ...]:
    """``"fleets.0.n_devices"`` as ``("fleets", 0, "n_devices")``; digits are list indices."""
    if not isinstance(path, str) or not path or len(path) > 400:
        raise ScenarioError(f"override path {short(path)}: must be a dotted path such as fleets.0.n_devices")
    parts = path.split(".")
    if any(p == "" for p in parts):
        raise ScenarioError(f"override path {short(path)}: empty step; write e.g. fleets.0.n_devices")
    return tuple(int(p) if p.isdigit() else p for p in parts)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"path=value"`` as ``(path, value)``, the value read as YAML (see the module docstring)."""
    path, sep, raw = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ScenarioError(f"--set {short(text)}: must be dotted.path=value, e.g. fleets.0.n_devices=500")
    split_path(path)
    try:
        value = _parse_yaml(raw)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"--set {path}: the value {short(raw)} is not valid YAML: {_yaml_error(exc)}") from None
    return path, value


def _step_name(parts: tuple, i: int) -> str:
    return ".".join(str(p) for p in parts[: i + 1])


def check_path(full: Mapping[str, Any], path: str) -> None:
    """Raise :class:`ScenarioError` unless ``path`` names a field of ``full`` (a scenario dumped with defaults)."""
    parts = split_path(path)
    node: Any = full
    for i, part in enumerate(parts):
        where = _step_name(parts, i - 1) if i else "the scenario"
        if isinstance(node, list):
            if not isinstance(part, int):
                raise ScenarioError(f"{path}: {where} is a list; address its items by index 0..{len(node) - 1}")
            if part >= len(node):
                raise ScenarioError(f"{path}: {where} has {len(node)} items; index {part} does not exist")
            node = node[part]
        elif isinstance(node, Mapping):
            key = str(part)
            if key not in node:
                keys = ", ".join(str(k) for k in node)
                raise ScenarioError(f"{path}: {where} has no key {key!r}; allowed: {keys}")
            node = node[key]
        else:
            kind = "not set (null)" if node is None else f"a value ({short(node)}), not a mapping or list"
            raise ScenarioError(f"{path}: {where} is {kind}; set {where} itself to a mapping instead")


def set_path(data: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``data`` with ``path`` set to ``value``; missing mappings on the way are created.

    ``data`` is not changed. Whether the path names a scenario field is
    :func:`check_path`'s job; list indices must exist here too.
    """
    parts = split_path(path)
    out = copy.deepcopy(dict(data))
    node: Any = out
    for i, part in enumerate(parts[:-1]):
        child = _get(node, part, path, parts, i)
        if child is _MISSING or child is None:
            child = {}
        elif not isinstance(child, (dict, list)):
            raise ScenarioError(f"{path}: {_step_name(parts, i)} is a value ({short(child)}), not a mapping or list")
        _put(node, part, child, path, parts, i)
        node = child
    _put(node, parts[-1], copy.deepcopy(value), path, parts, len(parts) - 1)
    return out


def _get(node, part, path, parts, i):
    if isinstance(node, list):
        if not isinstance(part, int) or part >= len(node):
            raise ScenarioError(f"{path}: {_step_name(parts, i - 1)} has {len(node)} items; no item {part}")
        return node[part]
    return node.get(str(part), _MISSING)


def _put(node, part, value, path, parts, i) -> None:
    if isinstance(node, list):
        if not isinstance(part, int) or part >= len(node):
            raise ScenarioError(f"{path}: {_step_name(parts, i - 1)} has {len(node)} items; no item {part}")
        node[part] = value
    else:
        node[str(part)] = value


def scenario_data(base: Scenario | Mapping[str, Any] | str | Path) -> tuple[dict[str, Any], str, Path | None]:
    """``(mapping, source, base_dir)`` of a scenario given as a file, a mapping or a validated :class:`Scenario`.

    A file is read as :func:`load_scenario` reads it (and must be valid as
    it stands); a :class:`Scenario` is dumped with its defaults (data-file
    paths in it are already absolute).
    """
    if isinstance(base, Scenario):
        return base.model_dump(mode="json"), f"<scenario {base.name}>", None
    if isinstance(base, Mapping):
        return copy.deepcopy(dict(base)), "<scenario>", None
    path = Path(base)
    sc = load_scenario(path)  # every error in the file itself, reported as for `vpp run`
    del sc
    from vpp.scenario.load import _parse_toml, _read_text

    text = _read_text(path)
    data = _parse_toml(text) if path.suffix.lower() == ".toml" else _parse_yaml(text)
    return data, str(path), path.parent


def with_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any], source: str = "<scenario>",
                   base_dir: str | Path | None = None, full: Mapping[str, Any] | None = None,
                   label: str | None = None, path_prefix: str = "--set ") -> Scenario:
    """Set every ``path: value`` of ``overrides`` in ``data`` and validate the result as a scenario file.

    ``full`` is the base scenario dumped with defaults, against which paths
    are checked (parsed from ``data`` when not given). Errors name the
    overrides (``label``, by default ``--set path=value`` for each); a path
    that is not in the scenario is reported as ``source: <path_prefix>path: ...``.
    """
    if full is None:
        full = parse_scenario(dict(data), source, base_dir=base_dir).model_dump(mode="json")
    out: dict[str, Any] = dict(data)
    for path, value in overrides.items():
        try:
            check_path(full, path)
            out = set_path(out, path, value)
        except ScenarioError as exc:
            raise ScenarioError(f"{source}: {path_prefix}{exc}") from None
    if label is None:
        label = " ".join(f"--set {p}={short(v)}" for p, v in overrides.items())
    return parse_scenario(out, f"{source} with {label}" if label else source, base_dir=base_dir)


def load_with_overrides(path: str | Path, assignments: list[str] | tuple[str, ...] = (),
                        extra: Mapping[str, Any] | None = None) -> Scenario:
    """A scenario file with ``--set path=value`` assignments (and then ``extra`` paths) applied, validated."""
    overrides: dict[str, Any] = {}
    for text in assignments:
        p, v = parse_assignment(text)
        overrides[p] = v
    overrides.update(extra or {})
    if not overrides:
        return load_scenario(path)
    data, source, base_dir = scenario_data(path)
    return with_overrides(data, overrides, source, base_dir)
