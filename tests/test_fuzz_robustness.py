"""Nothing escapes, nothing is silently wrong: damaged datasets, manifests that point outside their
folder, mutated CSV/JCAMP imports, corrupted models and checkpoints, and the command-line failures a
user meets. Every case ends in a correct result or a clear error: our exception type (ValueError)
through the API, and through `abcc` one line on stderr, exit code 2, no traceback.

The hypothesis tests run a few examples each in CI (the whole file stays well under a minute on two
cores); ABCC_FUZZ_EXAMPLES=N runs N per test for a deeper search.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abcc_fast import _atomic
from abcc_fast.cli import main
from abcc_fast.data import generate, load
from abcc_fast.data.importer import import_csv, parse_composition, read_jcamp
from abcc_fast.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

FIX = Path(__file__).parent / "fixtures"
EXAMPLES = int(os.environ.get("ABCC_FUZZ_EXAMPLES", "10"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize="ABCC_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def run_cli(*argv) -> tuple[int, str]:
    """(exit code, stderr) of one in-process `abcc` call."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([str(a) for a in argv])
    return rc, err.getvalue()


def assert_clear_error(rc: int, err: str, *needles: str) -> str:
    """Exit code 2, exactly one error line (warnings aside), no traceback; returns the line."""
    lines = [ln for ln in err.splitlines() if ln.strip() and ": warning: " not in ln]
    assert rc == 2, (rc, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and ": error: " in lines[0], err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("fuzz") / "ds", n_samples=30, T=4, W=16, seed=1, progress=False)


@contextlib.contextmanager
def copy_of(src: Path):
    """A scratch copy of a folder (a dataset, a model, a run), removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="abcc-fuzz-"))
    try:
        dst = parent / "ds"
        shutil.copytree(src, dst)
        yield dst
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def edit_manifest(root: Path, fn) -> None:
    m = json.loads((root / "manifest.json").read_text())
    fn(m)
    (root / "manifest.json").write_text(json.dumps(m))


def load_or_clear_error(root: Path, verify: bool = True):
    """load() either returns a dataset whose arrays are finite and consistent, or raises ValueError."""
    try:
        ds = load(root, verify=verify)
    except ValueError as err:
        assert "\n" not in str(err)
        return err
    total = sum(e["samples"] for e in ds.manifest["shards"])
    assert len(ds) == ds.manifest.get("num_samples", total) == total and torch.isfinite(ds.frames).all()
    return ds


# --------------------------------------------------------------------------------------------
# 1. paths in a manifest never leave the dataset folder
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """A file outside every dataset whose content must never leak into a message."""
    f = tmp_path_factory.mktemp("secret") / "secret.txt"
    f.write_text("root:$6$not-a-real-hash$:0:0\n")
    return f


ESCAPES = ["../ds_other/shard_00000.safetensors", "..", ".", "", "sub/shard.safetensors", "/etc/passwd",
           os.devnull, "..\\shard", "shard\x00.safetensors", "OUTSIDE_ABS", "LINK_OUT", "A_FOLDER", 7, None,
           ["shard_00000.safetensors"]]


@pytest.mark.parametrize("name", ESCAPES, ids=[repr(e)[:24] for e in ESCAPES])
def test_shard_names_are_confined_to_the_dataset(dataset, outside, name):
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    with copy_of(dataset) as root:
        if name == "OUTSIDE_ABS":
            name = str(outside)
        elif name == "LINK_OUT":
            (root / "link.safetensors").symlink_to(outside)
            name = "link.safetensors"
        elif name == "A_FOLDER":
            (root / "folder").mkdir()
            name = "folder"
        edit_manifest(root, lambda m: m["shards"][0].__setitem__("file", name))
        with pytest.raises(ValueError, match=r"manifest\['shards'\]\[0\]\['file'\]") as info:
            load(root)
        assert digest[:8] not in str(info.value)
        rc, err = run_cli("data", "inspect", root)
        assert_clear_error(rc, err, "shards")
        assert digest[:8] not in err


@pytest.mark.parametrize("entry", ["shard_00000.safetensors", {"sha256": "0" * 64, "samples": 30},
                                   {"file": "shard_00000.safetensors", "samples": 30}, 42, None])
def test_malformed_shard_entries(dataset, entry):
    with copy_of(dataset) as root:
        edit_manifest(root, lambda m: m["shards"].__setitem__(0, entry))
        rc, err = run_cli("data", "inspect", root)
        assert_clear_error(rc, err, "manifest['shards'][0]")


# --------------------------------------------------------------------------------------------
# 4. the manifest's meaning is checked, naming the field
# --------------------------------------------------------------------------------------------
def _set(path, value):
    def fn(m):
        d = m
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return fn


SEMANTIC = [
    (_set(("normalization", "random", "std"), 0.0), "normalization"),
    (_set(("normalization", "random", "std"), -1.0), "normalization"),
    (_set(("normalization", "system", "mean"), float("nan")), "normalization"),
    (_set(("normalization", "random"), "abc"), "normalization"),
    (_set(("splits", "random", "test"), [0, 999]), "splits']['random']['test']"),
    (_set(("splits", "random", "test"), [-1]), "splits']['random']['test']"),
    (lambda m: m["splits"]["random"]["test"].append(m["splits"]["random"]["train"][0]), "disjoint"),
    (lambda m: m["splits"]["loso"][0]["val"].append(m["splits"]["loso"][0]["test"][0]), "loso"),
    (_set(("num_samples",), 31), "num_samples"),
    (_set(("shards", 0, "samples"), 29), "num_samples"),
    (_set(("shards", 0, "samples"), "30"), "samples"),
    (_set(("T",), "abc"), "'T'"),
    (_set(("T",), 0), "'T'"),
    (_set(("wavenumber", "grid"), "abc"), "grid"),
    (_set(("wavenumber", "grid"), ["a", "b"]), "grid"),
    (_set(("shards", 0, "sha256"), 12), "sha256"),
    (_set(("splits",), []), "splits"),
    (_set(("systems",), "x"), "systems"),
]


@pytest.mark.parametrize("mutate,field", SEMANTIC, ids=[f for _, f in SEMANTIC])
def test_manifest_semantics(dataset, mutate, field):
    with copy_of(dataset) as root:
        edit_manifest(root, mutate)
        with pytest.raises(ValueError, match="manifest") as info:
            load(root)
        assert field in str(info.value)
        rc, err = run_cli("data", "inspect", root)
        assert_clear_error(rc, err, field)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**20) | st.floats(allow_nan=False)
                    | st.text(max_size=12), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                                                 max_size=3),
                    max_leaves=8)


def _paths(obj, prefix=()):
    """Every (path) of a JSON value, lists sampled at their first and last element."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k != "grid":
                yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list) and obj:
        for i in {0, len(obj) - 1}:
            yield from _paths(obj[i], prefix + (i,))


