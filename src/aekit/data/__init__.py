"""Input pipelines and data sets."""

from aekit.data import mnist, sources
from aekit.data.binarize import binarize
from aekit.data.corruption import Corruption, GaussianNoise, MaskingNoise, SaltAndPepper
from aekit.data.dataset import Dataset
from aekit.data.idx import IDXError, read_idx, write_idx
from aekit.data.input_fn import InputFunction, numpy_input_fn, to_float
from aekit.data.mnist import DownloadError, load_data
from aekit.data.sources import load_dataset, load_digits

__all__ = [
    "Corruption",
    "Dataset",
    "DownloadError",
    "GaussianNoise",
    "IDXError",
    "InputFunction",
    "MaskingNoise",
    "SaltAndPepper",
    "binarize",
    "load_data",
    "load_dataset",
    "load_digits",
    "mnist",
    "numpy_input_fn",
    "read_idx",
    "sources",
    "to_float",
    "write_idx",
]
