"""`python -m bench.bench_soft_dtw --compare OLD NEW`: our rows of two saved runs side by side, each
with the best peer of its own run."""
import json

from bench import bench_soft_dtw, harness


def _run(rows, git):
    return {"machine": {"git": git, "date": "2026-12-03"}, "threads": 1, "load_1m_before": 0.5,
            "load_1m_after": 0.7, "rows": rows}


def _row(impl, ms, x=None, mode="forward"):
    r = {"op": "soft_dtw", "B": 64, "N": 32, "d": 64, "mode": mode, "impl": impl, "time_ms": ms}
    if x is not None:
        r["speedup_vs_best_peer"] = x
    return r


def test_compare_pairs_rows_and_peers_of_each_run(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_soft_dtw, "RESULTS", tmp_path)
    old = _run([_row("abcc:cpu", 2.0, 1.5), _row("pysdtw", 3.0), _row("tslearn", 4.0),
                {"op": "soft_dtw", "B": 64, "N": 32, "d": 64, "mode": "forward", "impl": "tslearn",
                 "note": "skipped"}], "aaa")
    new = _run([_row("abcc:cpu", 1.0, 5.0), _row("pysdtw", 5.0), _row("tslearn", 6.0),
                _row("abcc:cpu", 9.0, 0.7, mode="forward+backward"), _row("pysdtw", 6.3, mode="forward+backward")],
               "bbb")
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    js, md = bench_soft_dtw.compare("old", "new")
    rows = json.loads(js.read_text())["rows"]
    assert [(r["mode"], r["old_ms"], r["new_ms"], r["old_peer"], r["new_peer"], r["old_x"], r["new_x"])
            for r in rows] == [("forward", 2.0, 1.0, 3.0, 5.0, 1.5, 5.0),
                               ("forward+backward", None, 9.0, None, 6.3, None, 0.7)]
    text = md.read_text()
    assert "git aaa" in text and "git bbb" in text and "| 2.00 | 1.00 | 3.00 | 5.00 | 1.5 | 5.0 |" in text


def test_paired_folds_compares_runs_by_fold_and_seed(tmp_path):
    """bench_paired_folds pairs each variant with the base on the same fold and seed (ratios, so a
    hard fold does not outweigh the others), skips rows without a fold, and refuses a missing base."""
    import pytest

    from bench import bench_paired_folds

    rows = []
    for k, (base, var) in enumerate([(0.01, 0.012), (0.1, 0.09), (0.002, 0.002)]):
        for entry, mse in (("abcc", base), ("abcc_x", var)):
            rows.append({"entry": entry, "split": f"inner:{k}", "seed": 0, "mse": mse, "decomp_sei": 1e-4,
                         "decomp_solvent": 2e-4, "cfg": {"w": k}})
    rows.append({"entry": "abcc", "split": "random", "seed": 0, "mse": 9.0, "decomp_sei": 0, "decomp_solvent": 0,
                 "cfg": {}})
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = bench_paired_folds.table(bench_paired_folds.load_rows(str(path)), "abcc")
    line = next(x for x in md.splitlines() if x.startswith("| abcc_x |"))
    assert "| 3 |" in line and "+3.3 % ± 15.3 %" in line and "| 1/3 |" in line     # (+20, -10, 0) %
    assert "| inner:1 | 0.10000 | -10.0 % |" in md
    assert "DILATE" not in md                                   # not every run scored it
    with pytest.raises(SystemExit, match="no rows of the base entry"):
        bench_paired_folds.table(bench_paired_folds.load_rows(str(path)), "mlp")
    for r, d in zip(rows, (0.1, 0.05, 0.2, 0.3, 0.4, 0.44, 9.0)):   # DILATE ratios (-50, +50, +10) %
        r["dilate"] = d
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = bench_paired_folds.table(bench_paired_folds.load_rows(str(path)), "abcc")
    line = next(x for x in md.splitlines() if x.startswith("| abcc_x |"))
    assert "+3.3 % ± 15.3 %" in line and "| 0.2633 | +3.3 % ± 50.3 % | 1/3 |" in line
    assert "| inner:0 | 0.1000 | -50.0 % |" in md
