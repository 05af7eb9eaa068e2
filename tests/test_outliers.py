"""The tabular outlier detector: scikit-learn's conventions, scaling, sizing and quality."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from itertools import islice
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.feather as feather  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

import aekit
from aekit.anomaly.sampling import SampledRecipe, row_cap, uniform_sample
from aekit.anomaly.scores import ErrorAndCodeScore, threshold_at
from aekit.anomaly.table_score import NearestRows, TableScore
from aekit.anomaly.tabular import sized_batch, sized_epochs, sized_hidden_units
from aekit.data.table_files import open_table
from aekit.data.tables import ArrayTable
from aekit.sklearn import AutoencoderOutlierDetector


def _novelty(estimator: object) -> dict[str, str]:
    # contamination is the share of new normal rows flagged: its threshold, the conformal
    # quantile, flags one training row fewer than the 30 of 300 these checks count.
    reason = "contamination counts new normal rows, not training rows (one fewer flagged)"
    return {"check_outliers_train": reason, "check_outliers_fit_predict": reason}


@parametrize_with_checks(
    [AutoencoderOutlierDetector(epochs=2, random_state=0)], expected_failed_checks=_novelty
)
def test_scikit_learn_estimator_checks(
    estimator: AutoencoderOutlierDetector, check: object
) -> None:
    check(estimator)  # type: ignore[operator]


PLANE = np.random.default_rng(0).normal(size=(2, 8))  # one plane for every seed


def correlated(n: int, seed: int) -> np.ndarray:
    """Rows on a 2-d plane in 8 features: what an autoencoder learns to reconstruct."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)) @ PLANE + 0.05 * rng.normal(size=(n, 8))


def test_rows_off_the_normal_pattern_score_lower() -> None:
    normal = correlated(600, seed=0)
    test_normal = correlated(200, seed=10)
    anomalies = np.random.default_rng(1).normal(size=(40, 8)) * normal.std(axis=0)
    det = AutoencoderOutlierDetector(random_state=0).fit(normal)
    x = np.vstack([test_normal, anomalies])
    flags = np.r_[np.zeros(len(test_normal)), np.ones(len(anomalies))]
    assert roc_auc_score(flags, -det.score_samples(x)) > 0.95
    # predict and decision_function follow scikit-learn: -1 is an outlier, below 0.
    assert set(np.unique(det.predict(x))) == {-1, 1}
    np.testing.assert_array_equal(det.predict(x) == -1, det.decision_function(x) < 0)
    # The threshold flags `contamination` of the training rows, and about as many new ones.
    assert abs((det.predict(normal) == -1).mean() - 0.1) <= 1.01 / 600
    assert abs((det.predict(correlated(3000, seed=11)) == -1).mean() - 0.1) < 0.02


def test_errors_are_scored_in_the_scaled_space() -> None:
    # A feature in other units (×1e6) changes nothing once the features are standardised.
    x = correlated(400, seed=2)
    wide = x.copy()
    wide[:, 0] *= 1e6
    plain = AutoencoderOutlierDetector(random_state=0, epochs=5).fit(x)
    scaled = AutoencoderOutlierDetector(random_state=0, epochs=5).fit(wide)
    np.testing.assert_allclose(plain.score_samples(x), scaled.score_samples(wide), rtol=1e-3)


@pytest.mark.parametrize("scaling", ["standard", "robust", "minmax"])
def test_the_fitted_scaling_travels_with_the_model(scaling: str) -> None:
    x = correlated(300, seed=3)
    det = AutoencoderOutlierDetector(scaling=scaling, epochs=3, random_state=0).fit(x)
    again = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(again.score_samples(x * 2), det.score_samples(x * 2))
    center, scale = {
        "standard": (x.mean(0), x.std(0)),
        "robust": (np.median(x, 0), np.subtract(*np.percentile(x, [75, 25], axis=0))),
        "minmax": (x.min(0), x.max(0) - x.min(0)),
    }[scaling]
    network = again.networks_[0]
    np.testing.assert_allclose(network.center.numpy(), center, rtol=1e-10)
    np.testing.assert_allclose(network.scale.numpy(), scale, rtol=1e-10)


