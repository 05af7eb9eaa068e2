"""Input pipelines and data sets."""

from aekit.data.corruption import Corruption, GaussianNoise, MaskingNoise, SaltAndPepper
from aekit.data.dataset import Dataset
from aekit.data.input_fn import InputFunction, numpy_input_fn, to_float

__all__ = [
    "Corruption",
    "Dataset",
    "GaussianNoise",
    "InputFunction",
    "MaskingNoise",
    "SaltAndPepper",
    "numpy_input_fn",
    "to_float",
]
