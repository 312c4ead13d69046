"""Figure: pixel histograms of a real background region before and after injection.

Injects synthetic stars on the MAGIC all-sky frame (both CompositeScene modes)
and plots, for a sky region away from every injected star, the histogram of
the real frame and of each composite. Usage:
    python benchmarks/plot_composite_histograms.py OUTPUT.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from skysift.simulation.background import load_background  # noqa: E402
from skysift.simulation.scenes import CompositeScene  # noqa: E402

FRAME = Path(__file__).parent.parent / "tests" / "data" / "magic_allsky" / "20180817_0055.fits"


def _robust(v: np.ndarray) -> tuple[float, float]:
    med = float(np.median(v))
    return med, float(1.4826 * np.median(np.abs(v - med)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="PNG file to write")
    args = parser.parse_args()
    sb = load_background(FRAME)
    yy, xx = np.mgrid[0 : sb.shape[0], 0 : sb.shape[1]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    region = None
    images = {}
    for mode in ("star-free", "frame"):
        image, truth = CompositeScene(sb, mode=mode, n_stars=60, min_separation=30).render(rng=1)
        far = sb.sky.copy()
        for x, y in zip(truth["x"], truth["y"], strict=True):
            far &= (xx - x) ** 2 + (yy - y) ** 2 > 20**2
        region = far if region is None else region & far
        images[mode] = image
    lo, hi = np.percentile(sb.image[region], [0.5, 99.5])
    bins = np.linspace(lo, hi, 120)
    for label, img, style in (
        ("real frame", sb.image, dict(color="k", lw=2)),
        ("composite, star-free + noise", images["star-free"], dict(color="C0")),
        ("composite, real frame", images["frame"], dict(color="C1", ls="--")),
    ):
        med, sig = _robust(img[region])
        ax.hist(
            img[region],
            bins,
            histtype="step",
            label=f"{label}: median {med:.0f}, sigma {sig:.1f}",
            **style,
        )
    ax.set_xlabel("pixel value (ADU)")
    ax.set_ylabel("pixels")
    ax.set_yscale("log")
    ax.set_title("MAGIC 2018-08-17 00:52 UTC: sky away from injected stars")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
