"""Env-steps per second: our PPO trainer vs Stable-Baselines3 PPO, same env and hyperparameters.

Both run in one invocation, each in its own child process (so peak RSS is per framework), with
n_steps 2048, minibatch 64, 10 epochs, lr 3e-4 constant, γ 0.99, λ 0.95, clip 0.2, ent 0.0,
vf 0.5, grad clip 0.5, 1 env, 64×64 tanh actor and critic, no reward normalization, no value
clipping (SB3's defaults). Ours also writes its checkpoints (every update); automatic rollback is
off so both do exactly the same learning work.

    .venv/bin/python bench/ppo_throughput.py [--steps 100000] [--envs CartPole-v1 ...] [--cuda]

Prints a table and writes bench/results/ppo_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def run_ours(env_id: str, steps: int, device: str, queue: Any) -> None:
    from artisan_trainer.config import load_config
    from artisan_trainer.ppo import PPOTrainer

    config = load_config(
        overrides=[
            f"env.id={env_id}",
            "ppo.stepsPerUpdate=2048",
            "ppo.batchSize=64",
            "ppo.epochs=10",
            "ppo.learningRate.schedule=constant",
            "ppo.entropy.initial=0.0",
            "ppo.entropy.final=0.0",
            "ppo.entropy.schedule=linear",
            "rewardNormalization.enabled=false",
            "rollback.enabled=false",
            "runtime.clipValueLoss=false",
            f"runtime.device={device}",
            "runtime.seed=0",
        ],
        environ={},
    )
    with tempfile.TemporaryDirectory() as directory:
        trainer = PPOTrainer(config, Path(directory))
        start = time.perf_counter()
        summary = trainer.train(steps)
        elapsed = time.perf_counter() - start
        trainer.close()
    queue.put(
        {
            "sps": summary.total_steps / elapsed,
            "steps": summary.total_steps,
            "mean_return_last_100": summary.mean_return_last_100,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def run_sb3(env_id: str, steps: int, queue: Any) -> None:
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor

    import artisan_trainer.env  # noqa: F401  (registers artisan/Fragrance-v0)

    torch.set_num_threads(1)  # the same threading as ours, so only the code differs
    env = Monitor(gym.make(env_id))
    model = PPO(
        "MlpPolicy", env, n_steps=2048, batch_size=64, n_epochs=10, learning_rate=3e-4, gamma=0.99,
        gae_lambda=0.95, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, seed=0,
        device="cpu", verbose=0,
    )  # fmt: skip
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    elapsed = time.perf_counter() - start
    returns = env.get_episode_rewards()[-100:]
    queue.put(
        {
            "sps": model.num_timesteps / elapsed,
            "steps": model.num_timesteps,
            "mean_return_last_100": sum(returns) / len(returns) if returns else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


def in_child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, queue))
    process.start()
    result: dict[str, Any] = queue.get()
    process.join()
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "artisan/Fragrance-v0"])
    parser.add_argument("--cuda", action="store_true", help="also run ours on CUDA")
    args = parser.parse_args()
    rows = []
    for env_id in args.envs:
        sb3 = in_child(run_sb3, env_id, args.steps)
        ours = in_child(run_ours, env_id, args.steps, "cpu")
        row = {"env": env_id, "sb3": sb3, "ours_cpu": ours, "speedup": ours["sps"] / sb3["sps"]}
        if args.cuda:
            row["ours_cuda"] = in_child(run_ours, env_id, args.steps, "cuda")
        rows.append(row)
    print(f"{'env':24} {'who':10} {'steps':>8} {'steps/s':>9} {'return(100)':>12} {'peak RSS MB':>12}")
    for row in rows:
        for who in ("sb3", "ours_cpu", "ours_cuda"):
            if who in row:
                r = row[who]
                ret = "-" if r["mean_return_last_100"] is None else f"{r['mean_return_last_100']:.2f}"
                rss = r["peak_rss_mb"]
                print(f"{row['env']:24} {who:10} {r['steps']:>8} {r['sps']:>9.0f} {ret:>12} {rss:>12.0f}")
        print(f"{row['env']:24} speedup ours/sb3 = {row['speedup']:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "ppo_throughput.json"
    out.write_text(
        json.dumps({"steps": args.steps, "python": sys.version.split()[0], "rows": rows}, indent=2) + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
