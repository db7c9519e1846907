"""Coverage of a faceset, and which faces of a target fall outside what B's faceset covers.

A target face is *covered* for an attribute when some face of B lies within the rule's tolerance of
it (nearest neighbour, one attribute at a time). The tolerances are what a model bridges between
neighbouring training faces without visible loss; beyond them it has to extrapolate, and shows it.
See :data:`DEFAULT_RULES` for the numbers and why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from faceloom.analysis.attributes import ATTRIBUTES, THUMB_SIZE, Attribute, FaceTable

Direction = Literal["high", "low"]

NEAR_DUPLICATE_RMS = 2.0
"""Two faces are near-duplicates when their 32 px grey face thumbnails differ by less than this RMS
(levels of 255). Re-encoding one crop as JPEG at quality 75 changes it by ~0.6; consecutive frames
of a talking head differ by 1-5 (median ~2), a turn or a spoken vowel by more."""
DUPLICATE_WARN_SHARE = 0.5
"""Warn when more than this share of a faceset repeats an earlier face."""
BLURRY_WARN_SHARE = 0.2
"""Warn when more than this share of a faceset is blurry (``faceloom faceset remove --blurry``)."""
MIN_WARN_FRAMES = 3
"""A mismatch becomes a warning when at least this many target frames show it (one or two frames
are often a detection glitch or a blink of an eye)."""
RECOMMENDED_FACES = 300
"""Usable faces (not blurry, not near-duplicates) a person's faceset should have; as train's advice."""
MIN_FACES = 8
"""Fewer faces than this cannot train at all (as train)."""


@dataclass(frozen=True)
class AttributeSpec:
    label: str
    unit: str
    bin_width: float
    digits: int


SPECS: dict[Attribute, AttributeSpec] = {
    "yaw": AttributeSpec("yaw (+ = turned to their left)", "degrees", 5.0, 1),
    "pitch": AttributeSpec("pitch (+ = looking up)", "degrees", 5.0, 1),
    "roll": AttributeSpec("roll", "degrees", 5.0, 1),
    "mouth_open": AttributeSpec("mouth open (lip gap / mouth width)", "ratio", 0.025, 3),
    "eye_open": AttributeSpec("eyes open (eye aspect ratio)", "ratio", 0.02, 3),
    "smile": AttributeSpec("smile (mouth width vs usual)", "relative", 0.025, 3),
    "brightness": AttributeSpec("face brightness (luma)", "0-255", 8.0, 1),
    "colour_rg": AttributeSpec("face colour log2(red / green)", "log2 ratio", 0.02, 3),
    "colour_bg": AttributeSpec("face colour log2(blue / green)", "log2 ratio", 0.02, 3),
    "face_size": AttributeSpec("face size in the source", "px", 16.0, 0),
    "blur": AttributeSpec("sharpness (higher = sharper)", "score", 10.0, 1),
}
MAX_BINS = 60


@dataclass(frozen=True)
class CoverageRule:
    """When a target face counts as outside B's coverage for one attribute.

    Attributes:
        attribute: the measure compared.
        tolerance: largest distance to the nearest face of B that still counts as covered, in the
            attribute's units (stops of light for ``scale="log2"``).
        scale: ``log2`` compares ratios (light, size) instead of differences.
        side: ``both``: either way counts; ``high``: only target values above B's count (a target
            face smaller than B's is fine, a larger one is not).
        mirror: B's values also count negated, since training mirrors B's faces (yaw with
            ``train``'s default ``--flip-b``).
    """

    attribute: Attribute
    tolerance: float
    scale: Literal["linear", "log2"] = "linear"
    side: Literal["both", "high"] = "both"
    mirror: bool = False


DEFAULT_RULES: tuple[CoverageRule, ...] = (
    # Head pose: a decoder interpolates between poses ~10 degrees apart; pose estimates from
    # landmarks scatter by 2-3 degrees on still frames, well inside that.
    CoverageRule("yaw", 10.0, mirror=True),
    CoverageRule("pitch", 10.0),
    # Expression: 0.08 of the mouth width is about a third of a spoken vowel's opening (0.1-0.3);
    # 0.06 of eye aspect ratio is half the way from open (~0.32) to a blink (~0.12).
    CoverageRule("mouth_open", 0.08),
    CoverageRule("eye_open", 0.06),
    CoverageRule("smile", 0.1),
    # Light: half a stop (x1.41) is what convert's colour matching evens out unnoticed; the GRID and
    # CREMA-D speakers, lit differently, differ by ~0.2 stops.
    CoverageRule("brightness", 0.5, scale="log2"),
    # Colour cast (ratios, so brightness alone does not move them): the GRID and CREMA-D speakers'
    # skin under studio light differs by ~0.1; a tungsten or blue LED cast moves them by 0.5-1.
    CoverageRule("colour_rg", 0.3),
    CoverageRule("colour_bg", 0.3),
    # Resolution: a target face over twice the size of B's largest comes out visibly soft.
    CoverageRule("face_size", 1.0, scale="log2", side="high"),
)

_TEXTS: dict[tuple[str, Direction], tuple[str, str]] = {
    ("yaw", "high"): (
        "turn further to their left than any face of B",
        "add footage of B turned to their left (face toward image right), up to {extreme} degrees",
    ),
    ("yaw", "low"): (
        "turn further to their right than any face of B",
        "add footage of B turned to their right (face toward image left), down to {extreme} degrees",
    ),
    ("pitch", "high"): ("look further up than any face of B", "add footage of B looking up"),
    ("pitch", "low"): ("look further down than any face of B", "add footage of B looking down"),
    ("mouth_open", "high"): (
        "open the mouth wider than B ever does",
        "add footage of B speaking, laughing or with the mouth wide open",
    ),
    ("mouth_open", "low"): (
        "close the mouth more than B ever does",
        "add footage of B with the mouth closed",
    ),
    ("eye_open", "high"): ("open the eyes wider than B ever does", "add footage of B with wide-open eyes"),
    ("eye_open", "low"): (
        "close the eyes more than B ever does",
        "add footage of B blinking or with the eyes closed",
    ),
    ("smile", "high"): ("smile wider than B ever does", "add footage of B smiling"),
    ("smile", "low"): ("narrow the mouth more than B ever does", "add footage of B with pursed lips"),
    ("brightness", "high"): (
        "are lit brighter than any face of B",
        "add footage of B in brighter light, or darken the target",
    ),
    ("brightness", "low"): (
        "are darker than any face of B",
        "add footage of B in darker light, or brighten the target video",
    ),
    ("colour_rg", "high"): (
        "are redder (warmer light) than any face of B",
        "add footage of B in similar warm light; convert's colour matching hides only part of it",
    ),
    ("colour_rg", "low"): (
        "are less red (greener light) than any face of B",
        "add footage of B in similar light; convert's colour matching hides only part of it",
    ),
    ("colour_bg", "high"): (
        "are bluer (cooler light) than any face of B",
        "add footage of B in similar cool light; convert's colour matching hides only part of it",
    ),
    ("colour_bg", "low"): (
        "are yellower (warmer light) than any face of B",
        "add footage of B in similar warm light; convert's colour matching hides only part of it",
    ),
    ("face_size", "high"): (
        "show the face over twice as large as B's largest faces",
        "use closer or sharper footage of B, or the swap looks soft on these frames",
    ),
    ("face_size", "low"): ("show the face smaller than B's", "no action needed"),
}


# ---- summaries ----------------------------------------------------------------------------------
def histogram_edges(values: list[np.ndarray], attribute: Attribute) -> np.ndarray:
    """Shared bin edges for one attribute over several sets of faces (so plots line up).

    Bins are ``SPECS[attribute].bin_width`` wide (widened to at most ``MAX_BINS`` bins) and aligned
    to multiples of the width. Returns (K + 1,) edges, K >= 1.
    """
    finite = [v[np.isfinite(v)] for v in values]
    allv = np.concatenate(finite) if finite else np.zeros(0)
    if allv.size == 0:
        return np.array([0.0, 1.0])
    width = SPECS[attribute].bin_width
    lo, hi = float(allv.min()), float(allv.max())
    while (hi - lo) / width > MAX_BINS:
        width *= 2
    first = math.floor(lo / width)
    last = max(first + 1, math.floor(hi / width) + 1)
    return np.arange(first, last + 1, dtype=np.float64) * width


def attribute_summary(values: np.ndarray, edges: np.ndarray | None, digits: int = 3) -> dict[str, Any]:
    """Count, range, percentiles and histogram of one attribute's (N,) values (NaN ignored)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"count": 0}
    q = np.percentile(v, [5, 50, 95])
    out: dict[str, Any] = {
        "count": int(v.size),
        "min": round(float(v.min()), digits),
        "p05": round(float(q[0]), digits),
        "median": round(float(q[1]), digits),
        "p95": round(float(q[2]), digits),
        "max": round(float(v.max()), digits),
        "mean": round(float(v.mean()), digits),
    }
    if edges is not None:
        counts, _ = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)
        out["histogram"] = {"edges": [round(float(e), 6) for e in edges], "counts": counts.tolist()}
    return out


