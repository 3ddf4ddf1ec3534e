"""Networks: pandapower's built-ins by name, SimBench codes, and network files.

``grid.source`` says how ``grid.network`` is read; nothing is guessed from the
value itself:

============  ==========================================================================
source        network
============  ==========================================================================
pandapower    a key of :data:`PANDAPOWER_NETWORKS` (the default)
simbench      a SimBench code such as ``1-MV-urban--0-sw`` (needs ``pip install 'vpp[simbench]'``)
file          a path; its suffix says the format (:data:`NETWORK_FILE_FORMATS`): ``.json``
              (pandapower JSON), ``.m`` (MATPOWER case text) or ``.mat`` (MATPOWER MAT-file)
============  ==========================================================================

A relative path is taken relative to the scenario file's folder (the loader
passes it as ``base_dir``; a scenario given as a mapping uses the working
directory). A bare file name found nowhere there is looked up in the
project's ``grids/`` folder (:data:`GRIDS_DIR`), which holds the networks the
shipped scenarios use. The scenario stores the resolved absolute path.

A network must have at least one bus and at least one external grid in
service on a bus in service (the slack of every power flow). Bus *names*
(``net.bus.name``) may stand wherever bus indices do: :func:`bus_labels`
maps them to labels; a string is always a name (``"9"`` is the bus named 9,
such as MATPOWER's bus 9; ``9`` is pandapower's index 9). A MATPOWER case
whose buses have no names gets its bus numbers as names (``from_mpc`` labels
MATPOWER bus N as index N-1).

Every failure is a :class:`NetworkError` with one line saying what is wrong.
pandapower is imported only when a network is built or checked, so this
module is cheap to import (the scenario schema checks names against it).

Note: a pandapower JSON file can name Python classes that pandapower then
imports, as pickles can; load only files you trust.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import json
import logging
import stat
from pathlib import Path
from typing import Any

__all__ = [
    "PANDAPOWER_NETWORKS",
    "NETWORK_SOURCES",
    "NETWORK_FILE_FORMATS",
    "GRIDS_DIR",
    "MAX_NETWORK_FILE_BYTES",
    "NetworkError",
    "load_network",
    "check_network",
    "check_network_name",
    "network_file",
    "network_label",
    "network_listing",
    "bus_labels",
    "shipped_networks",
    "simbench_available",
    "matpower_text_available",
]

PANDAPOWER_NETWORKS: dict[str, tuple[str, dict[str, Any]]] = {
    # name: (function in pandapower.networks, keyword arguments)
    "mv_oberrhein": ("mv_oberrhein", {}),
    "cigre_mv": ("create_cigre_network_mv", {"with_der": False}),
    "cigre_mv_der": ("create_cigre_network_mv", {"with_der": "pv_wind"}),
    "cigre_lv": ("create_cigre_network_lv", {}),
    "simple_mv_open_ring": ("simple_mv_open_ring_net", {}),
    "lv_schutterwald": ("lv_schutterwald", {}),
    "kerber_landnetz_kabel_1": ("create_kerber_landnetz_kabel_1", {}),
    "kerber_vorstadtnetz_kabel_1": ("create_kerber_vorstadtnetz_kabel_1", {}),
    "case33bw": ("case33bw", {}),
    "case14": ("case14", {}),
    "case30": ("case30", {}),
    "case118": ("case118", {}),
    "case300": ("case300", {}),
}

NETWORK_SOURCES = ("pandapower", "simbench", "file")

# suffix: format. Read by pandapower.from_json, and by pandapower.converter.matpower.from_mpc
# (through matpowercaseframes for .m, scipy.io.loadmat for .mat, whose case is the variable 'mpc').
NETWORK_FILE_FORMATS: dict[str, str] = {
    ".json": "pandapower JSON",
    ".m": "MATPOWER case",
    ".mat": "MATPOWER case as a MAT-file",
}

GRIDS_DIR = Path(__file__).resolve().parents[2] / "grids"
"""The project's ``grids/`` folder (in a source checkout or an editable install)."""

MAX_NETWORK_FILE_BYTES = 512 * 2**20  # a network file [B]; pandapower's 9,241-bus case is ~15 MB of JSON

_EXAMPLES = 6  # valid names listed in an error


class NetworkError(KeyError):
    """A network that cannot be loaded or used; ``str()`` is one line saying why.

    A KeyError so that callers catching an unknown network name (KeyError
    before files existed) keep catching every network problem.
    """

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else ""


