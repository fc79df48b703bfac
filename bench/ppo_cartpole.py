"""CartPole-v1 with CleanRL's default PPO hyperparameters: can we reach a mean return ≥ 475?

CleanRL ppo.py defaults: 4 envs × 128 steps, lr 2.5e-4 annealed linearly to 0 over the run,
4 minibatches (batch 128), 4 epochs, clip 0.2, entropy 0.01, value 0.5, γ 0.99, λ 0.95, grad
clip 0.5, advantage normalization, clipped value loss; no reward normalization. CleanRL reports
490 ± 6 at 500k steps. Automatic rollback stays on (its default thresholds), checkpoints too.

    .venv/bin/python bench/ppo_cartpole.py [--steps 500000] [--seeds 1 2 3]

Prints a table and writes bench/results/ppo_cartpole.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from artisan_trainer.config import load_config
from artisan_trainer.ppo import PPOTrainer

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 475.0


def run(seed: int, steps: int) -> dict[str, object]:
    config = load_config(
        overrides=[
            "env.id=CartPole-v1",
            "runtime.numEnvs=4",
            f"runtime.seed={seed}",
            "ppo.stepsPerUpdate=512",
            "ppo.batchSize=128",
            "ppo.epochs=4",
            "ppo.learningRate.initial=2.5e-4",
            "ppo.learningRate.final=1e-10",  # CleanRL anneals to 0; the API requires final > 0
            "ppo.learningRate.schedule=linear",
            f"ppo.learningRate.decaySteps={steps}",
            "ppo.entropy.initial=0.01",
            "ppo.entropy.final=0.01",
            "ppo.entropy.schedule=linear",
            "rewardNormalization.enabled=false",
            "checkpoints.interval=10000",
        ],
        environ={},
    )
    with tempfile.TemporaryDirectory() as directory:
        trainer = PPOTrainer(config, Path(directory))
        start = time.perf_counter()
        summary = trainer.train(steps)
        elapsed = time.perf_counter() - start
        trainer.close()
    return {
        "seed": seed,
        "steps": summary.total_steps,
        "mean_return_last_100": summary.mean_return_last_100,
        "episodes": summary.episodes,
        "sps": summary.total_steps / elapsed,
        "rollbacks": [r.__dict__ for r in summary.rollbacks],
        "reached_target": (summary.mean_return_last_100 or 0) >= TARGET,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = parser.parse_args()
    rows = [run(seed, args.steps) for seed in args.seeds]
    print(f"{'seed':>4} {'steps':>8} {'return(100)':>12} {'steps/s':>8} {'rollbacks':>9} {'≥475':>5}")
    for row in rows:
        ret = row["mean_return_last_100"]
        print(
            f"{row['seed']:>4} {row['steps']:>8} {ret:>12.1f} {row['sps']:>8.0f} "
            f"{len(row['rollbacks']):>9} {'yes' if row['reached_target'] else 'no':>5}"  # type: ignore[arg-type]
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "ppo_cartpole.json"
    out.write_text(json.dumps({"target": TARGET, "runs": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
