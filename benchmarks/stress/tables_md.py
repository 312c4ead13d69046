"""Print the stress run's ECSV tables as Markdown (for docs/stress.md).

python benchmarks/stress/tables_md.py stress-out [more folders ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from astropy.table import Table

#: The tables, in order, and the columns shown (all when None).
TABLES = (
    ("a_star_fields_summary", None),
    ("a_star_fields_snr_bins", None),
    ("a_star_fields_caption", None),
    ("b_allsky_summary", None),
    ("b_allsky_by_projection", None),
    (
        "b_allsky_grid",
        [
            "camera",
            "mode",
            "solved",
            "n_matched",
            "frac_correct",
            "rms_truth_px",
            "median_truth_px",
            "rms_truth_alt20_px",
            "phot_scatter_mag",
            "error",
        ],
    ),
    ("c_real_frames", None),
    ("d_big_frame", None),
)


def _cell(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else f"{v:.3f}"
    return str(v).replace("|", "/")


def to_markdown(t: Table, cols: list[str] | None = None) -> str:
    """One Markdown table of the given columns (those present)."""
    cols = [c for c in (cols or t.colnames) if c in t.colnames]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in cols) + " |" for r in t]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    for folder in map(Path, argv):
        for name, cols in TABLES:
            path = folder / f"{name}.ecsv"
            if path.exists():
                print(f"\n### {folder.name}/{name}\n")
                print(to_markdown(Table.read(path), cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