@contextlib.contextmanager
def _quiet_pandapower():
    # Some builders (mv_oberrhein) run a power flow inside and pandapower logs a
    # numba warning for it; converters log every default they fill in. We pass
    # numba explicitly in our own runs and check the net ourselves.
    # pandapower's numba kernels are compiled with cache=False, i.e. anew in every
    # process (~5 s here, more than all the power flows of a day at 5-min ticks);
    # with numba installed (vpp's own optional kernels) a builder's internal runpp
    # would pay that on every run, so builders run with pandapower's numba off.
    import pandapower.auxiliary as aux

    log = logging.getLogger("pandapower")
    level = log.level
    numba_installed = aux.NUMBA_INSTALLED
    log.setLevel(logging.ERROR)
    aux.NUMBA_INSTALLED = False
    try:
        yield
    finally:
        log.setLevel(level)
        aux.NUMBA_INSTALLED = numba_installed


def simbench_available() -> bool:
    """Whether the optional SimBench package is installed."""
    return importlib.util.find_spec("simbench") is not None


def matpower_text_available() -> bool:
    """Whether MATPOWER ``.m`` files can be read (the ``matpowercaseframes`` package)."""
    return importlib.util.find_spec("matpowercaseframes") is not None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 160 else line[:159] + "…"


# --- names and files ----------------------------------------------------------------------------


def check_network_name(network: str, source: str) -> str:
    """``network`` if it can be a network of ``source`` without reading anything; a ValueError otherwise.

    For ``pandapower`` the name must be a built-in; a value that looks like a
    file (a known suffix or a path separator) is told to use ``source: file``.
    SimBench codes are checked when the net is built; files by :func:`network_file`.
    """
    if source == "pandapower" and network not in PANDAPOWER_NETWORKS:
        hint = ""
        if Path(network).suffix.lower() in NETWORK_FILE_FORMATS or "/" in network or "\\" in network:
            hint = "; for a network file give source: file"
        raise ValueError(
            f"unknown network {_short(network)} (source: pandapower; sources: {', '.join(NETWORK_SOURCES)}); "
            f"allowed: {', '.join(sorted(PANDAPOWER_NETWORKS))}{hint}"
        )
    return network


def network_file(value: str, base_dir: str | Path | None = None) -> Path:
    """The absolute path of network file ``value``; a NetworkError if it is not a readable network file.

    A relative ``value`` is relative to ``base_dir`` (default: the working
    directory); a bare file name not found there is looked up in
    :data:`GRIDS_DIR`. The suffix must be one of :data:`NETWORK_FILE_FORMATS`.
    """
    raw = Path(value).expanduser()
    suffix = raw.suffix  # exact: pandapower's MATPOWER reader itself only knows the lower-case suffixes
    if suffix not in NETWORK_FILE_FORMATS:
        raise NetworkError(
            f"network file {_short(value)} has an unknown suffix {_short(raw.suffix or '(none)')}; "
            f"allowed: {', '.join(f'{k} ({v})' for k, v in NETWORK_FILE_FORMATS.items())}"
        )
    base = Path(base_dir).absolute() if base_dir is not None else Path.cwd()
    path = raw if raw.is_absolute() else base / raw
    tried = [path]
    if not path.exists() and not raw.is_absolute() and raw.name == value:
        tried.append(GRIDS_DIR / raw)
        if tried[-1].exists():
            path = tried[-1]
    try:
        st = path.stat()
    except OSError as exc:
        where = " and ".join(str(p) for p in tried)
        what = "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror})"
        shipped = shipped_networks()
        also = f"; shipped: {', '.join(shipped)}" if shipped and len(tried) > 1 else ""
        raise NetworkError(f"network file {_short(value)} {what} (looked for {where}){also}") from None
    if stat.S_ISDIR(st.st_mode):
        raise NetworkError(f"network file {_short(value)} is a directory ({path})")
    if not stat.S_ISREG(st.st_mode):
        raise NetworkError(f"network file {_short(value)} is not a regular file ({path})")
    if st.st_size > MAX_NETWORK_FILE_BYTES:
        raise NetworkError(
            f"network file {_short(value)} is {st.st_size / 2**20:,.0f} MB, more than the "
            f"{MAX_NETWORK_FILE_BYTES // 2**20} MB allowed"
        )
    return path.resolve()


def network_label(network: str, source: str) -> str:
    """A short name for messages and results: the file name for files, else the name or code itself."""
    return Path(network).name if source == "file" else network


