"""DeepFaceLab's ``.dfm``: the ONNX model DeepFaceLive, FaceFusion's deep_swapper and VisoMaster run.

What a reader of a ``.dfm`` relies on (DeepFaceLive's ``DFMModel``, which calls the outputs by
position): input 0 named ``in_face...``, (N, H, W, 3) float32 BGR in [0, 1] on DFL's whole_face
crop with fixed H and W; an optional input 1 ``morph_value...`` of shape (1,) (DFL's AMP models);
three outputs in this order: the face mask of the input person (N, H, W, 1), the swapped face
(N, H, W, 3) BGR and its mask (N, H, W, 1), all in [0, 1]. DFL names them as below.
"""

from __future__ import annotations

from typing import Final

IN_FACE: Final = "in_face:0"
MORPH_VALUE: Final = "morph_value:0"
OUT_FACE_MASK: Final = "out_face_mask:0"
OUT_CELEB: Final = "out_celeb_face:0"
OUT_CELEB_MASK: Final = "out_celeb_face_mask:0"
OUTPUTS: Final = (OUT_FACE_MASK, OUT_CELEB, OUT_CELEB_MASK)
DFM_CROP: Final = "dfl_whole_face"
"""The crop a ``.dfm`` model takes (faceloom's name for DFL's whole_face face type)."""
