"""Import measured operando IR data into the dataset format.

Inputs (CSV, comma or semicolon separated, one header row):

- frames: a wavenumber column (cm^-1) and one absorbance column per frame (T columns);
- table: one row per frame with a time column (``time_s``/``time``/``t``, seconds) and a voltage
  column (``voltage``/``E``/``V``/``ewe``, V vs Li/Li+);
- static: a wavenumber column and one absorbance column (the static spectrum of the pristine cell),
  or a JCAMP-DX file (``.jdx``/``.dx``, AFFN, absorbance or transmittance).

Spectra are resampled (linear interpolation) onto the dataset grid, validated (finite values,
strictly monotonic grid, frame count = table rows, grid inside the measured range) and written as
one sample with :func:`~abcc_fast.data.format.write_dataset` (no ``solvent``/``sei``/``extent``).
"""
from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from . import chemistry as chem
from .format import write_dataset

PathLike = Union[str, Path]
FLOAT32_MAX = float(np.finfo(np.float32).max)   # values are stored as float32
RANGE_HINT = "choose a range inside it (--range LO HI)"
SUM_TOLERANCE = 1e-3                            # |sum of mole fractions - 1| allowed without a warning
TIME_NAMES = ("time_s", "time", "t", "t_s", "time/s")
VOLT_NAMES = ("voltage", "e", "v", "ewe", "potential", "voltage_v", "e/v", "ewe/v")


