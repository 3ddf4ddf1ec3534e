"""Reading scenario files (YAML or TOML) into a validated :class:`Scenario`.

Errors come out as :class:`ScenarioError`, one line per problem, each naming
the field (``fleets[1].soc_min``) or the place in the file (``line 3, column
5``) and what is allowed. Every problem in the file is reported, up to
:data:`MAX_ERROR_LINES`; a value is never echoed in more than about 80
characters.

What a file may be: UTF-8 text (a leading BOM is ignored) of at most
:data:`MAX_FILE_BYTES`, nested at most :data:`MAX_DEPTH` levels deep, with at
most :data:`MAX_VALUES` values once YAML aliases are expanded. A key given
twice in one YAML mapping is an error naming both lines (PyYAML would let the
later one win silently). YAML numbers follow YAML 1.2 here: ``1e4`` is a
number, as it is in TOML and JSON, not the string PyYAML's YAML 1.1 makes of
it.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from vpp.fleets.config import short
from vpp.fleets.registry import KINDS
from vpp.scenario.schema import Scenario

__all__ = [
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
    "scenario_hash",
    "format_validation_error",
    "MAX_FILE_BYTES",
    "MAX_DEPTH",
    "MAX_VALUES",
    "MAX_ERROR_LINES",
]

MAX_FILE_BYTES = 10 * 2**20  # size of a scenario file [B]
MAX_DEPTH = 64  # nesting of mappings and lists
MAX_VALUES = 1_000_000  # values in a scenario after YAML aliases are expanded
MAX_ERROR_LINES = 50  # error lines reported before "... and N more"
MAX_DIGITS = 100  # digits of an integer literal
_MAX_LINE_CHARS = 600  # a safety net: no error line is longer


class ScenarioError(ValueError):
    """A scenario that cannot run; ``str()`` is one line per problem."""


# --- validation errors --------------------------------------------------------------------------------


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in KINDS or str(part).startswith(("function-", "literal[", "list[")):
            continue  # pydantic's union/validator tags, not a field
        else:
            out += _key(part, first=not out)
    return out or "(top level)"


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,80}$")


def _key(key, first: bool = False) -> str:
    """A mapping key as a path step: ``.name``, or ``[<repr>]`` for anything else (cut to 80 characters)."""
    if isinstance(key, str) and _PLAIN_KEY.match(key):
        return key if first else f".{key}"
    return f"[{short(key)}]"


def _unwrap(tp):
    """The type behind ``Annotated`` and ``X | None`` (unions of several types are returned as they are)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin is typing.Union or origin is types.UnionType:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class validating the mapping at ``loc`` (a pydantic error location), if it can be found."""
    tp: Any = Scenario
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int):
            if typing.get_origin(tp) is not list:
                return None
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        elif part in KINDS:
            tp = KINDS[part].config  # the discriminated fleet union's tag
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _message(err: dict) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        model = _model_at(tuple(err["loc"][:-1]))
        allowed = f"; allowed keys: {', '.join(model.model_fields)}" if model is not None else ""
        return f"unknown key {short(err['loc'][-1])}{allowed}"
    if kind == "missing":
        return "required, but missing"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a mapping of keys to values"
    if kind == "list_type":
        return "must be a list"
    if kind == "string_type":
        return "must be a string"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "kind")).strip("'")
        allowed = ", ".join(repr(k) for k in KINDS)
        if kind == "union_tag_not_found":
            return f"needs a {key}; allowed: {allowed}"
        return f"unknown {key} {short(ctx.get('tag'))}; allowed: {allowed}"
    return err["msg"].removeprefix("Value error, ")


# Error types whose message already states the value, or where it says nothing.
_NO_ECHO = {"value_error", "missing", "union_tag_invalid", "union_tag_not_found", "extra_forbidden"}


def format_validation_error(exc: ValidationError, max_lines: int = MAX_ERROR_LINES) -> str:
    """One line per error, ``field: message (got value)``; at most ``max_lines`` then ``… and N more``."""
    lines = []
    seen = set()
    for err in exc.errors(include_url=False):
        loc = err["loc"][:-1] if err["type"] == "extra_forbidden" else err["loc"]  # the mapping holding the key
        line = f"{_loc(loc)}: {_message(err)}"
        if err["type"] not in _NO_ECHO and "input" in err:
            value = err["input"]
            if not (err["type"] == "cross_field" and value is None):
                line += f" (got {short(value)})"
        line = _one_line(line)
        if len(line) > _MAX_LINE_CHARS:
            line = line[: _MAX_LINE_CHARS - 1] + "…"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return "\n".join(_capped(lines, max_lines))


def _capped(lines: list[str], max_lines: int) -> list[str]:
    if len(lines) <= max_lines:
        return lines
    return lines[:max_lines] + [f"… and {len(lines) - max_lines} more errors"]


def _one_line(text: str) -> str:
    """No line breaks inside one error line (keys and values are quoted, but be sure)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _error(source: str, lines: list[str]) -> ScenarioError:
    return ScenarioError("\n".join(_one_line(f"{source}: {line}") for line in _capped(lines, MAX_ERROR_LINES)))