def test_sizes_follow_the_data() -> None:
    assert sized_hidden_units(3) == [8, 2] and sized_hidden_units(100) == [128, 20]
    # About 16 steps an epoch; at most 100 epochs, 10,000 steps and 300,000 rows seen.
    assert sized_batch(100) == 16 and sized_batch(2000) == 128 and sized_batch(10**6) == 512
    assert sized_epochs(1000, 64) == 100 and sized_epochs(1000, 16) == 100
    assert sized_epochs(12_000, 512) == 25 and sized_epochs(10**6, 512) == 5
    det = AutoencoderOutlierDetector(epochs=1, random_state=0).fit(correlated(100, seed=4))
    assert det.hidden_units_ == [16, 6]


def test_seeds_ensemble_averages_and_the_callers_random_state_is_kept() -> None:
    x = correlated(200, seed=5)
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    det = AutoencoderOutlierDetector(n_estimators=3, epochs=2, random_state=0).fit(x)
    assert np.random.rand() == expected  # fitting left numpy's global generator alone
    each = []
    for net, score in zip(det.networks_, det.scores_, strict=True):
        errors, codes, folds = net.errors_and_codes(x)
        parts = np.zeros(len(x))
        for m, member in enumerate(score.members_):
            # Member m scores the rows it never trained on (fold m), each part in units of
            # its mean over the rows it trained on: the same function for every row scored.
            trained, unseen = folds != m, folds == m
            np.testing.assert_allclose(
                [errors[m, trained].mean(), member.distances(codes[m, trained]).mean()],
                [member.error_mean_, member.distance_mean_],
            )
            distances = member.distances(codes[m, unseen])
            parts[unseen] = (
                errors[m, unseen] / member.error_mean_ + 0.5 * distances / member.distance_mean_
            )
        nearest = score.nearest_  # the 2 nearest other training rows, weight 20
        assert nearest is not None and nearest.k == 2 and score.code_weight == 0.5  # the defaults
        each.append(parts + 20 * nearest(x) / nearest.mean_)
    assert len(each) == 3 and not np.allclose(each[0], each[1])  # three seeds, three models
    np.testing.assert_allclose(det.score_samples(x), -np.mean(each, axis=0), rtol=1e-12)


def test_the_nearest_rows_part_is_in_units_of_each_features_range_and_its_training_mean() -> None:
    # Computed here from its definition, not with the part's own methods: features min-max
    # scaled by the training rows, the mean Euclidean distance to the 2 nearest other
    # training rows, over that mean on the training rows. Any other unit fails.
    train = correlated(300, seed=21) * [1, 10, 100, 1000, 1, 1, 1, 1]
    new = correlated(50, seed=22) * [1, 10, 100, 1000, 1, 1, 1, 1]
    low, span = train.min(axis=0), np.ptp(train, axis=0)

    def mean_nearest(rows: np.ndarray) -> np.ndarray:
        d = np.linalg.norm((rows - low)[:, None] / span - (train - low)[None] / span, axis=2)
        d[d == 0] = np.inf  # a row is not its own neighbour
        means: np.ndarray = np.sort(d, axis=1)[:, :2].mean(axis=1)
        return means

    part = NearestRows(2).fit(train)
    np.testing.assert_allclose(part(new), mean_nearest(new), rtol=1e-9)
    np.testing.assert_allclose(part.mean_, mean_nearest(train).mean(), rtol=1e-9)
    score = TableScore()  # what the detector adds: 20 times the distance over that mean
    score.nearest_, score.members_ = part, []
    members_none = cast(Any, _NoMembers())
    np.testing.assert_allclose(score(members_none, new), 20 * mean_nearest(new) / part.mean_)
    # A feature's unit (metres or millimetres) and origin change nothing.
    moved = NearestRows(2).fit(train * 1000 - 7)
    np.testing.assert_allclose(moved(new * 1000 - 7), part(new), rtol=1e-6)


