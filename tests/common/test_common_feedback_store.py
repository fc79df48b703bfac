from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from artisan_common.curation import FeedbackSample, RejectionReason
from artisan_common.feedback_store import FeedbackStore, SQLiteFeedbackStore

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def sample(i: int, user: str = "u", minutes: float | None = None, rating: float = 4.0) -> FeedbackSample:
    return FeedbackSample(
        sample_id=f"s{i}",
        user_id=user,
        rating=rating,
        reward=0.5,
        response_seconds=10,
        ifra_compliant=True,
        created_at=T0 + timedelta(minutes=i if minutes is None else minutes),
        formula={"vanillin": 0.5, "bergamot_oil": 0.5},
    )


def test_store_is_idempotent_and_round_trips(tmp_path: Path) -> None:
    with SQLiteFeedbackStore(tmp_path / "fb" / "feedback.db") as store:
        assert isinstance(store, FeedbackStore)
        assert store.add(sample(1)) is True
        assert store.add(sample(1)) is False
        assert store.get("s1") == sample(1)
        assert store.get("nope") is None
        assert store.counts() == {"accepted": 1}
    with SQLiteFeedbackStore(tmp_path / "fb" / "feedback.db") as reopened:
        assert reopened.get("s1") == sample(1)
        mode = reopened._conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_rate_limit_query_and_curated_listing(tmp_path: Path) -> None:
    with SQLiteFeedbackStore(tmp_path / "f.db") as store:
        store.add(sample(1, "alice", minutes=0))
        store.add(sample(2, "alice", minutes=30), RejectionReason.OUTLIER)
        store.add(sample(3, "alice", minutes=90))
        store.add(sample(4, "bob", minutes=95))
        now = T0 + timedelta(minutes=100)
        recent = store.recent_user_submissions("alice", now, timedelta(minutes=60))
        assert recent == [T0 + timedelta(minutes=90)]
        assert len(store.user_submissions_since("alice", T0 - timedelta(seconds=1))) == 3
        assert [s.sample_id for s in store.curated()] == ["s1", "s3", "s4"]
        assert [s.sample_id for s in store.curated(limit=2)] == ["s3", "s4"]
        assert store.counts() == {"accepted": 3, "outlier": 1}
        with pytest.raises(ValueError, match="limit"):
            store.curated(limit=-1)


def test_failed_batch_changes_nothing(tmp_path: Path) -> None:
    with SQLiteFeedbackStore(tmp_path / "f.db") as store:
        store.add(sample(1))
        bad = sample(2).model_copy(update={"created_at": datetime(2025, 1, 1)})  # naive: refused mid-batch
        with pytest.raises(ValueError, match="timezone-aware"):
            store.add_many([(sample(3), None), (bad, None)])
        assert store.get("s3") is None
        assert store.add_many([(sample(3), None), (sample(1), None)]) == 1


def test_concurrent_writers_from_threads(tmp_path: Path) -> None:
    with SQLiteFeedbackStore(tmp_path / "f.db") as store:

        def write(offset: int) -> None:
            for i in range(50):
                store.add(sample(offset * 1000 + i, user=f"t{offset}"))

        threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.counts() == {"accepted": 200}