def read_table(path: PathLike) -> tuple[list[str], np.ndarray]:
    """Read a numeric CSV with one header row -> (header names, values [rows, cols] float64).

    Raises ValueError naming the file, row and column of any empty, non-numeric, NaN or Inf cell."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise ValueError(f"{path}: the file is empty")
    dialect_delim = ";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",") else ","
    rows = [r for r in csv.reader(text.splitlines(), delimiter=dialect_delim) if any(c.strip() for c in r)]
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if not body:
        raise ValueError(f"{path}: no data rows after the header")
    vals = np.empty((len(body), len(header)))
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {i + 2} has {len(row)} cells, the header has {len(header)}")
        for j, cell in enumerate(row):
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(f"{path}: row {i + 2}, column {header[j]!r}: {cell!r} is not a number") from None
            if not math.isfinite(v):
                raise ValueError(f"{path}: row {i + 2}, column {header[j]!r} is {cell.strip()} (NaN/Inf); "
                                 "remove or interpolate the bad points before importing")
            if abs(v) > FLOAT32_MAX:
                raise ValueError(f"{path}: row {i + 2}, column {header[j]!r} is {cell.strip()}, beyond the float32 "
                                 f"range (|value| <= {FLOAT32_MAX:.3g}) the dataset stores; check the file's units")
            vals[i, j] = v
    return header, vals


def read_jcamp(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one spectrum from a JCAMP-DX file (AFFN ``##XYDATA=(X++(Y..Y))`` or ``##XYPOINTS=(XY..XY)``).

    Returns (wavenumber cm^-1, absorbance). Transmittance (``##YUNITS=TRANSMITTANCE``, fraction or %)
    is converted to absorbance -log10(T); micrometre x units to cm^-1. Compressed (ASDF: SQZ/DIF/DUP)
    data is refused with a clear message."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: file not found")
    labels: dict[str, str] = {}
    xs: list[float] = []
    ys: list[float] = []
    mode = None
    for n, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.split("$$", 1)[0].strip()
        if not line:
            continue
        if line.startswith("##"):
            key, _, val = line[2:].partition("=")
            key = key.strip().upper().replace(" ", "").replace("-", "").replace("_", "")
            labels[key] = val.strip()
            mode = None
            if key == "XYDATA":
                mode = "xydata"
                if "X++(Y..Y)" not in val.replace(" ", "").upper():
                    raise ValueError(f"{path}: XYDATA form {val.strip()!r} not supported")
            elif key in ("XYPOINTS", "PEAKTABLE"):
                mode = "xypoints"
            elif key == "END":
                break
            continue
        if mode is None:
            continue
        if any((c.isalpha() and c not in "eE") or c in "@%?" for c in line):
            raise ValueError(f"{path}: line {n} holds compressed (ASDF) or non-numeric JCAMP-DX data; "
                             "export the spectrum as AFFN JCAMP-DX or CSV")
        try:
            nums = [float(t) for t in line.replace(",", " ").replace(";", " ").split()]
        except ValueError:
            raise ValueError(f"{path}: line {n}: cannot read {line[:60]!r} as numbers; export the spectrum as AFFN "
                             "JCAMP-DX or CSV") from None
        if mode == "xydata":    # x of each line is implied by FIRSTX/LASTX/NPOINTS
            ys.extend(nums[1:])
        else:
            xs.extend(nums[0::2])
            ys.extend(nums[1::2])
    if not ys:
        raise ValueError(f"{path}: no XYDATA or XYPOINTS block found (is this a JCAMP-DX spectrum?)")
    yf = _jcamp_number(path, labels, "YFACTOR", 1.0)
    y = np.asarray(ys, dtype=float) * yf
    if mode == "xydata" or "XYDATA" in labels:
        first, last = _jcamp_number(path, labels, "FIRSTX"), _jcamp_number(path, labels, "LASTX")
        npts = _jcamp_number(path, labels, "NPOINTS", float(y.size))
        if npts != int(npts) or npts != y.size:
            raise ValueError(f"{path}: ##NPOINTS={labels.get('NPOINTS')} but {y.size} values were read; the file "
                             "is truncated or its header is wrong")
        x = np.linspace(first, last, int(npts))
    else:
        x = np.asarray(xs, dtype=float) * _jcamp_number(path, labels, "XFACTOR", 1.0)
    xunits = labels.get("XUNITS", "1/CM").upper()
    if "MICRO" in xunits:
        x = 1e4 / x
    elif "CM" not in xunits:
        raise ValueError(f"{path}: XUNITS {xunits!r} not supported (need 1/CM or MICROMETERS)")
    yunits = labels.get("YUNITS", "ABSORBANCE").upper()
    if "TRANSMIT" in yunits:
        t = y / 100.0 if np.nanmax(y) > 1.5 else y
        if np.any(t <= 0):
            raise ValueError(f"{path}: transmittance <= 0 cannot be converted to absorbance")
        y = -np.log10(t)
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: NaN/Inf in the spectrum")
    return x, y


JCAMP_SUFFIXES = (".jdx", ".dx", ".jcamp")


def read_static_spectrum(path: PathLike, grid: np.ndarray, hint: str = RANGE_HINT,
                         what: str = "the dataset grid") -> np.ndarray:
    """A static spectrum, CSV (wavenumber, absorbance) or JCAMP-DX (by suffix), resampled onto
    ``grid`` -> float64 [W] (errors end with ``hint`` when the grid is not covered)."""
    path = Path(path)
    if path.suffix.lower() in JCAMP_SUFFIXES:
        sv = np.stack(read_jcamp(path), axis=1)
    else:
        header, sv = read_table(path)
        if sv.shape[1] < 2:
            raise ValueError(f"{path}: needs a wavenumber column and an absorbance column; found {header}")
    if sv.shape[0] < 2:
        raise ValueError(f"{path}: needs at least 2 points (a spectrum), found {sv.shape[0]}")
    wn, spectrum = monotonic_grid(path, sv[:, 0], sv[:, 1:2])
    return resample(path, wn, spectrum, grid, hint=hint, what=what)[:, 0]


def _jcamp_number(path: Path, labels: dict, key: str, default: Optional[float] = None) -> float:
    """The finite number of JCAMP-DX label ``##key=`` (``default`` when absent; required when None)."""
    text = labels.get(key)
    if text is None or text == "":
        if default is None:
            raise ValueError(f"{path}: the JCAMP-DX header has no ##{key}= (needed to place the XYDATA values on "
                             "the wavenumber axis); export the spectrum again with a full header, or as CSV")
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}: ##{key}={text[:40]!r} is not a number") from None
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise ValueError(f"{path}: ##{key}={text[:40]} is not a finite number in range; fix the header")
    return value


