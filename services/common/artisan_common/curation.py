"""Feedback curation: which user ratings are kept for reward-model fitting and retuning (pure).

Thresholds are :class:`artisan_common.training.CurationSpec` (the seeds' defaults). A sample is
checked in this order and the first failed check is its rejection reason:

| check          | rejected when                                                     | reason                |
|----------------|-------------------------------------------------------------------|-----------------------|
| IFRA           | ``requireIfraCompliance`` and the formula broke an IFRA limit     | ifra_noncompliant     |
| response time  | below ``minResponseSeconds`` (a careless click)                   | response_too_fast     |
|                | above ``maxResponseSeconds`` (an abandoned session)               | response_too_slow     |
| rating range   | rating outside ``[minRating, maxRating]``                         | rating_out_of_range   |
| reward range   | reward outside ``[minReward, maxReward]``                         | reward_out_of_range   |
| rate limit     | ``maxSubmissionsPerUser`` already submitted in the window         | rate_limited          |
| outlier        | reward beyond ``zScoreThreshold`` (robust) deviations from centre | outlier               |

Every submission counts towards the rate limit, accepted or not (spam is what it guards against).
The outlier test needs at least :data:`MIN_OUTLIER_REFERENCE` reference rewards and a non-zero
spread; with the ``mad`` method the spread is 1.4826 × MAD, which equals σ for normal data.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from artisan_common.training import CurationSpec

MIN_OUTLIER_REFERENCE = 10
"""Fewer reference rewards than this and no sample is called an outlier (the spread is meaningless)."""
MAD_TO_SIGMA = 1.4826
"""Scales the median absolute deviation to the standard deviation of a normal distribution."""


class RejectionReason(enum.StrEnum):
    IFRA_NONCOMPLIANT = "ifra_noncompliant"
    RESPONSE_TOO_FAST = "response_too_fast"
    RESPONSE_TOO_SLOW = "response_too_slow"
    RATING_OUT_OF_RANGE = "rating_out_of_range"
    REWARD_OUT_OF_RANGE = "reward_out_of_range"
    RATE_LIMITED = "rate_limited"
    OUTLIER = "outlier"


REASON_ORDER: tuple[RejectionReason, ...] = tuple(RejectionReason)
"""The order checks run in; also the order of reasons in reports."""


class FeedbackSample(BaseModel):
    """One user rating of one generated formula."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_id: str = Field(min_length=1, max_length=128)
    """Unique id; storing the same id twice is a no-op."""
    user_id: str = Field(min_length=1, max_length=128)
    """Who rated (rate limiting is per user)."""
    brief_id: str | None = None
    """Id of the brief the formula answered, when the brief is stored elsewhere."""
    formula_id: str | None = None
    """Id of the rated formula, when stored elsewhere."""
    brief: dict[str, Any] | None = None
    """The brief itself (structured fields), when carried with the feedback."""
    formula: dict[str, float] | None = None
    """The formula itself: ingredient id → proportion of the concentrate."""
    rating: float = Field(allow_inf_nan=False)
    """User rating (1–5 stars by default; the range is checked by curation, not here)."""
    reward: float = Field(allow_inf_nan=False)
    """Scalar reward derived from the rating for RL (checked by curation)."""
    response_seconds: float = Field(ge=0, allow_inf_nan=False)
    """Time between showing the formula and the rating."""
    ifra_compliant: bool
    """The rated formula passed the IFRA check."""
    created_at: AwareDatetime
    """When the rating was submitted (timezone-aware)."""
    variant: str | None = None
    """A/B variant or model revision that produced the formula."""


@dataclass(frozen=True)
class CurationHistory:
    """What a single-sample decision needs to know about the past."""

    user_submissions: Sequence[datetime] = ()
    """Earlier submission times of the same user (any outcome)."""
    reference_rewards: Sequence[float] = ()
    """Recent curated rewards the outlier test compares against."""


def _spread(values: npt.NDArray[np.float64], method: Literal["zscore", "mad"]) -> tuple[float, float]:
    """(centre, scale) of the values: mean/std, or median/(1.4826·MAD)."""
    if method == "mad":
        centre = float(np.median(values))
        return centre, MAD_TO_SIGMA * float(np.median(np.abs(values - centre)))
    return float(values.mean()), float(values.std())


def is_outlier(reward: float, reference: Sequence[float], spec: CurationSpec) -> bool:
    """Reward further than zScoreThreshold deviations from the reference centre."""
    if len(reference) < MIN_OUTLIER_REFERENCE:
        return False
    centre, scale = _spread(np.asarray(reference, dtype=np.float64), spec.outlier_method)
    if scale <= 0:
        return False
    return abs(reward - centre) / scale > spec.z_score_threshold


