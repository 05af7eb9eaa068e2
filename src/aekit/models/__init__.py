"""The model zoo: ready-made estimators and their networks."""

from aekit.models.classifier import Classifier
from aekit.models.convolutional import ConvolutionalAutoencoder, ConvolutionalNetwork
from aekit.models.fully_connected import AutoEncoder, FullyConnectedNetwork
from aekit.models.heads import ReconstructionNetwork, reconstruction_model_fn
from aekit.models.layers import Decoder, Encoder
from aekit.models.stacked import StackedDenoisingAutoencoder
from aekit.models.variational import VariationalAutoencoder, VariationalNetwork

__all__ = [
    "AutoEncoder",
    "Classifier",
    "ConvolutionalAutoencoder",
    "ConvolutionalNetwork",
    "Decoder",
    "Encoder",
    "FullyConnectedNetwork",
    "ReconstructionNetwork",
    "StackedDenoisingAutoencoder",
    "VariationalAutoencoder",
    "VariationalNetwork",
    "reconstruction_model_fn",
]
