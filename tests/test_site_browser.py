"""The static leaderboard site (bench/site.py, ``bench leaderboard --site OUT``) in a real browser.

The site is built once per module from the committed ``leaderboards/`` records and every page is opened from
``file://`` in the system's headless Chromium (``/usr/bin/chromium``, driven by ``/usr/bin/chromedriver``
through Selenium; Selenium Manager never downloads anything). Checked: pages load with no console error,
board tables sort and filter, every link and image resolves and nothing comes from the network, no page
scrolls sideways at 390 px, tables carry captions and scoped header cells, and a method whose records keep a
training history shows it.

Chromium missing is a failure, not a skip: install ``chromium`` and ``chromium-driver`` (``.ci/run`` does).
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

import pytest

from helpers import CHROMEDRIVER, CHROMIUM, ROOT, headless_chromium

BOARDS = ROOT / "leaderboards"
SLUGS = ("synthetic-quick-0", "synthetic-quick-v3-0")
VIEWS = ("cv", "robustness", "generalisation")
FAMILIES = {"clinical", "feature", "deep", "foundation", "reference", "other"}
KINDS = {"method", "ceiling", "reference"}
VIEWPORT = "width=device-width, initial-scale=1"
DESKTOP = (1280, 900)
PHONE_WIDTH = 390
INSTALL_HINT = ("install the system's Chromium and its driver (Debian/Ubuntu: apt-get install -y chromium "
                "chromium-driver; .ci/run does), or point SURVBENCH_CHROMIUM / SURVBENCH_CHROMEDRIVER at them")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


# --- the site and the browser ----------------------------------------------------------------------------------
class Site:
    def __init__(self, root: Path, written: list[Path], seconds: float):
        self.root, self.written, self.seconds = root, written, seconds

    def pages(self) -> list[Path]:
        return sorted(self.root.rglob("*.html"))

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    from bench.site import build_site

    out = tmp_path_factory.mktemp("site") / "site"
    t0 = time.perf_counter()
    written = build_site(BOARDS, out)
    seconds = time.perf_counter() - t0  # recorded (test_site_builds_from_the_committed_records), never asserted
    return Site(out, [Path(p) for p in written], seconds)


@pytest.fixture(scope="module")
def browser():
    try:
        import selenium  # noqa: F401
    except ImportError:  # pragma: no cover - the dev extra installs it
        pytest.fail("selenium is not installed: pip install -e '.[dev]' (the dev extra has selenium>=4)")
    for what, path in (("Chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            pytest.fail(f"{what} not found at {path}: {INSTALL_HINT}")
    mp = pytest.MonkeyPatch()
    mp.setenv("SE_OFFLINE", "true")  # Selenium Manager, were it ever consulted, downloads nothing
    mp.setenv("SE_AVOID_STATS", "true")
    try:
        driver = headless_chromium(*DESKTOP, "--disable-extensions")
    except Exception as e:  # noqa: BLE001 - say what to install instead of a bare WebDriver trace
        mp.undo()
        pytest.fail(f"headless Chromium did not start ({type(e).__name__}: {e}); {INSTALL_HINT}")
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        mp.undo()


@pytest.fixture
def desktop(browser):
    _resize(browser, *DESKTOP)
    return browser


def _resize(driver, width: int, height: int) -> None:
    driver.set_window_size(width, height)
    inner = driver.execute_script("return window.innerWidth")
    if inner != width:  # the window has chrome around the viewport (or a minimum size): size the viewport itself
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    else:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def open_page(driver, path: Path) -> list[dict]:
    """Load ``path`` from file:// and wait for it (images included); the console entries it logged."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.as_uri())
    driver.execute_async_script(_WAIT_FOR_IMAGES)
    return driver.get_log("browser")


def severe(entries: list[dict]) -> list[str]:
    return [e["message"] for e in entries if e.get("level") == "SEVERE"]


# Lazy images below the fold would never load in a headless window that nobody scrolls: make them eager and
# wait (at most 20 s) until every image has loaded or failed.
_WAIT_FOR_IMAGES = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.images);
imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
const settle = i => i.complete ? Promise.resolve() :
  new Promise(r => { i.addEventListener('load', r, {once: true}); i.addEventListener('error', r, {once: true}); });
