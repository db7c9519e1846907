"""Mark faceloom's output as synthetic, and tell whether a file carries the mark.

Three marks, all on by default in every video and image faceloom writes:

- signed **C2PA Content Credentials** (:mod:`faceloom.media.credentials`): the industry's
  standard, which cameras, editors and platforms read; written by the one writer;
- a machine-readable **label** in the file's metadata (:mod:`faceloom.media.label`);
- an invisible **watermark** in the pixels (:mod:`.watermark`), plugged into the writer as a frame
  filter, which survives crops, rescaling, re-encoding and JPEG.

:func:`verify` reads all three; :mod:`.visible` draws a visible label when asked.
"""

from faceloom.provenance.verify import MAX_VIDEO_SAMPLES, VerifyResult, verify
from faceloom.provenance.visible import visible_label_filter
from faceloom.provenance.watermark import (
    DEFAULT_WATERMARK,
    GRID,
    KEY_SEED,
    MAX_CROP,
    MAX_RMS,
    NULL_CEILING,
    THRESHOLD,
    Watermark,
    WatermarkResult,
    detect_watermark,
    embed_watermark,
    watermark_filter,
)

__all__ = [
    "DEFAULT_WATERMARK",
    "GRID",
    "KEY_SEED",
    "MAX_CROP",
    "MAX_RMS",
    "MAX_VIDEO_SAMPLES",
    "NULL_CEILING",
    "THRESHOLD",
    "VerifyResult",
    "Watermark",
    "WatermarkResult",
    "detect_watermark",
    "embed_watermark",
    "verify",
    "visible_label_filter",
    "watermark_filter",
]
