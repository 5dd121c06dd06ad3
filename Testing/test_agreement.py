"""training/agreement.py: volume agreement statistics and the Bland-Altman plot, on known inputs."""
import math

import numpy as np
import pytest

from LUnetSegmentationLib.training.agreement import (
    bland_altman_png,
    format_agreement,
    icc_a1,
    two_way_mean_squares,
    volume_agreement,
)

REFERENCE = np.array([2100.0, 2900.0, 3400.0, 3800.0, 4200.0, 4600.0, 5100.0])

# Shrout & Fleiss (1979), Psychological Bulletin 86:420-428, Table 2: 6 targets rated by 4 judges.
# Their Table 3 gives BMS 11.24, JMS 32.49, EMS 1.02 and ICC(2,1) = 0.29 (McGraw & Wong's ICC(A,1)).
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def test_textbook_example_of_shrout_and_fleiss():
    squares = two_way_mean_squares(SHROUT_FLEISS)
    assert squares["msr"] == pytest.approx(11.24, abs=0.005)
    assert squares["msc"] == pytest.approx(32.49, abs=0.005)
    assert squares["mse"] == pytest.approx(1.02, abs=0.005)
    assert icc_a1(SHROUT_FLEISS) == pytest.approx(0.29, abs=0.005)


def test_hand_computed_two_rater_example():
    """ours (1, 3, 5), reference (2, 3, 7). Grand mean 3.5; subject means 1.5, 3, 6 -> SSR = 2 x
    (4 + 0.25 + 6.25) = 21, MSR = 10.5; rater means 3 and 4 -> SSC = 3 x 0.5 = 1.5, MSC = 1.5;
    SST = 23.5 -> SSE = 1, MSE = 0.5. ICC(A,1) = (10.5 - 0.5) / (10.5 + 0.5 + 2/3 x 1.0) = 6/7.
    Differences -1, 0, -2: bias -1, SD 1, limits -1 -+ 1.96. Sxy 10, Sxx 14, Syy 8: r = 10 /
    sqrt(112), slope 5/7, intercept 3 - 20/7 = 1/7. Ratios 0.5, 1, 5/7."""
    figures = volume_agreement([1, 3, 5], [2, 3, 7])
    assert figures["n"] == 3
    assert figures["icc_a1"] == pytest.approx(6 / 7, abs=1e-4)
    assert figures["bias"] == pytest.approx(-1.0)
    assert figures["sd_difference"] == pytest.approx(1.0)
    assert figures["limits_of_agreement"] == pytest.approx([-2.96, 0.96], abs=0.05)
    assert figures["pearson_r"] == pytest.approx(10 / math.sqrt(112), abs=1e-4)
    assert figures["slope"] == pytest.approx(5 / 7, abs=1e-4)
    assert figures["intercept"] == pytest.approx(1 / 7, abs=0.05)
    assert figures["mean_ratio"] == pytest.approx((0.5 + 1 + 5 / 7) / 3, abs=1e-4)


def test_perfect_agreement():
    figures = volume_agreement(REFERENCE, REFERENCE)
    assert figures["pearson_r"] == pytest.approx(1.0)
    assert figures["slope"] == pytest.approx(1.0)
    assert figures["intercept"] == pytest.approx(0.0, abs=0.1)
    assert figures["icc_a1"] == pytest.approx(1.0)
    assert figures["bias"] == 0 and figures["sd_difference"] == 0
    assert figures["limits_of_agreement"] == [0, 0]
    assert figures["mean_ratio"] == pytest.approx(1.0) and figures["sd_ratio"] == pytest.approx(0.0)


def test_constant_offset_lowers_icc_but_not_r():
    figures = volume_agreement(REFERENCE + 800, REFERENCE)
    assert figures["pearson_r"] == pytest.approx(1.0)
    assert figures["slope"] == pytest.approx(1.0)
    assert figures["intercept"] == pytest.approx(800, abs=0.1)
    assert figures["bias"] == pytest.approx(800)
    assert figures["icc_a1"] < 0.9
    # a bigger offset is a bigger disagreement
    assert volume_agreement(REFERENCE + 1600, REFERENCE)["icc_a1"] < figures["icc_a1"]


def test_shrunken_differences_give_the_slope():
    """The issue's finding: a slope of 0.6 (large hippocampi under-measured, small ones pulled up)."""
    ours = 0.6 * REFERENCE + 1400
    figures = volume_agreement(ours, REFERENCE)
    assert figures["slope"] == pytest.approx(0.6, abs=1e-4)
    assert figures["intercept"] == pytest.approx(1400, abs=0.1)
    assert figures["pearson_r"] == pytest.approx(1.0)
    assert figures["icc_a1"] < 0.95
    assert "slope 0.60" in format_agreement(figures)


def test_noise_lowers_r():
    rng = np.random.default_rng(0)
    noisy = REFERENCE + rng.normal(0, 600, REFERENCE.size)
    assert volume_agreement(noisy, REFERENCE)["pearson_r"] < 0.99


