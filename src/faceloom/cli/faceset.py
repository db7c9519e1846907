"""`faceloom faceset ...`: info, sort, remove, preview, import."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from faceloom.cli.output import echo, echo_json
from faceloom.config import ExtractConfig, SortKey
from faceloom.config.choices import IMAGE_FORMATS
from faceloom.errors import InputError

if TYPE_CHECKING:
    from faceloom.faces.faceset import Faceset

_DIR_HELP = "Faceset folder (made by `faceloom extract`)."


def _load(folder: Path) -> Faceset:
    from faceloom.faces.faceset import Faceset  # lazy: keeps `faceloom --help` fast

    return Faceset.load(folder)


def _fmt(v: float | None, nd: int = 1, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.{nd}f}" if sign else f"{v:.{nd}f}"


def _list(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _angle_lines(name: str, summary: dict[str, Any]) -> list[str]:
    if "min" not in summary:
        return [f"{name:<6} -"]
    lines = [
        f"{name:<6} min {_fmt(summary['min'], sign=True)}  mean {_fmt(summary['mean'], sign=True)}"
        f"  max {_fmt(summary['max'], sign=True)} degrees"
    ]
    top = max((b["count"] for b in summary["bins"]), default=1) or 1
    for b in summary["bins"]:
        bar = "#" * max(1 if b["count"] else 0, round(30 * b["count"] / top))
        lines.append(f"  [{b['from']:+4.0f}, {b['to']:+4.0f})  {b['count']:>6}  {bar}")
    return lines


def _info_text(info: dict[str, Any]) -> list[str]:
    c = info["counts"]
    crop = info["crop"]
    lines = [
        f"faceset {info['path']}  ({crop['type']} crop, {crop['size']} px, {crop['format']})",
        f"faces  {c['faces']} in {c['sources']} source(s), {c['tracks']} track(s); "
        f"{c['frames_with_faces']} of {c['frames']} frames have faces, {c['frames_without_faces']} had none; "
        f"{c['with_embedding']} with an identity embedding",
    ]
    for s in info["sources"]:
        extra = f"  stopped early: {s['stopped_early']}" if s.get("stopped_early") else ""
        incomplete = "" if s["complete"] else "  (incomplete: re-run extract)"
        lines.append(
            f"  {s['key']}  {s['kind']}  {s['frames']} frames, {s['faces']} faces"
            f" (of {s['faces_extracted']} extracted), {s['frames_without_faces']} frames without,"
            f" {s['tracks']} track(s)  {s['path']}{extra}{incomplete}"
        )
    lines += _angle_lines("yaw", info["yaw"]) + _angle_lines("pitch", info["pitch"])
    b = info["blur"]
    if "min" in b:
        lines.append(
            f"blur   min {_fmt(b['min'])}  median {_fmt(b['median'])}  max {_fmt(b['max'])}"
            f" (higher is sharper); {b['blurry']} below {b['blurry_fraction']:.0%} of their source's median"
            + (" - `faceloom faceset remove --blurry` drops them" if b["blurry"] else "")
        )
    fsz = info["face_size"]
    if fsz:
        lines.append(
            f"size   face box in the source: min {_fmt(fsz['min'], 0)}  median {_fmt(fsz['median'], 0)}"
            f"  max {_fmt(fsz['max'], 0)} px"
        )
    missing = info["missing_images"]
    if missing:
        lines.append(
            f"missing images: {len(missing)} ({_list(missing)})"
            " - `faceloom faceset remove --missing` drops their rows"
        )
    else:
        lines.append("missing images: none")
    extra_files = info["unreferenced_images"]
    if extra_files:
        lines.append(f"files not in the table: {len(extra_files)} ({_list(extra_files)})")
    return lines


def info_cmd(
    folder: Annotated[Path, typer.Argument(help=_DIR_HELP, show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Summarise a faceset: counts, sources, pose and blur spread, face sizes, missing images."""
    from faceloom.faces.faceset_query import faceset_info

    info = faceset_info(_load(folder))
    if as_json:
        echo_json(info)
        return
    for line in _info_text(info):
        echo(line)


