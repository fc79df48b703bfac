"""The whole `make demo` story, as a user runs it: real processes, the operator, Prometheus when installed.

It takes about 2.5 minutes here. It is the one test that sees the story's parts work together (the
canary promotion hold, the next rollout, the A/B winner, the downshift), so it runs in `make test`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from artisan_operator.sandbox.report import REQUIRED_EVENTS

REPO = Path(__file__).resolve().parents[2]
OPERATOR_EVENTS = {
    ("TrainingRun/demo-ppo", "RolledBack"),
    ("Canary/demo-pin", "Promoted"),
    ("Canary/demo-pin", "Aborted"),
    ("ABExperiment/demo-modes", "WinnerFound"),
    ("ModelPin/demo-pin", "Downshifted"),
    ("ModelPin/demo-pin", "Recovered"),
}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(720)
def test_the_full_demo_story_happens_within_ten_minutes(tmp_path: Path) -> None:
    report = tmp_path / "report"
    command = [str(Path(sys.executable).with_name("artisan")), "sandbox", "demo", "--story", "full"]
    command += ["--report", str(report)]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=700, check=False)
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]

    document = json.loads((report / "events.json").read_text())
    assert document["complete"] is True
    assert document["missing"] == []
    assert document["failure"] is None
    assert document["wallSeconds"] < 600
    seen = {(event["kind"], event["type"]) for event in document["events"]}
    assert seen >= set(REQUIRED_EVENTS)
    # The operator acted, not only the story's own drills: its Kubernetes Events say so.
    posted = {(event["object"], event["reason"]) for event in document["kubernetesEvents"]}
    assert posted >= OPERATOR_EVENTS, sorted(posted)
    # The trainer's in-process rollback reached the TrainingRun's status (termination message).
    final = [e for e in document["events"] if e["kind"] == "TrainingRun" and e["type"] == "Status"][-1]
    assert "phase Succeeded" in final["message"]
    assert "rollbacks in status: 0" not in final["message"]
    assert (report / "index.html").stat().st_size > 0
