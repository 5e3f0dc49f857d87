"""The leaderboard site (``bench leaderboard --site OUT``): static HTML from the same run records as the markdown.

The dataset views are the markdown pages ``bench.leaderboard.render`` makes (cv, robustness, generalisation and
the index), converted with Python-Markdown and then made into what a person comparing methods wants to click:
every table gets a caption, header cells with scope and row headers; a table whose rows are methods (a
"board") gets each row's family, whether it reads reference contours at test time and whether it is a ceiling
or a reference row, so the page can filter and set them apart; every column sorts (a hand-written script,
``bench/site_assets/site.js``); a mean ± sd (CI) cell shows its interval as a bar on the column's scale; the
best value keeps its mark. One page per method and dataset adds what the markdown leaves to the records: the
config, the provenance (code version, weights and their sha256, protocol hashes), per-fold numbers, the
training history and the Kaplan–Meier plots.

Every link is relative and every asset is local, so the site opens from ``file://``; plots are the leaderboard's
own PNGs (copied from the leaderboard folder when present, else drawn). The site is written to a staging folder
and moved into place, so an interrupted build leaves the previous site as it was.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import xml.etree.ElementTree as etree
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

from bench import leaderboard as lb
from bench.errors import BenchInputError
from bench.results import FLAGS

ASSETS = Path(__file__).with_name("site_assets")
FAMILY_ORDER = ("clinical", "feature", "deep", "foundation", "reference", "other")
VIEW_TITLES = {"cv": "cross-validation", "robustness": "robustness", "generalisation": "generalisation"}
_NUMBER = re.compile(r"^\s*\**\s*([+\-−]?\d+(?:\.\d+)?)(?=\s|%|\*|$)")
_CI_CELL = re.compile(r"^(-?\d+\.\d+) ± (\d+\.\d+) \((-?\d+\.\d+)–(-?\d+\.\d+)\)$")
_NA = ("n/a", "—", "-", "")
_PRIMARY_METRICS = ("cindex_td", "cindex_harrell", "cindex_uno", "td_auc", "td_auc_1y", "ibs", "dice_gtvp",
                    "dice_gtvn")


@dataclass
class SiteContext:
    """What a page's tables need to know about the methods of its dataset."""

    slug: str | None  # None on the index
    methods: dict[str, dict]  # name -> method_info of its records


def _text(el: etree.Element) -> str:
    return re.sub(r"\s+", " ", "".join(el.itertext())).strip()


def _shortened(text: str, limit: int = 140) -> str:
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"


def method_facts(rec: dict) -> dict:
    """The record's method facts; a record made before they held the family takes it from the installed class
    (as the leaderboard takes missing flags), else "other"."""
    info = dict(rec.get("method_info") or {})
    if not info.get("family"):
        info["family"] = _installed_family(rec["method"])
    return info


@lru_cache(maxsize=None)
def _installed_family(name: str) -> str:
    return lb._installed_method_info(name).get("family") or "other"  # entry points are read once per name


def method_kind(info: dict) -> str:
    if info.get("ceiling"):
        return "ceiling"
    return "reference" if info.get("family") == "reference" else "method"


def cell_value(text: str) -> str:
    """A cell's sort key: its leading number ("0.807 ± …", "8.8 %", "+0.044"), empty for n/a, else its text."""
    text = text.strip()
    if text.split(" ")[0] in _NA or text.startswith("n/a"):
        return ""
    found = _NUMBER.match(text)
    if found:
        return found.group(1).replace("−", "-").lstrip("+")
    return text


