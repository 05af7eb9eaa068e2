"""Anomaly detection: scores from reconstruction errors and codes, thresholds, detectors.

`AutoencoderOutlierDetector` (scikit-learn's outlier API) detects anomalies among the rows
of a table (`aekit.pyod.AutoEncoder` is the same detector in PyOD's convention); `aekit train
fully_connected` on a table trains the same model. `AnomalyDetector` scores with any trained
reconstruction Estimator (images too). A table's score is `TableScore`'s. The names load on
first use (aekit.lazy): scikit-learn only when one is asked for.
"""

from typing import TYPE_CHECKING

from aekit.lazy import attach

if TYPE_CHECKING:
    from aekit.anomaly.detector import AnomalyDetector, errors_and_codes, reconstruction_errors
    from aekit.anomaly.outliers import AutoencoderOutlierDetector
    from aekit.anomaly.scores import (
        SCORE_KEY,
        ErrorAndCodeScore,
        auroc,
        read_scores_csv,
        threshold_at,
        write_scores_csv,
    )
    from aekit.anomaly.table_score import TableScore

__getattr__, __dir__ = attach(
    __name__,
    {
        **dict.fromkeys(
            ("AnomalyDetector", "errors_and_codes", "reconstruction_errors"),
            "aekit.anomaly.detector",
        ),
        "AutoencoderOutlierDetector": "aekit.anomaly.outliers",
        **dict.fromkeys(
            (
                "SCORE_KEY",
                "ErrorAndCodeScore",
                "auroc",
                "read_scores_csv",
                "threshold_at",
                "write_scores_csv",
            ),
            "aekit.anomaly.scores",
        ),
        "TableScore": "aekit.anomaly.table_score",
    },
)

__all__ = [
    "SCORE_KEY",
    "AnomalyDetector",
    "AutoencoderOutlierDetector",
    "ErrorAndCodeScore",
    "TableScore",
    "auroc",
    "errors_and_codes",
    "read_scores_csv",
    "reconstruction_errors",
    "threshold_at",
    "write_scores_csv",
]
