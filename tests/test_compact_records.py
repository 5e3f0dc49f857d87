"""Compact run records (issue 25): predictions quantised before scoring, row files that leave out what can be
regenerated (bootstrap replicates, per-patient corruption entries, metric definitions) and get it back bit for
bit on import, lossless curve encoding, the training history, and the conversion of old rows."""
from __future__ import annotations

import base64
import json
import lzma
import shutil
from pathlib import Path

import numpy as np
import pytest

import bench
from baselines.coxph import CoxPH
from bench.compact import decode_curves, encode_curves, is_quantised, quantise_predictions
from bench.errors import BenchInputError
from bench.protocols import load_protocol
from bench.registry import register_method, unregister_method
from bench.row_files import MAX_ROW_FILE_BYTES, export_rows, import_rows
from bench.runner import plan_methods, run_jobs
from bench.store import RUN_COLUMNS, Store, read_arrays, unpack_arrays

ROOT = Path(__file__).resolve().parents[1]
ROW_FILE_LIMIT = 20 * 1024  # the size a committed quick row may have when its curves are proportional-hazards
# (Breslow) curves, which the separable encoding stores almost free; other curves (a forest's, on every training
# event time) cost their float32 bytes after xz, so such a row may have 8 KB + 0.4 of those bytes
OTHER_CURVE_SHARE, OTHER_CURVE_BASE = 0.4, 8 * 1024


class HistoryCox(CoxPH):
    """CoxPH that reports a per-epoch history, as a network would."""

    def fit(self, train, val):
        super().fit(train, val)
        self.history_ = {"epoch": [1, 2, 3], "loss": [0.91234567, 0.5, float("nan")], "stage": ["a", "b", "c"]}


@pytest.fixture(scope="module")
def clinical(tmp_path_factory):
    from bench.data.hecktor import load_hecktor
    from helpers import write_tiny_hecktor

    return load_hecktor(write_tiny_hecktor(tmp_path_factory.mktemp("compact") / "hecktor", images=False))


@pytest.fixture(scope="module")
def store_a(clinical, tmp_path_factory):
    """coxph and a history-reporting Cox under clean and noisy50 (a corruption manifest with patients)."""
    register_method("history-cox")(HistoryCox)
    try:
        results = tmp_path_factory.mktemp("a") / "results"
        run_jobs(plan_methods(["coxph", "history-cox"], "smoke", []),
                 [load_protocol("clean"), load_protocol("noisy50")], clinical, scale="smoke", seeds=[0],
                 results_dir=results, progress=False)
        yield results
    finally:
        unregister_method("history-cox")


@pytest.fixture(scope="module")
def exported(store_a, tmp_path_factory):
    out = tmp_path_factory.mktemp("rows")
    export_rows(Store(store_a, readonly=True), out)
    return out


def _rows(results: Path) -> dict[tuple, dict]:
    return {(r["method"], r["protocol"], r["fold"]): r for r in Store(results, readonly=True).rows("done")}


def test_stored_predictions_are_quantised_and_rescore_to_the_stored_metrics(store_a):
    from bench.scoring import score

    for row in _rows(store_a).values():
        arrays = unpack_arrays(row["predictions"])
        assert is_quantised(arrays) and arrays["risk"].dtype == np.float32 and arrays["survival"].dtype == np.float32
        assert arrays["event"].dtype == np.uint8
        manifest = json.loads(row["manifest"])
        again = score(json.loads(row["protocol_content"])["metrics"], arrays, boot_seed=manifest["bootstrap"]["seed"])
        assert again.metrics == json.loads(row["metrics"])  # bit for bit: the stored arrays are what was scored
        boot = unpack_arrays(row["bootstrap"])
        assert set(boot) == set(again.replicates)
        assert all(np.array_equal(boot[k], again.replicates[k], equal_nan=True) for k in boot)


def test_a_row_file_leaves_out_what_import_regenerates(exported):
    files = sorted(exported.glob("*/*.json"))
    files = [f for f in files if f.parent.name != "splits"]
    assert len(files) == 20
    noisy = json.loads(next(f for f in files if "noisy50" in f.name).read_text())
    assert noisy["version"] == 2 and "bootstrap" not in noisy["row"]
    corruption = json.loads(noisy["row"]["corruption"])
    assert corruption["kind"] == "noise" and "patients" not in corruption and corruption["n_corrupted"] >= 0
    assert "definitions" not in json.loads(noisy["row"]["manifest"])


def test_export_then_import_gives_back_every_column_bit_for_bit(store_a, exported, tmp_path):
    assert import_rows(Store(tmp_path / "b"), exported) == (20, 0)
    before, after = _rows(store_a), _rows(tmp_path / "b")
    assert before.keys() == after.keys()
    for key, a in before.items():
        b = after[key]
        for c in RUN_COLUMNS:
            if c in ("predictions", "bootstrap"):
                x, y = unpack_arrays(a[c]), unpack_arrays(b[c])
                assert x.keys() == y.keys(), (key, c)
                for k in x:
                    assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f"), (key, c, k)
            elif c in ("manifest", "corruption", "metrics", "history"):
                assert (json.loads(a[c]) if a[c] else None) == (json.loads(b[c]) if b[c] else None), (key, c)
            else:
                assert a[c] == b[c], (key, c)
    noisy = next(r for k, r in after.items() if k[1] == "noisy50")
    assert json.loads(noisy["corruption"])["patients"]  # regenerated per patient