class _NoMembers:
    """A cross-fitted network without members: the score is its nearest-rows part alone."""

    def errors_and_codes(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.zeros((0, len(rows))), np.zeros((0, len(rows), 1)), np.zeros(len(rows), int)


@pytest.mark.slow
def test_the_code_distance_finds_rows_that_follow_the_pattern_too_far() -> None:
    # Rows on the normal rows' plane but 3.5 standard deviations out in every direction:
    # reconstructed about as well as normal rows, while their codes lie far out.
    normal = correlated(600, seed=7)
    test_normal = correlated(200, seed=11)
    rng = np.random.default_rng(12)
    angle = rng.uniform(0, 2 * np.pi, size=40)
    on_plane = 3.5 * np.c_[np.cos(angle), np.sin(angle)] @ PLANE
    far = on_plane + 0.05 * rng.normal(size=(40, 8))
    x = np.vstack([test_normal, far])
    flags = np.r_[np.zeros(len(test_normal)), np.ones(len(far))]
    auroc = {}
    for weight in (0.0, 1.0):
        detector = AutoencoderOutlierDetector(code_weight=weight, n_neighbors=0, random_state=0)
        auroc[weight] = roc_auc_score(flags, -detector.fit(normal).score_samples(x))
    assert auroc[0.0] < 0.85 and auroc[1.0] > 0.95


def test_the_nearest_codes_find_codes_between_clusters_of_normal_ones() -> None:
    # Training codes in two clusters 4 apart; the test codes halfway between them lie near
    # the codes' mean, so one Gaussian over the codes ranks them as normal; their nearest
    # training codes are far. Errors equal: only the code parts differ.
    rng = np.random.default_rng(13)

    def clusters(n: int) -> np.ndarray:
        centers = np.c_[np.where(rng.random(n) < 0.5, -2.0, 2.0), np.zeros(n)]
        codes: np.ndarray = centers + rng.normal(scale=0.3, size=(n, 2))
        return codes

    codes = np.vstack([clusters(200), rng.normal(scale=0.3, size=(40, 2))])
    flags = np.r_[np.zeros(200), np.ones(40)]
    errors = np.ones(len(codes))
    auroc = {}
    for k in (0, 5):
        scorer = ErrorAndCodeScore(code_weight=1.0, neighbors=k).fit(np.ones(600), clusters(600))
        auroc[k] = roc_auc_score(flags, scorer(errors, codes))
    assert auroc[0] < 0.3 and auroc[5] > 0.95, auroc
    # A row's score does not depend on the rows scored with it.
    one = scorer(errors[:1], codes[:1])
    assert one[0] == scorer(errors, codes)[0]


def test_a_random_state_gives_the_same_scores_whatever_the_callers_threads_and_seeds() -> None:
    # Training pins one thread: float sums in another order would end early stopping elsewhere.
    # And the initial weights come from random_state, not from torch's global generator.
    x = correlated(2000, seed=6)  # batches large enough for torch to split sums over threads
    before = torch.get_num_threads()
    scores = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(threads)
            detector = AutoencoderOutlierDetector(epochs=3, random_state=4).fit(x)
            scores.append(detector.score_samples(x))
            assert torch.get_num_threads() == threads  # and gave the caller's count back
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(scores[0], scores[1])


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ({"scaling": "log"}, "scaling must be one of"),
        ({"hidden_units": []}, "hidden_units must be a list of 1 to 64 positive integers"),
        ({"hidden_units": (10**9,)}, "a network of .* parameters .* choose smaller layers"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"n_estimators": 1.5}, "n_estimators must be an integer >= 1"),
        ({"contamination": 0.7}, "contamination must be at most 0.5"),
        ({"contamination": 0}, "contamination must be a finite number > 0"),
        ({"validation_fraction": -0.1}, "validation_fraction must be a finite number >= 0"),
        ({"learning_rate": 0}, "learning_rate must be a finite number > 0"),
        ({"code_weight": -1}, "code_weight must be a finite number >= 0"),
        ({"random_state": -1}, "random_state must be an integer >= 0"),
        ({"verbose": 3}, "verbose must be below 3"),
    ],
)
def test_bad_settings_are_one_line_config_errors(setting: dict[str, object], says: str) -> None:
    with pytest.raises(aekit.ConfigError, match=says):
        AutoencoderOutlierDetector(**setting).fit(correlated(50, seed=6))  # type: ignore[arg-type]