# --- shape of the parsed data -------------------------------------------------------------------------


def _check_shape(data: Any, source: str) -> None:
    """Depth and size limits on parsed data, walked without recursion (YAML aliases may share nodes)."""
    count = 0
    stack = [(data, 0, "")]
    while stack:
        node, depth, where = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ScenarioError(
                f"{source}: the scenario holds more than {MAX_VALUES:,} values (after expanding YAML aliases); "
                f"a scenario is a description, not a data set"
            )
        if isinstance(node, (dict, list)):
            if depth >= MAX_DEPTH:
                raise ScenarioError(f"{source}: {where or '(top level)'}: nested more than {MAX_DEPTH} levels deep")
            if isinstance(node, dict):
                items = [(v, where + _key(k, first=not where)) for k, v in node.items()]
            else:
                items = [(v, f"{where}[{i}]") for i, v in enumerate(node)]
            stack.extend((v, depth + 1, w if len(w) <= 80 else w[:79] + "…") for v, w in items)


# --- YAML ---------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit, duplicate-key errors and YAML 1.2 floats (``1e4``)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        # The composer recurses once per level: stop before Python's recursion limit does.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<' merges are overrides by design
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in first_line:
                        line, column = first_line[key]
                        at = f"line {line + 1}" + (f", column {column + 1}" if line == key_node.start_mark.line else "")
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {short(key)} (first at {at}); remove one of them",
                            key_node.start_mark,
                        )
                    first_line[key] = (key_node.start_mark.line, key_node.start_mark.column)
                except TypeError:
                    continue  # an unhashable key: the base class reports it
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node, deep=False):
        # Scalars PyYAML cannot convert (a timestamp with month 13, '!!float abc') raise plain
        # ValueErrors and AttributeErrors without a position; give them one.
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except RecursionError:
            raise
        except Exception as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {short(node.value)} as {node.tag.rsplit(':', 1)[-1]}", node.start_mark
            ) from exc

    def construct_yaml_int(self, node):
        text = str(node.value)
        if len(text) > MAX_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(text):,} characters; at most {MAX_DIGITS} are allowed", node.start_mark
            )
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
# YAML 1.2 has no base-60 numbers: PyYAML (YAML 1.1) would read an unquoted clock time `18:00` as the integer
# 1080 (18 x 60), a silent error in any time field. Such scalars stay strings here.
_SEXAGESIMAL = (r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+", r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*")
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, re.compile(regexp.pattern.replace(_SEXAGESIMAL[0], "").replace(_SEXAGESIMAL[1], ""), regexp.flags))
        if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") else (tag, regexp)
        for tag, regexp in resolvers
    ]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}


