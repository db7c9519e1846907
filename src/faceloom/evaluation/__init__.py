"""How good a model and a swap are, in numbers: `faceloom eval`, the trainer's and the benchmarks'
scores, flicker of a converted video. One package, so every score is computed one way.

Modules: :mod:`.crops` (faces through a model; identity embeddings at known landmarks; SSIM on a
common crop), :mod:`.evaluate` (the held-out report of `faceloom eval`), :mod:`.flicker`,
:mod:`.interval` (how far a mean over held-out faces would move with other faces).
"""

from faceloom.config import EvalConfig
from faceloom.evaluation.evaluate import evaluate, evaluate_model
from faceloom.evaluation.flicker import video_flicker

__all__ = ["EvalConfig", "evaluate", "evaluate_model", "video_flicker"]