@fuzz
@given(data=st.data())
def test_fuzz_manifest_mutations(dataset, data):
    """Replace or delete any field of the manifest: load() gives a consistent dataset or a ValueError."""
    m0 = json.loads((dataset / "manifest.json").read_text())
    paths = [p for p in _paths(m0) if p]
    path = data.draw(st.sampled_from(paths), label="path")
    delete = data.draw(st.booleans(), label="delete")
    value = None if delete else data.draw(JSON, label="value")
    with copy_of(dataset) as root:
        def fn(m):
            d = m
            for k in path[:-1]:
                d = d[k]
            if delete:
                del d[path[-1]]
            else:
                d[path[-1]] = value
        edit_manifest(root, fn)
        load_or_clear_error(root)


@fuzz
@given(data=st.data())
def test_fuzz_shard_bytes(dataset, data):
    """Flip, truncate or extend a shard: with the checksum it is always an error; without it, a
    finite dataset or a ValueError."""
    shard = dataset / "shard_00000.safetensors"
    blob = bytearray(shard.read_bytes())
    how = data.draw(st.sampled_from(["flip", "truncate", "append", "header"]), label="how")
    if how == "flip":
        for pos in data.draw(st.lists(st.integers(0, len(blob) - 1), min_size=1, max_size=8), label="pos"):
            blob[pos] ^= data.draw(st.integers(1, 255), label="mask")
    elif how == "truncate":
        blob = blob[:data.draw(st.integers(0, len(blob) - 1), label="len")]
    elif how == "append":
        blob += data.draw(st.binary(min_size=1, max_size=64), label="tail")
    else:
        blob[:8] = data.draw(st.binary(min_size=8, max_size=8), label="header")
    with copy_of(dataset) as root:
        (root / "shard_00000.safetensors").write_bytes(bytes(blob))
        if bytes(blob) != shard.read_bytes():
            with pytest.raises(ValueError):
                load(root)
        load_or_clear_error(root, verify=False)