# --- markdown pages into HTML --------------------------------------------------------------------------------
class _Tables(Treeprocessor):
    """Captions, scopes, row headers, board rows, sort buttons, interval cells and .md → .html links."""

    def __init__(self, md, context: SiteContext):
        super().__init__(md)
        self.ctx = context
        self.families: set[str] = set()

    def run(self, root: etree.Element) -> None:
        for a in root.iter("a"):
            href = a.get("href", "")
            if href.endswith(".md") and "://" not in href:
                a.set("href", "index.html" if href == "README.md" else href[:-3] + ".html")
        heading, used, paragraph = "", defaultdict(int), ""
        for i, el in enumerate(list(root)):
            if el.tag in ("h1", "h2", "h3"):
                heading, paragraph = _text(el), ""
            elif el.tag == "p":
                paragraph = _text(el)
            elif el.tag == "table":
                used[heading] += 1
                caption = heading or "table"
                if used[heading] > 1 and paragraph:
                    caption += f": {_shortened(paragraph.split('. ')[0].rstrip(':'))}"
                elif used[heading] > 1:
                    caption += f" ({used[heading]})"
                wrap = etree.Element("div", {"class": "table-wrap", "role": "region", "tabindex": "0",
                                             "aria-label": caption})
                root.remove(el)
                root.insert(i, wrap)
                wrap.append(el)
                self._table(el, caption)

    def _table(self, table: etree.Element, caption: str) -> None:
        cap = etree.Element("caption")
        cap.text = caption
        table.insert(0, cap)
        head = table.find("thead")
        headers = head.findall("tr/th") if head is not None else []
        for th in headers:
            th.set("scope", "col")
            button = etree.Element("button", {"type": "button", "class": "sort"})
            button.text = "".join(th.itertext()).strip()
            for child in list(th):
                th.remove(child)
            th.text = None
            th.append(button)
        board = bool(headers) and "".join(headers[0].itertext()).strip() == "method"
        table.set("class", "board sortable" if board else "sortable")
        body = table.find("tbody")
        if body is None:
            return
        intervals = self._interval_scales(body)
        for tr in body.findall("tr"):
            cells = list(tr)
            for j, cell in enumerate(cells):
                text = "".join(cell.itertext())
                cell.set("data-value", cell_value(text))
                if cell.find("strong") is not None:
                    cell.set("class", "best")
                    note = etree.SubElement(cell, "span", {"class": "visually-hidden"})
                    note.text = " (best)"
                if j in intervals:
                    self._interval(cell, text.strip(), intervals[j])
            if cells:
                cells[0].tag = "th"
                cells[0].set("scope", "row")
            if board and cells:
                self._board_row(tr, cells[0])

    @staticmethod
    def _interval_scales(body: etree.Element) -> dict[int, tuple[float, float]]:
        """Per column whose cells are mean ± sd (CI): the smallest lower and largest upper bound."""
        spans: dict[int, list[float]] = defaultdict(list)
        for tr in body.findall("tr"):
            for j, cell in enumerate(tr):
                found = _CI_CELL.match("".join(cell.itertext()).strip())
                if found:
                    spans[j] += [float(found.group(3)), float(found.group(4))]
        return {j: (min(v), max(v)) for j, v in spans.items() if max(v) > min(v)}

    @staticmethod
    def _interval(cell: etree.Element, text: str, scale: tuple[float, float]) -> None:
        found = _CI_CELL.match(text)
        if not found:
            return
        mean, sd, lo, hi = (float(g) for g in found.groups())
        best = cell.find("strong") is not None
        for child in list(cell):
            cell.remove(child)
        cell.text = None
        est = etree.SubElement(cell, "strong" if best else "span", {"class": "est"})
        est.text = f"{found.group(1)} ± {found.group(2)}"
        a, b = scale
        pos = lambda v: f"{100 * (v - a) / (b - a):.1f}%"  # noqa: E731
        bar = etree.SubElement(cell, "span", {"class": "interval", "aria-hidden": "true"})
        etree.SubElement(bar, "span", {"style": f"left:{pos(lo)};width:{100 * (hi - lo) / (b - a):.1f}%"})
        etree.SubElement(bar, "i", {"style": f"left:{pos(mean)}"})
        ci = etree.SubElement(cell, "span", {"class": "ci"})
        ci.text = f"95 % CI {found.group(3)}–{found.group(4)}"
        if best:
            note = etree.SubElement(cell, "span", {"class": "visually-hidden"})
            note.text = " (best)"

    def _board_row(self, tr: etree.Element, first: etree.Element) -> None:
        text = "".join(first.itertext()).strip()
        name = text.split(" ")[0]
        info = self.ctx.methods.get(name)
        if info is None:
            return
        family = info.get("family") or "other"
        self.families.add(family)
        tr.set("data-method", name)
        tr.set("data-family", family)
        tr.set("data-mask", "yes" if info.get("needs_mask_at_test") else "no")
        kind = method_kind(info)
        tr.set("data-kind", kind)
        marks = text[len(name):]
        for child in list(first):
            first.remove(child)
        first.text = None
        link = etree.SubElement(first, "a", {"href": f"methods/{name}.html"})
        link.text = name
        link.tail = marks
        if kind != "method":
            tag = etree.SubElement(first, "span", {"class": "kind"})
            tag.text = kind


