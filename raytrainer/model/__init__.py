"""Models: BaseModel (the step contract), data preprocessors, weight init, wrappers."""
from . import weight_init  # noqa: F401  (registers the initialisers)
from .averaged_model import (
    BaseAveragedModel,
    ExponentialMovingAverage,
    MomentumAnnealingEMA,
    StochasticWeightAverage,
)
from .base_model import BaseModel
from .base_module import BaseModule, ModuleDict, ModuleList, Sequential
from .char_transformer import CharTransformer
from .classifier import MLPClassifier
from .data_preprocessor import BaseDataPreprocessor, ImgDataPreprocessor
from .ddp import MMDistributedDataParallel
from .wrappers import is_model_wrapper, unwrap_model

__all__ = ["BaseModel", "BaseModule", "ModuleDict", "ModuleList", "Sequential",
           "BaseDataPreprocessor", "ImgDataPreprocessor", "is_model_wrapper", "unwrap_model",
           "MLPClassifier", "BaseAveragedModel", "ExponentialMovingAverage",
           "MomentumAnnealingEMA", "StochasticWeightAverage", "MMDistributedDataParallel",
           "CharTransformer"]