def test_the_training_history_is_kept_rounded_and_carried(store_a, exported, tmp_path):
    rows = _rows(store_a)
    hist = json.loads(rows[("history-cox", "clean", 0)]["history"])
    assert hist == {"epoch": [1.0, 2.0, 3.0], "loss": [0.9123, 0.5, None]}  # 4 digits; text series left out
    assert rows[("coxph", "clean", 0)]["history"] is None
    doc = json.loads(next(exported.glob("*/history-cox__clean__*fold0*.json")).read_text())
    assert json.loads(doc["row"]["history"]) == hist


def _edited(exported: Path, dest: Path, edit) -> Path:
    shutil.copytree(exported, dest)
    victim = next(dest.glob("*/coxph__noisy50__*fold1*.json"))
    doc = json.loads(victim.read_text())
    edit(doc["row"])
    victim.write_text(json.dumps(doc))
    return victim


def _blob(row) -> dict:
    return read_arrays(lzma.decompress(base64.b85decode(row["predictions"])))


def _set_blob(row, arrays) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    row["predictions"] = base64.b85encode(lzma.compress(buf.getvalue())).decode()


def _metric(row):
    m = json.loads(row["metrics"])
    m["cindex_td"] = 0.99
    row["metrics"] = json.dumps(m)


def _risk(row):
    a = _blob(row)
    a["risk"] = a["risk"][::-1].copy()
    _set_blob(row, a)


def _curve(row):
    a = _blob(row)
    a["curve_resid"] = a["curve_resid"] + 1
    _set_blob(row, a)


def _float64(row):
    a = _blob(row)
    a["risk"] = a["risk"].astype(np.float64)
    _set_blob(row, a)


def _bomb(row):
    row["predictions"] = base64.b85encode(lzma.compress(b"\0" * (80 << 20))).decode()


