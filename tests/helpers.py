"""Test data: a tiny HECKTOR 2022 layout folder with clinical CSVs and small NIfTI images."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from bench.data.hecktor import CLINICAL_COLUMNS, CLINICAL_FILE, ENDPOINT_FILE, HPV_COLUMN

ROOT = Path(__file__).resolve().parents[1]
BENCH = str(Path(sys.executable).with_name("bench"))


def write_tiny_hecktor(root: Path, per_centre=(12, 10, 8), images: bool = True, seed: int = 0) -> Path:
    """A small cohort over len(per_centre) centres, informative clinical covariates, ~35 % events."""
    rng = np.random.default_rng(seed)
    centres = ["CHUM", "CHUP", "MDA", "HGJ", "CHUV"][: len(per_centre)]
    ids, cid = [], []
    for k, (c, n) in enumerate(zip(centres, per_centre)):
        ids += [f"{c}-{i:03d}" for i in range(1, n + 1)]
        cid += [k + 1] * n
    n = len(ids)
    age = rng.normal(62, 9, n).round()
    hpv = (rng.uniform(size=n) < 0.6).astype(float)
    ecog = rng.integers(0, 3, n).astype(float)
    eta = 0.05 * (age - 62) - 0.8 * hpv + 0.5 * ecog
    t = 800 * rng.exponential(size=n) * np.exp(-eta)
    cens = rng.uniform(300, 2500, n)
    event = (t <= cens).astype(int)
    time = np.maximum(1, np.minimum(t, cens)).round().astype(int)
    hpv_obs = np.where(rng.uniform(size=n) < 0.2, np.nan, hpv)
    clinical = pd.DataFrame({
        "PatientID": ids, "Task 1": 1, "Task 2": 1, "CenterID": cid,
        "Gender": rng.choice(["M", "F"], n, p=[0.8, 0.2]), "Age": age, "Weight": rng.normal(75, 12, n).round(1),
        "Tobacco": rng.integers(0, 2, n).astype(float), "Alcohol": rng.integers(0, 2, n).astype(float),
        "Performance status": ecog, HPV_COLUMN: hpv_obs, "Surgery": 0.0, "Chemotherapy": 1.0,
    })[CLINICAL_COLUMNS]
    root.mkdir(parents=True, exist_ok=True)
    clinical.to_csv(root / CLINICAL_FILE, index=False)
    pd.DataFrame({"PatientID": ids, "Relapse": event, "RFS": time}).to_csv(root / ENDPOINT_FILE, index=False)
    if images:
        (root / "imagesTr").mkdir(exist_ok=True)
        (root / "labelsTr").mkdir(exist_ok=True)
        for pid in ids:
            ct = sitk.GetImageFromArray(rng.normal(40, 20, (8, 8, 8)).astype(np.float32))
            ct.SetSpacing((2.0, 2.0, 2.0))
            pet = sitk.GetImageFromArray(rng.gamma(2.0, 1.0, (6, 6, 6)).astype(np.float32))
            pet.SetSpacing((3.0, 3.0, 3.0))
            mask = np.zeros((8, 8, 8), np.uint8)
            mask[3:5, 3:5, 3:5] = 1
            lab = sitk.GetImageFromArray(mask)
            lab.CopyInformation(ct)
            sitk.WriteImage(ct, str(root / "imagesTr" / f"{pid}__CT.nii.gz"))
            sitk.WriteImage(pet, str(root / "imagesTr" / f"{pid}__PT.nii.gz"))
            sitk.WriteImage(lab, str(root / "labelsTr" / f"{pid}.nii.gz"))
    return root


def run_bench(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed `bench` console script as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([BENCH, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600)


def load_script(relpath: str):
    """Import a script outside the packages (``benchmarks/…``) as a module, registered under its stem."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def reliability_protocols(folder: Path) -> dict[str, Path]:
    """Smaller versions of the shipped protocols (50 bootstrap resamples), written under ``folder``: the same
    code paths in a fraction of the time. rel-clean and rel-noisy: clean and noisy10 in two folds, one split, so
    each fold's model scores both; rel-centre: one fold, trained on two centres of the tiny cohort, tested on the
    third. The reliability suite and benchmarks/reliability_figures.py both run them."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    edits = {"rel-clean": ("clean", [("n_folds = 5", "n_folds = 2")]),
             "rel-noisy": ("noisy10", [("n_folds = 5", "n_folds = 2")]),
             "rel-centre": ("center-split", [('train_centres = ["CHUP", "CHUS", "HGJ", "HMR", "MDA"]',
                                              'train_centres = ["CHUM", "CHUP"]'),
                                             ('test_centres = ["CHUM", "CHUV"]', 'test_centres = ["MDA"]')])}
    for name, (source, changes) in edits.items():
        text = (ROOT / "protocols" / f"{source}.toml").read_text()
        for old, new in [(f'name = "{source}"', f'name = "{name}"'), ("bootstrap = 1000 ", "bootstrap = 50 "),
                         *changes]:
            assert old in text, (source, old)
            text = text.replace(old, new)
        made[name] = folder / f"{name}.toml"
        made[name].write_text(text)
    return made


# --- a Ray head on this machine (tests/test_ray_executor.py, benchmarks/ray_executor.py) -----------------------------
# Ray then binds and advertises 127.0.0.1 only; no token authentication (whether ~/.ray/auth_token exists on this
# machine or not), as nothing beyond loopback can reach the cluster. Give it to `ray start` and to every driver.
RAY_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_under(marker: str) -> list[int]:
    """Every process whose command line names ``marker`` (a Ray head's own temp folder), or that holds a file
    under it open: Ray's dashboard and runtime-env agents rename their command line (``ray::DashboardAgent``,
    ``ray::RuntimeEnvAgent``) and outlive the raylet unless ended too."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(entry.name))
                continue
            for fd in (entry / "fd").iterdir():
                try:
                    if os.readlink(fd).startswith(marker):
                        pids.append(int(entry.name))
                        break
                except OSError:
                    pass
        except OSError:
            continue
    return pids


