"""Every closed set of names, as ``Literal`` types; their lists come from ``typing.get_args``.

Torch-free, so the CLI's ``--help``, the UI and the settings file read them without loading a model.
The model registry checks at load time that the architectures it holds are exactly ``ModelName``
(``faceloom.train.models``), the detector factory that it knows every ``DetectorName``.
"""

from __future__ import annotations

from typing import Literal, get_args

Side = Literal["a", "b"]
"""A = the person in the video; B = the face put in (faceswap's words)."""
SIDES: tuple[Side, ...] = get_args(Side)

ModelName = Literal["lite", "original", "loom"]
MODEL_NAMES: tuple[ModelName, ...] = get_args(ModelName)

DetectorName = Literal["mediapipe", "dlib", "dlib-cnn"]
DETECTOR_NAMES: tuple[DetectorName, ...] = get_args(DetectorName)

CropType = Literal["face", "whole_face", "head", "dfl_whole_face"]
"""Square regions of a face a model is trained on (:data:`faceloom.faces.align.CROP_REGIONS`)."""
CROP_TYPES: tuple[CropType, ...] = get_args(CropType)

DeviceChoice = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
TrainSchedule = Literal["phased", "constant"]
"""phased: warp, learning-rate decay, a last stretch without the warp (:mod:`faceloom.train.schedule`)."""
ImageFormat = Literal["jpg", "png"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = get_args(ImageFormat)
SortKey = Literal["yaw", "pitch", "blur", "similarity", "size"]
MaskChoice = Literal["auto", "hull", "learned", "segment", "both"]
BlendChoice = Literal["alpha", "seamless"]
ColorChoice = Literal["none", "rct", "lct", "hist"]
LabelChoice = Literal["none", "visible"]
PredictBackend = Literal["auto", "torch", "onnx"]
PREDICT_BACKENDS: tuple[PredictBackend, ...] = get_args(PredictBackend)