const fonts = document.fonts ? document.fonts.ready : Promise.resolve();
Promise.race([Promise.all([...imgs.map(settle), fonts]), new Promise(r => setTimeout(r, 20000))])
  .then(() => done(document.readyState));
"""

# Everything the structural checks need from one page, read from the browser's DOM in one call.
_SURVEY = """
const attr = (e, a) => e.getAttribute(a);
const text = e => (e ? e.textContent : '').replace(/\\s+/g, ' ').trim();
const tables = Array.from(document.querySelectorAll('table')).map((t, k) => {
  const head = t.tHead ? Array.from(t.tHead.rows) : [];
  const bodyRows = Array.from(t.tBodies).flatMap(b => Array.from(b.rows));
  const last = head.length ? Array.from(head[head.length - 1].cells) : [];
  return {
    index: k, cls: t.className, caption: text(t.caption),
    thead_rows: head.length,
    head_cells: head.flatMap(r => Array.from(r.cells)).map(c => ({tag: c.tagName, scope: attr(c, 'scope'),
      text: text(c), colspan: c.colSpan})),
    columns: last.map(c => ({text: text(c), scope: attr(c, 'scope'), aria_sort: attr(c, 'aria-sort'),
      button: !!c.querySelector('button.sort[type="button"]')})),
    body: bodyRows.map(r => ({
      data: Object.assign({}, r.dataset),
      hidden: r.hidden,
      cells: Array.from(r.cells).map(c => ({tag: c.tagName, scope: attr(c, 'scope'), value: attr(c, 'data-value'),
        colspan: c.colSpan})),
      links: Array.from(r.querySelectorAll('a[href]')).map(a => ({raw: attr(a, 'href'), url: a.href})),
    })),
    other_th: Array.from(t.querySelectorAll('th')).filter(c => !(t.tHead && t.tHead.contains(c)))
      .map(c => ({scope: attr(c, 'scope'), text: text(c)})),
  };
});
const forms = Array.from(document.querySelectorAll('form.filters')).map(f => ({
  family: Array.from(f.querySelectorAll('input[type="checkbox"][name="family"]'))
    .map(i => ({value: i.value, checked: i.checked})),
  mask: Array.from(f.querySelectorAll('input[type="checkbox"][name="mask"]')).map(i => ({checked: i.checked})),
}));
return {
  doctype: document.doctype ? document.doctype.name : null,
  compat: document.compatMode,
  lang: document.documentElement.getAttribute('lang'),
  viewport: Array.from(document.querySelectorAll('meta[name="viewport"]')).map(m => m.getAttribute('content')),
  title: document.title,
  links: Array.from(document.querySelectorAll('a[href]')).map(a => ({raw: attr(a, 'href'), url: a.href,
    text: text(a)})),
  images: Array.from(document.images).map(i => ({raw: attr(i, 'src'), url: i.currentSrc || i.src,
    width: i.naturalWidth, complete: i.complete, alt: attr(i, 'alt')})),
  assets: Array.from(document.querySelectorAll('link[href], script[src], source[src], source[srcset], iframe[src], ' +
    'object[data], video[src], audio[src]')).map(e => ({tag: e.tagName, raw: attr(e, 'href') || attr(e, 'src') ||
    attr(e, 'srcset') || attr(e, 'data')})),
  resources: performance.getEntriesByType('resource').map(r => r.name),
  tables, forms,
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
};
"""


@pytest.fixture(scope="module")
def surveyed(site, browser):
    """Every page of the site opened once at desktop width: its console entries and its DOM facts."""
    _resize(browser, *DESKTOP)
    facts = {}
    for page in site.pages():
        logs = open_page(browser, page)
        facts[site.rel(page)] = {"path": page, "console": logs, **browser.execute_script(_SURVEY)}
    return facts


# --- the build ------------------------------------------------------------------------------------------------
def test_site_builds_from_the_committed_records(site, request):
    request.node.user_properties.append(("site_build_seconds", round(site.seconds, 3)))
    print(f"build_site({BOARDS.name}/): {site.seconds:.2f} s, {len(site.pages())} pages, "
          f"{sum(1 for p in site.root.rglob('*') if p.is_file())} files")
    root = site.root.resolve()
    assert (site.root / "index.html").is_file()
    assert (site.root / "assets" / "site.css").is_file() and (site.root / "assets" / "site.js").is_file()
    for slug in SLUGS:
        assert (site.root / slug / "cv.html").is_file(), slug
        methods = {p.name.split("__")[1] for p in (BOARDS / "records" / slug).glob("*.json")}
        pages = {p.stem for p in (site.root / slug / "methods").glob("*.html")}
        assert pages == methods, (slug, sorted(methods ^ pages))
    written = {(p if p.is_absolute() else site.root / p).resolve() for p in site.written}
    on_disk = {p.resolve() for p in site.root.rglob("*") if p.is_file()}
    assert written <= on_disk, sorted(map(str, written - on_disk))[:10]
    assert all(p.is_relative_to(root) for p in written), "build_site reports files outside its folder"
    assert on_disk <= written, ("files on disk that build_site did not return",
                                sorted(map(str, on_disk - written))[:10])


def test_every_page_has_the_html_basics(site, surveyed):
    bad = {}
    for rel, f in surveyed.items():
        raw = f["path"].read_text(encoding="utf-8").lstrip("\ufeff").lstrip()
        problems = []
        if not raw.lower().startswith("<!doctype html>"):
            problems.append("does not start with <!doctype html>")
        if f["compat"] != "CSS1Compat":
            problems.append(f"quirks mode ({f['compat']})")
        if f["lang"] != "en":
            problems.append(f'<html lang="{f["lang"]}">')
        if f["viewport"] != [VIEWPORT]:
            problems.append(f"viewport meta {f['viewport']}")
        if not f["title"].strip():
            problems.append("empty <title>")
        if problems:
            bad[rel] = problems
    assert not bad, bad


# --- console ---------------------------------------------------------------------------------------------------
def test_the_index_loads_without_console_errors(site, desktop):
    logs = open_page(desktop, site.root / "index.html")
    assert not severe(logs), severe(logs)
    assert desktop.title.strip()
    targets = {_local(a.get_attribute("href")).resolve() for a in desktop.find_elements("css selector", "a[href]")}
    for slug in SLUGS:  # the index lists both datasets and links to each view they have
        views = [site.root / slug / f"{v}.html" for v in VIEWS if (site.root / slug / f"{v}.html").is_file()]
        assert views, f"{slug} has no view"
        unlinked = [site.rel(v) for v in views if v.resolve() not in targets]
        assert not unlinked, f"the index does not link to {unlinked}"


def test_every_page_loads_without_console_errors(surveyed):
    errors = {rel: severe(f["console"]) for rel, f in surveyed.items() if severe(f["console"])}
    assert not errors, errors
    assert len(surveyed) >= 1 + 2 + len(SLUGS) * 3  # index, views and method pages of both datasets


# --- links, images, network ------------------------------------------------------------------------------------
def _local(url: str) -> Path:
    return Path(url2pathname(unquote(urlsplit(url).path)))


def _relative(raw: str) -> bool:
    return not (raw.startswith(("/", "\\")) or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", raw))


def test_every_link_and_image_resolves_and_nothing_comes_from_the_network(site, surveyed):
    root = site.root.resolve()
    problems: list[str] = []
    for rel, f in surveyed.items():
        page = f["path"]
        for a in f["links"]:
            raw = a["raw"].strip()
            if raw.startswith(("http://", "https://", "mailto:")):
                continue  # a link out of the site (not an asset): nothing to resolve offline
            if raw.startswith("#"):
                if raw[1:] and unquote(raw[1:]) not in f["ids"]:
                    problems.append(f"{rel}: link {raw!r}: no element with that id on the page")
                continue
            if not _relative(raw):
                problems.append(f"{rel}: link {raw!r} is not relative")
                continue
            target = _local(urljoin(page.as_uri(), raw)).resolve()
            if not target.is_relative_to(root):
                problems.append(f"{rel}: link {raw!r} leaves the site ({target})")
            elif not target.is_file():
                problems.append(f"{rel}: link {raw!r} -> {site.rel(target) if target.is_relative_to(root) else target}"
                                f" does not exist")
            else:
                frag = urlsplit(raw).fragment
                if frag and not re.search(rf'\bid=["\']?{re.escape(unquote(frag))}["\'\s>]',
                                          target.read_text(encoding="utf-8", errors="replace")):
                    problems.append(f"{rel}: link {raw!r}: no id {frag!r} in {site.rel(target)}")
        for img in f["images"]:
            raw = (img["raw"] or "").strip()
            if not raw:
                problems.append(f"{rel}: <img> without src")
                continue
            if not raw.startswith("data:"):
                if not _relative(raw):
                    problems.append(f"{rel}: image {raw!r} is not a relative URL")
                    continue
                target = _local(urljoin(page.as_uri(), raw)).resolve()
                if not (target.is_relative_to(root) and target.is_file()):
                    problems.append(f"{rel}: image {raw!r} -> {target} is not a file of the site")
            if not img["width"]:
                problems.append(f"{rel}: image {raw!r} did not load in the browser (naturalWidth 0)")
            if img["alt"] is None:
                problems.append(f"{rel}: image {raw!r} has no alt attribute")
        for asset in f["assets"]:
            raw = (asset["raw"] or "").strip()
            if raw.startswith("data:"):
                continue
            if not _relative(raw):
                problems.append(f"{rel}: <{asset['tag'].lower()}> {raw!r} is not a relative URL")
                continue
            target = _local(urljoin(page.as_uri(), raw.split()[0])).resolve()
            if not (target.is_relative_to(root) and target.is_file()):
                problems.append(f"{rel}: <{asset['tag'].lower()}> {raw!r} is not a file of the site")
        for name in f["resources"]:
            if urlsplit(name).scheme not in ("file", "data", "blob"):
                problems.append(f"{rel}: loaded {name} from outside the site")
    for css in site.root.rglob("*.css"):
        for ref in re.findall(r"""url\(\s*['"]?([^'")\s]+)""", css.read_text(encoding="utf-8")):
            if re.match(r"^(https?:)?//", ref) or (not ref.startswith("data:") and not _relative(ref)):
                problems.append(f"{site.rel(css)}: url({ref}) is not local")
            elif not ref.startswith("data:") and not (css.parent / ref.split("#")[0].split("?")[0]).is_file():
                problems.append(f"{site.rel(css)}: url({ref}) does not exist")
    for page in site.pages() + sorted(site.root.rglob("*.js")) + sorted(site.root.rglob("*.css")):
        for m in re.finditer(r"""(?:src|href)\s*=\s*["'](https?:)?//[^"']+\.(?:js|css|png|jpe?g|svg|woff2?|ttf)\b|"""
                             r"""@import\s+(?:url\()?\s*["']?(https?:)?//""", page.read_text(encoding="utf-8")):
            problems.append(f"{site.rel(page)}: network asset {m.group(0)!r}")
    assert not problems, "\n".join(problems[:60]) + (f"\n… {len(problems) - 60} more" if len(problems) > 60 else "")


# --- tables ----------------------------------------------------------------------------------------------------
def test_every_table_has_a_caption_and_scoped_header_cells(surveyed):
    problems: list[str] = []
    tables = 0
    for rel, f in surveyed.items():
        for t in f["tables"]:
            tables += 1
            where = f"{rel} table {t['index']} ({t['caption'][:40]!r})"
            if not t["caption"]:
                problems.append(f"{where}: no <caption>")
            if not t["thead_rows"] or not any(c["tag"] == "TH" for c in t["head_cells"]):
                problems.append(f"{where}: no header cells in a <thead>")
            for c in t["head_cells"]:
                if c["tag"] == "TH" and c["scope"] not in ("col", "colgroup"):
                    problems.append(f"{where}: thead <th> {c['text'][:30]!r} has scope={c['scope']!r}")
            for c in t["columns"]:
                if c["scope"] != "col":
                    problems.append(f"{where}: column header {c['text'][:30]!r} has scope={c['scope']!r}")
            for k, row in enumerate(t["body"]):
                first = row["cells"][0] if row["cells"] else None
                if not first or first["tag"] != "TH" or first["scope"] != "row":
                    problems.append(f"{where}: body row {k} does not start with <th scope=\"row\"> "
                                    f"({first and (first['tag'], first['scope'])})")
            for c in t["other_th"]:
                if c["scope"] not in ("row", "rowgroup", "col", "colgroup"):
                    problems.append(f"{where}: <th> {c['text'][:30]!r} outside the thead has no scope")
    assert tables, "no table on any page"
    assert not problems, "\n".join(problems[:60]) + (f"\n… {len(problems) - 60} more" if len(problems) > 60 else "")


def test_board_tables_follow_the_contract(site, surveyed):
    """Rows carry method, family, mask and kind; every column header has a sort button; every sortable body cell
    a numeric (or empty) data-value; method names link to the method's page; one filter form per board page."""
    problems: list[str] = []
    boards = 0
    for rel, f in surveyed.items():
        page_dir = f["path"].parent
        families: set[str] = set()
        board_tables = [t for t in f["tables"] if {"board", "sortable"} <= set(t["cls"].split())]
        for t in board_tables:
            boards += 1
            where = f"{rel} board {t['index']} ({t['caption'][:40]!r})"
            if not t["body"]:
                problems.append(f"{where}: no body rows")
            for c in t["columns"]:
                if not c["button"]:
                    problems.append(f"{where}: column {c['text'][:30]!r} has no "
                                    f"<button type=\"button\" class=\"sort\">")
            for k, row in enumerate(t["body"]):
                d = row["data"]
                name = d.get("method")
                if not name:
                    problems.append(f"{where}: row {k} has no data-method")
                    continue
                families.add(d.get("family"))
                if d.get("family") not in FAMILIES:
                    problems.append(f"{where}: {name}: data-family={d.get('family')!r}")
                if d.get("mask") not in ("yes", "no"):
                    problems.append(f"{where}: {name}: data-mask={d.get('mask')!r}")
                if d.get("kind") not in KINDS:
                    problems.append(f"{where}: {name}: data-kind={d.get('kind')!r}")
                if len(row["cells"]) != len(t["columns"]) or any(c["colspan"] != 1 for c in row["cells"]):
                    problems.append(f"{where}: {name}: {len(row['cells'])} cells under {len(t['columns'])} columns")
                for j, c in enumerate(row["cells"][1:], start=1):
                    if c["value"] is None:
                        col = t["columns"][j]["text"][:30] if j < len(t["columns"]) else j
                        problems.append(f"{where}: {name}: column {col!r} has no data-value")
                targets = {_local(a["url"]).resolve() for a in row["links"]}
                want = (page_dir / "methods" / f"{name}.html").resolve()
                if want not in targets:
                    problems.append(f"{where}: {name} does not link to methods/{name}.html "
                                    f"(links: {[a['raw'] for a in row['links']]})")
            # a column sorts by number (every non-empty data-value a number) or, a text column such as the
            # method or its config, by text (no data-value a number): never a mix of the two
            for j, col in enumerate(t["columns"]):
                values = [r["cells"][j]["value"] for r in t["body"] if j < len(r["cells"])]
                filled = [v.strip() for v in values if v not in (None, "")]
                numeric = [v for v in filled if _NUMBER.match(v)]
                if numeric and len(numeric) != len(filled):
                    problems.append(f"{where}: column {col['text'][:30]!r} mixes numbers and text in data-value: "
                                    f"{sorted(set(filled) - set(numeric))[:5]}")
        if board_tables:
            if len(f["forms"]) != 1:
                problems.append(f"{rel}: {len(f['forms'])} <form class=\"filters\"> (want one)")
                continue
            form = f["forms"][0]
            values = [b["value"] for b in form["family"]]
            if set(values) != families or len(values) != len(set(values)):
                problems.append(f"{rel}: family checkboxes {values} but families on the page {sorted(families)}")
            if not all(b["checked"] for b in form["family"]):
                problems.append(f"{rel}: a family checkbox is unchecked by default")
            if len(form["mask"]) != 1 or form["mask"][0]["checked"]:
                problems.append(f"{rel}: want one mask checkbox, unchecked by default: {form['mask']}")
    assert boards, "no <table class=\"board sortable\"> on any page"
    for slug in SLUGS:
        assert any(t for rel, f in surveyed.items() if rel == f"{slug}/cv.html"
                   for t in f["tables"] if "board" in t["cls"].split()), f"{slug}/cv.html has no board table"
    assert not problems, "\n".join(problems[:60]) + (f"\n… {len(problems) - 60} more" if len(problems) > 60 else "")


def test_a_method_has_one_family_mask_and_kind_across_the_site(surveyed):
    """Rows of the same method agree on every page and dataset (records written before a method_info field existed
    still belong to the method's family)."""
    seen: dict[str, dict[tuple, list[str]]] = {}
    for rel, f in surveyed.items():
        for t in f["tables"]:
            if "board" in t["cls"].split():
                for row in t["body"]:
                    d = row["data"]
                    key = (d.get("family"), d.get("mask"), d.get("kind"))
                    seen.setdefault(d.get("method"), {}).setdefault(key, []).append(rel.split("/")[0])
    differ = {m: {"family={} mask={} kind={}".format(*k): sorted(set(v)) for k, v in keys.items()}
              for m, keys in seen.items() if len(keys) > 1}
    assert not differ, "a method's rows disagree:\n" + "\n".join(f"{m}: {v}" for m, v in sorted(differ.items()))


# --- sorting and filtering -------------------------------------------------------------------------------------
_COLUMN = """
const [t, j] = arguments;
return Array.from(t.tBodies).flatMap(b => Array.from(b.rows))
  .filter(r => !r.hidden && getComputedStyle(r).display !== 'none')
  .map(r => [r.dataset.method, r.cells[j] ? r.cells[j].getAttribute('data-value') : null]);
"""
_ARIA = "return Array.from(arguments[0].tHead.rows[arguments[0].tHead.rows.length - 1].cells)" \
        ".map(c => c.getAttribute('aria-sort'))"


def _click(driver, element) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def _check_order(rows: list, descending: bool, what: str) -> None:
    values = [v for _, v in rows]
    assert None not in values, (what, "a cell without data-value", rows)
    empty = [k for k, v in enumerate(values) if v.strip() == ""]
    assert empty == list(range(len(values) - len(empty), len(values))), (what, "n/a rows are not last", rows)
    numbers = [float(v) for v in values if v.strip() != ""]
    pairs = list(zip(numbers, numbers[1:]))
    ok = all(a >= b for a, b in pairs) if descending else all(a <= b for a, b in pairs)
    assert ok, (what, "descending" if descending else "ascending", rows)


def _board(driver):
    boards = driver.find_elements("css selector", "table.board.sortable")
    assert boards, "no board table on the page"
    return boards


def _numeric_columns(driver, table) -> list[int]:
    """The columns (after the row header) whose cells hold numbers only (or n/a), three distinct at least; those
    that also have n/a cells first."""
    columns = driver.execute_script(
        "const t = arguments[0]; const rows = Array.from(t.tBodies).flatMap(b => Array.from(b.rows));"
        "const n = t.tHead.rows[t.tHead.rows.length - 1].cells.length;"
        "return Array.from({length: n}, (_, j) => rows.map(r => r.cells[j] ? r.cells[j].getAttribute('data-value')"
        " : null));", table)
    candidates = []
    for j, values in enumerate(columns[1:], start=1):
        numbers = {v for v in values if v not in (None, "")}
        if len(numbers) >= 3 and all(_NUMBER.match(v.strip()) for v in numbers):
            candidates.append((not any(v == "" for v in values), j))
    assert len(candidates) >= 2, "fewer than two numeric columns with three distinct values in the board"
    return [j for _, j in sorted(candidates)]


@pytest.mark.parametrize("slug", SLUGS)
def test_sorting_a_cv_board(site, desktop, slug, request):
    open_page(desktop, site.root / slug / "cv.html")
    table = _board(desktop)[0]
    j, other = _numeric_columns(desktop, table)[:2]
    request.node.user_properties.append(
        ("sorted_column", table.find_elements("css selector", "thead tr:last-child > *")[j].text))
    headers = table.find_elements("css selector", "thead tr:last-child > *")
    before = sorted(desktop.execute_script(_COLUMN, table, j))
    button = headers[j].find_element("css selector", "button.sort")

    _click(desktop, button)
    rows = desktop.execute_script(_COLUMN, table, j)
    _check_order(rows, True, "first click")
    assert sorted(rows) == before, "sorting lost or duplicated rows"
    aria = desktop.execute_script(_ARIA, table)
    assert aria[j] == "descending" and all(a is None for k, a in enumerate(aria) if k != j), aria

    _click(desktop, button)
    rows = desktop.execute_script(_COLUMN, table, j)
    _check_order(rows, False, "second click")
    assert sorted(rows) == before
    aria = desktop.execute_script(_ARIA, table)
    assert aria[j] == "ascending" and all(a is None for k, a in enumerate(aria) if k != j), aria

    _click(desktop, button)
    _check_order(desktop.execute_script(_COLUMN, table, j), True, "third click")
    assert desktop.execute_script(_ARIA, table)[j] == "descending"

    # another numeric column takes the sort: the first loses aria-sort
    _click(desktop, headers[other].find_element("css selector", "button.sort"))
    aria = desktop.execute_script(_ARIA, table)
    assert aria[other] == "descending" and aria[j] is None, aria
    _check_order(desktop.execute_script(_COLUMN, table, other), True, f"column {other}, first click")
    assert not severe(desktop.get_log("browser"))


_ROWS = """
return Array.from(document.querySelectorAll('table.board tbody tr')).map(r => ({
  method: r.dataset.method, family: r.dataset.family, mask: r.dataset.mask,
  shown: !r.hidden && getComputedStyle(r).display !== 'none', hidden_attr: r.hidden}));
"""


def _assert_rows(rows: list[dict], hidden_families: set[str], hide_mask: bool, what: str) -> None:
    for r in rows:
        hide = r["family"] in hidden_families or (hide_mask and r["mask"] == "yes")
        assert r["shown"] == (not hide) and r["hidden_attr"] == hide, (what, r)


@pytest.mark.parametrize("slug", SLUGS)
def test_filtering_families_and_reference_contours(site, desktop, slug):
    open_page(desktop, site.root / slug / "cv.html")
    forms = desktop.find_elements("css selector", "form.filters")
    assert len(forms) == 1, f"{len(forms)} filter forms"
    form = forms[0]
    rows = desktop.execute_script(_ROWS)
    families = sorted({r["family"] for r in rows})
    assert len(families) >= 2, f"the page shows one family only ({families}): nothing to filter"
    assert {r["mask"] for r in rows} == {"yes", "no"}, "want rows that read reference contours and rows that do not"
    _assert_rows(rows, set(), False, "as loaded")
    box = {f: form.find_element("css selector", f'input[type="checkbox"][name="family"][value="{f}"]')
           for f in families}
    mask = form.find_element("css selector", 'input[type="checkbox"][name="mask"]')
    assert not mask.is_selected() and all(b.is_selected() for b in box.values())

    for family in families:
        _click(desktop, box[family])
        assert not box[family].is_selected()
        _assert_rows(desktop.execute_script(_ROWS), {family}, False, f"family {family} unchecked")
        _click(desktop, box[family])
        _assert_rows(desktop.execute_script(_ROWS), set(), False, f"family {family} checked again")

    _click(desktop, mask)
    assert mask.is_selected()
    _assert_rows(desktop.execute_script(_ROWS), set(), True, "mask checked")
    # both filters at once, then undone one at a time: a row comes back only when no filter hides it
    family = families[0]
    _click(desktop, box[family])
    _assert_rows(desktop.execute_script(_ROWS), {family}, True, f"mask checked and {family} unchecked")
    _click(desktop, mask)
    _assert_rows(desktop.execute_script(_ROWS), {family}, False, f"mask unchecked, {family} still unchecked")
    _click(desktop, box[family])
    _assert_rows(desktop.execute_script(_ROWS), set(), False, "every filter restored")
    assert not severe(desktop.get_log("browser"))


# --- small screens ---------------------------------------------------------------------------------------------
def test_no_page_scrolls_sideways_on_a_phone(site, browser):
    _resize(browser, PHONE_WIDTH, 844)
    wide = {}
    try:
        for page in site.pages():
            open_page(browser, page)
            inner, scroll, widest = browser.execute_script(
                "const d = document.documentElement; let w = null, best = 0;"
                "for (const e of document.body.querySelectorAll('*')) { const r = e.getBoundingClientRect();"
                "  if (r.right > best && getComputedStyle(e).position !== 'fixed') { best = r.right; "
                "    w = e.tagName.toLowerCase() + (e.className && typeof e.className === 'string' ? '.' + "
                "    e.className.trim().split(/\\s+/).join('.') : ''); } }"
                "return [window.innerWidth, d.scrollWidth, w + ' right=' + Math.round(best)];")
            assert inner == PHONE_WIDTH, f"the window is {inner} px wide, not {PHONE_WIDTH}"
            if scroll > inner + 1:
                wide[site.rel(page)] = f"scrollWidth {scroll} > {inner} (widest: {widest})"
    finally:
        _resize(browser, *DESKTOP)
    assert not wide, wide


# --- method pages ----------------------------------------------------------------------------------------------
def _with_history() -> set[tuple[str, str]]:
    found = set()
    for path in sorted((BOARDS / "records").glob("*/*.json")):
        text = path.read_text(encoding="utf-8")
        if '"history"' in text and json.loads(text).get("history"):
            found.add((path.parent.name, json.loads(text)["method"]))
    return found


_TRAINING = re.compile(r"train|loss|epoch|history", re.I)


def test_a_method_with_a_training_history_shows_it(site, desktop):
    with_history = _with_history()
    assert ("synthetic-quick-v3-0", "deepsurv") in with_history, "the committed records changed: pick another method"
    missing = {}
    for slug, method in sorted(with_history):
        page = site.root / slug / "methods" / f"{method}.html"
        assert page.is_file(), f"no page for {method} on {slug}"
        open_page(desktop, page)
        shown = desktop.execute_script(
            "const re = new RegExp(arguments[0], 'i');"
            "const imgs = Array.from(document.images).filter(i => re.test(i.getAttribute('src') || '') ||"
            "  re.test(i.alt || '') || re.test(i.closest('figure') ? i.closest('figure').textContent : ''));"
            "const tables = Array.from(document.querySelectorAll('table')).filter(t => t.caption &&"
            "  re.test(t.caption.textContent) && t.tBodies.length && t.tBodies[0].rows.length);"
            "const head = t => Array.from(t.tHead ? t.tHead.rows[t.tHead.rows.length - 1].cells : []);"
            "const empty = t => head(t).map((c, j) => [c.textContent.replace(/[\\u2195\\s]+/g, ' ').trim(),"
            "  Array.from(t.tBodies[0].rows).every(r => !r.cells[j] || ['', 'n/a', '\u2014'].includes("
            "  (r.cells[j].getAttribute('data-value') ?? r.cells[j].textContent).trim()))]).filter(x => x[1]);"
            "return {images: imgs.map(i => [i.getAttribute('src'), i.naturalWidth]),"
            "        tables: tables.map(t => t.caption.textContent.trim()),"
            "        empty_columns: tables.flatMap(t => empty(t).map(x => t.caption.textContent.trim() + ': ' +"
            "          x[0]))};",
            _TRAINING.pattern)
        loaded = [src for src, width in shown["images"] if width > 0]
        where = f"{slug}/methods/{method}.html"
        if not loaded and not shown["tables"]:
            missing[where] = f"no training-history image or table: {shown}"
        if shown["empty_columns"]:  # the records hold the numbers: a column with none of them lost its key
            missing[where] = f"training table column(s) with no value in any row: {shown['empty_columns']}"
    assert not missing, f"training history not shown (no image or table) or incomplete: {missing}"