def test_undefined_figures_are_none_not_numbers():
    assert volume_agreement([], [])["n"] == 0
    one = volume_agreement([3000], [3100])
    assert one["bias"] == -100 and one["pearson_r"] is None and one["limits_of_agreement"] is None
    two = volume_agreement([3000, 3500], [3100, 3300])  # any two points lie on a line
    assert two["slope"] is None and two["intercept"] is None and two["pearson_r"] is None
    assert two["bias"] == 50 and two["icc_a1"] is None and two["limits_of_agreement"] is not None
    flat = volume_agreement([3000, 3200, 3100], [3000, 3000, 3000])  # no spread in the reference
    assert flat["slope"] is None and flat["pearson_r"] is None
    assert volume_agreement([3000, 3000, 3000], [3000, 3000, 3000])["icc_a1"] is None  # no variance at all
    assert "r n/a" in format_agreement(one)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="same length"):
        volume_agreement([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        volume_agreement([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="n, k >= 2"):
        two_way_mean_squares([[1, 2]])


def test_bland_altman_png(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    rng = np.random.default_rng(1)
    ours = REFERENCE * 0.9 + rng.normal(0, 100, REFERENCE.size)
    groups = ["real", "real", "synthetic t1", "synthetic t1", "atrophied", "atrophied", "synthetic t2"]
    path = bland_altman_png(ours, REFERENCE, groups, tmp_path / "ba.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 500
    assert [p.name for p in tmp_path.iterdir()] == ["ba.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="same length"):
        bland_altman_png(ours, REFERENCE, groups[:-1], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def _wholehead_section(monkeypatch, results):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "wholehead_section.py"
    spec = importlib.util.spec_from_file_location("wholehead_section_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", results)
    return module


def test_results_page_agreement_table(tmp_path, monkeypatch):
    """The RESULTS.md table shows the figures evaluate-wholehead wrote, the command, the resection
    line and the plot; without the file it says how to make it."""
    import json

    from LUnetSegmentationLib.training.evaluate_wholehead import agreement_summary, resection_summary

    def row(case, pathology, left, right, before=None):
        out = {"case": case, "base": case.split(" resection")[0], "variant": "1mm", "source": "synthetic",
               "contrast": "t1", "pathology": pathology, "warnings": [], "notes": []}
        for side, (ours, reference) in (("left", left), ("right", right)):
            out[side] = {"dice": 0.8, "volume_mm3": ours, "reference_mm3": reference}
        if before:
            out["truth_before_pathology_mm3"] = before
        return out

    rows = [row("a t1", "none", (3000.0, 3100.0), (3500.0, 3400.0)), row("b t1", "none", (4100.0, 4000.0), (4300.0, 4200.0)),
            row("a t1 atrophy", "atrophy", (1500.0, 600.0), (2000.0, 1870.0)),
            row("b t1 atrophy", "atrophy", (0.0, 600.0), (2100.0, 2200.0)),
            row("a t1 resection", "resection", (5000.0, 0.0), (3535.0, 3400.0), before={"left": 3100.0, "right": 3400.0})]
    rows[3]["left"]["refused"] = "no left hippocampus was found with confidence"
    result = {"model": "toy-model", "model_version": "2.0.1", "code": {"commit": "c2853ddfa4d2", "changed_files": [
                  "LUnetSegmentation/LUnetSegmentationLib/training/agreement.py"]}, "weights_sha256": "ab" * 32, "mirror": 2, "variants": ["1mm"], "rows": rows,
              "agreement": agreement_summary(rows, ["1mm"]), "resection": resection_summary(rows),
              "command": "python -m LUnetSegmentationLib evaluate-wholehead --pathologies none atrophy resection"}
    section = _wholehead_section(monkeypatch, tmp_path)
    assert "Not run yet" in "\n".join(section.agreement_table())
    (tmp_path / "wholehead_agreement_toy-model.json").write_text(json.dumps(result))
    (tmp_path / "wholehead_agreement_toy-model.png").write_bytes(b"\x89PNG")
    page = "\n".join(section.wholehead_section())
    figures = result["agreement"]["all"]
    assert f"| all | {figures['n']} | {figures['pearson_r']:.3f} | {figures['slope']:.2f} |" in page
    assert "| atrophied | 3 |" in page and "| healthy heads (no pathology) | 4 |" in page and "--pathologies none atrophy resection" in page
    assert "| a t1 resection 1mm | left | 5000 (3100) | 1.61 | no | +1.0 % |" in page
    assert "(truth 600 mm3, 1 heads): ours median 1500 mm3 (range 1500-1500); declined (no volume reported): 1." in page
    assert "](results/wholehead_agreement_toy-model.png)" in page
    assert "**toy-model 2.0.1** (weights abababababab" in page and "; code c2853dd (agreement.py newer))" in page and "`docs/results/wholehead_agreement_toy-model.json`" in page
