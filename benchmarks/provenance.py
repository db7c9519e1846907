"""The watermark against what re-posters do, and what the marks cost; prints JSON.

For each attack on a marked clip (GRID s4, 720x576, ``--frames`` frames) and on one marked frame
as an image: the detection score (found at 8) and whether it was found. Then the false-positive
side: the highest score on every unmarked clip of the test data and on a cropped, rescaled JPEG
frame of each. Then the costs: PSNR of marked frames against unmarked ones, the time to embed the
mark in a 1280x720 frame, to verify a 1280x720 frame (the search over crops included), and to sign
a 1280x720 PNG and a 75-frame MP4 with Content Credentials. Also writes ``--out`` (default
``test-artifacts/provenance``): a flat grey frame with and without the mark, magnified, to look at.

Usage: python benchmarks/provenance.py [--frames 30] [--out DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from faceloom import metrics  # noqa: E402
from faceloom.media.credentials import Credentials, sign_file  # noqa: E402
from faceloom.media.reader import iter_video  # noqa: E402
from faceloom.media.writer import VideoWriter, encode_image  # noqa: E402
from faceloom.provenance import THRESHOLD, detect_watermark, embed_watermark  # noqa: E402

Frames = list[np.ndarray]


def crop(f: np.ndarray, left: float, top: float, right: float, bottom: float) -> np.ndarray:
    h, w = f.shape[:2]
    return f[int(top * h) : h - int(bottom * h), int(left * w) : w - int(right * w)]


def scale(f: np.ndarray, k: float) -> np.ndarray:
    return cv2.resize(f, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)


def jpeg(f: np.ndarray, quality: int) -> np.ndarray:
    _, data = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def x264(frames: Frames, crf: int) -> Frames:
    import av

    buf = io.BytesIO()
    h, w = frames[0].shape[:2]
    w, h = w - w % 2, h - h % 2
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for f in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format="rgb24")
            ):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf, mode="r") as inp:
        return [fr.to_ndarray(format="rgb24") for fr in inp.decode(video=0)]


def rotate(f: np.ndarray, degrees: float) -> np.ndarray:
    h, w = f.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def each(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Frames], Frames]:
    return lambda frames: [fn(f) for f in frames]


ATTACKS: dict[str, Callable[[Frames], Frames]] = {
    "none": lambda fs: fs,
    "crop 10% off each side": each(lambda f: crop(f, 0.1, 0.1, 0.1, 0.1)),
    "crop 10% off the left": each(lambda f: crop(f, 0.1, 0, 0, 0)),
    "crop 10% top, 5% right": each(lambda f: crop(f, 0, 0.1, 0.05, 0)),
    "scale 0.5x": each(lambda f: scale(f, 0.5)),
    "scale 0.75x": each(lambda f: scale(f, 0.75)),
    "scale 1.5x": each(lambda f: scale(f, 1.5)),
    "x264 crf 23": lambda fs: x264(fs, 23),
    "x264 crf 28": lambda fs: x264(fs, 28),
    "x264 crf 35": lambda fs: x264(fs, 35),
    "JPEG 90": each(lambda f: jpeg(f, 90)),
    "JPEG 75": each(lambda f: jpeg(f, 75)),
    "JPEG 50": each(lambda f: jpeg(f, 50)),
    "crop 10% + 0.5x + x264 crf 28": lambda fs: x264(
        [scale(crop(f, 0.1, 0.02, 0.1, 0.08), 0.5) for f in fs], 28
    ),
    "crop 10% + 1.5x + JPEG 75": each(lambda f: jpeg(scale(crop(f, 0.03, 0.1, 0.0, 0.1), 1.5), 75)),
    "crop 10% + 0.5x + JPEG 75": each(lambda f: jpeg(scale(crop(f, 0.1, 0.0, 0.05, 0.1), 0.5), 75)),
    # beyond what the search allows: reported, not promised
    "crop 20% off the left": each(lambda f: crop(f, 0.2, 0, 0, 0)),
    "crop 15% off each side": each(lambda f: crop(f, 0.15, 0.15, 0.15, 0.15)),
    "scale 0.25x": each(lambda f: scale(f, 0.25)),
    "rotate 2 degrees": each(lambda f: rotate(f, 2.0)),
    "mirror": each(lambda f: np.ascontiguousarray(f[:, ::-1])),
    "aspect 16:9 -> 4:3 stretch": each(lambda f: cv2.resize(f, (f.shape[1], int(f.shape[1] * 0.75)))),
}


def timed(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--out", type=Path, default=REPO / "test-artifacts" / "provenance")
    args = parser.parse_args()
    env_data = os.environ.get("FACELOOM_TEST_DATA")
    data = Path(env_data) if env_data else REPO.parent / "shared" / "data"
    clip = sorted((data / "grid" / "s4_hq").glob("*.mpg"))[0]
    frames = [f.rgb for _, f in zip(range(args.frames), iter_video(clip), strict=False)]
    marked = [embed_watermark(f) for f in frames]

    table = []
    for name, attack in ATTACKS.items():
        video = detect_watermark(attack(marked))
        image = detect_watermark(attack(marked[:1]))
        clean = detect_watermark(attack(frames[:1]))
        table.append(
            {
                "attack": name,
                "video_score": round(video.score, 1),
                "video_found": video.found,
                "image_score": round(image.score, 1),
                "image_found": image.found,
                "unmarked_image_score": round(clean.score, 1),
            }
        )
        print(json.dumps(table[-1]), file=sys.stderr, flush=True)

    clips = sorted(p for p in data.rglob("*") if p.suffix in (".mpg", ".flv"))
    rng = np.random.default_rng(0)
    unmarked = []
    for path in clips:
        fs = [f.rgb for _, f in zip(range(30), iter_video(path), strict=False)]
        unmarked.append(detect_watermark(fs).score)
        frame = crop(fs[-1], *rng.uniform(0, 0.1, size=4))
        unmarked.append(detect_watermark([jpeg(scale(frame, float(rng.uniform(0.5, 1.5))), 75)]).score)

    hd = cv2.resize(frames[0], (1280, 720), interpolation=cv2.INTER_CUBIC)
    hd_marked = embed_watermark(hd)
    psnr = [metrics.psnr(embed_watermark(f), f) for f in frames]
    with tempfile.TemporaryDirectory() as tmp:
        png = encode_image(hd_marked, ".png")
        src = Path(tmp) / "in.mp4"
        with VideoWriter(src, 25, (1280, 720), credentials=Credentials(enabled=False)) as vw:
            for _ in range(75):
                vw.write(hd_marked)
        png_path = Path(tmp) / "in.png"
        png_path.write_bytes(png)
        sign_png = timed(lambda: sign_file(png_path, Path(tmp) / "o.png", "o.png", Credentials()), 5)
        sign_mp4 = timed(lambda: sign_file(src, Path(tmp) / "o.mp4", "o.mp4", Credentials()), 3)
    costs = {
        "embed_ms_per_720p_frame": round(1000 * timed(lambda: embed_watermark(hd), 50), 2),
        "verify_ms_one_720p_frame": round(1000 * timed(lambda: detect_watermark([hd_marked]), 5), 1),
        "verify_ms_per_extra_720p_frame": round(
            1000
            * (
                timed(lambda: detect_watermark([hd_marked] * 11), 3)
                - timed(lambda: detect_watermark([hd_marked]), 3)
            )
            / 10,
            2,
        ),
        "sign_ms_720p_png": round(1000 * sign_png, 1),
        "sign_ms_75_frame_720p_mp4": round(1000 * sign_mp4, 1),
    }

    args.out.mkdir(parents=True, exist_ok=True)
    flat = np.full((720, 1280, 3), 128, np.uint8)
    window = (slice(300, 420), slice(560, 720))
    look = np.hstack([flat[window], embed_watermark(flat)[window]])
    look = cv2.resize(look, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    stretched = np.clip((look.astype(np.int16) - 128) * 20 + 128, 0, 255).astype(np.uint8)
    cv2.imwrite(str(args.out / "flat_grey_unmarked_vs_marked_x4.png"), cv2.cvtColor(look, cv2.COLOR_RGB2BGR))
    cv2.imwrite(
        str(args.out / "flat_grey_difference_x4_contrast_x20.png"), cv2.cvtColor(stretched, cv2.COLOR_RGB2BGR)
    )

    print(
        json.dumps(
            {
                "benchmark": "provenance",
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "clip": clip.name,
                "frames": len(frames),
                "threshold": THRESHOLD,
                "attacks": table,
                "false_positive": {
                    "media": len(unmarked),
                    "max_score": round(max(unmarked), 2),
                    "found": int(sum(s >= THRESHOLD for s in unmarked)),
                },
                "psnr_db": {"min": round(min(psnr), 2), "mean": round(float(np.mean(psnr)), 2)},
                "costs": costs,
                "looks": str(args.out),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