class _SiteExtension(Extension):
    def __init__(self, context: SiteContext):
        super().__init__()
        self.context = context
        self.tables: _Tables | None = None

    def extendMarkdown(self, md) -> None:  # noqa: N802 - Python-Markdown's name
        self.tables = _Tables(md, self.context)
        md.treeprocessors.register(self.tables, "survbench-tables", 5)  # after the inline patterns (20)


def markdown_page(text: str, context: SiteContext) -> tuple[str, str, set[str]]:
    """(title, body HTML, families of its board rows) of one generated markdown page."""
    ext = _SiteExtension(context)
    body = markdown.markdown(text, extensions=["tables", ext], output_format="html")
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), "leaderboard")
    return title.replace("`", ""), body, ext.tables.families if ext.tables else set()


def filters_form(families: set[str], with_mask: bool) -> str:
    boxes = "".join(
        f'<label><input type="checkbox" name="family" value="{html.escape(f)}" checked> {html.escape(f)}</label>'
        for f in sorted(families, key=lambda f: (FAMILY_ORDER.index(f) if f in FAMILY_ORDER else 99, f)))
    mask = ('<label><input type="checkbox" name="mask"> hide methods that read reference contours at test time'
            ' (†)</label>') if with_mask else ""
    return (f'<form class="filters" aria-label="filter the method rows"><fieldset><legend>Method family</legend>'
            f'{boxes}</fieldset>{mask}<span class="filter-status" aria-live="polite"></span></form>')


def page(title: str, body: str, depth: int, nav: list[tuple[str, str]] = ()) -> str:
    """A whole HTML page; ``depth``: folders below the site root (for relative asset and index links)."""
    up = "../" * depth
    links = "".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' for text, href in nav)
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<title>{html.escape(title)} · survbench</title>\n'
            f'<link rel="stylesheet" href="{up}assets/site.css">\n<script src="{up}assets/site.js" defer></script>\n'
            f'</head>\n<body>\n<header class="site"><nav><a href="{up}index.html">survbench leaderboards</a>'
            f'{links}</nav></header>\n<main>\n{body}\n</main>\n<footer>Generated by <code>bench leaderboard '
            f'--site</code> from the run records; every number is a stored run\'s.</footer>\n</body>\n</html>\n')


