from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from artisan_common.curation import (
    CurationHistory,
    FeedbackSample,
    RejectionReason,
    filter_batch,
    filter_sample,
    is_outlier,
    quality_report,
)
from artisan_common.training import CurationSpec

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def sample(i: int = 0, **overrides: object) -> FeedbackSample:
    fields: dict[str, object] = {
        "sample_id": f"s{i}",
        "user_id": f"u{i}",
        "rating": 4.0,
        "reward": 0.5,
        "response_seconds": 30.0,
        "ifra_compliant": True,
        "created_at": T0 + timedelta(minutes=i),
    }
    fields.update(overrides)
    return FeedbackSample.model_validate(fields)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({}, None),
        ({"ifra_compliant": False, "response_seconds": 1.0}, RejectionReason.IFRA_NONCOMPLIANT),
        ({"response_seconds": 1.9}, RejectionReason.RESPONSE_TOO_FAST),
        ({"response_seconds": 2.0}, None),
        ({"response_seconds": 600.5}, RejectionReason.RESPONSE_TOO_SLOW),
        ({"rating": 5.5}, RejectionReason.RATING_OUT_OF_RANGE),
        ({"rating": 0.5}, RejectionReason.RATING_OUT_OF_RANGE),
        ({"reward": -10.5}, RejectionReason.REWARD_OUT_OF_RANGE),
        ({"reward": 10.0}, None),
    ],
)
def test_filter_sample_reasons(overrides: dict[str, object], reason: RejectionReason | None) -> None:
    assert filter_sample(sample(**overrides), CurationSpec()) is reason


def test_ifra_check_can_be_disabled() -> None:
    spec = CurationSpec(require_ifra_compliance=False)
    assert filter_sample(sample(ifra_compliant=False), spec) is None


def test_rate_limit_five_per_user_per_hour() -> None:
    spec = CurationSpec()
    now = T0 + timedelta(hours=2)
    five_recent = [now - timedelta(minutes=m) for m in (1, 10, 20, 30, 59)]
    assert (
        filter_sample(sample(created_at=now), spec, CurationHistory(five_recent))
        is RejectionReason.RATE_LIMITED
    )
    four_recent_one_old = [*five_recent[:4], now - timedelta(minutes=61)]
    assert filter_sample(sample(created_at=now), spec, CurationHistory(four_recent_one_old)) is None


@pytest.mark.parametrize("method", ["zscore", "mad"])
def test_outlier_against_reference(method: str) -> None:
    spec = CurationSpec(outlier_method=method)  # type: ignore[arg-type]
    rng = random.Random(1)
    reference = [rng.gauss(0.0, 1.0) for _ in range(500)]
    assert is_outlier(5.0, reference, spec)
    assert not is_outlier(1.0, reference, spec)
    assert not is_outlier(5.0, reference[:5], spec)  # too few reference values to judge
    history = CurationHistory(reference_rewards=reference)
    assert filter_sample(sample(reward=5.0), spec, history) is RejectionReason.OUTLIER


def test_mad_is_robust_where_zscore_is_not() -> None:
    # A few huge rewards inflate the std so much that z-score misses a clear outlier; MAD does not.
    reference = [0.0, 0.1, -0.1, 0.05, -0.05] * 10 + [9.0] * 5
    assert not is_outlier(3.0, reference, CurationSpec(outlier_method="zscore"))
    assert is_outlier(3.0, reference, CurationSpec(outlier_method="mad"))


def random_samples(n: int, seed: int) -> list[FeedbackSample]:
    rng = random.Random(seed)
    return [
        sample(
            i,
            user_id=f"u{rng.randrange(6)}",
            rating=rng.choice([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            reward=rng.uniform(-12, 12),
            response_seconds=rng.choice([1.0, 5.0, 100.0, 700.0]),
            ifra_compliant=rng.random() > 0.1,
            created_at=T0 + timedelta(minutes=rng.uniform(0, 300)),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_filter_equals_sample_by_sample(seed: int) -> None:
    spec = CurationSpec(z_score_threshold=100.0)  # outliers judged separately below
    samples = random_samples(300, seed)
    result = filter_batch(samples, spec)
    ordered = sorted(range(len(samples)), key=lambda i: (samples[i].created_at, i))
    expected: dict[int, RejectionReason | None] = {}
    seen: dict[str, list[datetime]] = {}
    for i in ordered:
        s = samples[i]
        expected[i] = filter_sample(s, spec, CurationHistory(seen.get(s.user_id, [])))
        seen.setdefault(s.user_id, []).append(s.created_at)
    assert list(result.reasons) == [expected[i] for i in range(len(samples))]
    assert RejectionReason.RATE_LIMITED in result.reasons
    assert None in result.reasons


def test_batch_counts_stored_submissions_towards_the_rate_limit() -> None:
    spec = CurationSpec()
    now = T0 + timedelta(hours=5)
    new = [sample(0, user_id="alice", created_at=now), sample(1, user_id="bob", created_at=now)]
    stored = {"alice": [now - timedelta(minutes=m) for m in (1, 2, 3, 4, 5)], "carol": [now]}
    result = filter_batch(new, spec, prior_submissions=stored)
    assert result.reasons == (RejectionReason.RATE_LIMITED, None)


def test_batch_outliers_and_quality_report() -> None:
    spec = CurationSpec(max_submissions_per_user=1000)
    samples = [sample(i, reward=0.1 * (i % 5), rating=float(1 + i % 5)) for i in range(40)]
    samples.append(sample(40, reward=9.5))
    samples.append(sample(41, response_seconds=0.5))
    result = filter_batch(samples, spec)
    assert result.reasons[40] is RejectionReason.OUTLIER
    report = quality_report(samples, result)
    assert (report.total, report.accepted, report.rejected) == (42, 40, 2)
    assert report.rejections["outlier"].percent == pytest.approx(100 / 42)
    assert report.rejections["response_too_fast"].count == 1
    assert report.rating is not None
    assert report.reward is not None
    assert report.rating.mean == pytest.approx(3.0)
    assert (report.rating.min, report.rating.max, report.rating.median) == (1.0, 5.0, 3.0)
    assert report.reward.max == pytest.approx(0.4)


def test_empty_batch_report() -> None:
    result = filter_batch([], CurationSpec())
    report = quality_report([], result)
    assert (report.total, report.acceptance_rate, report.reward) == (0, 0.0, None)


def test_feedback_sample_refuses_naive_datetimes_and_nan() -> None:
    with pytest.raises(ValueError, match="created_at"):
        sample(created_at=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="rating"):
        sample(rating=float("nan"))
