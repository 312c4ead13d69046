"""The streak benchmark (Table 1 of the satellite paper): metrics against known answers, outputs, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from skysift.cli import main
from skysift.errors import InputError
from skysift.streaks.evaluation import (
    TABLE1_BINS,
    classifier_table,
    format_table1,
    segmentation_table,
)
from skysift.streaks.training_data import StreakDataConfig, eval_cutouts

torch = pytest.importorskip("torch", reason="torch is not installed (the learn extra)")


@pytest.fixture(scope="module")
def frames(data_dir):
    cfg = StreakDataConfig(size=96, p_streak=0.75, min_mask_pixels=40, snr_avg_range=(0.3, 20))
    return eval_cutouts(8, cfg, seed=3, data_dir=data_dir)


_SMALL = "ignore::skysift.evaluation.metrics.SmallSampleWarning"


@pytest.mark.filterwarnings(_SMALL)
def test_table1_perfect_random_and_inverted_maps(frames):
    rng = np.random.default_rng(0)
    maps = {
        "perfect": [
            f.mask.astype(float) * 0.5 + 0.5 * rng.random(f.mask.shape) * f.mask for f in frames
        ],
        "random": [rng.random(f.mask.shape) for f in frames],
        "inverted": [(~f.mask).astype(float) for f in frames],
    }
    table, curves = segmentation_table(frames, maps)
    allr = {r["method"]: r for r in table[table["property"] == "all"]}
    assert allr["perfect"]["auc"] == pytest.approx(1.0)
    assert allr["perfect"]["tpr_at_fpr"] == pytest.approx(1.0)
    assert allr["perfect"]["precision_at_recall"] == pytest.approx(1.0)
    assert 0.45 < allr["random"]["auc"] < 0.55
    assert allr["inverted"]["auc"] == pytest.approx(0.0)
    n_streaks = sum(f.truth["has_streak"] for f in frames)
    assert allr["perfect"]["n_objects"] == n_streaks
    assert allr["perfect"]["n_pos"] == sum(int(f.mask.sum()) for f in frames)
    # every property has its bins, and each streak lands in exactly one SNR_avg bin
    snr = table[(table["method"] == "perfect") & (table["property"] == "snr_avg")]
    assert len(snr) == len(TABLE1_BINS["snr_avg"]) - 1
    assert snr["n_objects"].sum() == sum(
        1 for f in frames if f.truth["has_streak"] and f.truth["snr_avg"] <= 30
    )
    assert set(curves["roc"]) == {"perfect", "random", "inverted"}
    text = format_table1(table)
    assert "snr_avg" in text and "perfect" in text
    with pytest.raises(InputError, match="score maps"):
        segmentation_table(frames, {"short": maps["random"][:2]})


@pytest.mark.filterwarnings(_SMALL)
def test_classifier_table_inside_and_border_subsets():
    class C:
        def __init__(self, pos, inside, snr):
            self.truth = {"has_streak": pos, "inside": inside, "snr_avg": snr}

    cut = [C(True, True, 5.0)] * 50 + [C(True, False, 0.3)] * 50 + [C(False, False, np.nan)] * 200
    # inside streaks are scored above every negative, border ones below half of them
    s = np.r_[np.full(50, 0.9), np.linspace(0.0, 0.6, 50), np.linspace(0.0, 0.8, 200)]
    table, curves = classifier_table(cut, s)
    rows = {r["subset"]: r for r in table}
    assert rows["inside"]["tpr_at_1pct_fpr"] == pytest.approx(1.0)
    assert rows["crossing the border"]["tpr_at_1pct_fpr"] == pytest.approx(0.0)
    assert rows["all"]["tpr_at_1pct_fpr"] == pytest.approx(0.5)
    assert rows["all"]["n_neg"] == 200 and rows["inside"]["n_pos"] == 50
    assert set(curves) == {"all", "inside"}


@pytest.mark.filterwarnings(_SMALL)
def test_evaluate_streaks_small_run_writes_tables_and_plots(tmp_path, data_dir, torch_one_thread):
    from skysift.learning.models import build_model
    from skysift.streaks.evaluation import evaluate_streaks, write_evaluation
    from skysift.streaks.learned import StreakImageClassifier, StreakSegmenter

    torch.manual_seed(0)
    clf = StreakImageClassifier(build_model("streak_classifier"), backend="torch")
    seg = StreakSegmenter(
        build_model("cosmic_conn", depth=2, width=4, num_groups=2), window=64, backend="torch"
    )
    rep = evaluate_streaks(
        classifier=clf,
        segmenter=seg,
        n_frames=4,
        frame_size=128,
        n_cutouts=24,
        steps=(0, 32),
        n_step_frames=2,
        hough=True,
        data_dir=data_dir,
    )
    assert set(rep.table1["method"]) == {"segmenter", "classical", "hough", "radon"}
    assert list(rep.steps["step"]) == [0, 32] and rep.steps["n_windows"][0] == 1
    assert rep.classifier["n_neg"][0] == 12
    paths = write_evaluation(rep, tmp_path)
    names = {p.name for p in paths}
    assert {"streaks_table1.ecsv", "streaks_roc.png", "streaks_pr.png"} <= names
    assert "streaks_classifier_roc.png" in names and "streaks_steps.ecsv" in names
    t = Table.read(tmp_path / "streaks_table1.ecsv")
    assert len(t) == len(rep.table1)


@pytest.mark.parametrize("command", ["streaks", "train streaks", "evaluate streaks"])
def test_streak_commands_have_help(command, capsys):
    assert main([*command.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out
    if command == "streaks":
        assert "--all" in out and "--method" in out


def test_evaluate_streaks_bad_steps_is_one_line_error(capsys):
    assert main(["evaluate", "streaks", "--steps", "a,b"]) == 2
    assert "--steps" in capsys.readouterr().err