def _window(spec: CurationSpec) -> timedelta:
    return timedelta(minutes=spec.rate_limit_window_minutes)


def filter_sample(
    sample: FeedbackSample, spec: CurationSpec, history: CurationHistory | None = None
) -> RejectionReason | None:
    """The reason to reject this sample, or None to keep it (checks in the module table's order)."""
    history = history or CurationHistory()
    if spec.require_ifra_compliance and not sample.ifra_compliant:
        return RejectionReason.IFRA_NONCOMPLIANT
    if sample.response_seconds < spec.min_response_seconds:
        return RejectionReason.RESPONSE_TOO_FAST
    if sample.response_seconds > spec.max_response_seconds:
        return RejectionReason.RESPONSE_TOO_SLOW
    if not spec.min_rating <= sample.rating <= spec.max_rating:
        return RejectionReason.RATING_OUT_OF_RANGE
    if not spec.min_reward <= sample.reward <= spec.max_reward:
        return RejectionReason.REWARD_OUT_OF_RANGE
    since = sample.created_at - _window(spec)
    recent = sum(1 for t in history.user_submissions if since < t <= sample.created_at)
    if recent >= spec.max_submissions_per_user:
        return RejectionReason.RATE_LIMITED
    if is_outlier(sample.reward, history.reference_rewards, spec):
        return RejectionReason.OUTLIER
    return None


@dataclass(frozen=True)
class BatchResult:
    """Outcome of :func:`filter_batch`: one entry per input sample, in input order."""

    reasons: tuple[RejectionReason | None, ...]
    """Rejection reason per sample (None = kept)."""
    accepted_mask: npt.NDArray[np.bool_] = field(repr=False)
    """True where the sample is kept."""

    def accepted(self, samples: Sequence[FeedbackSample]) -> list[FeedbackSample]:
        return [s for s, keep in zip(samples, self.accepted_mask, strict=True) if keep]


def _prior_in_window(user_codes: npt.NDArray[np.int64], times: npt.NDArray[np.float64], window: float) -> Any:
    """For each sample, how many earlier samples of the same user fall in (t − window, t].

    Vectorized: sort by (user, time), then shift each user's times by a per-user offset larger than
    the whole time span, so one ``searchsorted`` over the flat array never crosses users.
    """
    n = len(times)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(n), times, user_codes))
    t0 = times.min()
    span = float(times.max() - t0) + window + 1.0
    keys = (times[order] - t0) + user_codes[order].astype(np.float64) * span
    first_in_window = np.searchsorted(keys, keys - window, side="right")
    counts_sorted = np.arange(n) - first_in_window
    counts = np.empty(n, dtype=np.int64)
    counts[order] = counts_sorted
    return counts