def near_duplicates(
    thumbs: np.ndarray, threshold: float = NEAR_DUPLICATE_RMS, chunk: int = 1024
) -> np.ndarray:
    """Which faces repeat an earlier face almost exactly.

    Args:
        thumbs: (N, P) float thumbnails (NaN rows: no image, never a duplicate).
        threshold: RMS difference in grey levels below which two faces count as the same.
        chunk: rows compared at a time (memory is ``chunk x N`` floats).

    Returns:
        (N,) bool, true for a face within ``threshold`` of some earlier row.
    """
    t = np.asarray(thumbs, dtype=np.float64)
    n = t.shape[0]
    dup = np.zeros(n, dtype=bool)
    if n < 2:
        return dup
    valid = np.isfinite(t).all(axis=1)
    t = np.where(valid[:, None], t, 0.0)
    p = t.shape[1]
    sq = (t * t).sum(axis=1)
    limit = threshold * threshold * p
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        d2 = sq[start:stop, None] + sq[None, :stop] - 2.0 * (t[start:stop] @ t[:stop].T)
        earlier = np.arange(stop)[None, :] < np.arange(start, stop)[:, None]
        close = (d2 < limit) & earlier & valid[None, :stop]
        dup[start:stop] = close.any(axis=1) & valid[start:stop]
    return dup


