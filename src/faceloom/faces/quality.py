"""Image quality measures of aligned crops."""

from __future__ import annotations

import cv2
import numpy as np

from faceloom.faces.align import STORED_CROP, subcrop_box


def blur_score(crop_rgb: np.ndarray) -> float:
    """Sharpness of the face in a stored crop: variance of the Laplacian over the ``face`` region,
    resized to 128 px so the score does not depend on crop size. Higher is sharper; below ~20 is
    visibly blurred."""
    x0, y0, side = subcrop_box(STORED_CROP, crop_rgb.shape[0], "face")
    x, y, s = max(0, int(x0)), max(0, int(y0)), int(side)
    face = crop_rgb[y : y + s, x : x + s]
    gray = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, (128, 128), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())
