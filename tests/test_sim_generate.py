"""Sample generators and ``skysift simulate``: every kind, reproducibility, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from skysift.cli import main
from skysift.errors import InputError
from skysift.simulation.generate import KINDS, iter_samples, load_config, sample


@pytest.mark.parametrize("kind", ["stars", "streaks", "moving", "stamps"])
def test_each_kind_writes_files_and_is_reproducible(kind, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["simulate", kind, "--n", "2", "--seed", "3", "--out", str(a)]) == 0
    assert main(["simulate", kind, "--n", "2", "--seed", "3", "--out", str(b)]) == 0
    manifest = Table.read(a / "manifest.ecsv")
    assert len(manifest) == 2
    for name in a.iterdir():
        assert (b / name.name).read_bytes() == name.read_bytes(), name.name
    with fits.open(a / manifest["fits"][0]) as hdul:
        assert hdul[0].header["SIMKIND"] == kind
        assert np.isfinite(hdul[0].data).all()
    assert (a / manifest["preview"][0]).stat().st_size > 500


def test_different_seeds_differ():
    s1 = sample("streaks", 1, 0)
    s2 = sample("streaks", 2, 0)
    assert not np.array_equal(s1.image, s2.image)


def test_streak_sample_truth_matches_image():
    s = sample("streaks", 7, 0, brightness_range=(20.0, 30.0), length_range=(80.0, 120.0))
    row = s.truth[0]
    assert s.mask is not None and s.mask.any()
    # The mask holds much more signal above the background than an equal area elsewhere.
    base = np.median(s.image[~s.mask])
    assert np.mean(s.image[s.mask]) - base > 3 * s.meta["sigma"]
    assert row["snr_avg"] > 3
    assert row["length"] == pytest.approx(
        np.hypot(row["x2"] - row["x1"], row["y2"] - row["y1"]), rel=1e-6
    )


def test_bolide_sample_on_bundled_background():
    s = sample("bolide", 0, 0, n_frames=6, fps=25.0, peak_mag_range=(-4.0, -3.0))
    assert s.image.shape == (6, 1040, 1392)
    assert s.mask.shape == s.image.shape
    visible = np.asarray(s.truth["visible"], bool)
    assert visible.any()
    # Where the meteor is visible its mask is not empty.
    for i in np.flatnonzero(visible):
        assert s.mask[int(s.truth["frame"][i])].any()


def test_iter_samples_streams_in_memory():
    samples = list(iter_samples("stamps", 3, seed=1))
    assert len(samples) == 3 and [s.meta["index"] for s in samples] == [0, 1, 2]


def test_errors(tmp_path, capsys):
    with pytest.raises(
        InputError, match="unknown simulation kind 'comets'; valid: " + ", ".join(KINDS)
    ):
        sample("comets", 0)
    with pytest.raises(InputError, match="background file .*nope.fits does not exist"):
        sample("streaks", 0, backgrounds=[tmp_path / "nope.fits"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_config(bad)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"no_such_parameter": 1}))
    assert (
        main(["simulate", "stamps", "--n", "1", "--config", str(cfg), "--out", str(tmp_path / "o")])
        == 2
    )
    err = capsys.readouterr().err
    assert "bad parameter for simulation kind 'stamps'" in err and "no_such_parameter" in err
    assert main(["simulate", "stars", "--n", "0", "--out", str(tmp_path / "o2")]) == 2
    assert "n must be at least 1" in capsys.readouterr().err