# --------------------------------------------------------------------------------------------
# CSV and JCAMP-DX imports
# --------------------------------------------------------------------------------------------
CELLS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=6),
                  st.sampled_from(["1e300", "-1e39", "nan", "", " ", "1,5", "0x10", "1e400", "--1"]))


@fuzz
@given(data=st.data())
def test_fuzz_csv_import(tmp_path, data):
    """Mutate cells/rows of the three CSV inputs: import_csv writes a finite dataset or raises ValueError."""
    files = {"frames": FIX / "operando_frames.csv", "table": FIX / "operando_table.csv", "static": FIX / "static.csv"}
    which = data.draw(st.sampled_from(sorted(files)), label="file")
    lines = files[which].read_text().splitlines()
    i = data.draw(st.integers(0, len(lines) - 1), label="row")
    cells = lines[i].split(",")
    how = data.draw(st.sampled_from(["cell", "drop_row", "extra_cell", "dup_row"]), label="how")
    if how == "cell":
        cells[data.draw(st.integers(0, len(cells) - 1), label="col")] = data.draw(CELLS, label="text")
        lines[i] = ",".join(cells)
    elif how == "drop_row":
        del lines[i]
    elif how == "extra_cell":
        lines[i] += ",1"
    else:
        lines.insert(i, lines[i])
    scratch = Path(tempfile.mkdtemp(dir=tmp_path))
    paths = {k: scratch / f"{k}.csv" for k in files}
    for k, f in files.items():
        paths[k].write_text("\n".join(lines) + "\n" if k == which else f.read_text())
    try:
        out = import_csv(paths["frames"], paths["table"], paths["static"], scratch / "out", W=32,
                         wn_range=(800.0, 1800.0))
    except ValueError as err:
        assert "\n" not in str(err)
        return
    assert torch.isfinite(load(out).frames).all()


JDX_LABELS = ["FIRSTX", "LASTX", "NPOINTS", "YFACTOR", "XFACTOR", "XUNITS", "YUNITS", "XYDATA"]


@fuzz
@given(data=st.data())
def test_fuzz_jcamp(tmp_path, data):
    """Drop or rewrite a JCAMP-DX label or a data line: finite (x, y) of equal length, or ValueError."""
    lines = (FIX / "static.jdx").read_text().splitlines()
    how = data.draw(st.sampled_from(["drop_label", "label_value", "data_line"]), label="how")
    if how in ("drop_label", "label_value"):
        label = data.draw(st.sampled_from(JDX_LABELS), label="label")
        idx = [i for i, ln in enumerate(lines) if ln.replace(" ", "").upper().startswith(f"##{label}=")]
        if how == "drop_label":
            del lines[idx[0]]
        else:
            value = data.draw(st.sampled_from(["1e400", "nan", "-inf", "abc", "", "0", "3.5", "1e30"]) | st.text(max_size=8),
                              label="value")
            lines[idx[0]] = f"##{label}={value}"
    else:
        i = data.draw(st.integers(12, len(lines) - 2), label="line")
        lines[i] = data.draw(st.sampled_from(["1 2 3 nan", "1 inf", "1 2e400", "12 a 3", "", "1;2;3"])
                             | st.text(max_size=10), label="text")
    f = Path(tempfile.mkdtemp(dir=tmp_path)) / "s.jdx"
    f.write_text("\n".join(lines) + "\n")
    try:
        x, y = read_jcamp(f)
    except ValueError as err:
        assert "\n" not in str(err)
        return
    assert x.shape == y.shape and np.isfinite(x).all() and np.isfinite(y).all()


@pytest.mark.parametrize("label,value,needle", [("FIRSTX", None, "FIRSTX"), ("NPOINTS", "1e400", "NPOINTS"),
                                                ("NPOINTS", "299.5", "NPOINTS"), ("YFACTOR", "abc", "YFACTOR")])
def test_jcamp_header_messages(tmp_path, label, value, needle):
    lines = [ln for ln in (FIX / "static.jdx").read_text().splitlines() if not ln.startswith(f"##{label}=")]
    if value is not None:
        lines.insert(3, f"##{label}={value}")
    f = tmp_path / "s.jdx"
    f.write_text("\n".join(lines) + "\n")
    rc, err = run_cli("data", "import", "--frames", FIX / "operando_frames.csv", "--table",
                      FIX / "operando_table.csv", "--static", f, "--out", tmp_path / "out")
    assert_clear_error(rc, err, needle, str(f))


