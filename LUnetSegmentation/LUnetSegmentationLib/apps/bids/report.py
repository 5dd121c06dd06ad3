"""Quality report of a cohort: per-scan overlay figures and one offline HTML page (numpy, SimpleITK).

    png = overlay_figure(image, labels, specs)        # participant stage, one per scan
    rows = assess(rows)                               # group stage: QC flags, worst first
    html = render_html(rows, dataset)                 # OUT_DIR/report.html

The page is one self-contained file: inline CSS and SVG charts, no script, font or style from
the network (it opens offline, from a file:// URL, or in a browser with no internet). The per-scan
figures are PNG files of the derivatives dataset referenced by relative path (lazy-loaded), so a
report of thousands of scans stays small and opens fast.

Flags (a scan can have several). The page lists failed scans first, then those not processed,
then the others by the sum of their flags' weights, worst first:
  failed            the scan could not be segmented (error shown)            weight 100
  not processed     no result and no error (participant stage not run yet),  weight 90
                    or incomplete / out of date (partial, source replaced, other model)
  empty segment     a segment has no voxels                                   weight 50
  weak localization template correlation below WEAK_CORRELATION             weight 30
  volume outlier    robust z-score of a side's (or the total) volume > Z_MAX  weight 20 + min(|z|, 10)
  asymmetry         |left - right| / mean(left, right) > MAX_ASYMMETRY        weight 20
  uncertain         robust z-score of the mean softmax entropy > Z_MAX       weight 20 + min(z, 10)
                    (the network's entropy inside the segment, averaged over test-time passes)
  input warning     a warning from the input checks (e.g. thick slices)      weight 10
"""
from __future__ import annotations

import datetime
import html
import math

import numpy as np
import SimpleITK as sitk

WEAK_CORRELATION = 0.35  # localize.py refuses below 0.25; 0.25-0.35 is the weakest tenth measured
MAX_ASYMMETRY = 0.20  # hippocampal asymmetry in healthy adults is a few percent; 20% is suspicious
Z_MAX = 3.0
MIN_SCANS_FOR_Z = 5  # robust z-scores need a cohort; fewer scans give no volume-outlier flags

ATTENTION_MAX = 100  # flagged scans listed at the top of the page (all are in the table)
PANEL_MM = 64.0
PIXEL_MM = 0.4
OVERLAY_ALPHA = 0.45

# ----------------------------------------------------------------------------- figures


def _plane(image: sitk.Image, centre, u, v, size: int, pixel: float, interpolator, default=0.0) -> np.ndarray:
    """A size x size plane through `centre` (LPS mm) with axes u (columns) and v (rows)."""
    u, v = np.asarray(u, float), np.asarray(v, float)
    w = np.cross(u, v)
    direction = np.column_stack([u, v, w])
    origin = np.asarray(centre, float) - (u + v) * (size - 1) / 2 * pixel
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([size, size, 1])
    resampler.SetOutputSpacing([pixel, pixel, pixel])
    resampler.SetOutputOrigin(origin.tolist())
    resampler.SetOutputDirection(direction.flatten().tolist())
    resampler.SetInterpolator(interpolator)
    resampler.SetDefaultPixelValue(default)
    return sitk.GetArrayFromImage(resampler.Execute(image))[0]


def _grey(plane: np.ndarray) -> np.ndarray:
    values = plane[plane != 0]
    if values.size < 16:
        values = plane.ravel()
    low, high = np.percentile(values, [1, 99.5]) if values.size else (0.0, 1.0)
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip((plane - low) * scale, 0, 255)