def start_ray_head(temp: str, *, cpus: int = 2, gpus: int = 2) -> tuple[str, subprocess.CompletedProcess]:
    """``ray start --head`` on loopback with its files under ``temp`` (keep it short: Ray's socket paths live
    there); HOST:PORT and the finished ``ray start``."""
    port = free_port()
    ray = str(Path(sys.executable).parent / "ray")
    done = subprocess.run([ray, "start", "--head", "--num-cpus", str(cpus), "--num-gpus", str(gpus), "--port", str(port),
                           "--node-ip-address", "127.0.0.1", "--include-dashboard=false", "--temp-dir", temp,
                           "--disable-usage-stats"], env=os.environ | RAY_LOOPBACK, capture_output=True, text=True,
                          timeout=300)
    if done.returncode:
        raise RuntimeError(f"ray start failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return f"127.0.0.1:{port}", done


def stop_ray_head(temp: str) -> list[str]:
    """End that head's processes, and only them (never `ray stop`, which ends every cluster of this machine):
    TERM, then KILL; the names of those found."""
    import signal
    import time

    names = []
    for pid in processes_under(temp):
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_under(temp):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(1.0)
    return sorted(names)


# --- the system's headless Chromium (tests/test_site_browser.py, benchmarks/site_screenshots.py) ---------------------
CHROMIUM = os.environ.get("SURVBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SURVBENCH_CHROMEDRIVER", "/usr/bin/chromedriver")


def headless_chromium(width: int, height: int, *extra_args: str):
    """A Selenium driver of the system's Chromium through its own chromedriver (never one Selenium Manager would
    fetch), headless at ``width`` × ``height``, keeping the browser console for ``get_log("browser")``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", *extra_args, f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
