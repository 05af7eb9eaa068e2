"""Input pipelines and data sets."""

from aekit.data import mnist, sources
from aekit.data.binarize import binarize
from aekit.data.corruption import Corruption, GaussianNoise, MaskingNoise, SaltAndPepper
from aekit.data.dataset import Dataset
from aekit.data.folder_stream import image_folder_input_fn, split_image_folder
from aekit.data.idx import IDXError, read_idx, write_idx
from aekit.data.image_folder import ImageFolderFiles, list_image_folder, load_image_folder
from aekit.data.input_fn import InputFunction, numpy_input_fn, to_float
from aekit.data.mnist import DownloadError, load_data
from aekit.data.sources import load_dataset, load_digits
from aekit.data.table_stream import table_input_fn

__all__ = [
    "Corruption",
    "Dataset",
    "DownloadError",
    "GaussianNoise",
    "IDXError",
    "ImageFolderFiles",
    "InputFunction",
    "MaskingNoise",
    "SaltAndPepper",
    "binarize",
    "image_folder_input_fn",
    "list_image_folder",
    "load_data",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "mnist",
    "numpy_input_fn",
    "read_idx",
    "sources",
    "split_image_folder",
    "table_input_fn",
    "to_float",
    "write_idx",
]