def _cut(row):
    row["predictions"] = row["predictions"][: len(row["predictions"]) // 2]


def _corruption(row):
    c = json.loads(row["corruption"])
    c["n_corrupted"] += 1
    row["corruption"] = json.dumps(c)


def _boot_seed(row):
    m = json.loads(row["manifest"])
    m["bootstrap"]["seed"] += 1
    row["manifest"] = json.dumps(m)


HOSTILE = {
    "a metric edited": (_metric, "score differently"),
    "risks reordered": (_risk, "score differently"),
    "a curve residual edited": (_curve, "decode to other values"),
    "float64 predictions": (_float64, "not float32"),
    "an xz bomb": (_bomb, "inflates past"),
    "a cut stream": (_cut, "unreadable"),
    "the corruption summary edited": (_corruption, "corruption summary differs"),
    "the bootstrap seed edited": (_boot_seed, "not the one its protocol and fold give"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_an_edited_or_damaged_compact_record_is_refused_and_nothing_imported(case, exported, tmp_path):
    edit, words = HOSTILE[case]
    victim = _edited(exported, tmp_path / "rows", edit)
    with pytest.raises(BenchInputError) as err:
        import_rows(Store(tmp_path / "b"), tmp_path / "rows")
    assert victim.name in str(err.value) and words in str(err.value), str(err.value)
    assert Store(tmp_path / "b", readonly=True).rows() == []


def test_a_version_1_row_file_is_still_read(store_a, tmp_path):
    row = next(r for r in Store(store_a, readonly=True).rows("done") if r["protocol"] == "noisy50")
    doc = {"format": "survbench-run-row", "version": 1,
           "row": {c: (base64.b64encode(row[c]).decode() if c in ("predictions", "bootstrap") else row[c])
                   for c in RUN_COLUMNS if c != "history"}}
    (tmp_path / "rows" / "x").mkdir(parents=True)
    (tmp_path / "rows" / "x" / "r.json").write_text(json.dumps(doc))
    assert import_rows(Store(tmp_path / "b"), tmp_path / "rows") == (1, 0)
    back = Store(tmp_path / "b", readonly=True).rows("done")[0]
    assert back["bootstrap"] == row["bootstrap"] and back["metrics"] == row["metrics"]


def test_old_rows_are_compacted_by_rescoring_and_then_export(store_a, tmp_path):
    from click.testing import CliRunner

    from bench.cli import cli
    from bench.store import RunKey

    shutil.copytree(store_a, tmp_path / "r")
    store = Store(tmp_path / "r")
    row = next(r for r in store.rows("done") if r["method"] == "coxph" and r["protocol"] == "clean")
    key = RunKey(**{f: row[f] for f in RunKey.__dataclass_fields__})
    old = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in unpack_arrays(row["predictions"]).items()}
    old["risk"] = old["risk"] + 1e-9 * np.arange(len(old["risk"]))  # a float64 prediction, as rows stored before
    store.rescore(key, metrics=json.loads(row["metrics"]), notes=[], manifest=json.loads(row["manifest"]),
                  bootstrap=unpack_arrays(row["bootstrap"]), predictions=old)
    refused = CliRunner().invoke(cli, ["store", "export", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "o")])
    assert refused.exit_code == 2 and "bench store compact" in refused.output
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*/*.json"))  # nothing half-written
    done = CliRunner().invoke(cli, ["-q", "store", "compact", "--results", str(tmp_path / "r")])
    assert done.exit_code == 0, done.output
    assert "1 row(s) rescored from quantised predictions, 19 already compact" in done.output
    assert "largest change per metric" in done.output
    again = CliRunner().invoke(cli, ["store", "export", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "o")])
    assert again.exit_code == 0, again.output


def test_curves_encode_losslessly_whatever_their_shape():
    rng = np.random.default_rng(0)
    base = np.exp(-np.linspace(0.01, 2, 40))
    cases = {
        "proportional hazards": base[None, :] ** np.exp(rng.normal(size=(30, 1))),
        "discrete, not proportional": np.cumprod(rng.uniform(0.6, 1.0, size=(30, 12)), axis=1),
        "zeros and ones": np.r_[np.ones((2, 5)), np.zeros((2, 5)), [[1, 0.5, 0.5, 0, 0]]],
        "one patient, one time": np.array([[0.3]]),
    }
    for name, s in cases.items():
        s = s.astype(np.float32)
        back = decode_curves(encode_curves(s), name)
        assert back.dtype == np.float32 and np.array_equal(back.view(np.uint32), s.view(np.uint32)), name
    ph = encode_curves(cases["proportional hazards"].astype(np.float32))
    assert np.mean(ph["curve_resid"] == 0) > 0.5  # what makes a Cox curve cost almost nothing


def test_quantisation_keeps_ids_times_and_exact_integers():
    pred = {"ids": np.array(["A-1", "B-2"]), "risk": np.array([0.1, 0.2]), "time": np.array([10.0, 20.5]),
            "event": np.array([1, 0]), "dice_inter": np.array([[3.0, 0.0], [1.0, 2.0]]), "times": np.array([1.5, 2.5]),
            "survival": np.array([[0.9, 0.8], [0.7, 0.6]]), "train_time": np.array([5.0, 7.0])}
    q = quantise_predictions(pred)
    assert q["ids"].tolist() == ["A-1", "B-2"] and q["times"].dtype == np.float64
    assert q["time"].dtype == np.float64  # 20.5 is not an integer: kept
    assert q["train_time"].dtype == np.int16 and q["dice_inter"].dtype == np.int16
    assert q["risk"].dtype == np.float32 and q["survival"].dtype == np.float32 and q["event"].dtype == np.uint8


def test_every_committed_row_file_is_compact():
    files = [f for f in (ROOT / "leaderboards" / "runs").glob("*/*.json") if f.parent.name != "splits"]
    assert files
    from bench.compact import decode_predictions
    from bench.row_files import _decode_blob

    big = []
    for f in files:
        size = f.stat().st_size
        if size <= ROW_FILE_LIMIT:
            continue
        encoded = read_arrays(_decode_blob(json.loads(f.read_text())["row"]["predictions"], 2))
        separable = np.mean(encoded["curve_resid"] == 0) > 0.5
        survival = decode_predictions(encoded, f.name)["survival"]
        if separable or size > OTHER_CURVE_BASE + OTHER_CURVE_SHARE * survival.size * 4:
            big.append((size, f.name, survival.shape))
    assert not big, f"{len(big)} committed row files over their size budget, largest {max(big)}"
    versions = {json.loads(f.read_text())["version"] for f in files[:50]}
    assert versions == {2}
    assert MAX_ROW_FILE_BYTES > ROW_FILE_LIMIT


def test_the_cv_page_shows_the_training_history(store_a, tmp_path):
    from bench.leaderboard import export_records, render, write

    out = tmp_path / "boards"
    export_records(store_a, out)
    rec = json.loads(next(out.glob("records/*/clean__history-cox__*.json")).read_text())
    assert [h["fold"] for h in rec["history"]] == [0, 1, 2, 3, 4]
    assert rec["history"][0]["series"]["loss"] == [0.9123, 0.5, None]
    assert "history" not in json.loads(next(out.glob("records/*/clean__coxph__*.json")).read_text())
    assert "dice_gtvp" not in rec["folds"][0]["metrics"]
    pages = render(out)
    write(out, pages)
    cv = next(p for p in pages if p.path.endswith("cv.md"))
    assert "Training loss per epoch and fold" in cv.text and "plots/training__history-cox__" in cv.text
    assert cv.text.count("plots/training__") == 1  # shown once (clean), not under noisy50 again
    assert next(out.glob("*/plots/training__history-cox__*.png")).stat().st_size > 1000