def test_csv_value_beyond_float32_names_the_row(tmp_path):
    lines = (FIX / "static.csv").read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",1e300"
    f = tmp_path / "static.csv"
    f.write_text("\n".join(lines) + "\n")
    rc, err = run_cli("data", "import", "--frames", FIX / "operando_frames.csv", "--table",
                      FIX / "operando_table.csv", "--static", f, "--out", tmp_path / "out")
    assert_clear_error(rc, err, "row 6", "float32")


# --------------------------------------------------------------------------------------------
# composition: one rule everywhere
# --------------------------------------------------------------------------------------------
def test_composition_duplicates_refused_and_sums_renormalised_with_a_warning():
    with pytest.raises(ValueError, match="EC is given twice"):
        parse_composition("EC=0.5,EC=0.5")
    with pytest.raises(ValueError, match="must be a number, got 'abc'"):
        parse_composition("EC=abc")
    for spec, total in (("EC=0.1,DMC=0.2", 0.3), ("EC=3,DMC=2", 5)):
        with pytest.warns(UserWarning, match=f"sum to {total:g}, not 1; they were renormalised"):
            v = parse_composition(spec)
        assert abs(v.sum() - 1) < 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_composition("EC=0.5,DMC=0.5")            # a sum of 1: no warning


@fuzz
@given(st.lists(st.tuples(st.sampled_from(["EC", "DMC", "LiPF6", "XX", ""]),
                          st.floats(allow_nan=True, allow_infinity=True) | st.just(-0.0)), max_size=4))
def test_fuzz_composition(items):
    spec = ",".join(f"{n}={v!r}" for n, v in items)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = parse_composition(spec)
    except ValueError:
        return
    assert np.isfinite(v).all() and (v >= 0).all()
    assert v.sum() == 0 if not items else abs(v.sum() - 1) < 1e-9


# --------------------------------------------------------------------------------------------
# 2. weights carry their sha256
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_dir(dataset, tmp_path_factory) -> Path:
    from abcc_fast.model import ABCC, ABCCConfig

    torch.manual_seed(0)
    model = ABCC(ABCCConfig.from_dataset(load(dataset), "random", preset="tiny"))
    return model.save_pretrained(tmp_path_factory.mktemp("model") / "m")


def test_model_files_are_deterministic(dataset, model_dir, tmp_path):
    from abcc_fast.model import ABCC

    again = ABCC.from_pretrained(model_dir).save_pretrained(tmp_path / "again")
    for f in ("model.safetensors", "config.json"):
        assert (again / f).read_bytes() == (model_dir / f).read_bytes(), f
    assert json.loads((model_dir / "config.json").read_text())["weights_sha256"] == \
        hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()


@fuzz
@given(data=st.data())
def test_fuzz_corrupted_model(model_dir, data):
    from abcc_fast.model import ABCC

    with copy_of(model_dir) as m:
        blob = bytearray((m / "model.safetensors").read_bytes())
        for pos in data.draw(st.lists(st.integers(0, len(blob) - 1), min_size=1, max_size=64, unique=True),
                             label="pos"):
            blob[pos] ^= 0xFF
        (m / "model.safetensors").write_bytes(bytes(blob))
        with pytest.raises(ValueError, match="corrupt"):
            ABCC.from_pretrained(m)