def faceset_coverage(
    table: FaceTable, edges: dict[Attribute, np.ndarray], blurry: np.ndarray | None = None
) -> dict[str, Any]:
    """What one set of faces covers, as JSON-able data.

    Args:
        table: the faces' measures.
        edges: attribute -> shared histogram edges (see :func:`histogram_edges`).
        blurry: (N,) bool of faces judged blurry, or None (none are).

    Returns:
        ``faces``, ``sources``, ``usable`` (neither blurry nor a near-duplicate),
        ``near_duplicates`` / ``blurry`` (count, share), ``missing_images`` and ``attributes``
        (per attribute: count, min, p05, median, p95, max, mean, histogram edges and counts).
    """
    n = len(table)
    dup = near_duplicates(table.thumbs) if table.thumbs is not None else np.zeros(n, dtype=bool)
    blur = np.zeros(n, dtype=bool) if blurry is None else np.asarray(blurry, dtype=bool)
    usable = int(np.sum(~dup & ~blur))
    return {
        "faces": n,
        "sources": len(dict.fromkeys(table.sources)),
        "usable": usable,
        "near_duplicates": {
            "count": int(dup.sum()),
            "share": round(float(dup.mean()), 4) if n else 0.0,
            "threshold_rms": NEAR_DUPLICATE_RMS,
            "thumbnail_px": THUMB_SIZE,
            "measured": table.thumbs is not None,
        },
        "blurry": {"count": int(blur.sum()), "share": round(float(blur.mean()), 4) if n else 0.0},
        "missing_images": len(table.missing_images),
        "attributes": {
            k: attribute_summary(table.values[k], edges.get(k), SPECS[k].digits) for k in ATTRIBUTES
        },
    }


def data_warnings(name: str, cov: dict[str, Any]) -> list[dict[str, str]]:
    """Warnings about one faceset on its own: too few usable faces, duplicates, blur, lost images."""
    out: list[dict[str, str]] = []
    n, usable = cov["faces"], cov["usable"]
    dup, blur = cov["near_duplicates"], cov["blurry"]
    if n < MIN_FACES:
        out.append(
            {"kind": "data", "faceset": name, "message": f"{name} has {n} faces; training needs {MIN_FACES}+"}
        )
    elif usable < RECOMMENDED_FACES:
        parts = []
        if dup["count"]:
            parts.append(f"{dup['count']} near-duplicates")
        if blur["count"]:
            parts.append(f"{blur['count']} blurry")
        why = f" ({n} faces less {' and '.join(parts)})" if parts else ""
        out.append(
            {
                "kind": "data",
                "faceset": name,
                "message": f"{name} has {usable} usable faces{why}; aim for {RECOMMENDED_FACES}+",
            }
        )
    if dup["share"] > DUPLICATE_WARN_SHARE:
        out.append(
            {
                "kind": "data",
                "faceset": name,
                "message": f"{dup['share']:.0%} of {name}'s faces repeat an earlier face almost exactly "
                "(a still talking head); they add little: add varied footage",
            }
        )
    if blur["share"] > BLURRY_WARN_SHARE:
        out.append(
            {
                "kind": "data",
                "faceset": name,
                "message": f"{blur['share']:.0%} of {name}'s faces are blurry; "
                "`faceloom faceset remove --blurry` drops them",
            }
        )
    if cov["missing_images"]:
        out.append(
            {
                "kind": "data",
                "faceset": name,
                "message": f"{cov['missing_images']} of {name}'s face images are missing; "
                "`faceloom faceset remove --missing` drops their rows",
            }
        )
    return out


