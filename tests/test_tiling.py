"""Star detection in tiles on frames over the tile limit (bounded memory on large frames)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from skysift.detection.stars import _tile_edges, detect_stars, tile_pixels
from skysift.errors import InputError
from skysift.simulation import make_star_field


def test_tiles_cover_the_axis_once_with_their_cores():
    for n, size in ((1000, 320), (321, 320), (5000, 4000), (200, 320)):
        edges = _tile_edges(n, size, 128)
        cores = [(lo, hi) for _, _, lo, hi in edges]
        assert cores[0][0] == 0 and cores[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(cores, cores[1:], strict=False))
        for a, b, lo, hi in edges:
            assert 0 <= a <= lo < hi <= b <= n and b - a <= size
            # a core keeps half the overlap away from the tile's inner edges
            assert (lo == 0 or lo - a >= 60) and (hi == n or b - hi >= 60)


def test_tiled_search_finds_the_same_stars_as_the_whole_frame(monkeypatch):
    """A 700x900 field searched in 320 px tiles: the same stars within 0.02 px and 1 % flux."""
    image, truth = make_star_field((700, 900), 300, fwhm=3.0, min_separation=8.0, rng=3)
    whole = detect_stars(image)
    monkeypatch.setenv("SKYSIFT_TILE_PIXELS", str(320 * 320))
    tiled = detect_stars(image)
    assert tiled.meta["tiles"] == len(_tile_edges(700, 320, 128)) * len(_tile_edges(900, 320, 128)) == 15
    assert abs(len(tiled) - len(whole)) <= 2
    d, j = cKDTree(np.column_stack([whole["x"], whole["y"]])).query(
        np.column_stack([tiled["x"], tiled["y"]])
    )
    assert np.mean(d < 0.02) > 0.97  # the local background differs a little near tile edges
    same = d < 0.02
    ratio = np.asarray(tiled["flux"])[same] / np.asarray(whole["flux"])[j[same]]
    assert np.median(np.abs(ratio - 1)) < 0.01
    # and against the truth: every star brighter than 1e4 ADU found within 0.3 px
    bright = truth[truth["flux"] > 1e4]
    dt, _ = cKDTree(np.column_stack([tiled["x"], tiled["y"]])).query(
        np.column_stack([bright["x"], bright["y"]])
    )
    assert np.all(dt < 0.3)


def test_bad_tile_limit_is_refused(monkeypatch):
    monkeypatch.setenv("SKYSIFT_TILE_PIXELS", "-3")
    with pytest.raises(InputError, match="SKYSIFT_TILE_PIXELS must be a positive integer"):
        tile_pixels()