def test_model_hash_field_and_old_models(model_dir, tmp_path):
    from abcc_fast.model import ABCC

    m = tmp_path / "m"
    shutil.copytree(model_dir, m)
    meta = json.loads((m / "config.json").read_text())
    (m / "config.json").write_text(json.dumps({**meta, "weights_sha256": "zz"}))
    with pytest.raises(ValueError, match="weights_sha256"):
        ABCC.from_pretrained(m)
    del meta["weights_sha256"]                          # a model saved before hashes: loads, with a warning
    (m / "config.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="records no weights_sha256"):
        ABCC.from_pretrained(m)


# --------------------------------------------------------------------------------------------
# checkpoints: hashes, LATEST, state.json
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ckpt") / "run"
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(lin.parameters())
    lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    save_checkpoint(run, step=1, model_state=lin.state_dict(), ema_state=lin.state_dict(),
                    optimizer_state=opt.state_dict(), state={"split": "random"})
    return run


@fuzz
@given(data=st.data())
def test_fuzz_checkpoint_files(checkpoint_run, data):
    with copy_of(checkpoint_run) as run:
        ck = run / "checkpoints" / "step_0000001"
        target = data.draw(st.sampled_from(["model.safetensors", "ema.safetensors", "optimizer.safetensors",
                                            "state.json", "LATEST"]), label="file")
        if target == "LATEST":
            text = data.draw(st.sampled_from(["../..", "/etc", "step_0000001/../..", "step_9", "step_", "",
                                              "step_0000001/model.safetensors"]) | st.text(max_size=12), label="t")
            (run / "checkpoints" / "LATEST").write_text(text)
            try:
                path = latest_checkpoint(run)
            except ValueError as err:
                assert "\n" not in str(err)
                return
            assert path.parent == run / "checkpoints" and path.is_dir()
            return
        if target == "state.json":
            state = json.loads((ck / target).read_text())
            key = data.draw(st.sampled_from(sorted(state)), label="key")
            if data.draw(st.booleans(), label="delete"):
                del state[key]
            else:
                state[key] = data.draw(JSON, label="value")
            (ck / target).write_text(json.dumps(state))
        else:
            blob = bytearray((ck / target).read_bytes())
            blob[data.draw(st.integers(0, len(blob) - 1), label="pos")] ^= 0x01
            (ck / target).write_bytes(bytes(blob))
        try:
            loaded = load_checkpoint(ck)
        except ValueError as err:
            assert "\n" not in str(err)
            return
        assert target == "state.json" and isinstance(loaded["state"]["step"], int)


def test_latest_outside_the_run_is_refused(checkpoint_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(checkpoint_run, run)
    (tmp_path / "elsewhere").mkdir()
    (run / "checkpoints" / "step_evil").symlink_to(tmp_path / "elsewhere")
    for text in ("../../elsewhere", str(tmp_path / "elsewhere"), "step_evil", "step_0000001/.."):
        (run / "checkpoints" / "LATEST").write_text(text)
        with pytest.raises(ValueError, match="LATEST"):
            latest_checkpoint(run)


# --------------------------------------------------------------------------------------------
# 3, 5, 6. the command line: existing outputs, clean one-line errors, Ctrl-C, stale temporaries
# --------------------------------------------------------------------------------------------
def test_generate_refuses_an_existing_dataset_without_force(dataset, tmp_path):
    with copy_of(dataset) as root:
        before = (root / "manifest.json").read_bytes()
        rc, err = run_cli("data", "generate", "--count", "12", "--T", "4", "--W", "16", "--out", root, "--no-progress")
        assert_clear_error(rc, err, "--force")
        assert (root / "manifest.json").read_bytes() == before
        rc, _ = run_cli("data", "generate", "--count", "12", "--T", "4", "--W", "16", "--out", root, "--no-progress",
                        "--force")
        assert rc == 0 and load(root).manifest["num_samples"] == 12


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_out_is_a_file_or_under_one(tmp_path, where):
    f = tmp_path / "a_file"
    f.write_text("x")
    out = f if where == "file" else f / "sub"
    rc, err = run_cli("data", "generate", "--count", "12", "--T", "4", "--W", "16", "--out", out, "--no-progress")
    assert_clear_error(rc, err, str(f))
    rc, err = run_cli("analyze", "--data", "--sample", "0", "--out", out)
    assert_clear_error(rc, err, str(f))


@pytest.mark.parametrize("code,needle", [(errno.EACCES, "permission denied"), (errno.ENOSPC, "no space left"),
                                         (errno.ENOTEMPTY, "another abcc process"), (errno.EROFS, "read-only")])
def test_os_errors_are_one_line(tmp_path, monkeypatch, code, needle):
    import abcc_fast.data.format as fmt

    def boom(tmp, target):
        raise OSError(code, os.strerror(code), str(target))

    monkeypatch.setattr(fmt, "swap_into_place", boom)
    out = tmp_path / "ds"
    rc, err = run_cli("data", "generate", "--count", "12", "--T", "4", "--W", "16", "--out", out, "--no-progress")
    assert_clear_error(rc, err, needle, str(out))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]


def test_unexpected_error_writes_its_traceback(tmp_path, monkeypatch):
    import abcc_fast.data.simulator as sim

    def bug(*a, **k):
        raise TypeError("an internal bug")

    monkeypatch.setattr(sim.OpIRSim, "simulate", bug)
    monkeypatch.setenv("ABCC_LOG_DIR", str(tmp_path / "logs"))
    rc, err = run_cli("data", "generate", "--count", "12", "--T", "4", "--W", "16", "--out", tmp_path / "d",
                      "--no-progress")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err and "TypeError: an internal bug" in err
    logs = list((tmp_path / "logs").iterdir())
    assert len(logs) == 1 and str(logs[0]) in err and "Traceback" in logs[0].read_text()
    with pytest.raises(TypeError):                     # --debug: the traceback itself
        main(["--debug", "data", "generate", "--count", "12", "--T", "4", "--W", "16", "--out", str(tmp_path / "d"),
              "--no-progress"])


def test_ctrl_c_during_generate(tmp_path, monkeypatch):
    import abcc_fast.data.simulator as sim

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sim.OpIRSim, "simulate", interrupt)
    rc, err = run_cli("data", "generate", "--count", "12", "--T", "4", "--W", "16", "--out", tmp_path / "d",
                      "--no-progress")
    assert rc == 130 and "interrupted" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())                 # no dataset, no temporary folder