def shipped_networks() -> dict[str, str]:
    """Network files in :data:`GRIDS_DIR`: file name -> one-line description (empty without the folder)."""
    out: dict[str, str] = {}
    if not GRIDS_DIR.is_dir():
        return out
    for path in sorted(GRIDS_DIR.iterdir()):
        if path.suffix not in NETWORK_FILE_FORMATS or not path.is_file():
            continue
        desc = f"{path.stat().st_size / 1e6:.2f} MB"
        if path.suffix == ".json":
            with contextlib.suppress(Exception):
                obj = json.loads(path.read_text(encoding="utf-8")).get("_object", {})
                n_bus = len(json.loads(obj["bus"]["_object"]).get("index", []))
                desc = f"{obj.get('name') or path.stem}; {n_bus} buses; {desc}"
        builder = GRIDS_DIR / f"build_{path.stem}.py"
        if builder.exists():
            desc += f"; built by grids/{builder.name}"
        out[path.name] = desc
    return out


def network_listing() -> dict[str, str]:
    """What ``grid.network`` may name, for ``vpp list networks``: name -> ``source: ...; description``.

    The built-ins, the files shipped in ``grids/``, and one line each for
    SimBench codes and for any network file, saying whether they can be read here.
    """
    out = {k: f"source: pandapower; pandapower.networks.{v[0]}" for k, v in PANDAPOWER_NETWORKS.items()}
    for name, desc in shipped_networks().items():
        out[name] = f"source: file; in grids/: {desc}"
    if simbench_available():
        out["<simbench-code>"] = ("source: simbench; installed; e.g. 1-MV-urban--0-sw "
                                  "(all codes: simbench.collect_all_simbench_codes())")
    else:
        out["<simbench-code>"] = "source: simbench; not installed: pip install 'vpp[simbench]'"
    m_note = "" if matpower_text_available() else " (.m needs: pip install matpowercaseframes)"
    out["<path>.json|.m|.mat"] = (
        "source: file; your own pandapower JSON or MATPOWER case, relative to the scenario file's folder" + m_note
    )
    return out


# --- loading ------------------------------------------------------------------------------------


def _json_problem(path: Path, exc: Exception) -> str:
    """Why pandapower could not read ``path``: not JSON at all, or JSON that is not a net."""
    try:
        with path.open(encoding="utf-8") as f:
            json.load(f)
    except Exception:
        return f"does not parse as a pandapower JSON network: {_first_line(exc)}"
    return ("is JSON but not a pandapower network (pandapower.to_json writes one; "
            f"pandapower said: {_first_line(exc)})")


def _read_file(path: Path):
    suffix = path.suffix
    if suffix == ".json":
        pp = importlib.import_module("pandapower")
        try:
            with _quiet_pandapower():
                net = pp.from_json(str(path))
        except Exception as exc:  # JSON syntax, a JSON that is not a net, bad encodings: all say "does not parse"
            raise NetworkError(f"network file {path.name!r} {_json_problem(path, exc)}") from None
        if not isinstance(net, pp.pandapowerNet):
            raise NetworkError(
                f"network file {path.name!r} does not parse as a pandapower JSON network: it holds a "
                f"{type(net).__name__}, not a pandapowerNet"
            )
        return net
    if suffix == ".m" and not matpower_text_available():
        raise NetworkError(
            f"network file {path.name!r}: reading MATPOWER .m files needs the matpowercaseframes package "
            "(pip install matpowercaseframes); a .mat file needs only scipy"
        )
    from pandapower.converter.matpower import from_mpc

    try:
        with _quiet_pandapower():
            net = from_mpc(str(path))
    except Exception as exc:  # the converters raise whatever their parsers raise
        raise NetworkError(
            f"network file {path.name!r} does not parse as a MATPOWER case: {_first_line(exc)}"
        ) from None
    if net.bus.name.isna().all():
        # from_mpc labels MATPOWER bus N as index N-1 and leaves names empty: name each bus by its
        # MATPOWER number, so that a scenario can say "9" for the case's bus 9.
        net.bus["name"] = [str(int(i) + 1) for i in net.bus.index]
    return net