def monotonic_grid(path: Path, wn: np.ndarray, values: np.ndarray):
    """(wn, values) ascending in wavenumber: descending exports are flipped, anything else is refused
    (ValueError naming ``path`` and the first row out of order)."""
    d = np.diff(wn)
    if np.all(d > 0):
        return wn, values
    if np.all(d < 0):  # descending exports (4000 -> 400) are common: flip
        return wn[::-1], values[::-1]
    bad = int(np.nonzero((d <= 0) if (d > 0).sum() >= (d < 0).sum() else (d >= 0))[0][0])
    raise ValueError(f"{path}: the wavenumber column is not monotonic (row {bad + 3}: {wn[bad + 1]} after "
                     f"{wn[bad]}); sort the file by wavenumber and remove duplicate points")


def resample(path: Path, wn: np.ndarray, values: np.ndarray, grid: np.ndarray, hint: str = RANGE_HINT,
              what: str = "the dataset grid") -> np.ndarray:
    """values [n, k] on wn -> [W, k] on grid; grid must lie inside the measured range (else ValueError
    ending with ``hint``)."""
    if grid[0] < wn[0] - 1e-6 or grid[-1] > wn[-1] + 1e-6:
        raise ValueError(f"{path}: {what} {grid[0]:.1f}-{grid[-1]:.1f} cm^-1 is outside the measured "
                         f"range {wn[0]:.1f}-{wn[-1]:.1f} cm^-1; {hint}")
    return np.stack([np.interp(grid, wn, values[:, j]) for j in range(values.shape[1])], axis=1)


def _find(header: Sequence[str], names: Sequence[str]) -> Optional[int]:
    low = [h.lower().replace(" ", "") for h in header]
    for n in names:
        if n in low:
            return low.index(n)
    return None


def parse_fractions(spec: Union[str, dict, None], components: Sequence[str],
                    option: str = "--composition") -> np.ndarray:
    """"EC=0.45,DMC=0.45,LiPF6=0.1" (or a dict) -> mole fractions [C] over ``components``, the one
    composition parser of abcc_fast (import and predict).

    Rules: NAME=FRACTION entries, known names only, finite numbers >= 0, each name once (a repeated
    name is an error: keeping the last or adding them would both be a guess), not all zero. A sum
    other than 1 (beyond ``SUM_TOLERANCE``) is renormalised with a warning that says so."""
    comps = list(components)
    out = np.zeros(len(comps))
    if not spec:
        return out
    items = list(spec.items()) if isinstance(spec, dict) else \
        [kv.split("=", 1) for kv in str(spec).split(",") if kv.strip()]
    seen: set = set()
    for kv in items:
        if len(kv) != 2:
            raise ValueError(f"{option}: bad entry {'='.join(map(str, kv))!r}; write NAME=FRACTION, e.g. "
                             "EC=0.5,DMC=0.5")
        name = str(kv[0]).strip()
        if name not in comps:
            raise ValueError(f"{option}: unknown component {name!r}; known components: {', '.join(comps)}")
        if name in seen:
            raise ValueError(f"{option}: {name} is given twice; give each component once")
        seen.add(name)
        try:
            val = float(kv[1])
        except (TypeError, ValueError):
            raise ValueError(f"{option}: the fraction of {name} must be a number, got {str(kv[1]).strip()!r}") from None
        if not (math.isfinite(val) and val >= 0):
            raise ValueError(f"{option}: the fraction of {name} must be a finite number >= 0, got {val}")
        out[comps.index(name)] = val
    total = float(out.sum())
    if total <= 0:
        raise ValueError(f"{option}: the fractions sum to zero; give at least one positive fraction")
    if abs(total - 1.0) > SUM_TOLERANCE:
        warnings.warn(f"{option}: the mole fractions sum to {total:.6g}, not 1; they were renormalised to sum to 1",
                      stacklevel=2)
    return out / total


def parse_composition(spec: Union[str, dict, None]) -> np.ndarray:
    """:func:`parse_fractions` over the chemistry component vocabulary (all zeros for no spec)."""
    return parse_fractions(spec, chem.COMPONENT_NAMES)


