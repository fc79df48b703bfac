"""Observing the trainer pod: a terminated container's exit code and termination message."""

from __future__ import annotations

from artisan_operator.cluster.observe import pod_observation
from artisan_operator.policy.training_run import JobObservation, job_state


def pod(state: dict[str, object], phase: str = "Failed") -> dict[str, object]:
    return {
        "metadata": {"name": "run-trainer-0-abc"},
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "trainer", "restartCount": 0, "state": state}],
        },
    }


def test_terminated_container_gives_exit_code_and_message() -> None:
    text = '{"step": 1700, "lastCheckpoint": 1650, "outcome": "RollbacksExhausted", "message": "3 rollbacks"}'
    observed = pod_observation(pod({"terminated": {"exitCode": 3, "message": text}}))
    assert (observed.exit_code, observed.termination_message) == (3, text)
    state = job_state(JobObservation(name="run-trainer-0", attempt=0, failed=True), observed)
    assert state.termination is not None
    assert (state.termination.step, state.termination.outcome) == (1700, "RollbacksExhausted")
    assert state.termination.rollbacks_exhausted


def test_running_container_has_no_termination() -> None:
    observed = pod_observation(pod({"running": {"startedAt": "2025-01-01T00:00:00Z"}}, phase="Running"))
    assert (observed.exit_code, observed.termination_message) == (None, None)
    assert job_state(JobObservation(name="run-trainer-0", attempt=0, active=1), observed).termination is None


def test_terminated_without_message_keeps_only_the_exit_code() -> None:
    observed = pod_observation(pod({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))
    state = job_state(JobObservation(name="run-trainer-0", attempt=0, failed=True), observed)
    assert state.termination is not None
    assert (state.termination.exit_code, state.termination.outcome) == (137, None)
    assert not state.termination.rollbacks_exhausted
