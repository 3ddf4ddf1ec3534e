"""The bad-input corpus: every malformed scenario and command line exits 2 with a clean line naming the field.

Each file in ``tests/scenario/bad/`` states what is wrong with it and the
message the user must see, in its first comment lines::

    # a fleet of 10^12 devices
    # expect: fleets[0].n_devices: must be a whole number in [0, 100000000] (got 1000000000000)

``expect`` is a whole error line after ``error: <file>: ``; ``expect-prefix``
is its beginning (for messages with machine-dependent numbers);
``expect-contains`` is part of a line (for checks made when the plant is built,
whose lines do not name the file). Both ``vpp
validate FILE`` and ``vpp run FILE --out DIR`` are run in-process through
Typer's runner: exit code 2, no traceback, every stderr line an ``error:``
line, the expected line present, and nothing written beside the file. Cases
that cannot live in the corpus as text (binary, other encodings, files over
the size cap) are written by the tests below, and one goes through a real
subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vpp.cli import app

BAD = Path(__file__).parent / "bad"
CORPUS = sorted(p for p in BAD.iterdir() if p.is_file())


def _expectations(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"exact": [], "prefix": [], "contains": []}
    tags = {"# expect: ": "exact", "# expect-prefix: ": "prefix", "# expect-contains: ": "contains"}
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            for tag, kind in tags.items():
                if line.startswith(tag):
                    found[kind].append(line.removeprefix(tag).rstrip("\n"))
    return found


def _invoke(args: list[str]):
    return CliRunner().invoke(app, [str(a) for a in args])


def _check_rejected(result, source: Path, exact=(), prefix=(), contains=()) -> list[str]:
    """Exit 2, no traceback, only ``error:`` lines on stderr, and the expected lines among them."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert lines, result.output
    assert all(line.startswith("error: ") for line in lines), result.stderr
    assert all(len(line) <= 700 for line in lines), max(lines, key=len)[:200]
    head = f"error: {source}: "
    for text in exact:
        assert head + text in lines, f"expected {head + text!r} in\n{result.stderr}"
    for text in prefix:
        assert any(line.startswith(head + text) for line in lines), f"expected a line starting {head + text!r} in\n{result.stderr}"
    for text in contains:
        assert any(text in line for line in lines), f"expected a line containing {text!r} in\n{result.stderr}"
    return lines


def _only(tmp_path: Path, *names: str) -> None:
    """Nothing but the given files exists under ``tmp_path``: no output directory, no staging directory."""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_corpus_is_large_and_every_file_says_what_it_expects():
    assert len(CORPUS) >= 60
    for path in CORPUS:
        assert any(_expectations(path).values()), f"{path.name} states no expected message"


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_file_is_rejected_cleanly(tmp_path, path):
    expect = _expectations(path)
    scenario = tmp_path / path.name
    scenario.write_bytes(path.read_bytes())
    out = tmp_path / "out"
    _check_rejected(_invoke(["validate", scenario]), scenario, **expect)
    _check_rejected(_invoke(["run", scenario, "--out", out, "--quiet"]), scenario, **expect)
    _only(tmp_path, path.name)


def _small_yaml(small_dict) -> str:
    return yaml.safe_dump(small_dict, sort_keys=False)


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("utf8.yaml", lambda text: text.encode().replace(b"name: small", b"name: sm\xffall"),
         "line 1: byte 0xff at byte offset 8 is not valid UTF-8; save the scenario as UTF-8 text"),
        ("png.yaml", lambda text: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
         "line 3: a NUL byte at byte offset 8: this is a binary file, not a UTF-8 text scenario"),
        ("utf16.yaml", lambda text: text.encode("utf-16"),
         "line 1: a NUL byte at byte offset 3: this is a binary file, not a UTF-8 text scenario"),
        ("latin1.yaml", lambda text: text.replace("name: small", "name: small\ndescription: Caf\u00e9").encode("latin-1"),
         "line 2: byte 0xe9 at byte offset 28 is not valid UTF-8; save the scenario as UTF-8 text"),
        ("big.yaml", lambda text: (text + "description: " + "x" * (11 * 2**20) + "\n").encode(),
         "the file is larger than 10 MB, the limit for a scenario file"),
    ],
)
def test_bytes_that_are_not_a_scenario(tmp_path, small_dict, name, make, expected):
    path = tmp_path / name
    path.write_bytes(make(_small_yaml(small_dict)))
    _check_rejected(_invoke(["validate", path]), path, [expected])
    _check_rejected(_invoke(["run", path, "--out", tmp_path / "out"]), path, [expected])
    _only(tmp_path, name)