def _overlay(grey: np.ndarray, labels: np.ndarray, colours: dict[int, np.ndarray]) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(float)
    inner = np.zeros(labels.shape, bool)
    inner[1:-1, 1:-1] = (
        (labels[1:-1, 1:-1] == labels[:-2, 1:-1]) & (labels[1:-1, 1:-1] == labels[2:, 1:-1])
        & (labels[1:-1, 1:-1] == labels[1:-1, :-2]) & (labels[1:-1, 1:-1] == labels[1:-1, 2:])
    )
    for value, colour in colours.items():
        mask = labels == value
        if not mask.any():
            continue
        rgb[mask] = rgb[mask] * (1 - OVERLAY_ALPHA) + colour * 255 * OVERLAY_ALPHA
        edge = mask & ~inner
        rgb[edge] = colour * 255  # the outline in full colour, so the border stays readable
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _centres(labels: sitk.Image, specs) -> list[tuple[str, np.ndarray]]:
    """(side or 'segmentation', LPS centre) for each side with voxels; the image centre if none."""
    array = sitk.GetArrayViewFromImage(labels)
    groups: dict[str, list[int]] = {}
    for spec in specs:
        groups.setdefault(spec.side or "segmentation", []).append(spec.value)
    centres = []
    for name, values in groups.items():
        kji = np.argwhere(np.isin(array, values))
        if len(kji):
            centres.append((name, np.asarray(labels.TransformContinuousIndexToPhysicalPoint(kji.mean(axis=0)[::-1].tolist()))))
    if not centres:
        middle = (np.asarray(labels.GetSize()) - 1) / 2.0
        centres.append(("volume centre", np.asarray(labels.TransformContinuousIndexToPhysicalPoint(middle.tolist()))))
    return centres


# Views in LPS: columns run towards the patient's left (radiological: patient's right on the
# viewer's left) or towards posterior (anterior on the left); rows run inferior.
_VIEWS = {"coronal": ((1, 0, 0), (0, 0, -1)), "sagittal": ((0, 1, 0), (0, 0, -1))}


def overlay_figure(image: sitk.Image, labels: sitk.Image, specs, panel_mm: float = PANEL_MM,
                   pixel_mm: float = PIXEL_MM) -> tuple[np.ndarray, list[str]]:
    """RGB uint8 (H, W, 3): coronal and sagittal planes through each hippocampus (each side's
    centroid), labels blended in their colours with full-colour outlines; and the panel names."""
    size = int(round(panel_mm / pixel_mm))
    grey_image = sitk.Cast(image, sitk.sitkFloat32)
    colours = {spec.value: np.asarray(spec.color, float) for spec in specs}
    panels, names = [], []
    for name, centre in _centres(labels, specs):
        for view, (u, v) in _VIEWS.items():
            grey = _grey(_plane(grey_image, centre, u, v, size, pixel_mm, sitk.sitkLinear))
            lab = _plane(labels, centre, u, v, size, pixel_mm, sitk.sitkNearestNeighbor).astype(np.int32)
            panels.append(_overlay(grey, lab, colours))
            names.append(f"{name} {view}")
    gap = np.full((size, 2, 3), 255, np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.concatenate(row, axis=1), names


def write_png(rgb: np.ndarray, path) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(rgb), isVector=True), str(path))


# ----------------------------------------------------------------------------- QC


def _robust_z(values: list[float | None]) -> list[float | None]:
    present = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if len(present) < MIN_SCANS_FOR_Z:
        return [None] * len(values)
    median = float(np.median(present))
    mad = float(np.median(np.abs(present - median))) * 1.4826
    if mad <= 0:
        return [None] * len(values)
    return [None if v is None or not math.isfinite(v) else (v - median) / mad for v in values]


def assess(rows: list[dict]) -> list[dict]:
    """Add `flags` [(text, weight)] and `score` to each row (dicts as bids.collect_rows makes
    them), and return them sorted worst first. Robust z-scores (median, MAD) are taken over the
    scans that were segmented."""
    ok = [row for row in rows if row["status"] == "ok"]
    for row in rows:
        row["flags"] = []
    if ok:
        for key, label in (("left_mm3", "left"), ("right_mm3", "right"), ("total_normalised_mm3", "total (head-size normalised)")):
            for row, z in zip(ok, _robust_z([row.get(key) for row in ok])):
                row.setdefault("z", {})[key] = z
                if z is not None and abs(z) > Z_MAX:
                    row["flags"].append((f"volume outlier: {label} z = {z:+.1f}", 20 + min(abs(z), 10)))
        for row, z in zip(ok, _robust_z([row.get("mean_entropy") for row in ok])):
            if z is not None and z > Z_MAX:
                row["flags"].append((f"uncertain: mean entropy z = {z:+.1f}", 20 + min(z, 10)))
    for row in rows:
        if row["status"] == "error":
            row["flags"].insert(0, (f"failed: {row.get('error') or 'unknown error'}", 100))
        elif row["status"] == "missing":
            text = "incomplete or out of date" if row.get("stale") else "not processed"
            row["flags"].insert(0, (f"{text}: run the participant stage", 90))
        else:
            empty = [name for name, volume in row.get("volumes", {}).items() if not volume]
            if empty:
                row["flags"].append((f"empty segment: {', '.join(empty)}", 50))
            correlation = row.get("localization_correlation")
            if correlation is not None and correlation < WEAK_CORRELATION:
                row["flags"].append((f"weak localization: template correlation {correlation:.2f}", 30))
            for warning in row.get("warnings") or []:
                row["flags"].append((f"input warning: {warning}", 10))
            asymmetry = row.get("asymmetry_index")
            if asymmetry is not None and abs(asymmetry) > MAX_ASYMMETRY:
                row["flags"].append((f"asymmetry: {asymmetry:+.0%} (left - right)", 20))
        row["score"] = sum(weight for _, weight in row["flags"])
    tier = {"error": 0, "missing": 1}  # failed, then not processed, always before any segmented scan
    return sorted(rows, key=lambda row: (tier.get(row["status"], 2), -row["score"], row["scan"]))