# ---- mismatch -----------------------------------------------------------------------------------
def _scaled(values: np.ndarray, scale: str) -> np.ndarray:
    if scale == "log2":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.log2(np.maximum(values, 1e-6)))
    return values


def uncovered(
    target: np.ndarray, b: np.ndarray, rule: CoverageRule
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which target values no value of B covers under ``rule``.

    Args:
        target: (N,) target values; b: (M,) values of B (NaN ignored in both).

    Returns:
        ``flagged`` (N,) bool, ``high`` (N,) bool (the nearest face of B lies below the value), and
        ``distance`` (N,) to the nearest face of B in the rule's scale (NaN where unknown).
    """
    t = _scaled(np.asarray(target, dtype=np.float64), rule.scale)
    ref = _scaled(np.asarray(b, dtype=np.float64), rule.scale)
    ref = ref[np.isfinite(ref)]
    n = t.shape[0]
    if ref.size == 0 or n == 0:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.full(n, np.nan)
    if rule.mirror:
        ref = np.concatenate([ref, -ref])
    if rule.side == "high":
        top = float(ref.max())
        dist = np.where(t > top, t - top, 0.0)
        high = t > top
    else:
        ref = np.sort(ref)
        idx = np.searchsorted(ref, t)
        below = ref[np.clip(idx - 1, 0, ref.size - 1)]
        above = ref[np.clip(idx, 0, ref.size - 1)]
        d_below = np.where(idx > 0, t - below, np.inf)
        d_above = np.where(idx < ref.size, above - t, np.inf)
        dist = np.minimum(d_below, d_above)
        high = d_below <= d_above
    finite = np.isfinite(t)
    flagged = finite & (dist > rule.tolerance)
    return flagged, high & finite, np.where(finite, dist, np.nan)


def frame_ranges(
    table: FaceTable, rows: np.ndarray, names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Flagged rows of a table as runs of frames per source.

    Frames sampled every k-th (``extract --every-n``) join a run when they are at most the source's
    usual step apart. Returns dicts ``source`` (key), ``file``, ``first``, ``last`` (frame indices,
    inclusive), ``start_s``, ``end_s`` and ``frames`` (flagged frames in the run).
    """
    names = names or {}
    out: list[dict[str, Any]] = []
    for src in dict.fromkeys(table.sources):
        in_src = np.array([s == src for s in table.sources])
        all_frames = np.unique(table.frames[in_src])
        step = int(np.median(np.diff(all_frames))) if all_frames.size > 1 else 1
        picked = in_src & rows
        if not picked.any():
            continue
        frames = np.unique(table.frames[picked])
        time_of = {int(f): float(t) for f, t in zip(table.frames[in_src], table.times[in_src], strict=True)}
        run = [int(frames[0])]
        runs = [run]
        for f in frames[1:]:
            if int(f) - run[-1] <= max(step, 1):
                run.append(int(f))
            else:
                run = [int(f)]
                runs.append(run)
        for r in runs:
            out.append(
                {
                    "source": src,
                    "file": names.get(src, src),
                    "first": r[0],
                    "last": r[-1],
                    "start_s": round(time_of[r[0]], 3),
                    "end_s": round(time_of[r[-1]], 3),
                    "frames": len(r),
                }
            )
    return out


def _fmt(v: float, digits: int) -> str:
    return f"{v:+.{digits}f}" if digits == 0 else f"{v:.{digits}f}"


def describe_ranges(ranges: list[dict[str, Any]], limit: int = 4) -> str:
    """'frames 40-60 (1.60-2.40 s) of clip.mp4, ...'"""
    parts = []
    for r in ranges[:limit]:
        span = f"{r['first']}" if r["first"] == r["last"] else f"{r['first']}-{r['last']}"
        parts.append(f"frames {span} ({r['start_s']:.2f}-{r['end_s']:.2f} s) of {r['file']}")
    more = f" and {len(ranges) - limit} more runs" if len(ranges) > limit else ""
    return ", ".join(parts) + more


def find_mismatches(
    target: FaceTable,
    b: FaceTable,
    rules: tuple[CoverageRule, ...] = DEFAULT_RULES,
    *,
    mirror_b: bool = True,
    names: dict[str, str] | None = None,
    video_frames: int | None = None,
) -> list[dict[str, Any]]:
    """Target faces that B's faceset does not cover, one entry per attribute and direction.

    Args:
        target: measures of the target's faces (the video to convert, person A).
        b: measures of B's faces.
        rules: when a face counts as uncovered.
        mirror_b: honour rules' ``mirror`` (training mirrors B; ``train --no-flip-b`` does not).
        names: source key -> file name for messages.
        video_frames: frames the target's sources hold (for ``share_of_video``); None: frames with faces.

    Returns:
        Dicts with ``attribute``, ``direction`` (high / low), ``what``, ``faces``, ``frames``,
        ``share`` (of the target's frames with a face), ``share_of_video``, ``target_extreme``
        (the value furthest out), ``b_range`` ([min, max] of B), ``tolerance``, ``scale``, ``unit``,
        ``ranges`` (see :func:`frame_ranges`), ``advice`` and ``warning`` (at least
        ``MIN_WARN_FRAMES`` frames), most frames first.
    """
    face_frames = len(set(zip(target.sources, target.frames.tolist(), strict=True)))
    out: list[dict[str, Any]] = []
    for rule in rules:
        eff = rule if mirror_b else CoverageRule(rule.attribute, rule.tolerance, rule.scale, rule.side, False)
        tv, bv = target.values[rule.attribute], b.values[rule.attribute]
        flagged, high, dist = uncovered(tv, bv, eff)
        spec = SPECS[rule.attribute]
        bfin = bv[np.isfinite(bv)]
        for direction, sel in (("high", flagged & high), ("low", flagged & ~high)):
            if not sel.any():
                continue
            d: Direction = "high" if direction == "high" else "low"
            vals = tv[sel]
            extreme = float(vals.max() if d == "high" else vals.min())
            frames = len(
                set(zip(np.array(target.sources)[sel].tolist(), target.frames[sel].tolist(), strict=True))
            )
            ranges = frame_ranges(target, sel, names)
            what, advice = _TEXTS[(rule.attribute, d)]
            digits = spec.digits
            advice_text = advice.format(extreme=_fmt(extreme, 0))
            if rule.attribute == "brightness":
                stops = float(np.nanmax(dist[sel]))
                way = "brighter" if d == "high" else "darker"
                advice_text += f" (up to {stops:.1f} stops {way} than B's nearest face)"
            out.append(
                {
                    "attribute": rule.attribute,
                    "direction": d,
                    "what": what,
                    "faces": int(sel.sum()),
                    "frames": frames,
                    "share": round(frames / face_frames, 4) if face_frames else 0.0,
                    "share_of_video": round(frames / video_frames, 4) if video_frames else None,
                    "target_extreme": round(extreme, digits),
                    "b_range": [round(float(bfin.min()), digits), round(float(bfin.max()), digits)],
                    "tolerance": rule.tolerance,
                    "scale": rule.scale,
                    "unit": "stops" if rule.scale == "log2" else spec.unit,
                    "mirrored_b": eff.mirror,
                    "ranges": ranges,
                    "advice": advice_text,
                    "warning": frames >= MIN_WARN_FRAMES,
                }
            )
    out.sort(key=lambda m: -int(m["frames"]))
    return out


def mismatch_message(m: dict[str, Any]) -> str:
    """One line for a mismatch: what, how much of the target, where, and what B reaches."""
    label = SPECS[m["attribute"]].label
    return (
        f"{m['frames']} target frames ({m['share']:.0%}) {m['what']} ({label}: target reaches "
        f"{m['target_extreme']}, B covers {m['b_range'][0]} to {m['b_range'][1]}"
        f"{', mirrored' if m['mirrored_b'] else ''}): {describe_ranges(m['ranges'])}"
    )


def rules_json(rules: tuple[CoverageRule, ...] = DEFAULT_RULES) -> list[dict[str, Any]]:
    return [asdict(r) for r in rules]
