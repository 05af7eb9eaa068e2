"""Cross-fitting a table's model: which of its members never trains on each row.

A table's model (aekit.anomaly.tabular) holds `TABLE_MEMBERS` autoencoders; member `m`
trains on the rows whose fold is not `m`. The fold is a hash of the row's scaled values, so
every door (training, the detector's calibration, `aekit score`) finds the same member for
the same row, whatever the rows' order or units, without carrying row numbers along.
"""

from __future__ import annotations

import torch

TABLE_MEMBERS = 2
"""Autoencoders in a table's model, each trained on the rows the others leave out."""


def fold_of(scaled: torch.Tensor, members: int = TABLE_MEMBERS) -> torch.Tensor:
    """The member that never trains on each row: a hash of its scaled values (float64).

    The values are rounded to 2**-16 of a feature's spread first, so the same row gives the
    same member whatever its units, its order among the rows or the door (training, the
    detector's calibration, `aekit score`); duplicates share their member.
    """
    grid = torch.round(scaled.flatten(1).to(torch.float64) * 2.0**16).to(torch.int64)
    columns = torch.arange(1, grid.shape[1] + 1, dtype=torch.int64, device=grid.device)
    # Multiply-and-fold (integer products wrap): every bit of every value moves the hash.
    mixed = (grid ^ (grid >> 29)) * _ODD_A + columns * _ODD_B
    mixed = (mixed ^ (mixed >> 32)) * _ODD_B
    total = mixed.sum(dim=1)
    total = (total ^ (total >> 31)) * _ODD_A
    return ((total >> 33) & 0x3FFFFFFF) % members


_ODD_A = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed 64-bit integer
_ODD_B = -4658895280553007687  # 0xBF58476D1CE4E5B9 as a signed 64-bit integer
