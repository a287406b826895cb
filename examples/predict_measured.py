"""Predict the operando IR of a measured cell with the packaged pretrained ABCC (docs/pretrained.md).

Inputs: a static spectrum (CSV wavenumber, absorbance; or JCAMP-DX) and the cell's voltage log (CSV
time_s, voltage; any number of rows), interpolated onto the model's T frames evenly spaced in time.
`predict_to_dir` resamples the spectrum onto the model's grid (abcc_fast.data.importer) and writes
frames.csv, frames.safetensors and figures/ (operando heatmap, solvent and SEI streams, a band over
sampled predictions). Defaults: the LP30 on graphite fixtures in tests/fixtures. The model has seen
simulated spectra only: compare with a measured frame before trusting magnitudes.

    python examples/predict_measured.py --static cell.jdx --voltage log.csv --out pred_measured
    python examples/predict_measured.py --quick          # no sampling, output in a temporary folder (CI)
"""
import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from abcc_fast import pretrained
from abcc_fast.data.importer import TIME_NAMES, VOLT_NAMES, read_table
from abcc_fast.train.predict import predict_to_dir

FIX = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def log_on_frames(log_csv, T: int, out_csv: Path) -> Path:
    """The voltage log interpolated onto T frames evenly spaced in time, as the T-row CSV predict reads."""
    header, values = read_table(log_csv)
    low = [h.lower().replace(" ", "") for h in header]
    col = [next((low.index(k) for k in names if k in low), None) for names in (TIME_NAMES, VOLT_NAMES)]
    if None in col:
        raise SystemExit(f"{log_csv}: needs a time column {TIME_NAMES} and a voltage column {VOLT_NAMES}; "
                         f"found {header}")
    t, v = values[:, col[0]], values[:, col[1]]
    grid = np.linspace(t[0], t[-1], T)
    out_csv.write_text("time_s,voltage\n" + "".join(f"{a:.3f},{b:.5f}\n" for a, b in zip(grid, np.interp(grid, t, v))))
    return out_csv


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--static", default=str(FIX / "static.csv"), help="static spectrum: CSV or JCAMP-DX")
    ap.add_argument("--voltage", default=str(FIX / "operando_table.csv"), help="voltage log CSV: time_s, voltage")
    ap.add_argument("--composition", default="EC=0.46,DMC=0.46,LiPF6=0.08", help="mole fractions")
    ap.add_argument("--electrode", default="graphite")
    ap.add_argument("--model", default=pretrained.DEFAULT_NAME, help=f"packaged model: {', '.join(pretrained.names())}")
    ap.add_argument("--out", default="pred_measured", help="output folder (replaced as a whole)")
    ap.add_argument("--quick", action="store_true", help="no sampled band; write into a temporary folder (CI)")
    args = ap.parse_args()
    T = pretrained.card(args.model)["knows"]["T"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pred" if args.quick else Path(args.out)
        voltage = log_on_frames(args.voltage, T, Path(tmp) / "voltage_frames.csv")
        predict_to_dir(args.model, args.static, voltage, args.composition, args.electrode, out,
                       streams=True, samples=0 if args.quick else 16)
        shutil.copy(voltage, out / "voltage_frames.csv")                         # the T rows it was given
        frames = np.loadtxt(out / "frames.csv", delimiter=",", skiprows=1)      # wavenumber + T columns
        change = np.abs(frames[:, -1] - frames[:, 1])
        print(f"predicted {frames.shape[1] - 1} frames on {frames.shape[0]} wavenumbers with the packaged model "
              f"'{args.model}' ({args.electrode}); largest change "
              f"{change.max():.4g} AU at {frames[change.argmax(), 0]:.0f} cm^-1")
        for p in sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()):
            print(f"wrote {p}")


if __name__ == "__main__":
    main()