def _yaml_error(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        context = ""
        if exc.context and exc.context_mark is not None and exc.problem and exc.context_mark is not mark:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        if problem.startswith("duplicate key"):
            return f"{where}{problem}"
        if problem.startswith(("nested more than", "an integer of", "cannot read")):
            return f"{where}{problem}"
        return f"{where}not valid YAML: {problem}{context}"
    return f"not valid YAML: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"


def _parse_yaml(text: str) -> Any:
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


# --- TOML ---------------------------------------------------------------------------------------------

_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+(?:\s*\.\s*[A-Za-z0-9_\-\"']+)*)\s*=")
_TOML_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def _toml_duplicate(text: str) -> tuple[int, int, str] | None:
    """``(line, first_line, key)`` of the first key or table defined twice, found by a line scan.

    Only a hint after tomllib has reported a redefinition (whose position is
    sometimes the end of the document); multi-line strings can fool it.
    """
    seen: dict[tuple, int] = {}
    table: tuple = ("", 0)
    for i, raw in enumerate(text.splitlines(), 1):
        if raw.lstrip().startswith("[["):
            table = ("[[", i)  # each [[array]] entry is a new table
            continue
        m = _TOML_TABLE.match(raw)
        if m:
            key = ("table", m.group(1))
            if key in seen:
                return i, seen[key], f"[{m.group(1)}]"
            seen[key] = i
            table = (m.group(1), i)
            continue
        m = _TOML_KEY.match(raw)
        if m:
            key = (table, m.group(1))
            if key in seen:
                return i, seen[key], m.group(1)
            seen[key] = i
    return None


def _toml_error(exc: Exception, text: str) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if msg.startswith(("Cannot overwrite", "Cannot declare")):
        dup = _toml_duplicate(text)
        if dup is not None:
            line, first, key = dup
            return f"line {line}: duplicate key {short(key)} (first at line {first}); remove one of them"
    m = _TOML_AT.search(msg)
    if m is None:
        return f"not valid TOML: {msg}"
    problem = msg[: m.start()]
    problem = problem[:1].lower() + problem[1:]
    return f"line {m.group(1)}, column {m.group(2)}: not valid TOML: {problem}"


def _parse_toml(text: str) -> Any:
    return tomllib.loads(text)


# --- files --------------------------------------------------------------------------------------------


def _read_text(path: Path, what: str = "scenario file", kinds: str = "a scenario is a .yaml, .yml or .toml file",
               label: str | None = None) -> str:
    label = str(path) if label is None else label
    try:
        st = path.stat()
    except OSError as exc:
        raise ScenarioError(f"{label}: cannot read {what} ({exc.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ScenarioError(f"{label}: is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise ScenarioError(f"{label}: not a regular file; {kinds}")
    too_big = f"{label}: the file is larger than {MAX_FILE_BYTES // 2**20} MB, the limit for a {what}"
    if st.st_size > MAX_FILE_BYTES:
        raise ScenarioError(too_big)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # the file may grow after stat()
    except OSError as exc:
        raise ScenarioError(f"{label}: cannot read {what} ({exc.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(too_big)
    nul = data.find(b"\x00")
    noun = what.removesuffix(" file")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise ScenarioError(
            f"{label}: line {line}: a NUL byte at byte offset {nul}: this is a binary file, not a UTF-8 text {noun}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ScenarioError(
            f"{label}: line {line}: byte 0x{data[exc.start]:02x} at byte offset {exc.start} is not valid UTF-8; "
            f"save the {noun} as UTF-8 text"
        ) from None
    return text.removeprefix("\ufeff")


def _json_object(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ValueError(f"duplicate key {short(dup[0])}; remove one of them")
    return dict(pairs)


def _read_events_file(given: Any, base_dir: str | Path | None, source: str) -> dict[str, Any]:
    """``dr_events_file`` read: ``{path, source, dr_calls}`` for the schema's :class:`EventsFile`.

    The file (``.yaml``, ``.yml`` or ``.json``, relative to ``base_dir``) holds
    a list of events, or a mapping whose one key is ``dr_calls``. Errors name
    the scenario, the field and the file.
    """
    where = f"{source}: dr_events_file"
    if not isinstance(given, str) or not 1 <= len(given) <= 4096:
        raise ScenarioError(f"{where}: must be the path of a .yaml, .yml or .json file (got {short(given)})")
    path = Path(given)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir).absolute() / path
    label = f"{where}: {given}"
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ScenarioError(f"{label}: unknown events file type {short(path.suffix)}; allowed: .yaml, .yml, .json")
    text = _read_text(path, "events file", "events are a .yaml, .yml or .json file", label)
    try:
        data = json.loads(text, object_pairs_hook=_json_object) if suffix == ".json" else _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(_one_line(f"{label}: {_yaml_error(exc)}")) from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(_one_line(f"{label}: line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}")) \
            from None
    except RecursionError:
        raise ScenarioError(f"{label}: nested too deeply (at most {MAX_DEPTH} levels are allowed)") from None
    except ValueError as exc:
        raise ScenarioError(_one_line(f"{label}: {exc}")) from None
    _check_shape(data, label)
    if isinstance(data, dict) and list(data) == ["dr_calls"]:
        data = data["dr_calls"]
    if not isinstance(data, list):
        what = "the file is empty" if data is None else f"got {type(data).__name__}"
        raise ScenarioError(f"{label}: must hold a list of DR events, or a mapping with the one key dr_calls ({what})")
    return {"path": str(path), "source": given, "dr_calls": data}


def _events_line(line: str, events_file: Any) -> str:
    """An error line about the events file's content, as ``<file>: dr_calls[0].field: ...``."""
    prefix = "dr_events_file.dr_calls"
    if isinstance(events_file, dict) and line.startswith(prefix):
        return f"{events_file.get('source')}: dr_calls{line[len(prefix):]}"
    return line


def parse_scenario(data: dict[str, Any], source: str = "<scenario>", check_resources: bool = True,
                   base_dir: str | Path | None = None) -> Scenario:
    """Validate a scenario given as a mapping.

    Relative paths of data files in it (network files, time series, session files, the DR events
    file ``dr_events_file``, which is read here) are taken relative to ``base_dir`` (:func:`load_scenario` passes the scenario
    file's folder) and stored absolute; without it, relative to the working
    directory when they are read.

    With ``check_resources`` (the default), a scenario whose estimated memory
    or run time this machine cannot give (:mod:`vpp.scenario.limits`) is an
    error too.
    """
    if not isinstance(data, dict):
        what = "the file is empty" if data is None else f"got {type(data).__name__} {short(data)}"
        raise ScenarioError(f"{source}: a scenario must be a mapping of keys to values ({what})")
    _check_shape(data, source)
    if data.get("dr_events_file") is not None and not isinstance(data["dr_events_file"], dict):  # a dict: dumped
        data = {**data, "dr_events_file": _read_events_file(data["dr_events_file"], base_dir, source)}
    try:
        scenario = Scenario.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        lines = format_validation_error(exc, max_lines=10**9).splitlines()
        raise _error(source, [_events_line(line, data.get("dr_events_file")) for line in lines]) from None
    except RecursionError:  # pragma: no cover - _check_shape bounds the depth
        raise ScenarioError(f"{source}: nested too deeply") from None
    if check_resources:
        from vpp.scenario.limits import resource_problems

        problems = resource_problems(scenario)
        if problems:
            raise _error(source, problems)
    return scenario


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read and validate a scenario file (``.yaml``/``.yml`` or ``.toml``).

    ``overrides`` replace top-level keys (e.g. ``{"seed": 7}``) before validation.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ScenarioError(f"{path}: unknown scenario file type {short(path.suffix)}; allowed: .yaml, .yml, .toml")
    text = _read_text(path)
    try:
        data = _parse_toml(text) if suffix == ".toml" else _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(_one_line(f"{path}: {_yaml_error(exc)}")) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(_one_line(f"{path}: {_toml_error(exc, text)}")) from None
    except RecursionError:
        raise ScenarioError(f"{path}: nested too deeply (at most {MAX_DEPTH} levels are allowed)") from None
    except ValueError as exc:  # e.g. Python's limit on integer digits, raised by tomllib
        m = re.search(r"\d{%d,}" % (MAX_DIGITS + 1), text)
        where = f"line {text.count(chr(10), 0, m.start()) + 1}: " if m else ""
        detail = f"an integer of {len(m.group()):,} digits; at most {MAX_DIGITS} are allowed" if m else short(str(exc))
        raise ScenarioError(f"{path}: {where}{detail}") from None
    if isinstance(data, dict) and overrides:
        data = {**data, **overrides}
    return parse_scenario(data, str(path), base_dir=path.parent)


def scenario_hash(scenario: Scenario) -> str:
    """SHA-256 of the validated scenario's canonical JSON (defaults filled in)."""
    canonical = json.dumps(scenario.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
