"""Run every benchmark suite of bench/ (each in its own process, so one failure does not stop
the others) and list the result files. `make bench` calls this."""
import subprocess
import sys
from pathlib import Path

SUITES = ["bench.bench_soft_dtw", "bench.bench_attention", "bench.bench_opirbench", "bench.bench_datagen"]


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    failed = []
    for suite in SUITES:
        if not (root / (suite.replace(".", "/") + ".py")).exists():
            continue
        print(f"== {suite}", flush=True)
        rc = subprocess.run([sys.executable, "-m", suite, *sys.argv[1:]], cwd=root).returncode
        if rc:
            failed.append(suite)
    for path in sorted((root / "bench" / "results").glob("*")):
        print("  ", path.relative_to(root))
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