def filter_batch(
    samples: Sequence[FeedbackSample],
    spec: CurationSpec,
    prior_submissions: Mapping[str, Sequence[datetime]] | None = None,
    reference_rewards: Sequence[float] = (),
) -> BatchResult:
    """Curate many samples at once with numpy (same rules and order as :func:`filter_sample`).

    Samples of the same user count against each other in time order, plus ``prior_submissions``
    (user → earlier submission times, e.g. from the store). The outlier test compares each reward
    with ``reference_rewards`` plus the batch rewards that passed every earlier check.
    """
    n = len(samples)
    reasons = np.full(n, -1, dtype=np.int64)  # index into REASON_ORDER, -1 = kept

    def reject(mask: npt.NDArray[np.bool_], reason: RejectionReason) -> None:
        reasons[(reasons < 0) & mask] = REASON_ORDER.index(reason)

    if n:
        rating = np.fromiter((s.rating for s in samples), dtype=np.float64, count=n)
        reward = np.fromiter((s.reward for s in samples), dtype=np.float64, count=n)
        response = np.fromiter((s.response_seconds for s in samples), dtype=np.float64, count=n)
        compliant = np.fromiter((s.ifra_compliant for s in samples), dtype=np.bool_, count=n)
        if spec.require_ifra_compliance:
            reject(~compliant, RejectionReason.IFRA_NONCOMPLIANT)
        reject(response < spec.min_response_seconds, RejectionReason.RESPONSE_TOO_FAST)
        reject(response > spec.max_response_seconds, RejectionReason.RESPONSE_TOO_SLOW)
        reject((rating < spec.min_rating) | (rating > spec.max_rating), RejectionReason.RATING_OUT_OF_RANGE)
        reject((reward < spec.min_reward) | (reward > spec.max_reward), RejectionReason.REWARD_OUT_OF_RANGE)

        # Rate limit: earlier batch samples of the user plus the user's stored submissions.
        window = spec.rate_limit_window_minutes * 60.0
        users = [s.user_id for s in samples]
        codes_by_user = {u: i for i, u in enumerate(dict.fromkeys(users))}
        user_codes = np.fromiter((codes_by_user[u] for u in users), dtype=np.int64, count=n)
        times = np.fromiter((s.created_at.timestamp() for s in samples), dtype=np.float64, count=n)
        counts = _prior_in_window(user_codes, times, window)
        for user, earlier in (prior_submissions or {}).items():
            if user not in codes_by_user or not earlier:
                continue
            mine = user_codes == codes_by_user[user]
            stored = np.sort(np.fromiter((t.timestamp() for t in earlier), dtype=np.float64))
            hi = np.searchsorted(stored, times[mine], side="right")
            lo = np.searchsorted(stored, times[mine] - window, side="right")
            counts[mine] += hi - lo
        reject(counts >= spec.max_submissions_per_user, RejectionReason.RATE_LIMITED)

        passed = reasons < 0
        reference = np.concatenate([np.asarray(reference_rewards, dtype=np.float64), reward[passed]])
        if len(reference) >= MIN_OUTLIER_REFERENCE:
            centre, scale = _spread(reference, spec.outlier_method)
            if scale > 0:
                reject(np.abs(reward - centre) / scale > spec.z_score_threshold, RejectionReason.OUTLIER)
    return BatchResult(
        reasons=tuple(None if r < 0 else REASON_ORDER[r] for r in reasons.tolist()),
        accepted_mask=reasons < 0,
    )


class SummaryStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    mean: float
    std: float
    min: float
    max: float
    median: float

    @classmethod
    def of(cls, values: Sequence[float]) -> SummaryStats | None:
        if not values:
            return None
        array = np.asarray(values, dtype=np.float64)
        return cls(
            mean=float(array.mean()),
            std=float(array.std()),
            min=float(array.min()),
            max=float(array.max()),
            median=float(np.median(array)),
        )


class ReasonCount(BaseModel):
    model_config = ConfigDict(frozen=True)

    count: int
    percent: float
    """Share of all samples, in percent."""


class QualityReport(BaseModel):
    """What curation did to a batch: totals, why samples were dropped, what the kept ones look like."""

    model_config = ConfigDict(frozen=True)

    total: int
    accepted: int
    rejected: int
    acceptance_rate: float
    """accepted / total (0 for an empty batch)."""
    rejections: dict[str, ReasonCount]
    """Reason → count and percent of total, for every reason that occurred."""
    reward: SummaryStats | None
    """Statistics of the accepted rewards."""
    rating: SummaryStats | None
    """Statistics of the accepted ratings."""


def quality_report(samples: Sequence[FeedbackSample], result: BatchResult) -> QualityReport:
    total = len(samples)
    kept = result.accepted(samples)
    rejections: dict[str, ReasonCount] = {}
    for reason in REASON_ORDER:
        count = sum(1 for r in result.reasons if r is reason)
        if count:
            rejections[reason.value] = ReasonCount(count=count, percent=100.0 * count / total)
    return QualityReport(
        total=total,
        accepted=len(kept),
        rejected=total - len(kept),
        acceptance_rate=len(kept) / total if total else 0.0,
        rejections=rejections,
        reward=SummaryStats.of([s.reward for s in kept]),
        rating=SummaryStats.of([s.rating for s in kept]),
    )


def curate(
    samples: Sequence[FeedbackSample],
    spec: CurationSpec,
    prior_submissions: Mapping[str, Sequence[datetime]] | None = None,
    reference_rewards: Sequence[float] = (),
) -> tuple[list[FeedbackSample], QualityReport]:
    """Filter a batch and report on it in one call."""
    result = filter_batch(samples, spec, prior_submissions, reference_rewards)
    return result.accepted(samples), quality_report(samples, result)


def rating_to_reward(rating: float, spec: CurationSpec) -> float:
    """Map a rating linearly onto the reward range's symmetric part: min rating → −1, max rating → +1."""
    middle = (spec.min_rating + spec.max_rating) / 2
    half = (spec.max_rating - spec.min_rating) / 2
    value = (rating - middle) / half
    return float(max(-1.0, min(1.0, value))) if math.isfinite(value) else 0.0
