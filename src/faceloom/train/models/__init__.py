"""Architectures: the registry (:mod:`.registry`), one file per architecture, shared layers
(:mod:`.layers`) and the factory that builds or loads them (:mod:`.factory`)::

    from faceloom.train.models import create_model, load_model
    model = create_model("lite")
    trained, model_dir = load_model("workspace/model")
"""

from faceloom.train.models.base import FaceSwapModel, TrainDefaults
from faceloom.train.models.factory import create_model, load_model, model_from, start_from
from faceloom.train.models.registry import get_model_class, model_names, register

__all__ = [
    "FaceSwapModel",
    "TrainDefaults",
    "create_model",
    "get_model_class",
    "load_model",
    "model_from",
    "model_names",
    "register",
    "start_from",
]
