"""The leaderboard site (issue 30): build time and size from the committed records, and three screenshots.

Builds the static site (``bench.site.build_site``) from the committed ``leaderboards/`` into fresh temporary
folders ``--repeats`` times and records each build's wall seconds, its pages, files and bytes, with the
environment (commit, CPUs, versions), in benchmarks/results/site-build.json. Then opens the last build from
``file://`` in the system's headless Chromium (the browser of tests/test_site_browser.py) at a desktop width and
writes full-page screenshots (a taller page cut, ``SHOTS``) of the index, a robustness view and a method page with a
training curve:

    python benchmarks/site_screenshots.py          # docs/site-index.png, docs/site-robustness.png, docs/site-method.png
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tests"))
from helpers import CHROMEDRIVER, CHROMIUM, headless_chromium  # noqa: E402 - the tests' own Chromium
SHOTS = (  # (file under docs/, page of the site, cut a taller page here: px)
    ("site-index.png", "index.html", 3600),
    ("site-robustness.png", "synthetic-quick-v3-0/robustness.html", 3600),  # the noise sweep and the suite's tables
    ("site-method.png", "synthetic-quick-v3-0/methods/deepsurv.html", 6400),  # down to the training curve and KM plots
)


# --- environment ------------------------------------------------------------------------------------------------
def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def environment() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("survbench", "markdown", "matplotlib", "numpy", "selenium", "pillow"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    versions["chromium"] = _run(CHROMIUM, "--version") or None
    versions["chromedriver"] = (_run(CHROMEDRIVER, "--version").split(" (")[0]) or None
    mem = None
    try:
        mem = round(int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20, 1)
    except (OSError, AttributeError):
        pass
    return {"commit": _run("git", "rev-parse", "--short", "HEAD"),
            "tree_dirty": bool(_run("git", "status", "--porcelain")),
            "cpus": os.cpu_count(), "memory_gib": mem, "machine": platform.machine(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions, "date": time.strftime("%Y-%m-%d"),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


# --- the build --------------------------------------------------------------------------------------------------
def measure(site: Path, written: list[Path], seconds: float) -> dict:
    files = [p for p in site.rglob("*") if p.is_file()]
    by_kind: dict[str, dict[str, int]] = {}
    for p in files:
        kind = by_kind.setdefault(p.suffix.lstrip(".") or "other", {"files": 0, "bytes": 0})
        kind["files"] += 1
        kind["bytes"] += p.stat().st_size
    return {"wall_seconds": round(seconds, 3), "pages": sum(1 for p in files if p.suffix == ".html"),
            "files": len(files), "files_returned": len(written), "bytes": sum(p.stat().st_size for p in files),
            "by_kind": dict(sorted(by_kind.items()))}


def build(boards: Path, repeats: int, keep: Path) -> list[dict]:
    from bench.site import build_site

    runs = []
    for k in range(repeats):
        with tempfile.TemporaryDirectory(prefix="site-build-") as tmp:
            out = Path(tmp) / "site"
            t0 = time.perf_counter()
            written = build_site(boards, out)
            seconds = time.perf_counter() - t0
            runs.append(measure(out, [Path(p) for p in written], seconds))
            print(f"build {k + 1}/{repeats}: {seconds:.2f} s, {runs[-1]['pages']} pages, {runs[-1]['files']} files, "
                  f"{runs[-1]['bytes'] / 2**20:.1f} MiB", flush=True)
            if k == repeats - 1:
                shutil.copytree(out, keep)
    return runs


# --- the screenshots --------------------------------------------------------------------------------------------
def browser(width: int, height: int):
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager downloads nothing
    driver = headless_chromium(width, height, "--hide-scrollbars")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    return driver


def screenshot(driver, page: Path, dest: Path, width: int, max_height: int) -> dict:
    driver.get_log("browser")
    driver.get(page.as_uri())
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const imgs = Array.from(document.images);"
        "imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });"
        "Promise.all(imgs.map(i => i.complete ? 0 : new Promise(r => { i.onload = i.onerror = r; })))"
        ".then(() => done(true));")
    full = int(driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)"))
    height = min(full, max_height)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    raw = base64.b64decode(shot["data"])
    try:  # smaller files for the repository: 256 colours (no dithering; text and plots stay sharp), re-encoded
        from PIL import Image

        buf = io.BytesIO()
        Image.open(io.BytesIO(raw)).convert("RGB").quantize(
            colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(buf, "PNG", optimize=True)
        raw = min(raw, buf.getvalue(), key=len)
    except ImportError:
        pass
    dest.write_bytes(raw)
    errors = [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    return {"file": str(dest.relative_to(ROOT)) if dest.is_relative_to(ROOT) else str(dest),
            "page": str(page.name), "width": width, "height": height, "page_height": full,
            "cut": full > height, "bytes": len(raw), "console_errors": errors}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--boards", type=Path, default=ROOT / "leaderboards")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "site-build.json")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs", help="where the screenshots go")
    ap.add_argument("--repeats", type=int, default=3, help="builds timed, each into an empty folder")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=900, help="the window's height")
    ap.add_argument("--no-screenshots", action="store_true")
    args = ap.parse_args(argv)

    env = environment()
    with tempfile.TemporaryDirectory(prefix="site-shots-") as tmp:
        site = Path(tmp) / "site"
        runs = build(args.boards.resolve(), args.repeats, site)
        walls = [r["wall_seconds"] for r in runs]
        result = {
            "what": "bench.site.build_site over the committed leaderboards/ records, each build into an empty "
                    "folder (wall seconds on this machine; the first build also pays the imports), and the "
                    "screenshots of docs/ taken from the last build with the system's headless Chromium.",
            "command": "python benchmarks/site_screenshots.py"
                       + ("" if args.repeats == 3 else f" --repeats {args.repeats}"),
            "environment": env,
            "boards": str(args.boards.resolve().relative_to(ROOT)) if args.boards.resolve().is_relative_to(ROOT)
            else str(args.boards),
            "records": sum(1 for _ in (args.boards / "records").glob("*/*.json")),
            "builds": runs,
            "wall_seconds": {"min": min(walls), "median": statistics.median(walls), "max": max(walls)},
            "pages": runs[-1]["pages"], "files": runs[-1]["files"], "bytes": runs[-1]["bytes"],
        }
        if not args.no_screenshots:
            driver = browser(args.width, args.height)
            try:
                shots = []
                for name, rel, max_height in SHOTS:
                    page = site / rel
                    if not page.is_file():
                        raise SystemExit(f"the site has no {rel}")
                    shots.append(screenshot(driver, page, args.docs / name, args.width, max_height))
                    shots[-1]["page"] = rel
                    print(f"{shots[-1]['file']}: {rel}, {args.width}x{shots[-1]['height']}"
                          f"{' (cut from ' + str(shots[-1]['page_height']) + ')' if shots[-1]['cut'] else ''}, "
                          f"{shots[-1]['bytes'] / 1024:.0f} KiB", flush=True)
            finally:
                driver.quit()
            result["screenshots"] = shots
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"wall seconds min/median/max {min(walls):.2f}/{statistics.median(walls):.2f}/{max(walls):.2f}; "
          f"{result['pages']} pages, {result['files']} files, {result['bytes'] / 2**20:.1f} MiB -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
