"""PPO in one readable loop: config → env → agent → rollout → update (after CleanRL's ppo.py).

The math lives in :mod:`artisan_trainer.algo`, the schedules in :mod:`.schedules`, reward scaling
in :mod:`.normalization`, checkpoints in :mod:`.checkpoints` and the rollback decisions in
:mod:`.rollback`; this module wires them together in :meth:`PPOTrainer.train`.

Speed notes: torch runs single-threaded by default (tiny MLPs lose to threading overhead), rollout
buffers are preallocated, log-probabilities and entropies are computed directly from logits (no
distribution objects), and the actor and critic are evaluated once per step. At a batch of a few
envs the cost is per-operation dispatch, not arithmetic, so the rollout loop writes numpy arrays
that the update reads as tensors without a copy, and on the CPU it acts in numpy
(:class:`HostActor`, noise still from torch's generator); on an accelerator it acts with torch
under ``inference_mode``. The update shuffles once per epoch and slices its minibatches.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torch.nn import functional

from artisan_trainer import env as _fragrance_env  # registers artisan/Fragrance-v0
from artisan_trainer.algo import (
    approx_kl,
    categorical_logp_entropy,
    clip_fraction,
    clipped_surrogate_loss,
    compute_gae,
    explained_variance,
    gaussian_logp_entropy,
    normalize_advantages,
    value_loss,
)
from artisan_trainer.checkpoints import CheckpointError, CheckpointManager
from artisan_trainer.config import TrainerConfig
from artisan_trainer.envstate import restore_env, snapshot_env
from artisan_trainer.normalization import RewardNormalizer
from artisan_trainer.rollback import (
    Anomaly,
    DetectorSettings,
    DetectorState,
    can_roll_back,
    detect_reward_drop,
    learning_rate_scale_after,
    observe_update,
    relative_value_loss,
    reset_streaks,
    rollback_candidates,
)
from artisan_trainer.schedules import entropy_coef_at, learning_rate_at

_fragrance_env.register()
log = logging.getLogger(__name__)

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
FloatArray32 = npt.NDArray[np.float32]
RETURN_WINDOW = 100
"""Episodes behind ``mean_return_last_100`` and the best-checkpoint score."""


# ---------------------------------------------------------------------------------------------
# Environment and agent
# ---------------------------------------------------------------------------------------------
def make_vector_env(env_id: str, env_kwargs: dict[str, Any], num_envs: int) -> gym.vector.SyncVectorEnv:
    """``num_envs`` copies of ``env_id``; a finished episode is reset in the same step (final obs in info)."""

    def make() -> gym.Env[Any, Any]:
        try:
            return gym.make(env_id, **env_kwargs)
        except (gym.error.Error, TypeError) as exc:
            raise ValueError(f"env: cannot make {env_id!r}: {exc}") from exc

    return gym.vector.SyncVectorEnv(
        [make for _ in range(num_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


def _mlp(sizes: list[int], out: int, out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [_init(nn.Linear(fan_in, fan_out), math.sqrt(2)), nn.Tanh()]
    layers.append(_init(nn.Linear(sizes[-1], out), out_gain))
    return nn.Sequential(*layers)


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class Agent(nn.Module):
    """Separate actor and critic MLPs; categorical policy for Discrete, diagonal Gaussian for Box."""

    def __init__(self, obs_dim: int, action_space: gym.Space[Any], hidden: list[int]) -> None:
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            assert isinstance(action_space, gym.spaces.Discrete)
            n_out = int(action_space.n)
        elif isinstance(action_space, gym.spaces.Box):
            n_out = int(np.prod(action_space.shape))
        else:
            raise ValueError(f"unsupported action space {action_space}: use Discrete or Box")
        self.critic = _mlp([obs_dim, *hidden], 1, 1.0)
        self.actor = _mlp([obs_dim, *hidden], n_out, 0.01)
        self.log_std = nn.Parameter(torch.zeros(n_out), requires_grad=not self.discrete)
        self._critic_layers = [m for m in self.critic if isinstance(m, nn.Linear)]
        self._actor_layers = [m for m in self.actor if isinstance(m, nn.Linear)]

    @staticmethod
    def _mlp_forward(layers: list[nn.Linear], x: Tensor) -> Tensor:
        """Same result as calling the Sequential, without nn.Module call overhead (hot path)."""
        for layer in layers[:-1]:
            x = functional.linear(x, layer.weight, layer.bias).tanh_()  # in place: one allocation less
        last = layers[-1]
        return functional.linear(x, last.weight, last.bias)

    def value(self, obs: Tensor) -> Tensor:
        return self._mlp_forward(self._critic_layers, obs).squeeze(-1)

    def act(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sample actions; returns (action, log-probability, value)."""
        out = self._mlp_forward(self._actor_layers, obs)
        if self.discrete:
            # Gumbel-max sampling: argmax(logits − log E), E ~ Exp(1), is a categorical draw.
            action = (out - torch.empty_like(out).exponential_().log()).argmax(-1)
            logp = out.log_softmax(-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
        else:
            noise = torch.randn_like(out)
            action = (noise * self.log_std.exp()).add_(out)
            # (action − mean)/std is the noise itself, so the Gaussian log-density needs no division.
            logp = noise.pow(2).sum(-1).mul_(-0.5).sub_(self.log_std.sum() + _LOG_SQRT_2PI * out.shape[-1])
        return action, logp, self.value(obs)

    def evaluate(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(log-probability, entropy, value) of given actions under the current policy."""
        out = self._mlp_forward(self._actor_layers, obs)
        if self.discrete:
            logp, entropy = categorical_logp_entropy(out, actions)
        else:
            logp, entropy = gaussian_logp_entropy(out, self.log_std, actions)
        return logp, entropy, self.value(obs)


class HostActor:
    """:meth:`Agent.act` in numpy, over views of the agent's CPU parameters (for the rollout).

    At a batch of a few envs a torch operation costs microseconds of dispatch for nanoseconds of
    arithmetic; numpy's overhead is a fraction of that, which halves the cost of acting. The
    parameters are shared, not copied, so optimizer steps and checkpoint restores show through;
    build one per rollout (the standard deviation is cached: log_std only changes in updates).
    The noise is drawn from torch's generator exactly as :meth:`Agent.act` draws it, so seeding
    and the checkpointed RNG state mean the same. Results equal ``act``'s up to float rounding.
    """

    def __init__(self, agent: Agent) -> None:
        self.discrete = agent.discrete
        self.actor = [_host_layer(layer) for layer in agent._actor_layers]
        self.critic = [_host_layer(layer) for layer in agent._critic_layers]
        with torch.no_grad():
            log_std = agent.log_std.detach()
            self.std = log_std.exp().numpy()
            n_out = log_std.shape[0]
            self.logp_offset = (log_std.sum() + _LOG_SQRT_2PI * n_out).numpy()

    @staticmethod
    def _forward(layers: list[tuple[FloatArray32, FloatArray32]], x: FloatArray32) -> FloatArray32:
        for weight_t, bias in layers[:-1]:
            h = x @ weight_t
            h += bias
            x = np.tanh(h, out=h)
        weight_t, bias = layers[-1]
        out: FloatArray32 = x @ weight_t
        out += bias
        return out

    def act(self, obs: FloatArray32) -> tuple[npt.NDArray[Any], FloatArray32, FloatArray32]:
        """(action, log-probability, value) for a batch of observations, as :meth:`Agent.act`."""
        out = self._forward(self.actor, obs)
        if self.discrete:
            exp_noise = torch.empty(out.shape).exponential_().numpy()
            action: npt.NDArray[Any] = (out - np.log(exp_noise)).argmax(-1)
            shifted = out - out.max(-1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
            logp = np.take_along_axis(log_probs, action[:, None], -1)[:, 0]
        else:
            noise = torch.randn(out.shape).numpy()
            action = noise * self.std
            action += out
            logp = (noise * noise).sum(-1)
            logp *= -0.5
            logp -= self.logp_offset
        return action, logp, self._forward(self.critic, obs)[:, 0]


def _host_layer(layer: nn.Linear) -> tuple[FloatArray32, FloatArray32]:
    """(Wᵀ, b) as numpy views of a CPU layer's parameters (x @ Wᵀ + b is the layer)."""
    return layer.weight.detach().numpy().T, layer.bias.detach().numpy()


# ---------------------------------------------------------------------------------------------
# What one update reports, and what a run returns
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpdateStats:
    update: int
    step: int
    learning_rate: float
    entropy_coef: float
    policy_loss: float
    value_loss: float
    relative_value_loss: float
    """Value loss over the mean square of its targets (what the spike detector judges)."""
    entropy: float
    approx_kl: float
    clip_fraction: float
    explained_variance: float
    mean_return: float | None
    episodes: int
    sps: float
    reward_raw_mean: float
    reward_normalized_mean: float
    normalizer_mean: float
    normalizer_std: float


@dataclass
class RollbackRecord:
    step: int
    reason: str
    target_step: int
    target_checkpoint: str
    detail: str


@dataclass
class TrainingSummary:
    env: str
    total_steps: int
    requested_total_steps: int
    updates: int
    episodes: int
    mean_return_last_100: float | None
    sps: float
    wall_seconds: float
    device: str
    status: str
    """completed, interrupted (SIGTERM), rollbacks_exhausted or no_rollback_target."""
    rollbacks: list[RollbackRecord] = field(default_factory=list)
    checkpoints: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    """Why the run stopped early; empty when it completed or was interrupted."""
    failed_rollback: RollbackRecord | None = None
    """The rollback that was needed but not done (target_step −1)."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class TrainingHooks:
    """Callbacks for progress reporting and metrics (all optional no-ops)."""

    def on_update(
        self, stats: UpdateStats, raw: npt.NDArray[np.float32], norm: npt.NDArray[np.float32]
    ) -> None:
        pass

    def on_checkpoint(self, step: int, best_step: int | None) -> None:
        pass

    def on_rollback(self, record: RollbackRecord, total: int, exhausted: bool) -> None:
        pass

    def on_episode_window(self, windows: dict[int, float]) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------
class PPOTrainer:
    def __init__(
        self,
        config: TrainerConfig,
        checkpoint_dir: Path,
        *,
        resume: bool = False,
        resume_at_or_before: int | None = None,
        hooks: TrainingHooks | None = None,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        # -- config ------------------------------------------------------------------------
        self.config = config
        self.hooks = hooks or TrainingHooks()
        self.stop_requested = stop_requested
        runtime = config.runtime
        if runtime.torch_threads:
            torch.set_num_threads(runtime.torch_threads)
        use_cuda = runtime.device == "cuda" or (runtime.device == "auto" and torch.cuda.is_available())
        self.device = torch.device("cuda" if use_cuda else "cpu")
        torch.manual_seed(runtime.seed)
        self.shuffle_rng = torch.Generator().manual_seed(runtime.seed)

        # -- env -----------------------------------------------------------------------------
        self.num_envs = runtime.num_envs
        self.envs = make_vector_env(config.env.id, dict(config.env.config), self.num_envs)
        obs_space = self.envs.single_observation_space
        if not isinstance(obs_space, gym.spaces.Box):
            raise ValueError(
                f"env.id: {config.env.id} has a {obs_space} observation space; PPO here needs Box"
            )
        self.obs_shape = obs_space.shape
        action_space = self.envs.single_action_space
        self.envs.action_space.seed(runtime.seed)
        obs, _ = self.envs.reset(seed=runtime.seed)
        self.next_obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)

        # -- agent ---------------------------------------------------------------------------
        self.agent = Agent(int(np.prod(self.obs_shape)), action_space, runtime.hidden_sizes).to(self.device)
        # fused: one kernel per step for all parameters instead of a Python loop over them.
        self.optimizer = torch.optim.Adam(
            self.agent.parameters(), lr=config.ppo.learning_rate.initial, eps=1e-5, fused=True
        )
        self.discrete = self.agent.discrete
        if isinstance(action_space, gym.spaces.Box):
            self.action_low = np.asarray(action_space.low, dtype=np.float32)
            self.action_high = np.asarray(action_space.high, dtype=np.float32)
        self.action_shape: tuple[int, ...] = () if self.discrete else tuple(action_space.shape or ())
        self.normalizer = RewardNormalizer(config.reward_normalization, self.num_envs, config.ppo.gamma)

        # -- rollout buffers (preallocated) ----------------------------------------------------
        # The rollout writes host numpy arrays; the update reads the *_buf tensors. On the CPU these
        # share memory (no copy); on an accelerator the rollout copies them over once at its end.
        steps, n = config.steps_per_env, self.num_envs
        self.obs_np = np.zeros((steps, n, *self.obs_shape), dtype=np.float32)
        self.actions_np = np.zeros((steps, n, *self.action_shape), dtype=np.float32)
        self.logp_np = np.zeros((steps, n), dtype=np.float32)
        self.values_np = np.zeros((steps, n), dtype=np.float32)
        self.obs_buf = self._device_view(self.obs_np)
        self.actions_buf = self._device_view(self.actions_np)
        self.logp_buf = self._device_view(self.logp_np)
        self.values_buf = self._device_view(self.values_np)
        self.rewards_np = np.zeros((steps, n), dtype=np.float32)
        self.raw_rewards_np = np.zeros((steps, n), dtype=np.float32)
        self.dones_np = np.zeros((steps, n), dtype=np.float32)

        # -- bookkeeping -----------------------------------------------------------------------
        self.step = 0
        self.update = 0
        self.episode_return = np.zeros(n, dtype=np.float64)
        history = config.rollback.window + config.rollback.baseline_window
        self.returns: collections.deque[float] = collections.deque(maxlen=max(history, RETURN_WINDOW))
        self.return_end_steps: collections.deque[int] = collections.deque(maxlen=self.returns.maxlen)
        self.episodes = 0
        self.lr_scale = 1.0
        self.rollbacks: list[RollbackRecord] = []
        self.failed_rollback: RollbackRecord | None = None
        """The rollback that was needed but could not be done (exhausted, or no target)."""
        self.message = ""
        """Why the run stopped early (empty when it did not)."""
        self.notice = ""
        """What the start did that a person should know (an old manifest set aside)."""
        self.detector = DetectorState()
        self.detector_settings = DetectorSettings.from_spec(
            config.rollback,
            kl_consecutive=runtime.kl_consecutive_updates,
            loss_consecutive=runtime.loss_spike_consecutive_updates,
            loss_floor=runtime.value_loss_floor,
        )
        self.checkpoints = CheckpointManager(
            checkpoint_dir, config.checkpoints.keep, config.checkpoints.keep_best
        )
        self.last_checkpoint_step = -1
        self.injected_anomalies: dict[int, Anomaly] = {}
        """Test hook: update number → anomaly reported as if a detector had fired."""

        if not resume and self.checkpoints.has_checkpoints:
            # Never mix two runs' checkpoints in one manifest (rollback and "best" would cross runs).
            raise CheckpointError(
                f"--checkpoint-dir {checkpoint_dir}: already holds checkpoints of an earlier run "
                f"(steps {self.checkpoints.steps}); pass --resume to continue it, or use an empty directory"
            )
        # resume_at_or_before (the operator's rollback to a step): the newest verified checkpoint at or
        # before it; the newer ones are the abandoned branch and are dropped, as after a rollback.
        resumed = self.checkpoints.load_latest_valid(at_or_before=resume_at_or_before) if resume else None
        if resume and resumed is None and resume_at_or_before is None:
            resumed = self._load_best_if_valid()
        if resumed is not None:
            self._restore(resumed, keep_rollback_history=False)
            # Newer ones were refused (or, with resume_at_or_before, abandoned): not targets any more.
            self.checkpoints.discard_after(self.step)
        elif resume and resume_at_or_before is not None:
            raise CheckpointError(
                f"--resume-from-step {resume_at_or_before}: no verified checkpoint at or before that step"
            )
        else:
            if resume and self.checkpoints.has_checkpoints:
                aside = self.checkpoints.set_aside_manifest()
                self.notice = (
                    f"--resume: no checkpoint in {checkpoint_dir} passed verification; starting from "
                    f"step 0, the old manifest moved to {aside}"
                )
                log.warning("%s", self.notice)
            self._save_checkpoint()  # step 0: there is always a rollback target
        self.rollbacks_at_start = len(self.rollbacks)
        """Rollbacks restored from the checkpoint (made by earlier processes of this run)."""

    def _load_best_if_valid(self) -> dict[str, Any] | None:
        """On resume when no kept checkpoint loads: the best one, if it does."""
        if self.checkpoints.best is None:
            return None
        try:
            return self.checkpoints.load_best()
        except CheckpointError as exc:
            log.error("%s", exc)
            self.checkpoints.refused.append(str(exc))
            return None

    def _device_view(self, host: npt.NDArray[np.float32]) -> Tensor:
        """The tensor the update reads: ``host`` itself on the CPU, a device copy otherwise."""
        if self.device.type == "cpu":
            return torch.from_numpy(host)
        return torch.zeros(host.shape, dtype=torch.float32, device=self.device)

    def _to_device(self, host: npt.NDArray[Any]) -> Tensor:
        tensor = torch.from_numpy(host)
        return tensor if self.device.type == "cpu" else tensor.to(self.device)

    # -----------------------------------------------------------------------------------------
    @property
    def mean_return(self) -> float | None:
        if not self.returns:
            return None
        recent = list(self.returns)[-RETURN_WINDOW:]
        return float(np.mean(recent))

    @property
    def process_rollbacks(self) -> list[RollbackRecord]:
        """The rollbacks this process made (the operator counts them per Job attempt)."""
        return self.rollbacks[self.rollbacks_at_start :]

    def train(self, total_steps: int | None = None) -> TrainingSummary:
        """Run updates until ``total_steps`` environment steps (or a stop); returns the summary."""
        config, ppo = self.config, self.config.ppo
        total = total_steps if total_steps is not None else ppo.total_steps
        start_time, start_step = time.perf_counter(), self.step
        status = "completed"
        while self.step < total:
            if self.stop_requested():
                status = "interrupted"
                self._save_checkpoint(force=True)
                break
            update_start = time.perf_counter()
            # 1. schedules: learning rate (scaled down after rollbacks) and entropy coefficient
            learning_rate = learning_rate_at(ppo.learning_rate, self.step) * self.lr_scale
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate
            entropy_coef = entropy_coef_at(ppo.entropy, self.step)

            # 2. rollout
            last_values = self._collect_rollout()

            # 3. advantages
            rewards = torch.from_numpy(self.rewards_np).to(self.device)
            dones = torch.from_numpy(self.dones_np).to(self.device)
            advantages, returns = compute_gae(
                rewards, self.values_buf, dones, last_values, gamma=ppo.gamma, gae_lambda=ppo.gae_lambda
            )

            # 4. update
            losses = self._update(advantages, returns, entropy_coef)
            self.update += 1
            stats = UpdateStats(
                update=self.update,
                step=self.step,
                learning_rate=learning_rate,
                entropy_coef=entropy_coef,
                policy_loss=losses["policy_loss"],
                value_loss=losses["value_loss"],
                relative_value_loss=relative_value_loss(losses["value_loss"], float(returns.pow(2).mean())),
                entropy=losses["entropy"],
                approx_kl=losses["approx_kl"],
                clip_fraction=losses["clip_fraction"],
                explained_variance=explained_variance(self.values_buf.flatten(), returns.flatten()),
                mean_return=self.mean_return,
                episodes=self.episodes,
                sps=ppo.steps_per_update / max(time.perf_counter() - update_start, 1e-9),
                reward_raw_mean=float(self.raw_rewards_np.mean()),
                reward_normalized_mean=float(self.rewards_np.mean()),
                normalizer_mean=self.normalizer.mean,
                normalizer_std=self.normalizer.std,
            )
            self.hooks.on_update(stats, self.raw_rewards_np, self.rewards_np)
            self.hooks.on_episode_window(self._reward_windows())

            # 5. stability: roll back on an anomaly, otherwise checkpoint on schedule
            anomaly = self._detect(stats)
            if anomaly is not None:
                failed = self._roll_back(anomaly)
                if failed is not None:
                    status = failed
                    break
                continue
            if (
                self.step // config.checkpoints.interval
                > self.last_checkpoint_step // config.checkpoints.interval
            ):
                self._save_checkpoint()
        elapsed = time.perf_counter() - start_time
        return self._summary(total, status, (self.step - start_step) / max(elapsed, 1e-9), elapsed)

    # -----------------------------------------------------------------------------------------
    def _collect_rollout(self) -> Tensor:
        """Fill the buffers with stepsPerUpdate environment steps; returns V(next obs)."""
        gamma = self.config.ppo.gamma
        agent = self.agent
        host = HostActor(agent) if self.device.type == "cpu" else None
        obs: npt.NDArray[Any] = self.next_obs.cpu().numpy()
        for t in range(self.config.steps_per_env):
            self.obs_np[t] = obs
            if host is not None:
                action_np, logp_np, value_np = host.act(self.obs_np[t])
            else:
                with torch.inference_mode():
                    action, logp, value = agent.act(self._to_device(self.obs_np[t]))
                action_np, logp_np, value_np = action.cpu().numpy(), logp.cpu().numpy(), value.cpu().numpy()
            self.actions_np[t] = action_np
            self.logp_np[t] = logp_np
            self.values_np[t] = value_np
            env_action = action_np
            if not self.discrete:
                env_action = np.clip(action_np, self.action_low, self.action_high)
            obs, reward, terminated, truncated, info = self.envs.step(env_action)
            self.step += self.num_envs
            done = terminated | truncated
            self._track_episodes(reward, done)
            scaled = self.normalizer(reward.astype(np.float64), done)
            if truncated.any():
                # Bootstrap a time-limit cut from V(final obs): the episode did not really end.
                cut = np.flatnonzero(truncated & ~terminated)
                if len(cut):
                    final = np.stack([info["final_obs"][i] for i in cut])
                    with torch.no_grad():
                        final_values = agent.value(
                            torch.as_tensor(final, dtype=torch.float32, device=self.device)
                        )
                    scaled = scaled.copy()
                    scaled[cut] += gamma * final_values.cpu().numpy()
            self.raw_rewards_np[t] = reward
            self.rewards_np[t] = scaled
            self.dones_np[t] = done
        self.next_obs = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if self.device.type != "cpu":
            for staged, device in (
                (self.obs_np, self.obs_buf),
                (self.actions_np, self.actions_buf),
                (self.logp_np, self.logp_buf),
                (self.values_np, self.values_buf),
            ):
                device.copy_(torch.from_numpy(staged))
        with torch.no_grad():
            return agent.value(self.next_obs)

    def _track_episodes(self, reward: npt.NDArray[Any], done: npt.NDArray[np.bool_]) -> None:
        self.episode_return += reward
        if done.any():
            ended = self.episode_return[done].tolist()
            self.returns.extend(ended)
            self.return_end_steps.extend([self.step] * len(ended))
            self.episodes += len(ended)
            self.episode_return[done] = 0.0

    def _update(self, advantages: Tensor, returns: Tensor, entropy_coef: float) -> dict[str, float]:
        """Epochs × minibatches of clipped-surrogate updates; returns the mean losses and diagnostics."""
        ppo, runtime = self.config.ppo, self.config.runtime
        b_obs = self.obs_buf.reshape(-1, *self.obs_shape)
        b_actions = self.actions_buf.reshape(-1, *self.action_shape)
        b_logp = self.logp_buf.reshape(-1)
        b_values = self.values_buf.reshape(-1)
        b_adv = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        batch = b_obs.shape[0]
        value_clip = ppo.clip_range if runtime.clip_value_loss else None
        totals = torch.zeros(4, device=self.device)  # policy loss, value loss, entropy, clip fraction
        minibatches = 0
        params = list(self.agent.parameters())
        for _epoch in range(ppo.epochs):
            order = torch.randperm(batch, generator=self.shuffle_rng).to(self.device)
            # Shuffle once per epoch; each minibatch is then a slice (a view), not six gathers.
            e_obs, e_actions, e_logp = b_obs[order], b_actions[order], b_logp[order]
            e_values, e_adv, e_returns = b_values[order], b_adv[order], b_returns[order]
            for start in range(0, batch, ppo.batch_size):
                mb = slice(start, start + ppo.batch_size)
                old_logp = e_logp[mb]
                new_logp, entropy, new_values = self.agent.evaluate(e_obs[mb], e_actions[mb])
                adv = normalize_advantages(e_adv[mb]) if runtime.normalize_advantages else e_adv[mb]
                pg_loss = clipped_surrogate_loss(new_logp, old_logp, adv, ppo.clip_range)
                v_loss = value_loss(new_values, e_values[mb], e_returns[mb], value_clip)
                entropy_mean = entropy.mean()
                loss = pg_loss - entropy_coef * entropy_mean + runtime.vf_coef * v_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                nn.utils.clip_grad_norm_(params, runtime.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():  # summed on the device: no host sync per minibatch
                    clipped = clip_fraction(new_logp, old_logp, ppo.clip_range)
                    totals += torch.stack([pg_loss, v_loss, entropy_mean, clipped])
                minibatches += 1
        means = (totals / minibatches).tolist()
        out = dict(zip(("policy_loss", "value_loss", "entropy", "clip_fraction"), means, strict=True))
        with torch.no_grad():  # KL of the final policy against the rollout policy, on the whole batch
            final_logp, _, _ = self.agent.evaluate(b_obs, b_actions)
            out["approx_kl"] = float(approx_kl(b_logp, final_logp))
        return out

    # -----------------------------------------------------------------------------------------
    def _reward_windows(self) -> dict[int, float]:
        windows: dict[int, float] = {}
        values = list(self.returns)
        for size in (self.config.rollback.window, self.config.rollback.baseline_window):
            if values:
                windows[size] = float(np.mean(values[-size:]))
        return windows

    def _detect(self, stats: UpdateStats) -> Anomaly | None:
        injected = self.injected_anomalies.pop(self.update, None)
        if not self.config.rollback.enabled:
            return None
        self.detector, anomaly = observe_update(
            self.detector, self.step, stats.approx_kl, stats.relative_value_loss, self.detector_settings
        )
        if anomaly is None:
            anomaly = detect_reward_drop(
                list(self.returns), list(self.return_end_steps), self.config.rollback
            )
        return injected or anomaly

    def _roll_back(self, anomaly: Anomaly) -> str | None:
        """Restore a checkpoint from before the anomaly; None when done, else the status that ends the run.

        The restored state is saved again at once, now carrying the rollback history and the lowered
        learning rate, so a crash right after a rollback cannot forget either (maxRollbacks holds
        across restarts).
        """
        spec = self.config.rollback
        if not can_roll_back(len(self.rollbacks), spec):
            return self._rollback_failed(anomaly, "rollbacks_exhausted", f"maxRollbacks={spec.max_rollbacks}")
        best = self.checkpoints.best
        candidates = rollback_candidates(
            self.checkpoints.steps, anomaly.since_step, spec.steps_back, best.step if best else None
        )
        loaded = self.checkpoints.load_first_valid(candidates)
        if loaded is None:
            tried = ", ".join(map(str, candidates)) or "none kept"
            return self._rollback_failed(
                anomaly, "no_rollback_target", f"no loadable checkpoint (tried steps: {tried})"
            )
        source, state = loaded
        record = RollbackRecord(
            step=self.step,
            reason=anomaly.reason.value,
            target_step=int(state["step"]),
            target_checkpoint=source.file,
            detail=anomaly.detail,
        )
        history = [*self.rollbacks, record]
        self._restore(state, keep_rollback_history=True)
        self.rollbacks = history
        self.lr_scale = learning_rate_scale_after(len(history), self.config.runtime.rollback_lr_factor)
        self.detector = reset_streaks(self.detector)
        self.checkpoints.discard_after(self.step)
        self._save_checkpoint(force=True)  # persists the history and lr_scale (see the docstring)
        log.warning(
            "rollback #%d at step %d (%s: %s) to step %d from %s; learning rate × %g",
            len(history), record.step, record.reason, record.detail, record.target_step,
            record.target_checkpoint, self.lr_scale,
        )  # fmt: skip
        self.hooks.on_rollback(record, len(history), not can_roll_back(len(history), spec))
        return None

    def _rollback_failed(self, anomaly: Anomaly, status: str, why: str) -> str:
        record = RollbackRecord(self.step, anomaly.reason.value, -1, "", f"{anomaly.detail}; {why}")
        self.failed_rollback = record
        exhausted = status == "rollbacks_exhausted"
        self.message = (
            f"{'rollbacks exhausted' if exhausted else 'no rollback target'} at step {self.step}: "
            f"{anomaly.reason.value} ({anomaly.detail}); {why}"
        )
        log.error("%s", self.message)
        self.hooks.on_rollback(record, len(self.rollbacks), exhausted)
        return status

    # -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimizer, normalizer, RNGs, envs, counters."""
        return {
            "policy": {
                "actor": self.agent.actor.state_dict(),
                "log_std": self.agent.log_std.detach().clone(),
            },
            "value": self.agent.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedules": {"lr_scale": self.lr_scale},
            "normalizer": self.normalizer.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "shuffle": self.shuffle_rng.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            },
            "trainer": {
                "update": self.update,
                "episodes": self.episodes,
                "episode_return": torch.from_numpy(self.episode_return.copy()),
                "returns": list(self.returns),
                "return_end_steps": list(self.return_end_steps),
                "detector": dataclasses.asdict(self.detector),
                "rollbacks": [dataclasses.asdict(r) for r in self.rollbacks],
            },
            "env": {
                "next_obs": self.next_obs.cpu(),
                "envs": [snapshot_env(env) for env in self.envs.envs],
            },
            "config": json.dumps(self.config.to_wire(), sort_keys=True),
        }

    def _restore(self, state: dict[str, Any], keep_rollback_history: bool) -> None:
        self.agent.actor.load_state_dict(state["policy"]["actor"])
        with torch.no_grad():
            self.agent.log_std.copy_(state["policy"]["log_std"])
        self.agent.critic.load_state_dict(state["value"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scale = float(state["schedules"]["lr_scale"])
        self.normalizer.load_state_dict(state["normalizer"])
        torch.set_rng_state(state["rng"]["torch"])
        self.shuffle_rng.set_state(state["rng"]["shuffle"])
        if self.device.type == "cuda" and state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        trainer = state["trainer"]
        self.step = int(state["step"])
        self.update = int(trainer["update"])
        self.episodes = int(trainer["episodes"])
        self.episode_return = trainer["episode_return"].numpy().copy()
        self.returns.clear()
        self.returns.extend(trainer["returns"])
        self.return_end_steps.clear()
        self.return_end_steps.extend(trainer["return_end_steps"])
        self.detector = DetectorState(**trainer["detector"])
        if not keep_rollback_history:
            self.rollbacks = [RollbackRecord(**r) for r in trainer["rollbacks"]]
        self.next_obs = state["env"]["next_obs"].to(self.device)
        for env, snapshot in zip(self.envs.envs, state["env"]["envs"], strict=True):
            restore_env(env, snapshot)
        self.last_checkpoint_step = self.step

    def _save_checkpoint(self, force: bool = False) -> None:
        if self.last_checkpoint_step == self.step and not force:
            return
        self.checkpoints.save(self.state_dict(), self.step, self.mean_return)
        self.last_checkpoint_step = self.step
        best = self.checkpoints.best
        self.hooks.on_checkpoint(self.step, best.step if best else None)

    def _summary(self, total: int, status: str, sps: float, elapsed: float) -> TrainingSummary:
        best = self.checkpoints.best
        latest = self.checkpoints.latest
        return TrainingSummary(
            env=self.config.env.id,
            total_steps=self.step,
            requested_total_steps=total,
            updates=self.update,
            episodes=self.episodes,
            mean_return_last_100=self.mean_return,
            sps=sps,
            wall_seconds=elapsed,
            device=self.device.type,
            status=status,
            rollbacks=list(self.rollbacks),
            checkpoints={
                "directory": str(self.checkpoints.directory),
                "latest_step": latest.step if latest else None,
                "best_step": best.step if best else None,
                "best_mean_return": best.mean_return if best else None,
                "kept": [r.file for r in self.checkpoints.records],
                "refused": list(self.checkpoints.refused),
                "notice": self.notice,
            },
            message=self.message,
            failed_rollback=self.failed_rollback,
        )

    def close(self) -> None:
        self.envs.close()
