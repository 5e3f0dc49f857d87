"""The leaderboard site's build (bench/site.py) without a browser: what is written, the table markup the page script
relies on, and bad input. The pages themselves are tested in Chromium in tests/test_site_browser.py."""
from __future__ import annotations

import json
import re
import shutil

import pytest
from click.testing import CliRunner

from bench import leaderboard as lb
from bench.cli import cli
from bench.errors import BenchInputError
from bench.site import SiteContext, build_site, cell_value, compact_json, markdown_page
from helpers import ROOT

BOARDS = ROOT / "leaderboards"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    files = build_site(BOARDS, out)
    return out, files


def test_every_view_and_method_of_the_records_gets_a_page(site):
    out, files = site
    records = lb.load_records(BOARDS)
    pages = {str(f) for f in files if f.suffix == ".html"}
    for slug in {lb.dataset_slug(r["dataset"]) for r in records}:
        assert {f"{slug}/cv.html", f"{slug}/robustness.html", f"{slug}/generalisation.html"} <= pages
        methods = {r["method"] for r in records if lb.dataset_slug(r["dataset"]) == slug}
        assert {p.split("/")[-1][:-5] for p in pages if p.startswith(f"{slug}/methods/")} == methods
    assert "index.html" in pages and (out / "assets" / "site.js").is_file() and (out / "assets" / "site.css").is_file()
    assert all((out / f).is_file() for f in files)
    assert not list(out.parent.glob(".site.*"))  # no staging folder left


def test_tables_carry_what_the_script_sorts_and_filters_by(site):
    out, _ = site
    text = (out / "synthetic-quick-v3-0" / "cv.html").read_text()
    tables = re.findall(r"<table.*?</table>", text, re.S)
    assert tables and all("<caption>" in t for t in tables)
    heads = [re.findall(r"<th [^>]*>", t.split("</thead>")[0]) for t in tables]
    assert all(h and all('scope="col"' in c for c in h) for h in heads)
    assert all(len(re.findall(r'<button[^>]*class="sort"', t.split("</thead>")[0])) == len(h)
               for t, h in zip(tables, heads))
    board = next(t for t in tables if 'class="board sortable"' in t)
    rows = [dict(re.findall(r'(data-[a-z]+)="([^"]*)"', r)) for r in re.findall(r"<tr ([^>]*data-method[^>]*)>", board)]
    facts = {r["data-method"]: (r["data-family"], r["data-mask"], r["data-kind"]) for r in rows}
    assert facts["oracle"][2] == "ceiling" and facts["mtv-cox"] == ("reference", "no", "reference")
    assert facts["radiomics-cox"] == ("feature", "yes", "method") and facts["coxph"] == ("clinical", "no", "method")
    assert '<a href="methods/coxph.html">coxph</a>' in board
    assert 'data-value="0.807"' in board and 'class="interval"' in board and "95 % CI 0.766–0.851" in board
    assert '<form class="filters"' in text and 'name="mask"' in text and 'value="feature" checked' in text
    for head in ("http://", "https://", "//cdn"):
        assert head not in text.replace("http://www.w3.org", "")


def test_a_method_page_has_config_provenance_folds_history_and_km(site):
    out, _ = site
    text = (out / "synthetic-quick-v3-0" / "methods" / "deepsurv.html").read_text()
    record = next(r for r in lb.load_records(BOARDS)
                  if r["method"] == "deepsurv" and r["protocol"] == "clean" and r["dataset"].endswith("v3:0"))
    assert json.loads(re.search(r"<pre><code>(.*?)</code></pre>", text, re.S).group(1).replace("&quot;", '"')) \
        == record["config"]
    assert record["git_commit"] in text and record["protocol_hash"][:12] in text
    assert "Per-fold numbers" in text and f"{record['folds'][0]['metrics']['cindex_td']:.3f}" in text
    assert f'src="../{lb.training_plot_name(record)}"' in text and f'src="../{lb.km_plot_name(record)}"' in text
    assert "training per fold" in text
    coxph = (out / "synthetic-quick-v3-0" / "methods" / "coxph.html").read_text()
    assert "does not train in epochs" in coxph


