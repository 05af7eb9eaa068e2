"""One timed aekit run of a seed autoencoder; prints {"images_per_s": ...} as one JSON line.

    python benchmarks/peers/aekit_fit.py --model fc --threads 2 --data images.npy

Through the public API at default settings (summaries, logging and checkpoints as a user
gets them; no progress bar, as Keras runs with verbose=0): one epoch of warm-up, then the
timed epochs. `--pin` keeps the thread count fixed (no adapting to other load);
`--precision bf16-mixed` trains under bfloat16 autocast.
"""

from __future__ import annotations

import json
import tempfile
import time

from fit_args import fit_parser  # beside this script


def main() -> None:
    p = fit_parser()
    p.add_argument("--pin", action="store_true", help="RunConfig(cpu_threads=threads)")
    p.add_argument("--precision", default="32", help="RunConfig(precision=...)")
    args = p.parse_args()
    import numpy as np
    import torch

    import aekit
    from aekit.data import numpy_input_fn

    torch.set_num_threads(args.threads)
    images = np.load(args.data)
    with tempfile.TemporaryDirectory() as model_dir:
        config = aekit.RunConfig(
            random_seed=0,
            cpu_threads=args.threads if args.pin else "auto",
            precision=args.precision,
        )
        kind = aekit.AutoEncoder if args.model == "fc" else aekit.ConvolutionalAutoencoder
        est = kind(model_dir=model_dir, config=config)
        est.train(numpy_input_fn(images, batch_size=args.batch_size, num_epochs=1))
        start = time.perf_counter()
        est.train(numpy_input_fn(images, batch_size=args.batch_size, num_epochs=args.epochs))
        seconds = time.perf_counter() - start
    parameters = sum(p.numel() for p in est.network.parameters())
    print(
        json.dumps({"images_per_s": len(images) * args.epochs / seconds, "parameters": parameters})
    )


if __name__ == "__main__":
    main()