@pytest.mark.parametrize("scaling", ["standard", "robust", "minmax"])
def test_finite_values_near_the_float64_limit_scale_or_are_named(scaling: str) -> None:
    x = correlated(60, seed=8)
    big = x.copy()
    big[:, 2] *= 1e300  # finite; its plain variance would overflow
    det = AutoencoderOutlierDetector(scaling=scaling, epochs=1, random_state=0).fit(big)
    plain = AutoencoderOutlierDetector(scaling=scaling, epochs=1, random_state=0).fit(x)
    np.testing.assert_allclose(det.score_samples(big), plain.score_samples(x), rtol=1e-4)
    beyond = x.copy()
    beyond[:, 5] = np.where(beyond[:, 5] > 0, 1.7e308, -1.7e308)  # a range over float64's
    if scaling == "standard":  # its spread, about 1.7e308, is a float64: it scales
        fitted = AutoencoderOutlierDetector(scaling=scaling, epochs=1).fit(beyond)
        assert np.isfinite(fitted.score_samples(beyond)).all()
        return
    with pytest.raises(aekit.InputError) as info:  # their range or IQR, 3.4e308, is not
        AutoencoderOutlierDetector(scaling=scaling, epochs=1).fit(beyond)
    message = str(info.value)
    assert "feature 5" in message and "too large" in message and "NaN" not in message


def test_scikit_learns_side_only_and_the_training_rows_scored_as_new_ones() -> None:
    rows = np.random.default_rng(20).normal(size=(201, 5))
    fitted = AutoencoderOutlierDetector(epochs=3, random_state=0).fit(rows)
    normality = fitted.score_samples(rows)
    # Training rows are scored by members that never trained on them, as new rows are.
    np.testing.assert_array_equal(-normality, fitted.training_scores_)
    assert fitted.offset_ == -threshold_at(-normality, 90)  # contamination 0.1
    np.testing.assert_array_equal(fitted.decision_function(rows), normality - fitted.offset_)
    assert (fitted.predict(rows) == -1).sum() == 19  # above the 182nd of 201: ceil(0.9 * 202)
    # PyOD's names and sign belong to aekit.pyod.AutoEncoder alone.
    for pyods in ("decision_scores_", "threshold_", "labels_", "predict_proba"):
        assert not hasattr(fitted, pyods), pyods


def test_verbose_prints_a_line_per_epoch_with_the_held_out_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    x = correlated(300, seed=7)
    AutoencoderOutlierDetector(epochs=4, patience=10, random_state=0).fit(x)
    assert capsys.readouterr().err == ""  # quiet by default, as scikit-learn's estimators
    AutoencoderOutlierDetector(epochs=4, patience=10, random_state=0, verbose=2).fit(x)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4
    assert all(" - mean loss " in line and " - held_out_loss " in line for line in lines)


# -- tables read in pieces: files, samples over the row cap, memory ------------------------


