"""Seed 001: Encoder and Decoder composed into a model, trained by a hand-written loop.

    python examples/subclassed_loop.py [--epochs 10] [--model-dir runs/subclassed]

No Estimator here: the loop computes the MSE loss, its gradients and the Adam
update itself, and writes the loss and original / reconstructed images to
TensorBoard with aekit's summary writer, as the seed does with tf.summary.
"""

from __future__ import annotations

import torch
from _common import load_mnist, parser
from torch import nn

from aekit.data import Dataset, to_float
from aekit.models import Decoder, Encoder
from aekit.summary import EventWriters


class Autoencoder(nn.Module):
    """The seed's model: one hidden layer each way, a sigmoid code and a sigmoid output.

    Initialised as the seed's Keras layers are: He-uniform weights for the ReLU layers,
    Glorot-uniform for the sigmoid ones, zero biases (not torch's default init, which
    trains to a worse test MSE in the seed's 10 epochs).
    """

    def __init__(self, intermediate_dim: int = 64, original_dim: int = 784) -> None:
        super().__init__()
        self.encoder = Encoder(
            original_dim, [intermediate_dim, intermediate_dim], "relu", code_activation_fn="sigmoid"
        )
        self.decoder = Decoder(
            intermediate_dim,
            [intermediate_dim],
            original_dim,
            "relu",
            output_activation_fn="sigmoid",
        )
        for block in (self.encoder, self.decoder):
            *hidden, last = [m for m in block.layers if isinstance(m, nn.Linear)]
            for layer in hidden:  # ReLU layers
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            nn.init.xavier_uniform_(last.weight)  # the sigmoid layer
            for layer in (*hidden, last):
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reconstruction: torch.Tensor = self.decoder(self.encoder(x))
        return reconstruction


def main() -> None:
    p = parser(__doc__ or "", "runs/subclassed", epochs=10)
    p.set_defaults(batch_size=128)
    p.add_argument("--learning-rate", type=float, default=1e-2)
    args = p.parse_args()
    x_train, _, x_test, _ = load_mnist(args.data_dir)
    torch.manual_seed(args.seed)
    model = Autoencoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    writers = EventWriters(args.model_dir)
    data = (
        Dataset.from_tensor_slices(x_train.reshape(len(x_train), -1))
        .shuffle(len(x_train), seed=args.seed)
        .batch(args.batch_size)
        .map(to_float)
    )
    step = 0
    for epoch in range(args.epochs):
        for batch in data:
            loss = (model(batch) - batch).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % 100 == 0:
                writers.write_scalars("train", {"loss": float(loss.detach())}, step)
        with torch.no_grad():
            test = to_float(torch.from_numpy(x_test.reshape(len(x_test), -1)))
            reconstruction = model(test)
            test_loss = float((reconstruction - test).square().mean())
        writer = writers.writer("train")
        writer.add_images("original", test[:8].reshape(-1, 1, 28, 28), step)
        writer.add_images("reconstructed", reconstruction[:8].reshape(-1, 1, 28, 28), step)
        print(f"epoch {epoch + 1}: test MSE {test_loss:.5f}")
    writers.close()


if __name__ == "__main__":
    main()
