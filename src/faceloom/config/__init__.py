"""Every setting of every stage, declared once with its metadata (:mod:`faceloom.config.meta`).

One module per stage's settings; the ``Literal`` choice types live in :mod:`faceloom.config.choices`.
"""

from faceloom.config.analyze import AnalyzeConfig
from faceloom.config.choices import (
    BlendChoice,
    ColorChoice,
    DetectorName,
    DeviceChoice,
    ImageFormat,
    LabelChoice,
    MaskChoice,
    ModelName,
    Precision,
    Side,
    SortKey,
)
from faceloom.config.convert import ConvertConfig
from faceloom.config.evaluate import EvalConfig
from faceloom.config.extract import ExtractConfig
from faceloom.config.live import LiveConfig
from faceloom.config.meta import (
    SettingError,
    SettingInfo,
    Settings,
    fingerprint,
    plain_dict,
    setting,
    settings_of,
)
from faceloom.config.train import EarlyStopConfig, TrainConfig
from faceloom.config.ui import UISettings

SideChoice = Side

__all__ = [
    "AnalyzeConfig",
    "BlendChoice",
    "ColorChoice",
    "ConvertConfig",
    "DetectorName",
    "DeviceChoice",
    "EarlyStopConfig",
    "EvalConfig",
    "ExtractConfig",
    "ImageFormat",
    "LabelChoice",
    "LiveConfig",
    "MaskChoice",
    "ModelName",
    "Precision",
    "SettingError",
    "SettingInfo",
    "Settings",
    "Side",
    "SideChoice",
    "SortKey",
    "TrainConfig",
    "UISettings",
    "fingerprint",
    "plain_dict",
    "setting",
    "settings_of",
]