# ----------------------------------------------------------------------------- charts (inline SVG)


def _fmt(value, digits=0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def scatter_svg(points: list[tuple[float, float, str, bool]], width=300, height=300) -> str:
    """Left (x) versus right (y) volume; flagged points red; x = y dashed."""
    if not points:
        return '<p class="muted">No scan with both sides segmented.</p>'
    values = [p[0] for p in points] + [p[1] for p in points]
    low, high = min(values), max(values)
    pad = max((high - low) * 0.1, 50.0)
    low, high = low - pad, high + pad
    m = 58  # margin for the axes' labels
    sx = lambda x: m + (x - low) / (high - low) * (width - m - 10)  # noqa: E731
    sy = lambda y: height - m - (y - low) / (high - low) * (height - m - 10)  # noqa: E731
    parts = [f'<svg class="chart" role="img" aria-label="left versus right volume" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="{sx(low):.1f}" y1="{sy(low):.1f}" x2="{sx(high):.1f}" y2="{sy(high):.1f}" class="diag"/>',
             f'<line x1="{m}" y1="{height - m}" x2="{width - 10}" y2="{height - m}" class="axis"/>',
             f'<line x1="{m}" y1="10" x2="{m}" y2="{height - m}" class="axis"/>']
    for tick in _ticks(low, high):
        parts.append(f'<text x="{sx(tick):.1f}" y="{height - m + 14}" class="tick" text-anchor="middle">{tick:,.0f}</text>')
        parts.append(f'<text x="{m - 4}" y="{sy(tick) + 4:.1f}" class="tick" text-anchor="end">{tick:,.0f}</text>')
    parts.append(f'<text x="{(width + m) / 2:.0f}" y="{height - 8}" text-anchor="middle">left hippocampus (mm³)</text>')
    parts.append(f'<text x="12" y="{(height - m) / 2:.0f}" text-anchor="middle" transform="rotate(-90 12 {(height - m) / 2:.0f})">'
                 'right hippocampus (mm³)</text>')
    for x, y, name, flagged in points:
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" class="{"pt flagged" if flagged else "pt"}">'
                     f'<title>{html.escape(name)}: left {x:,.0f}, right {y:,.0f} mm³</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(values: list[float], title: str, width=300, height=180, bins=12) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return f'<p class="muted">{html.escape(title)}: no values.</p>'
    low, high = min(values), max(values)
    if high <= low:
        low, high = low - 1, high + 1
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    m, top = 36, max(int(counts.max()), 1)
    bar_w = (width - m - 10) / bins
    parts = [f'<svg class="chart" role="img" aria-label="{html.escape(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{width / 2:.0f}" y="14" text-anchor="middle">{html.escape(title)}</text>']
    for i, count in enumerate(counts):
        h = (height - m - 24) * count / top
        parts.append(f'<rect x="{m + i * bar_w:.1f}" y="{height - m - h:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" class="bar">'
                     f'<title>{edges[i]:,.0f}-{edges[i + 1]:,.0f}: {count}</title></rect>')
    parts.append(f'<line x1="{m}" y1="{height - m}" x2="{width - 10}" y2="{height - m}" class="axis"/>')
    parts.append(f'<text x="{m}" y="{height - m + 14}" class="tick">{low:,.0f}</text>')
    parts.append(f'<text x="{width - 10}" y="{height - m + 14}" class="tick" text-anchor="end">{high:,.0f}</text>')
    parts.append(f'<text x="{m - 4}" y="{24 + 4}" class="tick" text-anchor="end">{top}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ----------------------------------------------------------------------------- page

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .3em} h2{font-size:1.15em;margin:1.4em 0 .4em}
.muted{color:#666} .summary span{margin-right:1.4em}
.charts{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.chart text{font-size:11px;fill:#333} .chart .tick{fill:#666} .axis{stroke:#444}
.diag{stroke:#999;stroke-dasharray:4 3} .pt{fill:#2a6fdb;fill-opacity:.75} .pt.flagged{fill:#d62728}
.bar{fill:#2a6fdb;fill-opacity:.7}
table{border-collapse:collapse;margin-top:.5em} th,td{border-bottom:1px solid #ddd;padding:.35em .5em;
vertical-align:top;text-align:left} th{background:#f4f4f4;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.flagged td:first-child{border-left:4px solid #d62728} tr.ok td:first-child{border-left:4px solid #2ca02c}
.flag{display:inline-block;background:#fde2e1;color:#8a1c1c;border-radius:3px;padding:0 .4em;margin:0 .3em .2em 0}
.flag.failed{background:#d62728;color:#fff}
.status-error{color:#d62728;font-weight:bold} .status-missing{color:#b36b00;font-weight:bold}
figure{margin:0} figure img{display:block;max-width:660px;image-rendering:auto}
figcaption{font-size:11px;color:#666}
"""


def render_html(rows: list[dict], dataset: dict, segment_names: list[str]) -> str:
    """The report page for rows already passed through `assess` (worst first)."""
    esc = html.escape
    ok = [row for row in rows if row["status"] == "ok"]
    flagged = [row for row in rows if row["flags"]]
    failed = [row for row in rows if row["status"] == "error"]
    missing = [row for row in rows if row["status"] == "missing"]
    model = dataset.get("model", {})
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Hippocampus QC report: {esc(dataset.get('name', ''))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Hippocampus segmentation: quality report</h1>",
        f'<p class="muted">{esc(dataset.get("name", ""))} &middot; generated {generated} by LUnetSegmentation '
        f'{esc(str(dataset.get("version", "")))} &middot; model {esc(str(model.get("id", "")))} {esc(str(model.get("version", "")))} '
        f'(weights SHA-256 <code>{esc(str(model.get("sha256", ""))[:16])}&hellip;</code>)</p>',
        '<p class="summary">'
        f'<span id="count-scans"><b>{len(rows)}</b> scans</span>'
        f'<span id="count-ok"><b>{len(ok)}</b> segmented</span>'
        f'<span id="count-failed"><b>{len(failed)}</b> failed</span>'
        f'<span id="count-missing"><b>{len(missing)}</b> not processed</span>'
        f'<span id="count-flagged"><b>{len(flagged)}</b> flagged</span></p>',
        '<p class="muted">Sorted worst first. Flags: failed, not processed, empty segment, weak localization '
        f'(template correlation &lt; {WEAK_CORRELATION}), asymmetry (|left&minus;right| / mean &gt; {MAX_ASYMMETRY:.0%}), '
        f'volume outlier (robust z &gt; {Z_MAX:g}, from {MIN_SCANS_FOR_Z} segmented scans on), uncertain (mean softmax '
        f'entropy inside the segment, robust z &gt; {Z_MAX:g}), input warning. Figures: coronal and sagittal planes '
        "through the centre of each hippocampus; coronal views are radiological (the patient's right on the left), "
        "sagittal views have anterior on the left.</p>",
    ]
    attention = ["<h2>Needs attention</h2>"]
    if flagged:
        attention.append('<ol id="attention">')
        for row in flagged[:ATTENTION_MAX]:
            reasons = "; ".join(text for text, _ in row["flags"])
            attention.append(f'<li><a href="#scan-{esc(row["scan"])}">{esc(row["scan"])}</a>: {esc(reasons)}</li>')
        attention.append("</ol>")
        if len(flagged) > ATTENTION_MAX:
            attention.append(f'<p class="muted">and {len(flagged) - ATTENTION_MAX} more flagged scans in the table below.</p>')
    else:
        attention.append('<p id="attention">No scan is flagged.</p>')
    points = [(row["left_mm3"], row["right_mm3"], row["scan"], bool(row["flags"])) for row in ok
              if row.get("left_mm3") is not None and row.get("right_mm3") is not None]
    charts = [
        "<h2>Cohort</h2>", '<div class="charts">', scatter_svg(points),
        histogram_svg([row.get("left_mm3") for row in ok], "left hippocampus (mm³)"),
        histogram_svg([row.get("right_mm3") for row in ok], "right hippocampus (mm³)"),
        histogram_svg([row.get("total_normalised_mm3") for row in ok], "total, head-size normalised (mm³)"),
        "</div>",
    ]
    columns = ["#", "scan", "status and flags", "left mm³", "right mm³"] + [f"{esc(n)} mm³" for n in segment_names] + [
        "asymmetry", "ICV mL", "head scale", "template r", "entropy", "seconds", "figure"]
    table = ["<h2>Scans</h2>", '<table id="scans"><thead><tr>' + "".join(f"<th>{c}</th>" for c in columns) + "</tr></thead><tbody>"]
    for rank, row in enumerate(rows, 1):
        badges = "".join(
            f'<span class="flag{" failed" if weight >= 90 else ""}">{esc(text)}</span>' for text, weight in row["flags"])
        status = f'<span class="status-{esc(row["status"])}">{esc(row["status"])}</span> ' + badges
        volumes = row.get("volumes", {})
        figure = ""
        if row.get("figure"):
            caption = ", ".join(row.get("figure_panels", []))
            figure = (f'<figure><img loading="lazy" src="{esc(row["figure"])}" alt="overlay of {esc(row["scan"])}">'
                      f"<figcaption>{esc(caption)}</figcaption></figure>")
        asymmetry = "" if row.get("asymmetry_index") is None else f"{row['asymmetry_index']:+.1%}"
        cells = [
            f'<td class="num">{rank}</td>', f'<td class="scan-id">{esc(row["scan"])}</td>', f"<td>{status}</td>",
            f'<td class="num">{_fmt(row.get("left_mm3"))}</td>', f'<td class="num">{_fmt(row.get("right_mm3"))}</td>',
            *[f'<td class="num">{_fmt(volumes.get(name))}</td>' for name in segment_names],
            f'<td class="num">{asymmetry}</td>',
            f'<td class="num">{_fmt(row.get("intracranial_volume_ml"))}</td>',
            f'<td class="num">{_fmt(row.get("head_scale"), 2)}</td>',
            f'<td class="num">{_fmt(row.get("localization_correlation"), 2)}</td>',
            f'<td class="num">{_fmt(row.get("mean_entropy"), 3)}</td>',
            f'<td class="num">{_fmt(row.get("seconds"), 1)}</td>', f"<td>{figure}</td>",
        ]
        css = "flagged" if row["flags"] else "ok"
        table.append(f'<tr id="scan-{esc(row["scan"])}" class="scan {css}" data-scan="{esc(row["scan"])}" data-status="{esc(row["status"])}" '
                     f'data-flagged="{1 if row["flags"] else 0}">' + "".join(cells) + "</tr>")
    table.append("</tbody></table>")
    notes = [
        "<h2>About these figures</h2>",
        '<p class="muted">Volumes are counted on each scan\'s own grid. <i>Asymmetry</i> is (left &minus; right) / '
        "mean(left, right). <i>ICV</i> is the intracranial volume from the localizer's intracranial class (empty where "
        "it gave none: never approximated); volumes.tsv also gives each side as a fraction of it. <i>Head scale</i> is the volume ratio of the "
        "scan's brain to the MNI template from the affine found by localization (the determinant of its linear part, an "
        "atlas-scaling-factor normaliser in the spirit of FreeSurfer's eTIV, not a measured intracranial volume); the "
        "normalised total is the hippocampal total divided by it. <i>Template r</i> is the correlation of the aligned "
        "scan with the template inside the brain. <i>Entropy</i> is the network's mean normalised softmax entropy inside "
        "the segments (0 certain, 1 uniform; averaged over the test-time flips), the uncertainty figure the "
        "<i>uncertain</i> flag compares across the cohort.</p>",
        "</body></html>",
    ]
    return "\n".join(head + attention + charts + table + notes)
