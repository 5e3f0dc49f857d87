"""The corruption suite's gallery: one patient, every type at severities 1, 3 and 5 (and the two missing
modalities), as the runner hands them to methods.

    BENCH_CACHE_DIR=/work/cache python benchmarks/corruption_gallery.py --dataset synthetic:quick --patient CHUM-001

writes docs/corruptions-ct.png (the types that rewrite the CT) and docs/corruptions-pet.png (those that
rewrite the PET): rows are types, columns clean and severities 1, 3, 5, each an axial slice through the clean
PET hot region (ct-metal: through the slice its streaks change most, at the level of the teeth), every panel
of a row at the same position and on the clean image's colour scale. The PET panels carry the clean hot
region's outline (cyan), so a moved or dimmed PET shows against where it was. The realisations are the
cached files of `bench run` and `bench corrupt` (under $BENCH_CACHE_DIR/corrupted).
"""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEVERITIES = (1, 3, 5)
CT_ROWS = ("ct-noise", "blur", "ct-metal", "missing-ct")
PET_ROWS = ("pet-noise", "blur", "misregistration", "suv-calibration", "missing-pet")
CT_WINDOW = (-200.0, 300.0)
HOT_OUTLINE = 0.4  # the clean PET outline drawn on every PET panel: this fraction of the slice's maximum


def protocols_of(row: str) -> list[str | None]:
    """The protocol of each severity column (None where the type has no such severity)."""
    if row.startswith("missing-"):
        return [row, None, None]
    return [f"{row}-s{k}" for k in SEVERITIES]


def panels(ds, pid: str, rows, cache: Path) -> list[tuple[str, object, list]]:
    """Per row: its label, the clean slice and each severity's slice (None where absent)."""
    from bench.corruptions import corrupted_images
    from bench.corruptions.render import axial_slice, slice_position
    from bench.protocols import load_protocol

    clean_files = ds.images[pid]
    out = []
    for row in rows:
        names = protocols_of(row)
        files = [None if n is None else corrupted_images(clean_files, ds.fingerprint, load_protocol(n).corruption,
                                                          pid, cache) for n in names]
        strongest = [f for f in files if f is not None][-1]
        point, _ = slice_position(clean_files, strongest, pid)
        clean = axial_slice(clean_files, pid, point)
        out.append((row, clean, [None if f is None else axial_slice(f, pid, point) for f in files]))
    return out


def draw(grid, modality: str, title: str, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.corruptions.render import suv_ceiling
    from bench.data.show import save_png

    n = len(grid)
    fig, axes = plt.subplots(n, 1 + len(SEVERITIES), figsize=(2.3 * (1 + len(SEVERITIES)), 2.3 * n))
    for i, (row, clean, slices) in enumerate(grid):
        suv = suv_ceiling(clean.pet)
        for j, sl in enumerate([clean] + slices):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if sl is None:
                ax.axis("off")
                continue
            if modality == "ct":
                ax.imshow(sl.ct, cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1])
            else:
                ax.imshow(sl.pet, cmap="hot", vmin=0, vmax=suv)
                ax.contour(clean.pet >= HOT_OUTLINE * clean.pet.max(), levels=[0.5], colors="cyan", linewidths=0.6)
            if i == 0 or (j == 1 and row.startswith("missing-")):
                ax.set_title("clean" if j == 0 else ("one level" if row.startswith("missing-") else
                                                     f"severity {SEVERITIES[j - 1]}"), fontsize=9)
        axes[i, 0].set_ylabel(f"{row}\nz = {clean.z_mm:.0f} mm", fontsize=9)
    fig.suptitle(title, fontsize=10)
    save_png(fig, png)


def main() -> None:
    from bench.data import cache_dir, load_dataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="synthetic:quick")
    ap.add_argument("--patient", default=None, help="default: the dataset's first patient")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    ds = load_dataset(args.dataset, progress=False)
    pid = args.patient or ds.ids[0]
    cache = cache_dir() / "corrupted"
    for modality, rows in (("ct", CT_ROWS), ("pet", PET_ROWS)):
        grid = panels(ds, pid, rows, cache)
        png = args.out / f"corruptions-{modality}.png"
        draw(grid, modality, f"{ds.name}, {pid}: {modality.upper()} under the corruption suite", png)
        print(f"{png}: {png.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
