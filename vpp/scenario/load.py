"""Reading scenario files (YAML or TOML) into a validated :class:`Scenario`.

Errors come out as :class:`ScenarioError`, one line per problem, each naming
the field (``fleets[1].soc_min``) and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vpp.fleets.registry import KINDS
from vpp.scenario.schema import Scenario

__all__ = ["ScenarioError", "load_scenario", "parse_scenario", "scenario_hash", "format_validation_error"]


class ScenarioError(ValueError):
    """A scenario that cannot run; ``str()`` is one line per problem."""


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in KINDS or str(part).startswith(("function-", "literal[", "list[")):
            continue  # pydantic's union/validator tags, not a field
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(exc: ValidationError) -> str:
    """One line per error: ``field: message (got value)``."""
    lines = []
    seen = set()
    for err in exc.errors(include_url=False):
        loc = _loc(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        line = f"{loc}: {msg}"
        if err["type"] not in ("value_error", "missing", "union_tag_invalid") and "input" in err:
            value = err["input"]
            if not isinstance(value, (dict, list)):
                line += f" (got {value!r})"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return "\n".join(lines)


def parse_scenario(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate a scenario given as a mapping."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping of keys to values")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        text = format_validation_error(exc)
        raise ScenarioError("\n".join(f"{source}: {line}" for line in text.splitlines())) from None


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario file (``.yaml``/``.yml`` or ``.toml``).

    ``overrides`` replace top-level keys (e.g. ``{"seed": 7}``) before validation.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario file ({exc.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ScenarioError(f"{path}: unknown scenario file type {path.suffix!r}; allowed: .yaml, .yml, .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScenarioError(f"{path}: not valid {path.suffix[1:].upper()}: {first}") from None
    if isinstance(data, dict) and overrides:
        data = {**data, **overrides}
    return parse_scenario(data, str(path))


def scenario_hash(scenario: Scenario) -> str:
    """SHA-256 of the validated scenario's canonical JSON (defaults filled in)."""
    canonical = json.dumps(scenario.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
