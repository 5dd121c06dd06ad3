"""Agreement of paired volumes (ours against a reference): the figures a volumetric study needs.

    figures = volume_agreement(ours, reference)
    bland_altman_png(ours, reference, groups, "ba.png", title="...")

Dice says whether the voxels overlap; these say whether volumes track the truth from one person
to the next: Pearson r, the OLS slope and intercept of ours on the reference (a slope of 0.6
shrinks a true difference between two people to 60 %), the mean ratio, ICC(A,1) (two-way,
absolute agreement, single measures; McGraw & Wong 1996, Psychological Methods 1:30-46, case 2A,
the same number as Shrout & Fleiss 1979's ICC(2,1)), and Bland & Altman's (Lancet 1986) bias and
95 % limits of agreement. numpy only; the plot needs matplotlib and imports it only when drawn.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

LIMITS_Z = 1.96  # 95 % limits of agreement under a normal distribution of differences


def two_way_mean_squares(ratings) -> dict:
    """Mean squares of a two-way ANOVA without replication on an (n subjects x k raters) array:
    rows (subjects, MSR), columns (raters, MSC) and residual (MSE)."""
    data = np.asarray(ratings, dtype=float)
    if data.ndim != 2 or data.shape[0] < 2 or data.shape[1] < 2:
        raise ValueError(f"need an (n subjects x k raters) array with n, k >= 2, got shape {data.shape}")
    n, k = data.shape
    grand = data.mean()
    rows = k * np.sum((data.mean(axis=1) - grand) ** 2)
    columns = n * np.sum((data.mean(axis=0) - grand) ** 2)
    residual = np.sum((data - grand) ** 2) - rows - columns
    return {"msr": rows / (n - 1), "msc": columns / (k - 1), "mse": residual / ((n - 1) * (k - 1)), "n": n, "k": k}


def icc_a1(ratings) -> float | None:
    """ICC(A,1) of McGraw & Wong (1996): two-way model, absolute agreement, single measures,

        (MSR - MSE) / (MSR + (k - 1) MSE + k/n (MSC - MSE)).

    Unlike Pearson r (and ICC(C,1)) it falls when one rater reads systematically higher: a
    constant offset or a scale error is disagreement. None when undefined (no variance at all)."""
    squares = two_way_mean_squares(ratings)
    msr, msc, mse, n, k = squares["msr"], squares["msc"], squares["mse"], squares["n"], squares["k"]
    denominator = msr + (k - 1) * mse + k / n * (msc - mse)
    if denominator <= 0 or not math.isfinite(denominator):
        return None
    return float((msr - mse) / denominator)


def _round(value, digits):
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def volume_agreement(ours, reference) -> dict:
    """Agreement of paired volumes: n, Pearson r, OLS slope and intercept of ours on the
    reference, mean ratio (ours / reference) and its SD, ICC(A,1), Bland-Altman bias (ours -
    reference), SD of the differences and 95 % limits of agreement. Figures that need more pairs
    or some spread in the reference are None, never a made-up number."""
    y = np.asarray(ours, dtype=float)
    x = np.asarray(reference, dtype=float)
    if y.shape != x.shape or y.ndim != 1:
        raise ValueError(f"ours and reference must be two lists of the same length, got {y.shape} and {x.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("volumes must be finite numbers")
    n = int(x.size)
    out = {"n": n, "pearson_r": None, "slope": None, "intercept": None, "mean_ratio": None, "sd_ratio": None,
           "icc_a1": None, "bias": None, "sd_difference": None, "limits_of_agreement": None,
           "mean_reference": _round(x.mean(), 1) if n else None, "mean_ours": _round(y.mean(), 1) if n else None}
    if n == 0:
        return out
    difference = y - x
    out["bias"] = _round(difference.mean(), 1)
    positive = x > 0
    if positive.any():
        ratios = y[positive] / x[positive]
        out["mean_ratio"] = _round(ratios.mean(), 4)
        out["sd_ratio"] = _round(ratios.std(ddof=1), 4) if ratios.size > 1 else None
    if n < 2:
        return out
    sd = float(difference.std(ddof=1))
    out["sd_difference"] = _round(sd, 1)
    out["limits_of_agreement"] = [_round(difference.mean() - LIMITS_Z * sd, 1), _round(difference.mean() + LIMITS_Z * sd, 1)]
    if n >= 3:  # from two subjects ICC swings anywhere in [-1, 1]: no information
        out["icc_a1"] = _round(icc_a1(np.column_stack([y, x])), 4)
    sxx = float(np.sum((x - x.mean()) ** 2))
    syy = float(np.sum((y - y.mean()) ** 2))
    if sxx > 0 and n >= 3:  # two points always lie on a line: its slope and r = +-1 say nothing
        sxy = float(np.sum((x - x.mean()) * (y - y.mean())))
        slope = sxy / sxx
        out["slope"] = _round(slope, 4)
        out["intercept"] = _round(y.mean() - slope * x.mean(), 1)
        if syy > 0:
            out["pearson_r"] = _round(sxy / math.sqrt(sxx * syy), 4)
    return out


def format_agreement(figures: dict) -> str:
    """One line for the terminal."""
    def fmt(value, spec):
        return "n/a" if value is None else format(value, spec)

    limits = figures.get("limits_of_agreement") or [None, None]
    return (f"n {figures['n']}: r {fmt(figures['pearson_r'], '.3f')}, slope {fmt(figures['slope'], '.2f')}, "
            f"intercept {fmt(figures['intercept'], '.0f')} mm3, ratio {fmt(figures['mean_ratio'], '.3f')} "
            f"+- {fmt(figures['sd_ratio'], '.3f')}, ICC(A,1) {fmt(figures['icc_a1'], '.3f')}, bias "
            f"{fmt(figures['bias'], '.0f')} mm3 (limits {fmt(limits[0], '.0f')} to {fmt(limits[1], '.0f')})")


def bland_altman_png(ours, reference, groups, path, title: str = "") -> Path:
    """A Bland-Altman plot (mean of the two volumes against ours - reference; bias and 95 %
    limits drawn as lines, points coloured by group) written atomically to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; safe before pyplot is first imported
    import matplotlib.pyplot as plt

    from ..files.outputs import write_atomic

    y = np.asarray(ours, dtype=float)
    x = np.asarray(reference, dtype=float)
    groups = list(groups)
    if not (y.shape == x.shape == (len(groups),)):
        raise ValueError("ours, reference and groups must have the same length")
    figures = volume_agreement(y, x)
    mean, difference = (y + x) / 2, y - x
    figure, axes = plt.subplots(figsize=(7.5, 5), dpi=120)
    palette = plt.get_cmap("tab10")
    for index, group in enumerate(dict.fromkeys(groups)):
        chosen = np.array([g == group for g in groups])
        axes.scatter(mean[chosen], difference[chosen], s=22, color=palette(index % 10), label=f"{group} ({chosen.sum()})",
                     edgecolors="none", alpha=0.85)
    if figures["bias"] is not None:
        axes.axhline(figures["bias"], color="black", linewidth=1.2, label=f"bias {figures['bias']:+.0f} mm3")
    if figures["limits_of_agreement"]:
        low, high = figures["limits_of_agreement"]
        for value in (low, high):
            axes.axhline(value, color="black", linestyle="--", linewidth=1)
        axes.plot([], [], color="black", linestyle="--", label=f"95 % limits {low:+.0f} / {high:+.0f}")
    axes.axhline(0, color="grey", linewidth=0.6)
    axes.set_xlabel("mean of ours and reference (mm3)")
    axes.set_ylabel("ours - reference (mm3)")
    summary = format_agreement(figures).split(", bias")[0]
    axes.set_title(f"{title}\n{summary}" if title else summary, fontsize=9)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    try:
        return write_atomic(Path(path), lambda tmp: figure.savefig(tmp, format="png"), overwrite=True)
    finally:
        plt.close(figure)
