"""DeepFaceLab's alignment template, so faceloom can crop faces exactly as DFL and DeepFaceLive do.

DFL (``facelib/LandmarksProcessor.py``, ``get_transform_mat``) fits a similarity transform from a
face's 68 landmarks 17..48 and 54 to ``landmarks_2D_new``, 33 points in a unit square; a face
type is then an axis-aligned square of that unit space: centred on (0.5, 0.5), or higher for
``whole_face``, with half a side of ``padding * sqrt(2) + 0.5``.
"""

from __future__ import annotations

import math

DFL_INDICES: tuple[int, ...] = (*range(17, 49), 54)
"""The 68-point landmarks DFL fits (brows, nose, eyes, the outer mouth corners 48 and 54)."""

DFL_TEMPLATE: tuple[tuple[float, float], ...] = (
    (0.000213256, 0.106454),
    (0.0752622, 0.038915),
    (0.18113, 0.0187482),
    (0.29077, 0.0344891),
    (0.393397, 0.0773906),
    (0.586856, 0.0773906),
    (0.689483, 0.0344891),
    (0.799124, 0.0187482),
    (0.904991, 0.038915),
    (0.98004, 0.106454),
    (0.490127, 0.203352),
    (0.490127, 0.307009),
    (0.490127, 0.409805),
    (0.490127, 0.515625),
    (0.36688, 0.587326),
    (0.426036, 0.609345),
    (0.490127, 0.628106),
    (0.554217, 0.609345),
    (0.613373, 0.587326),
    (0.121737, 0.216423),
    (0.187122, 0.178758),
    (0.265825, 0.179852),
    (0.334606, 0.231733),
    (0.260918, 0.245099),
    (0.182743, 0.244077),
    (0.645647, 0.231733),
    (0.714428, 0.179852),
    (0.793132, 0.178758),
    (0.858516, 0.216423),
    (0.79751, 0.244077),
    (0.719335, 0.245099),
    (0.254149, 0.780233),
    (0.726104, 0.780233),
)
"""DFL's ``landmarks_2D_new``: where the :data:`DFL_INDICES` landmarks sit in its unit space."""

WHOLE_FACE_PADDING = 0.40
WHOLE_FACE_RAISE = 0.07
"""DFL moves the whole_face square up by 7 % of the unit square to take in more forehead."""


def square_side(padding: float) -> float:
    """Side, in DFL unit space, of the square of a face type with this padding."""
    return 2.0 * (padding * math.sqrt(2.0) + 0.5)