def test_stale_temporaries_are_cleaned_by_the_next_writer(tmp_path):
    dead = 2 ** 22 + 12345                             # above the default pid_max: no such process
    stale = tmp_path / f".ds.tmp-{_atomic._HOST}-{dead}-abc"
    live = tmp_path / f".ds.tmp-{_atomic._HOST}-{os.getpid()}-abc"
    other = tmp_path / f".ds.tmp-00000000-{dead}-abc"  # another host's: never touched
    for p in (stale, live, other):
        p.mkdir()
        (p / "shard_00000.safetensors").write_bytes(b"x" * 100)
    generate(tmp_path / "ds", n_samples=12, T=4, W=16, progress=False)
    assert not stale.exists() and live.exists() and other.exists()


@pytest.mark.parametrize("device,needle", [("tpu", "--device 'tpu' is not supported"), ("cuda:x", "not supported")]
                         + ([] if torch.cuda.is_available() else [("cuda", "--device cuda")]))
def test_train_device(dataset, tmp_path, device, needle):
    rc, err = run_cli("train", "--data", dataset, "--preset", "tiny", "--steps", "1", "--device", device,
                      "--out", tmp_path / "run", "--no-progress")
    assert_clear_error(rc, err, needle)


# --------------------------------------------------------------------------------------------
# training runs: resume checks, divergence, Ctrl-C, damaged checkpoints
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(dataset, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("train") / "run"
    rc, err = run_cli("train", "--data", dataset, "--preset", "tiny", "--steps", "2", "--out", run, "--no-progress")
    assert rc == 0, err
    return run


def _resume(dataset, run, *extra):
    return run_cli("train", "--data", dataset, "--preset", "tiny", "--steps", "3", "--out", run, "--resume",
                   "--no-progress", *extra)


def test_resume_refuses_other_lr_batch_size_dataset_and_preset(dataset, run_dir, tmp_path):
    other = generate(tmp_path / "other", n_samples=30, T=4, W=16, seed=2, progress=False)
    with copy_of(run_dir) as run:
        assert_clear_error(*_resume(dataset, run, "--lr", "0.5"), "lr=", "--lr")
        assert_clear_error(*_resume(dataset, run, "--batch-size", "3"), "batch_size=", "--batch-size")
        assert_clear_error(*_resume(other, run), "another dataset")
        line = assert_clear_error(*run_cli("train", "--data", dataset, "--preset", "cpu", "--steps", "3", "--out",
                                           run, "--resume", "--no-progress"), "do not fit this model")
        assert len(line) < 600                       # a summary, not the list of every key
        rc, err = _resume(dataset, run)              # unchanged settings: resumes
        assert rc == 0, err


def test_damaged_checkpoint_state_and_optimizer(dataset, run_dir):
    from safetensors.torch import load_file, save_file

    with copy_of(run_dir) as run:
        ck = latest_checkpoint(run)
        state = json.loads((ck / "state.json").read_text())
        del state["step"]
        (ck / "state.json").write_text(json.dumps(state))
        assert_clear_error(*_resume(dataset, run), "'step'")
    with copy_of(run_dir) as run:
        ck = latest_checkpoint(run)
        opt = load_file(str(ck / "optimizer.safetensors"))
        key = next(k for k in opt if k.endswith("exp_avg") and opt[k].ndim >= 1)
        opt[key] = torch.zeros(tuple(opt[key].shape) + (2,))
        save_file(opt, str(ck / "optimizer.safetensors"))
        state = json.loads((ck / "state.json").read_text())      # a consistent hash: only the shape is wrong
        state["sha256"]["optimizer.safetensors"] = hashlib.sha256((ck / "optimizer.safetensors").read_bytes()).hexdigest()
        (ck / "state.json").write_text(json.dumps(state))
        assert_clear_error(*_resume(dataset, run), "optimizer tensor", "shape")
    with copy_of(run_dir) as run:
        ck = latest_checkpoint(run)
        blob = bytearray((ck / "ema.safetensors").read_bytes())
        blob[-3] ^= 0x10
        (ck / "ema.safetensors").write_bytes(bytes(blob))
        assert_clear_error(*_resume(dataset, run), "ema.safetensors is corrupt")


def test_divergence_is_one_line_with_advice_that_works(dataset, tmp_path, monkeypatch):
    import abcc_fast.train.trainer as trainer

    real = trainer.ema_update
    calls = {"n": 0}

    def poison(ema_model, model, decay):        # from the 3rd step on the weights are NaN: the loss follows
        calls["n"] += 1
        if calls["n"] >= 2:
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))
        return real(ema_model, model, decay)

    monkeypatch.setattr(trainer, "ema_update", poison)
    line = assert_clear_error(*run_cli("train", "--data", dataset, "--preset", "tiny", "--steps", "5", "--out",
                                       tmp_path / "fresh", "--no-progress"), "diverged")
    assert "--lr" in line and "--overwrite" in line and "resume from" not in line


