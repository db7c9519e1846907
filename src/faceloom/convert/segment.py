"""Occlusion mask for ``--mask segment``: which pixels of an aligned face crop are really face.

Two mediapipe models that ship in its wheel run on the crop:

- selfie segmentation (``selfie_segmentation.tflite``, 256 x 256, person vs background) gives the
  probability that a pixel belongs to a person;
- the hand tracker (palm detector + 21 hand landmarks) finds hands; each hand's outline, drawn
  from its landmarks (palm hull extended a little past the wrist along the forearm, plus a stroke
  per finger, grown a little; see :func:`hand_region`), is cut out of the mask.

``face_mask = person probability * (1 - hand region)``.

What it does not catch, measured on GRID crops (see tests/test_convert_ops.py):

- Hair, beards and glasses are "person": hair over the forehead stays in the mask. Combine with
  a landmark hull mask to keep the swap to the face.
- Objects held or placed in front of the face (a microphone, a cup, a flat patch pasted over the
  mouth) are "person" too: the segmenter separates a person *with everything in front of them*
  from the background, not face from non-face. Only background showing inside the crop (beside
  a turned face, through gaps) is removed.
- Hands are removed only when the hand tracker finds them: a hand seen edge-on, mostly outside
  the crop or heavily blurred may be missed, and the hull is an approximation of its outline.
- The hand tracker runs in video mode: it follows a hand from one call to the next, so give one
  Segmenter the crops of one face track in order (faces of other tracks only make it search
  again).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from faceloom.checks import check_shape

MIN_SIDE = 192
"""Crops smaller than this are upsampled before the models see them (the palm detector's input)."""

HAND_GROWTH = 0.15
"""The hand hull is grown by this fraction of the palm's length (wrist to middle-finger base)."""

FOREARM = 0.8
"""How far past the wrist, in palm lengths, the hand region is extended along the forearm."""


class Segmenter:
    """Per-pixel "this is visible face" probability for aligned face crops.

    Creating one loads and warms up the two mediapipe graphs (about 0.1 s). Nothing is printed
    from Python; mediapipe's C++ code writes a few info/warning lines straight to file descriptor
    2 while its graphs start (absl logging, which no environment variable reaches). With
    ``warm_up`` (default) that happens inside the constructor and later calls write nothing; the
    CLI drops those lines (``faceloom.runtime.filter_native_stderr``). One Segmenter serves one
    thread.

    Args:
        max_hands: most hands looked for per crop.
        hand_confidence: palm detector's minimum confidence.
        warm_up: run both graphs once on a blank image in the constructor.

    Example:
        >>> seg = Segmenter()
        >>> occlusion = seg.face_mask(src_face)  # (R, R) float32
        >>> seg.close()
    """

    def __init__(self, *, max_hands: int = 2, hand_confidence: float = 0.5, warm_up: bool = True) -> None:
        from faceloom.runtime import quiet_native_logs

        quiet_native_logs()
        import mediapipe as mp

        self._selfie: Any = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        self._hands: Any = mp.solutions.hands.Hands(
            static_image_mode=False,
            max_num_hands=max_hands,
            min_detection_confidence=hand_confidence,
            min_tracking_confidence=0.5,
        )
        if warm_up:
            # Start both graphs now (~0.1 s): their one-off native log lines come out here, inside
            # creation, rather than from some pipeline thread on the first face.
            blank = np.zeros((MIN_SIDE, MIN_SIDE, 3), dtype=np.uint8)
            self._selfie.process(blank)
            self._hands.process(blank)

    def person(self, crop: np.ndarray) -> np.ndarray:
        """Person-segmentation probability of a crop.

        Args:
            crop: :math:`(R, R, 3)` uint8 RGB.

        Returns:
            :math:`(R, R)` float32 in :math:`[0, 1]`.
        """
        work = self._upsampled(crop)
        prob = self._person(work)
        return self._back(prob, crop.shape[0])

    def hands(self, crop: np.ndarray) -> list[np.ndarray]:
        """Landmarks of the hands found in a crop.

        Args:
            crop: :math:`(R, R, 3)` uint8 RGB.

        Returns:
            one :math:`(21, 2)` float32 array of crop pixel coordinates per hand found.
        """
        work = self._upsampled(crop)
        k = crop.shape[0] / work.shape[0]
        return [pts * k for pts in self._hand_points(work)]

    def face_mask(self, crop: np.ndarray) -> np.ndarray:
        """Probability that each pixel of an aligned crop is unoccluded person.

        Args:
            crop: :math:`(R, R, 3)` uint8 RGB aligned face crop (the model's input crop).

        Returns:
            :math:`(R, R)` float32 in :math:`[0, 1]`: person probability times one minus the
            (slightly feathered) region of any detected hand.
        """
        check_shape(crop, "R R 3", "crop", dtype=np.uint8)
        work = self._upsampled(crop)
        mask = self._person(work)
        hands = self._hand_points(work)
        if hands:
            mask *= 1.0 - hand_region(hands, work.shape[0])
        return self._back(mask, crop.shape[0])

    def close(self) -> None:
        """Release the mediapipe graphs."""
        for graph in (self._selfie, self._hands):
            if graph is not None:
                graph.close()
        self._selfie = None
        self._hands = None

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _upsampled(crop: np.ndarray) -> np.ndarray:
        size = crop.shape[0]
        if size >= MIN_SIDE:
            return np.ascontiguousarray(crop)
        return np.asarray(cv2.resize(crop, (MIN_SIDE, MIN_SIDE), interpolation=cv2.INTER_CUBIC))

    @staticmethod
    def _back(mask: np.ndarray, size: int) -> np.ndarray:
        if mask.shape[0] != size:
            mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA)
        return np.asarray(np.clip(mask, 0.0, 1.0), dtype=np.float32)

    def _person(self, work: np.ndarray) -> np.ndarray:
        if self._selfie is None:
            raise RuntimeError("Segmenter is closed")
        result = self._selfie.process(work)
        return np.array(result.segmentation_mask, dtype=np.float32)

    def _hand_points(self, work: np.ndarray) -> list[np.ndarray]:
        if self._hands is None:
            raise RuntimeError("Segmenter is closed")
        result = self._hands.process(work)
        size = work.shape[0]
        return [
            np.array([(p.x * size, p.y * size) for p in hand.landmark], dtype=np.float32)
            for hand in (result.multi_hand_landmarks or [])
        ]


_FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
_PALM = (0, 1, 5, 9, 13, 17)


def hand_region(hands: list[np.ndarray], size: int) -> np.ndarray:
    """Soft region covered by hands, from their landmarks.

    Each hand is drawn as its palm (the convex hull of the wrist, the thumb's base and the four
    finger bases, extended ``FOREARM`` palm lengths past the wrist for the forearm) plus each
    finger as a round-capped stroke through its joints, as wide as the spacing of the finger bases.
    Unlike one convex hull of all 21 points, the face seen between thumb and fingers is kept. The
    whole shape is grown by ``HAND_GROWTH`` palm lengths (landmark error) and feathered by a small
    blur.

    Args:
        hands: :math:`(21, 2)` landmark arrays in pixels of the crop (mediapipe hand order:
            0 wrist, 1-4 thumb, 5-8 index, 9-12 middle, 13-16 ring, 17-20 little finger).
        size: side of the square crop.

    Returns:
        :math:`(size, size)` float32 in :math:`[0, 1]`, 1 on the hands.
    """
    region = np.zeros((size, size), dtype=np.uint8)
    shift = 4  # 1/16 px precision for OpenCV drawing
    for hand in hands:
        pts = np.asarray(hand, dtype=np.float64)
        if pts.shape != (21, 2):
            raise ValueError(f"expected (21, 2) hand landmarks, got {pts.shape}")
        wrist, middle = pts[0], pts[9]
        palm = float(np.linalg.norm(middle - wrist))
        if palm < 1e-3:
            continue
        along = (wrist - middle) / palm
        across = np.array([-along[1], along[0]])
        half_width = float(np.linalg.norm(pts[5] - pts[17])) / 2
        forearm = [wrist + along * FOREARM * palm + s * across * half_width for s in (-1.0, 1.0)]
        grow = HAND_GROWTH * palm
        finger = float(np.mean(np.linalg.norm(np.diff(pts[[5, 9, 13, 17]], axis=0), axis=1)))
        fixed = np.round(pts * (1 << shift)).astype(np.int32)
        palm_outline = np.vstack([pts[list(_PALM)], np.array(forearm)])
        hull = cv2.convexHull(np.round(palm_outline * (1 << shift)).astype(np.int32))
        cv2.fillConvexPoly(region, hull, (255,), lineType=cv2.LINE_8, shift=shift)
        if grow >= 0.5:
            thick = max(1, round(2 * grow))
            cv2.polylines(region, [hull], True, (255,), thickness=thick, lineType=cv2.LINE_8, shift=shift)
        stroke = max(1, round(finger + 2 * grow))
        for chain in _FINGERS:
            cv2.polylines(
                region,
                [fixed[list(chain)]],
                False,
                (255,),
                thickness=stroke,
                lineType=cv2.LINE_8,
                shift=shift,
            )
    soft = region.astype(np.float32) / 255.0
    sigma = max(1.0, size / 128)
    return np.asarray(np.clip(cv2.GaussianBlur(soft, (0, 0), sigmaX=sigma), 0.0, 1.0), dtype=np.float32)