def write_parquet(path: Path, x: np.ndarray, row_group_size: int = 256) -> Path:
    columns = {f"f{i}": x[:, i] for i in range(x.shape[1])}
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def with_anomalies(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    test = np.vstack([correlated(n, seed), np.random.default_rng(seed).normal(size=(40, 8)) * 2])
    return test, np.r_[np.zeros(n), np.ones(40)]


def test_a_table_file_within_the_cap_scores_as_its_array(tmp_path: Path) -> None:
    x = correlated(400, seed=20)
    path = write_parquet(tmp_path / "rows.parquet", x)
    feather.write_feather(pa.table({f"f{i}": x[:, i] for i in range(8)}), tmp_path / "r.feather")
    test, _ = with_anomalies(100, seed=21)
    expected = AutoencoderOutlierDetector(epochs=5, random_state=0).fit(x).score_samples(test)
    for source in (path, str(tmp_path / "r.feather"), open_table(path)):
        det = AutoencoderOutlierDetector(epochs=5, random_state=0).fit(source)
        np.testing.assert_array_equal(det.score_samples(test), expected)
        assert det.table_columns_ == tuple(f"f{i}" for i in range(8))
        np.testing.assert_array_equal(-det.score_samples(path), det.training_scores_)


def test_a_table_over_the_cap_trains_on_samples_alike_from_every_source(tmp_path: Path) -> None:
    x = correlated(3000, seed=22)
    path = write_parquet(tmp_path / "rows.parquet", x)
    csv_path = tmp_path / "rows.csv"
    np.savetxt(csv_path, x, delimiter=",", header=",".join(f"f{i}" for i in range(8)), comments="")
    test, flags = with_anomalies(300, seed=23)
    settings: dict[str, Any] = {"max_rows": 500, "epochs": 6, "random_state": 0}
    from_array = AutoencoderOutlierDetector(**settings).fit(x)
    assert len(from_array.training_scores_) == 3000
    assert abs((from_array.predict(x) == -1).mean() - 0.1) <= 1.01 / 3000
    assert roc_auc_score(flags, -from_array.score_samples(test)) > 0.95
    for source in (path, csv_path):  # the same rows in the same order: the same samples
        det = AutoencoderOutlierDetector(**settings).fit(source)
        np.testing.assert_allclose(det.score_samples(test), from_array.score_samples(test))
        np.testing.assert_allclose(det.training_scores_, from_array.training_scores_)
    # The statistics stream over every row; the robust ones come from a uniform sample.
    network = from_array.networks_[0]
    np.testing.assert_allclose(network.center.numpy(), x.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(network.scale.numpy(), x.std(0), rtol=1e-10)
    robust = AutoencoderOutlierDetector(**settings, scaling="robust", n_estimators=2).fit(path)
    sample = uniform_sample(ArrayTable(x), 500, seed=0)
    for network in robust.networks_:
        np.testing.assert_allclose(network.center.numpy(), np.median(sample, 0), rtol=1e-10)


def test_the_sampled_recipe_holds_out_rows_and_draws_each_epoch_anew() -> None:
    table = ArrayTable(np.arange(2000.0).reshape(-1, 1))
    recipe = SampledRecipe.of(table, cap=300, seed=0, validation_fraction=0.1)
    assert (len(recipe.held_rows), recipe.rows_per_epoch, len(recipe.pool)) == (30, 270, 1800)
    assert not set(recipe.held_rows[:, 0].astype(int)) & set(recipe.pool)
    steps = recipe.steps_per_epoch
    batches = [features[:, 0] for features, _ in islice(recipe.input_fn()(), 2 * steps)]
    first, second = (set(np.concatenate(b).astype(int)) for b in (batches[:steps], batches[steps:]))
    assert len(first) == len(second) == 270 and first != second  # a new sample each epoch
    assert set(recipe.pool) >= first | second
    assert recipe.max_steps == recipe.epochs * recipe.steps_per_epoch
    assert row_cap(20) == 100_000 and row_cap(1000) == 8388 and row_cap(5, 123) == 123


def test_float32_arrays_and_memory_maps_are_read_a_chunk_at_a_time(tmp_path: Path) -> None:
    x = correlated(400, seed=24)
    det = AutoencoderOutlierDetector(epochs=3, random_state=0)
    x32 = x.astype(np.float32)
    table = det._table(x32, reset=True)
    assert isinstance(table, ArrayTable) and np.shares_memory(table.x, x32)  # no float64 copy
    np.save(tmp_path / "x.npy", x32)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    expected = det.fit(x32.astype(np.float64)).score_samples(x32.astype(np.float64))
    fitted = AutoencoderOutlierDetector(epochs=3, random_state=0).fit(mapped)
    np.testing.assert_array_equal(fitted.score_samples(mapped), expected)
    bad = x32.copy()
    bad[7, 3] = np.nan
    with pytest.raises(aekit.InputError, match="X: column '3' holds NaN or infinite values"):
        fitted.score_samples(bad)


def test_a_scored_table_must_have_the_fitted_columns(tmp_path: Path) -> None:
    x = correlated(200, seed=25)
    det = AutoencoderOutlierDetector(epochs=2, random_state=0).fit(
        write_parquet(tmp_path / "a.parquet", x)
    )
    renamed = tmp_path / "b.parquet"
    pq.write_table(pa.table({f"g{i}": x[:, i] for i in range(8)}), renamed)
    with pytest.raises(aekit.InputError, match="columns .* differ from the fitted ones"):
        det.score_samples(renamed)
    with pytest.raises(ValueError, match="X has 7 features, but .* is expecting 8 features"):
        det.score_samples(write_parquet(tmp_path / "c.parquet", x[:, :7]))
    with pytest.raises(aekit.InputError, match="no such file"):
        det.predict(tmp_path / "missing.parquet")
    assert det.predict(open_table(tmp_path / "a.parquet")).shape == (200,)
    assert det.fit(x).n_features_in_ == 8 and det.table_columns_ is None


MEMORY_CHILD = """
import sys
from aekit.anomaly import AutoencoderOutlierDetector

def status(key):
    with open("/proc/self/status") as f:
        return int(f.read().split(key + ":")[1].split()[0]) * 1024

path, warm = sys.argv[1], sys.argv[2]
# Warm up on a small table: torch, scikit-learn and pyarrow map their code and make their first
# buffers once, whatever the table's size. Then the peak RSS starts again from here.
AutoencoderOutlierDetector(epochs=1, max_rows=500, random_state=0).fit(warm).score_samples(warm)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
start = status("VmRSS")
det = AutoencoderOutlierDetector(epochs=1, max_rows=20_000, random_state=0).fit(path)
scores = det.score_samples(path)
assert len(scores) == len(det.training_scores_)
print(start, status("VmHWM"))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc")
def test_a_parquet_file_is_fitted_and_scored_without_holding_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(26)
    x = rng.normal(size=(400_000, 2)) @ rng.normal(size=(2, 20)) + 0.1 * rng.normal(
        size=(400_000, 20)
    )
    path = write_parquet(tmp_path / "big.parquet", x, row_group_size=50_000)
    table_bytes = x.nbytes  # 61 MiB in float64
    del x
    warm = write_parquet(tmp_path / "warm.parquet", correlated(2000, seed=27)[:, [0] * 20])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(aekit.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(path), str(warm)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    start, peak = map(int, done.stdout.split())
    extra = peak - start
    # Measured 70 to 90 MiB above the start: Parquet's reader buffers (about 30 MiB for row
    # groups of 50,000 rows), the per-row results (scores, labels, the row permutation: about
    # 40 bytes a row, 16 MiB), the 20,000-row samples, and blocks the allocator keeps. Holding
    # the table once in float64 would add its 61 MiB to that working set and fail.
    assert extra < table_bytes + 48 * 2**20, f"peak {extra / 2**20:.0f} MiB above the start"