def read_time_voltage(path: PathLike, T: int, why: str) -> tuple[np.ndarray, np.ndarray]:
    """A time/voltage CSV with one row per frame -> (time_s [T], voltage [T]) in s and V vs Li/Li+.

    Columns are found by name (TIME_NAMES, VOLT_NAMES); `why` says where T comes from, for the
    error when the row count differs.
    """
    header, values = read_table(path)
    it, iv = _find(header, TIME_NAMES), _find(header, VOLT_NAMES)
    if it is None or iv is None:
        raise ValueError(f"{path}: needs a time column (one of {TIME_NAMES}) and a voltage column "
                         f"(one of {VOLT_NAMES}); found {header}")
    if values.shape[0] != T:
        raise ValueError(f"{path}: {values.shape[0]} rows but {why}; give one time/voltage row per frame "
                         f"({T} rows)")
    time_s, voltage = values[:, it], values[:, iv]
    if np.any(np.diff(time_s) < 0):
        raise ValueError(f"{path}: time is not non-decreasing; sort the rows by time")
    if np.any(voltage < -1.0) or np.any(voltage > 6.0):
        raise ValueError(f"{path}: voltage outside [-1, 6] V vs Li/Li+ (min {voltage.min():.3g}, max "
                         f"{voltage.max():.3g}); give volts vs Li/Li+, not mV")
    return time_s, voltage


def import_csv(frames_csv: PathLike, table_csv: PathLike, static_csv: PathLike, out_dir: PathLike, *,
               wn_range=(700.0, 1900.0), W: int = 512, grid: Optional[np.ndarray] = None,
               composition: Union[str, dict, None] = None, electrode: str = "graphite",
               system_name: str = "measured", electrolyte: str = "", name: Optional[str] = None) -> Path:
    """Import one measured experiment as a one-sample dataset at ``out_dir`` (atomic).

    Example::

        import_csv("frames.csv", "table.csv", "static.csv", "/tmp/my_cell",
                   composition="EC=0.46,DMC=0.46,LiPF6=0.08", electrode="graphite")
    """
    frames_csv, table_csv, static_csv = Path(frames_csv), Path(table_csv), Path(static_csv)
    if electrode not in chem.ELECTRODES:
        raise ValueError(f"unknown electrode {electrode!r}; known electrodes: {chem.ELECTRODES}")
    if grid is None:
        lo, hi = float(wn_range[0]), float(wn_range[1])
        if not (lo < hi) or int(W) < 2:
            raise ValueError(f"bad grid: range {wn_range}, W={W}; need start < stop and W >= 2")
        grid = np.linspace(lo, hi, int(W))
    grid = np.asarray(grid, dtype=np.float64)

    header, fv = read_table(frames_csv)
    if fv.shape[1] < 2:
        raise ValueError(f"{frames_csv}: needs a wavenumber column and at least one frame column")
    wn, spectra = monotonic_grid(frames_csv, fv[:, 0], fv[:, 1:])
    frames = resample(frames_csv, wn, spectra, grid).T                 # [T, W]
    T = frames.shape[0]

    time_s, voltage = read_time_voltage(table_csv, T, f"{frames_csv} has {T} frame columns")

    static = read_static_spectrum(static_csv, grid)

    comp = parse_composition(composition)
    tensors = {
        "wavenumber": torch.tensor(grid, dtype=torch.float32),
        "static": torch.tensor(static[None], dtype=torch.float32),
        "frames": torch.tensor(frames[None], dtype=torch.float32),
        "voltage": torch.tensor(voltage[None], dtype=torch.float32),
        "time_s": torch.tensor(time_s[None], dtype=torch.float32),
        "system": torch.zeros(1, dtype=torch.int64),
        "composition": torch.tensor(comp[None], dtype=torch.float32),
        "electrode": torch.tensor([chem.ELECTRODES.index(electrode)], dtype=torch.int64),
    }
    manifest = {
        "name": name or Path(out_dir).name,
        "generator": {"name": "abcc data import", "version": "1", "seed": 0,
                      "config": {"frames": frames_csv.name, "table": table_csv.name,
                                 "static": static_csv.name, "resampling": "linear"}},
        "systems": [{"index": 0, "number": 0, "name": system_name, "electrolyte": electrolyte,
                     "electrode": electrode}],
        "components": list(chem.COMPONENT_NAMES),
        "electrodes": list(chem.ELECTRODES),
        "reactions": list(chem.REACTION_NAMES),
        "marker_windows": {k: list(v) for k, v in chem.MARKER_WINDOWS.items()},
        "units": {"wavenumber": "cm^-1", "absorbance": "AU", "voltage": "V vs Li/Li+", "time_s": "s"},
        "synthetic": False,
    }
    return write_dataset(out_dir, tensors, manifest)
