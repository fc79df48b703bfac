"""Where feedback samples live: a small interface and its embedded SQLite implementation.

The :class:`FeedbackStore` protocol is what the ensemble (writer) and the trainer (reader) use, so a
PostgreSQL store can follow without touching them. :class:`SQLiteFeedbackStore` uses WAL journaling
(readers do not block the writer), one transaction per call, and is idempotent on ``sample_id``:
storing the same sample twice keeps the first copy and reports ``False``. One connection guarded by
a lock makes it safe to call from FastAPI's worker threads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from artisan_common.curation import FeedbackSample, RejectionReason

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    sample_id        TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    created_at       REAL NOT NULL,
    accepted         INTEGER,
    rejection_reason TEXT,
    payload          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_user_time ON feedback (user_id, created_at);
CREATE INDEX IF NOT EXISTS feedback_accepted_time ON feedback (accepted, created_at);
"""


@runtime_checkable
class FeedbackStore(Protocol):
    def add(self, sample: FeedbackSample, rejection: RejectionReason | None = None) -> bool:
        """Store a sample with its curation outcome; False when the sample id already exists."""
        ...

    def get(self, sample_id: str) -> FeedbackSample | None:
        """The sample with this id, or None."""
        ...

    def user_submissions_since(self, user_id: str, since: datetime) -> list[datetime]:
        """Submission times of this user after ``since`` (any outcome), oldest first."""
        ...

    def curated(self, limit: int | None = None) -> list[FeedbackSample]:
        """Accepted samples, the newest ``limit`` of them, returned oldest first."""
        ...

    def counts(self) -> dict[str, int]:
        """Number of samples per outcome: ``accepted`` or a rejection reason."""
        ...

    def close(self) -> None: ...


def _timestamp(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return moment.timestamp()


class SQLiteFeedbackStore:
    """Feedback in one SQLite file (or ``:memory:``), WAL mode, transactional and idempotent."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # check_same_thread=False: the lock, not the thread, serializes access.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def add(self, sample: FeedbackSample, rejection: RejectionReason | None = None) -> bool:
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO feedback (sample_id, user_id, created_at, accepted, rejection_reason,"
                " payload) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    sample.sample_id,
                    sample.user_id,
                    _timestamp(sample.created_at),
                    0 if rejection is not None else 1,
                    rejection.value if rejection is not None else None,
                    sample.model_dump_json(),
                ),
            )
            return cursor.rowcount == 1

    def add_many(self, items: Sequence[tuple[FeedbackSample, RejectionReason | None]]) -> int:
        """Store many samples in one transaction; returns how many were new."""
        added = 0
        with self._transaction() as conn:
            for sample, rejection in items:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO feedback (sample_id, user_id, created_at, accepted,"
                    " rejection_reason, payload) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        sample.sample_id,
                        sample.user_id,
                        _timestamp(sample.created_at),
                        0 if rejection is not None else 1,
                        rejection.value if rejection is not None else None,
                        sample.model_dump_json(),
                    ),
                )
                added += cursor.rowcount
        return added

    def get(self, sample_id: str) -> FeedbackSample | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT payload FROM feedback WHERE sample_id = ?", (sample_id,)
            ).fetchone()
        return None if row is None else FeedbackSample.model_validate_json(row[0])

    def user_submissions_since(self, user_id: str, since: datetime) -> list[datetime]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT created_at FROM feedback WHERE user_id = ? AND created_at > ? ORDER BY created_at",
                (user_id, _timestamp(since)),
            ).fetchall()
        return [datetime.fromtimestamp(row[0], tz=UTC) for row in rows]

    def recent_user_submissions(self, user_id: str, now: datetime, window: timedelta) -> list[datetime]:
        """Submission times of the user within ``window`` before ``now`` (for the rate limit)."""
        return [t for t in self.user_submissions_since(user_id, now - window) if t <= now]

    def curated(self, limit: int | None = None) -> list[FeedbackSample]:
        query = "SELECT payload FROM feedback WHERE accepted = 1 ORDER BY created_at DESC, sample_id DESC"
        params: tuple[int, ...] = ()
        if limit is not None:
            if limit < 0:
                raise ValueError("limit must be ≥ 0")
            query += " LIMIT ?"
            params = (limit,)
        with self._lock:
            rows = self._conn.execute(query, params).fetchall()
        return [FeedbackSample.model_validate_json(row[0]) for row in reversed(rows)]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT COALESCE(rejection_reason, 'accepted'), COUNT(*) FROM feedback GROUP BY 1"
            ).fetchall()
        return {str(reason): int(count) for reason, count in rows}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteFeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
