"""Mutated scenarios: every outcome is a valid Scenario or a clean ScenarioError, never another exception.

Hypothesis mutates the small scenario: it drops keys and list items, swaps
values for other types, non-finite numbers, huge numbers, booleans, long
strings and deep nesting, adds unknown keys, and (on the file's text) inserts
and deletes characters. Validation only: nothing is run.
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpp.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from vpp.scenario.load import MAX_ERROR_LINES

_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _paths(node, prefix=()):
    """Every path into the scenario, leaves and containers alike."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _nested(depth: int, leaf, as_list: bool):
    for _ in range(depth):
        leaf = [leaf] if as_list else {"k": leaf}
    return leaf


_HOSTILE = st.sampled_from([
    None, True, False, math.nan, math.inf, -math.inf, 1e300, -1e300, 5e-324, 0, -1, 1, 0.5, 2**31, 2**63, 2**64,
    10**100, -(10**100), "", " ", "x" * 300, "1e300", "nan", "inf", "true", "..", "../x", "/etc", "a.b", "é",
    [], {}, [1, 2], {"a": 1}, [None], [math.inf], ["load_buses"], "load_buses", "all",
])
_VALUES = st.one_of(
    _HOSTILE,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.text(max_size=20),
    st.builds(_nested, st.integers(1, 120), _HOSTILE, st.booleans()),
    st.lists(st.integers(-5, 400), max_size=4),
)


def _mutations(base: dict, max_size: int):
    mutation = st.tuples(
        st.sampled_from(["drop", "set", "set", "set", "add", "nest"]),
        st.sampled_from([p for p in _paths(base) if p]),
        _VALUES,
        st.text(min_size=1, max_size=12),
        st.integers(1, 150),
    )
    return st.lists(mutation, min_size=1, max_size=max_size)


def _apply(data: dict, mutations) -> dict:
    data = copy.deepcopy(data)
    for op, path, value, key, depth in mutations:
        parent = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            last = path[-1]
            parent[last]  # noqa: B018 - the path may be gone after an earlier mutation
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(parent, (dict, list)):
            continue  # an earlier mutation put a string where a container was
        if op == "drop":
            del parent[last]
        elif op == "set":
            parent[last] = value
        elif op == "add" and isinstance(parent[last], dict):
            parent[last][key] = value
        elif op == "nest":
            parent[last] = _nested(depth, parent[last], depth % 2 == 0)
    return data


def _all_finite(node) -> None:
    if isinstance(node, float):
        assert math.isfinite(node)
    elif isinstance(node, dict):
        for v in node.values():
            _all_finite(v)
    elif isinstance(node, list):
        for v in node:
            _all_finite(v)


def _check_outcome(call, source: str) -> None:
    try:
        sc = call()
    except ScenarioError as exc:
        lines = str(exc).splitlines()
        assert lines
        assert all(line.startswith(f"{source}: ") for line in lines), lines
        assert len(lines) <= MAX_ERROR_LINES + 1
        assert all(len(line) <= 700 for line in lines), max(lines, key=len)[:300]
        assert "Traceback" not in str(exc)
    else:
        assert isinstance(sc, Scenario)
        _all_finite(sc.model_dump())
        assert all(type(f.n_devices) is int for f in sc.fleets)


def _toml(data: dict) -> str:
    """The small scenario as TOML (scalars, tables and arrays of tables: all it uses)."""
    def value(v):
        return "true" if v is True else "false" if v is False else f'"{v}"' if isinstance(v, str) else repr(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, (dict, list))]
    for k, v in data.items():
        for table, header in ([(v, f"[{k}]")] if isinstance(v, dict) else
                              [(t, f"[[{k}]]") for t in v] if isinstance(v, list) else []):
            lines.append(header)
            lines += [f"{kk} = {value(vv)}" for kk, vv in table.items()]
    return "\n".join(lines) + "\n"


def test_toml_helper_writes_the_small_scenario(make_small_dict):
    import tomllib

    assert tomllib.loads(_toml(make_small_dict())) == make_small_dict()


@_SETTINGS
@given(data=st.data())
def test_mutated_mapping_validates_or_fails_cleanly(make_small_dict, data):
    base = make_small_dict()
    scenario = _apply(base, data.draw(_mutations(base, 5)))
    _check_outcome(lambda: parse_scenario(scenario, "m.yaml"), "m.yaml")


@_SETTINGS
@given(data=st.data())
def test_mutated_file_loads_or_fails_cleanly(make_small_dict, data):
    base = make_small_dict()
    scenario = _apply(base, data.draw(_mutations(base, 3)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yaml"
        path.write_text(yaml.safe_dump(scenario, allow_unicode=True), encoding="utf-8")
        _check_outcome(lambda: load_scenario(path), str(path))


_EDIT_CHARS = st.sampled_from(list(":[]{}&*!%|>-#'\"\t\n ,?=.0123456789e+") + ["\x00", "\xff", "é", "\ufeff", "\r"])


@_SETTINGS
@given(
    st.sampled_from(["yaml", "toml"]),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 6), st.text(_EDIT_CHARS, max_size=4)), min_size=1, max_size=4),
)
def test_mutated_text_loads_or_fails_cleanly(make_small_dict, fmt, edits):
    text = yaml.safe_dump(make_small_dict(), sort_keys=False) if fmt == "yaml" else _toml(make_small_dict())
    for where, n_delete, insert in edits:
        i = int(where * len(text))
        text = text[:i] + insert + text[i + n_delete:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m.{fmt}"
        path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        _check_outcome(lambda: load_scenario(path), str(path))
