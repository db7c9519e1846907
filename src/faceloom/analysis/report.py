"""report.html (matplotlib PNGs embedded as base64) and coverage.json, both written atomically.

matplotlib is imported here only, through its object API and the Agg canvas (no pyplot, no GUI
backend, no global state), so reports can be drawn from any thread.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceloom.analysis.coverage import SPECS, describe_ranges
from faceloom.fsutil import atomic_write_text, ensure_dir

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from faceloom.analysis.analyze import Analysis

HTML_FILE = "report.html"
JSON_FILE = "coverage.json"
HIST_ATTRIBUTES = (
    "yaw",
    "pitch",
    "mouth_open",
    "eye_open",
    "smile",
    "brightness",
    "colour_rg",
    "colour_bg",
    "face_size",
    "blur",
)
_COLOURS = {"b": "#1f77b4", "a": "#2ca02c", "target": "#ff7f0e", "flagged": "#d62728"}


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png_base64(fig: Figure) -> str:
    """The figure as a base64 PNG (for an ``<img src="data:image/png;base64,...">``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _series(analysis: Analysis) -> list[tuple[str, str]]:
    """(table key, legend label) to draw: B, the target, and A when it is not the target."""
    kind = analysis.report["target"]["kind"]
    out = [("b", "B")]
    if kind != "faceset_a":
        out.append(("a", "A"))
    out.append(("target", "target (A's faceset)" if kind == "faceset_a" else "target"))
    return out


def pose_plot(analysis: Analysis) -> Figure:
    """Yaw against pitch of every face; target faces outside B's coverage marked red."""
    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot()
    for key, label in _series(analysis):
        t = analysis.tables[key]
        ax.scatter(t.values["yaw"], t.values["pitch"], s=10, alpha=0.5, c=_COLOURS[key], label=label)
    t = analysis.tables["target"]
    if analysis.flagged.any():
        sel = analysis.flagged
        ax.scatter(
            t.values["yaw"][sel],
            t.values["pitch"][sel],
            s=26,
            marker="x",
            c=_COLOURS["flagged"],
            label="target outside B",
        )
    ax.set_xlabel("yaw, degrees (+ = turned to their left)")
    ax.set_ylabel("pitch, degrees (+ = looking up)")
    ax.set_title("Head pose")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def histogram_plot(analysis: Analysis) -> Figure:
    """Share of faces per bin for each attribute, B against the target (and A)."""
    cols = 4
    rows = -(-len(HIST_ATTRIBUTES) // cols)
    fig = _figure(3.2 * cols, 2.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    fs = analysis.report["facesets"]
    for i, name in enumerate(HIST_ATTRIBUTES):
        ax = axes[i // cols][i % cols]
        for key, label in _series(analysis):
            summ = fs[key]["attributes"][name]
            hist = summ.get("histogram")
            if not hist:
                continue
            counts = np.asarray(hist["counts"], dtype=np.float64)
            share = counts / max(counts.sum(), 1.0)
            ax.stairs(share, hist["edges"], label=label, color=_COLOURS[key], linewidth=1.5)
        ax.set_title(SPECS[name].label, fontsize=8)  # type: ignore[index]
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    for j in range(len(HIST_ATTRIBUTES), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    return fig


def timeline_plot(analysis: Analysis) -> Figure | None:
    """Where in the target each warned mismatch is: one row per mismatch, runs of frames as bars."""
    warned = [m for m in analysis.report["mismatches"] if m["warning"]]
    if not warned:
        return None
    sources = list(dict.fromkeys(r["file"] for m in warned for r in m["ranges"]))
    fig = _figure(9.0, 0.5 + 0.45 * len(warned) * max(1, len(sources)) + 0.8)
    ax = fig.add_subplot()
    labels = []
    y = 0
    for src in sources:
        for m in warned:
            bars = [(r["first"], r["last"] - r["first"] + 1) for r in m["ranges"] if r["file"] == src]
            ax.broken_barh(bars, (y - 0.35, 0.7), color=_COLOURS["flagged"])
            prefix = f"{src}: " if len(sources) > 1 else ""
            labels.append(f"{prefix}{m['attribute']} {m['direction']}")
            y += 1
    frames = analysis.tables["target"].frames
    if frames.size:
        ax.set_xlim(-0.5, float(frames.max()) + 1.5)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("frame")
    ax.set_title("Target frames outside what B covers")
    ax.grid(axis="x", alpha=0.3)
    return fig


# ---- HTML ---------------------------------------------------------------------------------------
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
li.mismatch { color: #a00; } li.data { color: #a60; }
img { max-width: 100%; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _faceset_table(report: dict[str, Any]) -> str:
    rows = []
    attrs = ("yaw", "pitch", "mouth_open", "eye_open", "brightness", "face_size")
    head = "".join(f"<th>{_e(a)} min / median / max</th>" for a in attrs)
    for key, cov in report["facesets"].items():
        cells = []
        for a in attrs:
            s = cov["attributes"][a]
            cells.append(
                f"<td>{s['min']} / {s['median']} / {s['max']}</td>" if s.get("count") else "<td>-</td>"
            )
        rows.append(
            f"<tr><td class=l>{_e(key)}</td><td>{cov['faces']}</td><td>{cov['usable']}</td>"
            f"<td>{cov['near_duplicates']['share']:.0%}</td><td>{cov['blurry']['count']}</td>{''.join(cells)}</tr>"
        )
    return (
        "<table><tr><th class=l>faceset</th><th>faces</th><th>usable</th><th>near-duplicates</th>"
        f"<th>blurry</th>{head}</tr>{''.join(rows)}</table>"
    )


def _mismatch_table(report: dict[str, Any]) -> str:
    if not report["mismatches"]:
        return "<p>Every target face lies within B's coverage.</p>"
    rows = []
    for m in report["mismatches"]:
        rows.append(
            f"<tr><td class=l>{_e(m['attribute'])} {_e(m['direction'])}</td><td>{m['frames']}</td>"
            f"<td>{m['share']:.1%}</td><td>{_e(m['target_extreme'])}</td>"
            f"<td>{_e(m['b_range'][0])} to {_e(m['b_range'][1])}</td>"
            f"<td>{'yes' if m['warning'] else 'no'}</td>"
            f"<td class=l>{_e(describe_ranges(m['ranges'], limit=12))}</td></tr>"
        )
    return (
        "<table><tr><th class=l>attribute</th><th>frames</th><th>share</th><th>target reaches</th>"
        "<th>B covers</th><th>warning</th><th class=l>where</th></tr>" + "".join(rows) + "</table>"
    )


def render_html(analysis: Analysis) -> str:
    """The whole report page, plots included."""
    r = analysis.report
    t = r["target"]
    figures = [("Head pose", pose_plot(analysis)), ("Attributes", histogram_plot(analysis))]
    timeline = timeline_plot(analysis)
    if timeline is not None:
        figures.insert(0, ("Where the target leaves B's coverage", timeline))
    imgs = "".join(
        f'<h3>{_e(title)}</h3><img alt="{_e(title)}" src="data:image/png;base64,{png_base64(fig)}">'
        for title, fig in figures
    )
    warnings = "".join(f'<li class="{_e(w["kind"])}">{_e(w["message"])}</li>' for w in r["warnings"])
    advice = "".join(f"<li>{_e(a)}</li>" for a in r["advice"])
    target_desc = (
        "no target given: A's own faceset stands in for the video to convert"
        if t["kind"] == "faceset_a"
        else f"{_e(t.get('input', t['path']))} ({t['frames_with_faces']} frames with a face"
        + (f" of {t['frames']}" if t["frames"] else "")
        + ")"
    )
    unc = r["uncovered"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>faceloom coverage report</title>
<style>{_STYLE}</style></head><body>
<h1>Coverage report</h1>
<p>A: {_e(r["facesets"]["a"]["path"])}<br>B: {_e(r["facesets"]["b"]["path"])}<br>Target: {target_desc}</p>
<p><b>{unc["frames"]} target frames ({unc["share"]:.1%})</b> fall outside what B's faceset covers.</p>
<h2>Warnings</h2><ul>{warnings or "<li>none</li>"}</ul>
<h2>Advice</h2><ul>{advice or "<li>nothing to add: B covers the target</li>"}</ul>
<h2>Facesets</h2>{_faceset_table(r)}
<h2>Mismatches</h2>{_mismatch_table(r)}
<h2>Plots</h2>{imgs}
<p style="color:#777;font-size:0.8em">faceloom {_e(r["faceloom_version"])}, {_e(r["created"])}.
Coverage rules: {_e(json.dumps(r["settings"]["rules"]))}</p>
</body></html>
"""


def write_report(analysis: Analysis, out: Path) -> dict[str, Path]:
    """Write ``out/report.html`` and ``out/coverage.json`` atomically (the folder is made if need be);
    returns their paths as ``html`` and ``json``."""
    out = ensure_dir(out)
    json_path = out / JSON_FILE
    html_path = out / HTML_FILE
    atomic_write_text(json_path, json.dumps(analysis.report, indent=1))
    atomic_write_text(html_path, render_html(analysis))
    return {"html": html_path, "json": json_path}