def sort_cmd(
    folder: Annotated[Path, typer.Argument(help=_DIR_HELP, show_default=False)],
    by: Annotated[
        SortKey,
        typer.Option(
            "--by",
            help="yaw / pitch: ascending; blur: sharpest first; size: largest face first; "
            "similarity: most typical identity first (rows without an embedding last).",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the new order as JSON.")] = False,
) -> None:
    """Reorder the faces and rename their images `<order>_<id>.<ext>` so a file browser shows the same order.

    Face ids do not change. Renaming is crash-safe: the table always names files that exist.
    """
    from faceloom.faces.faceset_edit import SORT_ORDER, sort_faceset

    rows = sort_faceset(_load(folder), by)
    if as_json:
        echo_json({"by": by, "faces": len(rows), "order": [{"id": r.id, "file": r.file} for r in rows]})
        return
    first = rows[0].file if rows else "-"
    last = rows[-1].file if rows else "-"
    echo(f"sorted {len(rows)} faces by {by}, {SORT_ORDER[by]}; images are now {first} ... {last}")


def remove_cmd(
    folder: Annotated[Path, typer.Argument(help=_DIR_HELP, show_default=False)],
    faces: Annotated[
        list[str] | None,
        typer.Option(
            "--faces",
            "--face",
            help="Face to remove: full id, short id from `faceset preview` (e.g. bbaf2n#12) or image file "
            "name. Repeat the option or separate with commas.",
        ),
    ] = None,
    blurry: Annotated[
        bool,
        typer.Option(
            "--blurry",
            help="Remove blurred faces: by default those scoring below 40% of the median blur score of "
            "their own video. Scores depend on the footage (the GRID test clips score ~70, CREMA-D ~130), so "
            "the rule is relative; on those clips even blinks stay above 45% and nothing is removed, while a "
            "1.2 px blur of a 384 px crop falls to ~40%.",
        ),
    ] = False,
    blur_threshold: Annotated[
        float | None,
        typer.Option(
            "--blur-threshold",
            help="With --blurry (implied): remove faces whose absolute blur score is below this instead "
            "(see `faceset info`; below ~20 is visibly blurred).",
            show_default=False,
        ),
    ] = None,
    missing: Annotated[
        bool,
        typer.Option("--missing", help="Remove the rows of images you deleted by hand in a file browser."),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the removed ids as JSON.")] = False,
) -> None:
    """Remove faces by id, by blur, or because their image was deleted by hand. Deletes their images."""
    from faceloom.faces.faceset_edit import faces_to_remove, remove_faces
    from faceloom.faces.faceset_query import BLURRY_FRACTION

    ids = [t for item in faces or [] for t in item.split(",") if t.strip()]
    if faces is not None and not ids:
        raise InputError("--faces needs at least one id")
    blurry = blurry or blur_threshold is not None
    if not (ids or blurry or missing):
        raise InputError("nothing to remove: give --faces ID, --blurry or --missing")
    fs = _load(folder)
    kwargs: dict[str, Any] = {
        "ids": ids or None,
        "blurry_below": blur_threshold,
        "blurry_relative": BLURRY_FRACTION if blurry and blur_threshold is None else None,
        "missing": missing,
    }
    rows = faces_to_remove(fs, **kwargs) if dry_run else remove_faces(fs, **kwargs)
    left = len(fs.records) - (len(rows) if dry_run else 0)
    if as_json:
        echo_json({"dry_run": dry_run, "removed": [r.id for r in rows], "remaining": left})
        return
    verb = "would remove" if dry_run else "removed"
    if rows:
        echo(f"{verb} {len(rows)} face(s): {_list([r.id for r in rows])}; {left} left")
    else:
        echo(f"nothing matched; {left} faces left")


def preview_cmd(
    folder: Annotated[Path, typer.Argument(help=_DIR_HELP, show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Contact sheet to write (.png or .jpg).")],
    columns: Annotated[int, typer.Option(help="Tiles per row.")] = 8,
    max_faces: Annotated[
        int, typer.Option("--max-faces", help="Show at most this many faces, evenly sampled.")
    ] = 64,
    tile: Annotated[int, typer.Option(help="Tile side in pixels.")] = 160,
    no_landmarks: Annotated[
        bool, typer.Option("--no-landmarks", help="Do not draw the 68 landmarks.")
    ] = False,
    no_mask: Annotated[
        bool,
        typer.Option("--no-mask", help="Do not draw the mask hull and the face / whole_face crop boxes."),
    ] = False,
) -> None:
    """Write a contact sheet of aligned faces with landmarks, mask outline, short ids and yaw."""
    from faceloom.faces.faceset_preview import preview_sheet, sheet_size

    fs = _load(folder)
    path = preview_sheet(
        fs,
        out,
        columns=columns,
        max_faces=max_faces,
        tile=tile,
        draw_landmarks=not no_landmarks,
        draw_mask=not no_mask,
    )
    w, h = sheet_size(len(fs.records), columns=columns, max_faces=max_faces, tile=tile)
    echo(f"wrote {path} ({min(len(fs.records), max_faces)} of {len(fs.records)} faces, {w}x{h} px)")


def import_cmd(
    src: Annotated[
        Path,
        typer.Argument(help="DeepFaceLab's aligned folder or faceswap's faces folder.", show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New faceset folder.")],
    alignments: Annotated[
        Path | None,
        typer.Option(help="faceswap's alignments.fsa (default: beside the faces, if there)."),
    ] = None,
    size: Annotated[
        int, typer.Option(help="Side of the stored head crop in pixels.", min=64, max=2048)
    ] = ExtractConfig.size,
    image_format: Annotated[str, typer.Option("--format", help="jpg or png.")] = ExtractConfig.image_format,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import a faceset made by DeepFaceLab or faceswap: landmarks and frame numbers carry over, each
    face is re-aligned to faceloom's head crop. Their metadata is read without running code."""
    from faceloom.cli.progress import Bars
    from faceloom.faces.faceset_import import import_faceset

    if image_format not in IMAGE_FORMATS:
        raise InputError(f"--format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}", out)
    with Bars("face") as bars:
        result = import_faceset(
            src, out, size=size, image_format=image_format, alignments=alignments, progress=bars
        )
    summary = {
        "faceset": str(result.faceset),
        "from": result.layout,
        "faces": result.faces,
        "sources": result.sources,
        "skipped": result.skipped,
    }
    if as_json:
        echo_json(summary)
        return
    for line in result.skipped:
        echo(f"skipped {line}")
    echo(f"imported {result.faces} {result.layout} face(s) into {result.faceset}")
