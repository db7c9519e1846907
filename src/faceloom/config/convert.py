"""Settings of `faceloom convert` (``[convert]`` in faceloom.toml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from faceloom.config.choices import (
    BlendChoice,
    ColorChoice,
    DetectorName,
    DeviceChoice,
    LabelChoice,
    MaskChoice,
    Precision,
    Side,
)
from faceloom.config.meta import Settings, setting


@dataclass(frozen=True)
class ConvertConfig(Settings):
    """How faces are swapped through a video. Every field but ``device`` and ``threads`` changes the
    output."""

    SECTION: ClassVar[str] = "convert"

    to: Side = setting("b", "Render this person: b swaps A's faces for B's.")
    morph: float = setting(
        0.75,
        "For a .dfm with a morph input (DFL's AMP): how far toward B's face, 0..1.",
        low=0.0,
        high=1.0,
    )
    mask: MaskChoice = setting(
        "auto",
        "auto = learned if the model has one (its edge; eyes, nose and mouth always swapped), else hull; "
        "segment keeps hands in front.",
    )
    erode: float = setting(
        0.0,
        "Shrink (+) or grow (-) the mask, share of the crop.",
        low=-0.5,
        high=0.5,
        low_open=True,
        high_open=True,
    )
    blur: float = setting(0.1, "Mask feather, share of the crop.", low=0.0, high=0.5, high_open=True)
    blend: BlendChoice = setting("alpha", "Paste with alpha or Poisson (seamless).")
    color: ColorChoice = setting("rct", "Colour-match the new face to the frame.")
    sharpen: float = setting(0.0, "Unsharp-mask amount for the new face (0 = off).", low=0.0)
    frame_detail: float = setting(
        1.0,
        "Share of the frame's own detail finer than the model's pixels the new face takes (0 = none).",
        low=0.0,
        high=1.0,
    )
    smooth: float = setting(1.0, "Temporal landmark smoothing strength (0 = off).", low=0.0)
    side_by_side: bool = setting(False, "Write original and swapped next to each other.")
    scale: float = setting(1.0, "Scale the output frames.", low=0.05, high=4.0)
    codec: str = setting("libx264", "Video encoder.")
    crf: int = setting(18, "Encoder quality (lower is better).", low=0, high=63)
    preset: str = setting("veryfast", "x264/x265 preset.")
    start: float | None = setting(None, "Start of the converted range, seconds.", low=0.0, unset="the start")
    end: float | None = setting(None, "End of the converted range, seconds.", unset="the end")
    all_faces: bool = setting(False, "Swap every face, not only the source person's.")
    identity_threshold: float = setting(
        0.6,
        "Max embedding distance of a face to the source person to be swapped.",
        low=0.0,
        high=2.0,
        low_open=True,
        high_open=True,
    )
    detector: DetectorName = setting("mediapipe", "Face detector.")
    min_size: int = setting(24, "Ignore faces smaller than this many pixels.", low=0)
    watermark: bool = setting(
        True, "Embed the invisible watermark (the metadata label stays either way). See README."
    )
    label: LabelChoice = setting("none", "visible adds a corner label.")
    credentials: bool = setting(
        True, "Sign C2PA Content Credentials into the output (MP4, MOV, JPEG, PNG, WebP). See README."
    )
    c2pa_cert: str | None = setting(
        None,
        "An organisation's certificate chain (PEM, signing certificate first) for the Content Credentials.",
        ui=False,
        unset="a local certificate made once on this machine (untrusted elsewhere)",
    )
    c2pa_key: str | None = setting(
        None, "The private key (PEM) of --c2pa-cert.", ui=False, unset="the local certificate's key"
    )
    batch_size: int = setting(16, "Frames per model batch.", low=1)
    device: DeviceChoice = setting("auto", "auto, cpu or cuda.", affects_output=False)
    precision: Precision = setting("auto", "auto = bf16 where supported.")
    threads: int | None = setting(None, "CPU threads.", low=1, affects_output=False, unset="all cores")

    def check(self) -> None:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise self.error("end", f"({self.end}) must be after start ({self.start})")
        if (self.c2pa_cert is None) != (self.c2pa_key is None):
            raise self.error("c2pa_key", "goes with c2pa_cert: give both, the certificate chain and its key")