def test_utf8_with_bom_is_read(tmp_path, small_dict):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + _small_yaml(small_dict).encode())
    from vpp.scenario import load_scenario

    assert load_scenario(path).name == "small"


def test_a_long_value_is_not_echoed(tmp_path, small_dict):
    # Files over 10 MB are refused whole (above); below that, a long value is refused by its field
    # and quoted in at most 80 characters.
    small_dict["description"] = "y" * 2**20
    small_dict["fleets"][0]["charger"] = "z" * 2**19
    path = tmp_path / "long.yaml"
    path.write_text(_small_yaml(small_dict))
    lines = _check_rejected(_invoke(["validate", path]), path)
    assert len(lines) == 2
    assert lines[0] == f"error: {path}: description: String should have at most 10000 characters (got '{'y' * 78}…)"
    assert lines[1].startswith(f"error: {path}: fleets[0].charger: unknown charger '{'z' * 78}…; allowed: ")


@pytest.mark.parametrize(
    ("path_of", "expected"),
    [
        (lambda tmp: tmp / "missing.yaml", "cannot read scenario file (No such file or directory)"),
        (lambda tmp: tmp / "dir.yaml", "is a directory, not a scenario file"),
        (lambda tmp: tmp / "notes.txt", "unknown scenario file type '.txt'; allowed: .yaml, .yml, .toml"),
    ],
)
def test_paths_that_are_not_scenario_files(tmp_path, path_of, expected):
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "notes.txt").write_text("name: x\n")
    path = path_of(tmp_path)
    _check_rejected(_invoke(["validate", path]), path, [expected])
    _check_rejected(_invoke(["run", path, "--out", tmp_path / "out"]), path, [expected])
    _only(tmp_path, "dir.yaml", "notes.txt")


def test_too_many_errors_are_capped(tmp_path, small_dict):
    small_dict["fleets"] = [
        {"kind": "basestation", "name": f"t{i}", "operator": "o", "n_devices": True} for i in range(80)
    ]
    path = tmp_path / "many.yaml"
    path.write_text(_small_yaml(small_dict))
    lines = _check_rejected(_invoke(["validate", path]), path)
    assert len(lines) == 51
    assert lines[0].startswith(f"error: {path}: fleets[0].n_devices: must be a whole number")
    assert lines[-1] == f"error: {path}: … and 30 more errors"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--seed", "-1"], "Invalid value for '--seed'"),
        (["--seed", "abc"], "Invalid value for '--seed'"),
        (["--seed", "1.5"], "Invalid value for '--seed'"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_bad_command_lines(tmp_path, small_dict, args, expected):
    path = tmp_path / "small.yaml"
    path.write_text(_small_yaml(small_dict))
    result = _invoke(["run", path, "--out", tmp_path / "out", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and expected in result.output
    _only(tmp_path, "small.yaml")


def test_seed_override_out_of_range(tmp_path, small_dict):
    path = tmp_path / "small.yaml"
    path.write_text(_small_yaml(small_dict))
    result = _invoke(["run", path, "--out", tmp_path / "out", "--seed", str(2**64)])
    _check_rejected(result, path, ["seed: must be a whole number in [0, 9223372036854775807] (got 18446744073709551616)"])
    _only(tmp_path, "small.yaml")


def test_missing_argument():
    result = _invoke(["run"])
    assert result.exit_code == 2 and "Missing argument" in result.output


def test_binary_file_through_the_real_command(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "vpp.cli", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == (f"error: {path}: line 1: a NUL byte at byte offset 7: this is a binary file, "
                           "not a UTF-8 text scenario\n")
    assert proc.stdout == ""
    _only(tmp_path, "x.yaml")
