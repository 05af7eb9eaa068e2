"""Anomaly detection: scores from reconstruction errors and codes, thresholds, detectors."""

from aekit.anomaly.scores import (
    SCORE_KEY,
    AnomalyDetector,
    ErrorAndCodeScore,
    auroc,
    read_scores_csv,
    reconstruction_errors,
    threshold_at,
    write_scores_csv,
)

__all__ = [
    "SCORE_KEY",
    "AnomalyDetector",
    "ErrorAndCodeScore",
    "auroc",
    "read_scores_csv",
    "reconstruction_errors",
    "threshold_at",
    "write_scores_csv",
]