def load_network(name: str, source: str = "pandapower", base_dir: str | Path | None = None):
    """Build a fresh pandapower net and check that it can be simulated (:func:`check_network`).

    ``source="pandapower"``: ``name`` is a key of :data:`PANDAPOWER_NETWORKS`.
    ``source="simbench"``: ``name`` is a SimBench code such as
    ``"1-MV-urban--0-sw"`` (needs ``pip install 'vpp[simbench]'``).
    ``source="file"``: ``name`` is a path (:func:`network_file`, relative to
    ``base_dir`` or the working directory).
    Raises :class:`NetworkError` (ImportError for the missing SimBench extra).
    """
    if source == "pandapower":
        try:
            func_name, kwargs = PANDAPOWER_NETWORKS[name]
        except KeyError:
            raise NetworkError(
                f"unknown pandapower network {name!r}; valid: {', '.join(sorted(PANDAPOWER_NETWORKS))}"
            ) from None
        networks = importlib.import_module("pandapower.networks")
        with _quiet_pandapower():
            net = getattr(networks, func_name)(**kwargs)
    elif source == "simbench":
        if not simbench_available():
            raise ImportError("grid.source 'simbench' needs the simbench extra: pip install 'vpp[simbench]'")
        sb = importlib.import_module("simbench")
        codes = sb.collect_all_simbench_codes()
        if name not in codes:  # get_simbench_net's own error for a bad code is an IndexError
            close = difflib.get_close_matches(name, codes, n=_EXAMPLES, cutoff=0.6)
            lead = f"closest: {', '.join(close)}" if close else "e.g. 1-MV-urban--0-sw, 1-LV-rural1--0-sw"
            raise NetworkError(f"unknown SimBench code {_short(name)}; {lead} ({len(codes)} codes: "
                               "simbench.collect_all_simbench_codes())")
        try:
            with _quiet_pandapower():
                net = sb.get_simbench_net(name)
        except Exception as exc:  # simbench raises bare ValueErrors/KeyErrors for data it cannot read
            raise NetworkError(f"SimBench code {name!r} could not be loaded: {_first_line(exc)}") from None
    elif source == "file":
        net = _read_file(network_file(name, base_dir))
    else:
        raise NetworkError(f"unknown grid source {source!r}; valid: {', '.join(NETWORK_SOURCES)}")
    check_network(net, network_label(name, source))
    return net


def check_network(net, label: str = "") -> None:
    """Raise a NetworkError unless ``net`` has buses and an external grid in service on a bus in service."""
    what = f"network {label!r}" if label else "the network"
    if len(net.bus) == 0:
        raise NetworkError(f"{what} has no buses")
    ext = net.ext_grid
    if len(ext) == 0:
        slack_gen = "gen" in net and "slack" in net.gen and bool(net.gen.slack.fillna(False).astype(bool).any())
        hint = (" (it has a gen with slack=True; vpp's solvers need an ext_grid: replace that gen with one)"
                if slack_gen else "")
        raise NetworkError(
            f"{what} has no external grid (its ext_grid table is empty){hint}; every power flow needs one as "
            "the slack: add one with pandapower.create_ext_grid"
        )
    bus_ok = net.bus.in_service.reindex(ext.bus).fillna(False).to_numpy(dtype=bool)
    live = ext.in_service.to_numpy(dtype=bool) & bus_ok
    if not live.any():
        raise NetworkError(
            f"{what} has {len(ext)} external grid(s) but none in service on a bus in service "
            f"(ext_grid {', '.join(str(i) for i in ext.index[:_EXAMPLES])}); every power flow needs one as the slack"
        )


# --- bus names ----------------------------------------------------------------------------------


def bus_labels(net, refs, label: str = "") -> list[int]:
    """Bus labels for ``refs``: integers pass through, strings are matched against ``net.bus.name``.

    A string must match exactly one bus's name (``str(name)``); an unknown or
    ambiguous name raises a NetworkError listing a few valid names. Whether an
    integer label exists is left to the caller (it has the grid's positions).
    """
    refs = list(refs)
    names = [r for r in refs if isinstance(r, str)]
    if not names:
        return [int(r) for r in refs]
    by_name: dict[str, list[int]] = {}
    for idx, name in zip(net.bus.index, net.bus.name):
        if name is None or (isinstance(name, float) and name != name):  # None or NaN: no name
            continue
        by_name.setdefault(str(name), []).append(int(idx))
    where = f" in grid {label!r}" if label else ""
    out = []
    for r in refs:
        if not isinstance(r, str):
            out.append(int(r))
            continue
        hits = by_name.get(r)
        if hits is None:
            if not by_name:
                raise NetworkError(f"bus name {_short(r)} does not exist{where}: its buses have no names; give bus indices")
            close = difflib.get_close_matches(r, list(by_name), n=_EXAMPLES, cutoff=0.6)
            examples = close or list(by_name)[:_EXAMPLES]
            lead = "closest" if close else "e.g."
            raise NetworkError(
                f"bus name {_short(r)} does not exist{where}; {lead}: {', '.join(_short(n, 40) for n in examples)} "
                f"({len(by_name):,} named buses)"
            )
        if len(hits) > 1:
            shown = ", ".join(str(h) for h in hits[:_EXAMPLES]) + (", ..." if len(hits) > _EXAMPLES else "")
            raise NetworkError(
                f"bus name {_short(r)} is ambiguous{where}: {len(hits)} buses have it (indices {shown}); "
                "give the bus index instead"
            )
        out.append(hits[0])
    return out