@pytest.mark.parametrize("text, key", [
    ("0.807 ± 0.021 (0.766–0.851)", "0.807"), ("**0.842 ± 0.082 (0.760–0.922)**", "0.842"), ("8.8 % (at 100%)", "8.8"),
    ("+0.044", "0.044"), ("-0.001", "-0.001"), ("n/a — no image input", ""), ("—", ""), ("", ""),
    ("047e6d23", "047e6d23"), ("coxph", "coxph"), ("1.3e-05", "1.3e-05"),
])
def test_cell_sort_keys(text, key):
    assert cell_value(text) == key


def test_compact_json_is_the_same_json():
    value = {"a": [1, 2], "b": {"c": ["x", "y"], "d": [{"e": 1}]}, "f": None, "g": 0.5}
    assert json.loads(compact_json(value)) == value
    assert '"a": [1, 2]' in compact_json(value)


def test_a_markdown_table_without_method_rows_is_sortable_but_not_a_board():
    title, body, families = markdown_page("# t\n\n| protocol | drop |\n|---|---|\n| `x` | +0.1 |\n",
                                          SiteContext("s", {}))
    assert title == "t" and families == set()
    assert 'class="sortable"' in body and "board" not in body
    assert re.search(r'<th (?=[^>]*data-value="x")(?=[^>]*scope="row")[^>]*>', body)


def test_a_failed_build_leaves_the_previous_site(site, tmp_path, monkeypatch):
    out = tmp_path / "site"
    shutil.copytree(site[0], out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    import bench.site as bs

    monkeypatch.setattr(bs, "_write_site", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        build_site(BOARDS, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_captions_are_single_spaced(site):
    text = (site[0] / "synthetic-quick-v3-0" / "cv.html").read_text()
    captions = re.findall(r"<caption>(.*?)</caption>", text, re.S)
    assert captions and not [c for c in captions if "  " in c or "\n" in c]


def test_bad_input_is_exit_2(tmp_path):
    empty = tmp_path / "empty"
    (empty / "records").mkdir(parents=True)
    runner = CliRunner()
    done = runner.invoke(cli, ["leaderboard", "--out", str(empty), "--site", str(tmp_path / "s")])
    assert done.exit_code == 2 and "no run records" in done.output
    done = runner.invoke(cli, ["leaderboard", "--out", str(BOARDS), "--site", str(tmp_path / "s"), "--check"])
    assert done.exit_code == 2 and "leave out --check" in done.output
    with pytest.raises(BenchInputError, match="a folder of its own"):
        build_site(BOARDS, BOARDS)
    for inside in (BOARDS / "records" / "x", BOARDS / "synthetic-quick-0", ROOT):
        with pytest.raises(BenchInputError, match="a folder of its own"):
            build_site(BOARDS, inside)
    assert not (tmp_path / "s").exists()


def test_a_folder_that_is_not_a_site_is_never_replaced(site, tmp_path):
    notes = tmp_path / "docs"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    with pytest.raises(BenchInputError, match="is not a site built by"):
        build_site(BOARDS, notes)
    assert [p.name for p in notes.iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    build_site(BOARDS, tmp_path / "empty")  # an empty folder, then the site built there, are fine
    build_site(BOARDS, tmp_path / "empty")
    assert (tmp_path / "empty" / ".survbench-site").is_file() and (tmp_path / "empty" / "index.html").is_file()


def test_a_build_stopped_between_its_renames_gets_the_previous_site_back(site, tmp_path):
    out, old = tmp_path / "site", tmp_path / ".site.old"
    shutil.copytree(site[0], old)  # as a kill after `out -> .old` and before `staging -> out` leaves it
    build_site(BOARDS, out)
    assert (out / "index.html").is_file() and not old.exists()


def test_the_build_time_in_the_docs_is_the_measured_one():
    measured = json.loads((ROOT / "benchmarks" / "results" / "site-build.json").read_text())
    text = re.sub(r"\s+", " ", (ROOT / "docs" / "site.md").read_text())
    assert (f"The committed records ({measured['records']}) make {measured['pages']} pages and {measured['files']} files "
            f"({measured['bytes'] / 2**20:.1f} MiB, mostly the plots), built in {measured['wall_seconds']['median']:.2f} s") \
        in text