def test_ctrl_c_during_training_names_the_checkpoint(dataset, tmp_path, monkeypatch):
    import abcc_fast.train.trainer as trainer

    real = trainer.ema_update
    calls = {"n": 0}

    def interrupt(*a):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(trainer, "ema_update", interrupt)
    run = tmp_path / "run"
    rc, err = run_cli("train", "--data", dataset, "--preset", "tiny", "--steps", "5", "--out", run, "--no-progress")
    assert rc == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "step_0000001" in err and "--resume" in err and latest_checkpoint(run).name == "step_0000001"


def test_predict_replaces_its_output_whole(run_dir, tmp_path):
    out = tmp_path / "pred"
    args = ["predict", "--model", run_dir / "model", "--static", FIX / "predict_static.csv", "--voltage",
            tmp_path / "v.csv", "--composition", "EC=0.5,DMC=0.5", "--electrode", "graphite", "--out", out]
    (tmp_path / "v.csv").write_text("time_s,voltage\n" + "".join(f"{i * 600},{3 - i * 0.5}\n" for i in range(4)))
    rc, err = run_cli(*args)
    assert rc == 0, err
    (out / "figures" / "stale_from_before.png").write_bytes(b"old")
    rc, err = run_cli(*args, "--no-figures")
    assert rc == 0, err
    assert not (out / "figures").exists() and (out / "prediction.json").is_file()
    # a folder that is not an earlier prediction is never replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    assert_clear_error(*run_cli(*args[:-1], mine), "other files")
    assert (mine / "thesis.tex").read_text() == "keep me"
    # the range hint names what predict can do, not an option it lacks
    lines = (FIX / "predict_static.csv").read_text().splitlines()
    (tmp_path / "narrow.csv").write_text("\n".join(lines[:20]) + "\n")
    line = assert_clear_error(*run_cli(*args[:4], tmp_path / "narrow.csv", *args[5:]), "covers it")
    assert "--range" not in line
    # duplicated component: refused, as in import
    dup = list(args)
    dup[dup.index("EC=0.5,DMC=0.5")] = "EC=0.5,EC=0.5"
    assert_clear_error(*run_cli(*dup), "EC is given twice")


def test_bench_replaces_its_output_whole(dataset, tmp_path):
    out = tmp_path / "board"
    args = ["bench", "--data", dataset, "--split", "random", "--out", out, "--no-figures", "--no-progress",
            "--metrics", "mse"]
    rc, err = run_cli(*args)
    assert rc == 0, err
    (out / "figures").mkdir()
    (out / "figures" / "stale.png").write_bytes(b"old")
    rc, err = run_cli(*args)
    assert rc == 0, err
    assert not (out / "figures").exists() and (out / "leaderboard.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".board.")]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert_clear_error(*run_cli(*args[:-5], tmp_path / "notes", *args[-4:]), "other files")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"