# --- one page per method --------------------------------------------------------------------------------------
def _natural(text: str) -> list:
    """Sort key reading digit runs as numbers (noisy10 … noisy100, ct-noise-s1 … s5)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def compact_json(value: Any, indent: int = 0) -> str:
    """JSON with one key per line and lists of plain values on one line (a config reads like its TOML)."""
    pad = "  " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(k)}: {compact_json(v, indent + 1)}" for k, v in sorted(value.items())]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(pad + compact_json(v, indent + 1) for v in value) + "\n" + "  " * indent + "]"
    return json.dumps(value)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _facts(rows: list[tuple[str, str]]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _table_html(caption: str, headers: list[str], rows: list[list[str]], values: list[list[str]] | None = None) -> str:
    """A sortable table; cells are HTML already; ``values`` their sort keys (default: the cell text)."""
    head = "".join(f'<th scope="col"><button type="button" class="sort">{html.escape(h)}</button></th>'
                   for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            key = values[i][j] if values else cell_value(re.sub("<[^>]+>", "", cell))
            tag = 'th scope="row"' if j == 0 else "td"
            cells.append(f'<{tag} data-value="{html.escape(key)}">{cell}</{tag.split()[0]}>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap" role="region" tabindex="0" aria-label="{html.escape(caption)}">'
            f'<table class="sortable"><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _mean_cell(rec: dict, metric: str) -> str:
    values = [f.get("metrics", {}).get(metric) for f in rec.get("folds", [])]
    values = [v for v in values if isinstance(v, (int, float))]
    if not values:
        return "n/a"
    mean = sum(values) / len(values)
    ci = rec.get("ci", {}).get(metric)
    return f"{mean:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci and None not in ci else "")


def _view_of(rec: dict) -> str:
    """The dataset view whose tables show ``rec`` (as bench.leaderboard.render places records)."""
    if rec.get("split", {}).get("kind") in ("loco", "center-split"):
        return "generalisation"
    return "robustness" if lb.suite_point(lb._corruption_of(rec)) is not None else "cv"


def method_page(slug: str, name: str, recs: list[dict], site: Path) -> str:
    """Config, provenance, per-protocol and per-fold numbers, training history and KM plots of one method."""
    info = method_facts(recs[0])
    flags = [text for key, (text, _) in FLAGS.items() if info.get(key)]
    parts = [f"<h1>{html.escape(name)} <span class=\"kind\">{html.escape(info.get('family', 'other'))}</span></h1>",
             _facts([("dataset", f"<code>{html.escape(recs[0]['dataset'])}</code> (fingerprint "
                                 f"<code>{html.escape(recs[0].get('dataset_fp', ''))}</code>)"),
                     ("class", f"<code>{html.escape(info.get('class', '?'))}</code> version "
                               f"{html.escape(str(info.get('version', '?')))}"),
                     ("reads", html.escape(", ".join(info.get("consumes", [])))),
                     ("outputs", html.escape(", ".join(info.get("produces", [])))),
                     ("flags", html.escape("; ".join(flags)) or "none"),
                     ("scale", html.escape(", ".join(sorted({r.get("scale", "?") for r in recs}))))])]
    by_config: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        by_config[r["config_hash"]].append(r)
    for config, group in sorted(by_config.items()):
        group.sort(key=lambda r: (list(VIEW_TITLES).index(_view_of(r)), _natural(r["protocol"])))
        parts.append(f"<h2>Config <code>{config[:8]}</code></h2>")
        parts.append(f"<pre><code>{html.escape(compact_json(group[0].get('config', {})))}</code></pre>")
        commits = sorted({r.get("git_commit") or "unknown" for r in group})
        harness = sorted({r.get("harness_version") or "?" for r in group})
        weights = sorted({f"{k}: {v}" for r in group for k, v in (r.get("provenance") or {}).items()})
        parts.append("<h3>Provenance</h3>" + _facts([
            ("code version", ", ".join(f"<code>{html.escape(c)}</code>" for c in commits)),
            ("harness", html.escape(", ".join(harness))),
            ("weights read", "<br>".join(html.escape(w) for w in weights) or "none (no pretrained weights)"),
            ("newest run", html.escape(max(r.get("newest_run", "") for r in group)))]))
        rows = []
        for r in group:
            view = _view_of(r)
            rows.append([f'<a href="../{view}.html">{html.escape(r["protocol"])}</a>',
                         html.escape(str(r.get("protocol_version", "?"))),
                         f"<code>{html.escape(r['protocol_hash'][:12])}</code>",
                         html.escape(r.get("split", {}).get("kind", "?")), str(len(r.get("folds", []))),
                         _mean_cell(r, lb.PRIMARY)])
        parts.append(_table_html(f"{name} {config[:8]}: protocols, their hashes and pooled C-td (95 % CI)",
                                 ["protocol", "version", "protocol hash", "split", "folds", "C-td (95 % CI)"], rows))
        parts += _history_html(name, group, site / slug)
        parts += _km_html(name, group, site / slug)
        parts.append("<h3>Per-fold numbers</h3>")
        for r in group:
            metrics = [m for m in _PRIMARY_METRICS if any(m in f.get("metrics", {}) for f in r.get("folds", []))]
            fold_rows = [[html.escape(str(f.get("fold_name", f.get("fold"))))]
                         + [_fmt(f.get("metrics", {}).get(m)) for m in metrics] + [_fmt(f.get("fit_seconds"))]
                         for f in r.get("folds", [])]
            table = _table_html(f"{name} on {r['protocol']}: per fold", ["fold", *metrics, "fit s"], fold_rows)
            parts.append(f"<details><summary>{html.escape(r['protocol'])}</summary>{table}</details>")
    return "\n".join(parts)


def _history_html(name: str, recs: list[dict], folder: Path) -> list[str]:
    trained = [r for r in recs if r.get("history")]
    if not trained:
        return ["<h3>Training history</h3><p>This method does not train in epochs: its records keep no history.</p>"]
    r = trained[0]
    out = ["<h3>Training history</h3>"]
    plot = lb.training_plot_name(r)
    if (folder / plot).is_file():
        out.append(f'<figure><img src="../{plot}" alt="training loss per epoch and fold of {html.escape(name)}">'
                   f"<figcaption>Loss per epoch and fold (dashed: validation), one fit per fold serving every "
                   f"protocol.</figcaption></figure>")
    rows = []
    for h in r["history"]:
        series = h.get("series", {})
        loss = [v for v in series.get(lb.training_loss_key(series), []) if isinstance(v, (int, float))]
        val = [v for v in series.get("val_loss", []) if isinstance(v, (int, float))]
        rows.append([html.escape(str(h.get("fold"))), str(len(series.get("epoch", loss))), _fmt(loss[-1] if loss else None),
                     _fmt(min(val) if val else None)])
    out.append(_table_html(f"{name}: training per fold", ["fold", "epochs", "last loss", "best validation loss"],
                           rows))
    return out


def _km_html(name: str, recs: list[dict], folder: Path) -> list[str]:
    figures = []
    for r in recs:
        plot = lb.km_plot_name(r)
        if (folder / plot).is_file():
            figures.append(f'<figure><img src="../{plot}" alt="Kaplan–Meier curves of {html.escape(name)}\'s risk '
                           f'groups on {html.escape(r["protocol"])}"><figcaption>{html.escape(r["protocol"])}'
                           f"</figcaption></figure>")
    if not figures:
        return []
    return ["<h3>Kaplan–Meier curves of the risk groups</h3><p>High against low risk (the training fold's median "
            "risk), pooled over the test folds.</p>", f'<div class="figures">{"".join(figures)}</div>']


# --- the whole site -------------------------------------------------------------------------------------------
MARKER = ".survbench-site"  # in every built site: the only kind of folder a build replaces


def build_site(boards: Path, out: Path, reference: str = lb.DEFAULT_REFERENCE) -> list[Path]:
    """Write the site of the records under ``boards`` (a leaderboard folder with records/) to ``out``; the files
    written, relative to ``out``. ``out`` must be new, empty or a site built before (it holds MARKER): nothing
    else is ever replaced."""
    boards, out = Path(boards), Path(out)
    records = lb.load_records(boards)
    pages = lb.render(boards, reference, records)  # BenchInputError when there are no records
    b, o = boards.resolve(), out.resolve()
    if o == b or o in b.parents or b in o.parents:
        raise BenchInputError(f"--site {out}: choose a folder of its own, not {boards}, a folder above it or one "
                              f"inside it")
    old = out.parent / f".{out.name}.old"
    if not out.exists() and old.is_dir() and (old / MARKER).is_file():
        old.rename(out)  # a build stopped between its two renames: the previous site comes back first
    if out.exists() and not out.is_dir():
        raise BenchInputError(f"--site {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise BenchInputError(f"--site {out}: the folder holds files and is not a site built by `bench leaderboard "
                              f"--site` (no {MARKER} in it); choose a new or empty folder")
    staging = out.parent / f".{out.name}.building"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        written = _write_site(staging, boards, pages, records)
        (staging / MARKER).write_text("built by `bench leaderboard --site`; this folder is replaced by the next build\n")
        written.append(Path(MARKER))
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def _write_site(site: Path, boards: Path, pages: list, records: list[dict]) -> list[Path]:
    written: list[Path] = []

    def put(rel: str, text: str) -> None:
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(Path(rel))

    by_slug: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_slug[lb.dataset_slug(r["dataset"])].append(r)
    methods = {slug: {r["method"]: method_facts(r) for r in recs} for slug, recs in by_slug.items()}
    views = {slug: [] for slug in by_slug}
    for p in pages:
        for rel, draw in p.plots:
            target = site / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if (boards / rel).is_file():
                shutil.copyfile(boards / rel, target)
            else:
                draw(target)
            written.append(Path(rel))
        if p.path != "README.md":
            slug, name = p.path.split("/", 1)
            views[slug].append(Path(name).stem)
    for p in pages:
        if p.path == "README.md":
            continue
        slug, name = p.path.split("/", 1)
        title, body, families = markdown_page(p.text, SiteContext(slug, methods[slug]))
        mask = any(info.get("needs_mask_at_test") for info in methods[slug].values())
        if families:
            body = body.replace("</h1>", "</h1>\n" + filters_form(families, mask), 1)
        nav = [(VIEW_TITLES.get(v, v), f"{v}.html") for v in views[slug]]
        put(f"{slug}/{Path(name).stem}.html", page(title, body, 1, nav))
    for slug, recs in sorted(by_slug.items()):
        grouped: dict[str, list[dict]] = defaultdict(list)
        for r in recs:
            grouped[r["method"]].append(r)
        nav = [(VIEW_TITLES.get(v, v), f"../{v}.html") for v in views[slug]]
        for name, group in sorted(grouped.items()):
            put(f"{slug}/methods/{name}.html", page(f"{name} on {slug}", method_page(slug, name, group, site), 2, nav))
    put("index.html", page("survbench leaderboards", _index(by_slug, views), 0))
    for asset in ("site.css", "site.js"):
        put(f"assets/{asset}", (ASSETS / asset).read_text(encoding="utf-8"))
    return written


def _index(by_slug: dict[str, list[dict]], views: dict[str, list[str]]) -> str:
    parts = ["<h1>survbench leaderboards</h1>",
             "<p>Every number on these pages is a stored run's, exported as a run record and rendered by "
             "<code>bench leaderboard --site</code>; the same records make the markdown leaderboards.</p>"]
    rows = []
    for slug, recs in sorted(by_slug.items()):
        links = " · ".join(f'<a href="{slug}/{v}.html">{VIEW_TITLES.get(v, v)}</a>' for v in views[slug])
        methods = sorted({r["method"] for r in recs})
        method_links = ", ".join(f'<a href="{slug}/methods/{m}.html">{html.escape(m)}</a>' for m in methods)
        rows.append([f"<code>{html.escape(recs[0]['dataset'])}</code>", links, str(len(methods)),
                     str(len({r["protocol"] for r in recs})), str(len(recs)), method_links])
    parts.append(_table_html("Datasets: views, methods, protocols and run records",
                             ["dataset", "views", "methods", "protocols", "records", "method pages"], rows))
    return "\n".join(parts)
