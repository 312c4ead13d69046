"""Make the pictures of docs/simulator.md: four samples of each `skysift simulate` kind.

Usage: python docs/make_simulation_gallery.py [OUT_DIR]   (default docs/images)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image

from skysift.simulation.generate import KINDS, write_samples

TILE = 220


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "images"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            params = {"n_frames": 12} if kind == "bolide" else {}
            manifest = write_samples(kind, 4, Path(tmp) / kind, seed=2026, progress=False, **params)
            tiles = []
            for name in manifest["preview"]:
                im = Image.open(Path(tmp) / kind / name).convert("L")
                im.thumbnail((TILE * 2 if kind == "stamps" else TILE, TILE))
                tiles.append(im)
            width = sum(t.width for t in tiles) + 6 * (len(tiles) - 1)
            sheet = Image.new("L", (width, max(t.height for t in tiles)), 255)
            x = 0
            for t in tiles:
                sheet.paste(t, (x, 0))
                x += t.width + 6
            sheet.save(out / f"simulate_{kind}.png", optimize=True)
            print(f"wrote {out / f'simulate_{kind}.png'}")


if __name__ == "__main__":
    main()
