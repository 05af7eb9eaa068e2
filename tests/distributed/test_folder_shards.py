"""Two processes under torchrun stream a folder of images: each decodes its share, none the whole.

The job streams one epoch unseeded, as the Estimator trains: equal shares, the shuffle drawn
from a generator in the same state on every process. The folder holds an odd number of
images, so equal shares leave out exactly the remainder (one image), as the stream promises.
Each image's pixels all hold its id + 1; the job also counts the files each process decodes
and its peak memory growth (VmHWM), set against the folder's 156 MiB of uint8 pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from launch import torchrun

pytestmark = pytest.mark.slow

JOB = Path(__file__).with_name("folder_shard_job.py")
IMAGES, SIDE = 255, 800  # 156 MiB of decoded pixels in 1 MiB of PNG (1 s); ids up to 255


def test_each_process_decodes_a_disjoint_equal_share_and_holds_far_less_than_the_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(IMAGES):  # image i: every pixel i + 1, so its pixels name it
        image = Image.fromarray(np.full((SIDE, SIDE), i + 1, dtype=np.uint8))
        image.save(folder / f"{i:03d}.png", compress_level=1)
    done = torchrun(str(JOB), str(folder), str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    shares = [set(r["ids"]) for r in reports]
    assert all(r["constant"] for r in reports)  # each image decoded whole, unmixed
    assert all(len(s) == len(r["ids"]) for s, r in zip(shares, reports, strict=True))
    # Disjoint, equal, and together every image but the remainder of an equal split.
    assert not shares[0] & shares[1]
    assert len(shares[0]) == len(shares[1]) == IMAGES // 2
    assert shares[0] | shares[1] <= set(range(IMAGES))  # so all but IMAGES % 2 of them
    decoded_size = IMAGES * SIDE * SIDE
    for report, share in zip(reports, shares, strict=True):
        # It opened its own images only, each once.
        assert sorted(report["decoded"]) == [f"{i:03d}.png" for i in sorted(share)]
        # Batches (20 to 35 MiB seen), never the folder (52 MiB a third of it, uint8).
        assert report["peak_growth"] < decoded_size / 3, (report["peak_growth"], decoded_size)
