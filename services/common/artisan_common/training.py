"""The training configuration shared by the TrainingRun API and the trainer (torch-free).

Field names are the public contract of ARCHITECTURE.md §2.1; defaults are the seeds' values.
The operator embeds :class:`TrainingConfig` in ``TrainingRun.spec`` and hands it to the trainer
pod as YAML; the trainer loads the same model, so both sides agree on every name and bound.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import Field, model_validator

from artisan_common.model import ApiModel, CelRule, invariant_error

FRAGRANCE_ENV_ID = "artisan/Fragrance-v0"


class EnvSpec(ApiModel):
    id: str = Field(default=FRAGRANCE_ENV_ID, min_length=1, max_length=200)
    """The gymnasium environment id: artisan/Fragrance-v0 or any registered id such as CartPole-v1."""
    config: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments passed to gymnasium.make for this environment."""


class LearningRateSchedule(ApiModel):
    initial: float = Field(default=3.0e-4, gt=0, le=1)
    """Learning rate at step 0."""
    final: float = Field(default=1.0e-4, gt=0, le=1)
    """Learning rate reached at decaySteps and kept afterwards (must be ≤ initial)."""
    schedule: Literal["constant", "linear", "cosine"] = "cosine"
    """Shape of the decay from initial to final."""
    decay_steps: int = Field(default=10_000, ge=1)
    """Environment steps over which the rate decays."""

    cel_rules = (
        CelRule("self.final <= self.initial", "final must be less than or equal to initial", ".final"),
    )

    @model_validator(mode="after")
    def _final_not_above_initial(self) -> Self:
        if self.final > self.initial:
            raise invariant_error(self, "final must be less than or equal to initial", ".final")
        return self


class EntropySchedule(ApiModel):
    initial: float = Field(default=0.01, ge=0, le=1)
    """Entropy bonus coefficient at step 0."""
    final: float = Field(default=0.001, ge=0, le=1)
    """Coefficient reached at decaySteps and kept afterwards (must be ≤ initial)."""
    schedule: Literal["linear", "cosine", "exponential"] = "cosine"
    """Shape of the annealing from initial to final."""
    decay_steps: int = Field(default=10_000, ge=1)
    """Environment steps over which the coefficient anneals."""

    cel_rules = (
        CelRule("self.final <= self.initial", "final must be less than or equal to initial", ".final"),
    )

    @model_validator(mode="after")
    def _final_not_above_initial(self) -> Self:
        if self.final > self.initial:
            raise invariant_error(self, "final must be less than or equal to initial", ".final")
        return self


class PPOSpec(ApiModel):
    learning_rate: LearningRateSchedule = Field(default_factory=LearningRateSchedule)
    """Optimizer learning-rate schedule."""
    entropy: EntropySchedule = Field(default_factory=EntropySchedule)
    """Entropy-bonus annealing schedule."""
    clip_range: float = Field(default=0.2, gt=0, lt=1)
    """PPO surrogate clipping ε, strictly between 0 and 1."""
    gamma: float = Field(default=0.99, gt=0, le=1)
    """Discount factor, in (0, 1]."""
    gae_lambda: float = Field(default=0.95, ge=0, le=1)
    """GAE λ, in [0, 1]."""
    batch_size: int = Field(default=64, ge=1)
    """Minibatch size of each gradient step (≤ stepsPerUpdate)."""
    epochs: int = Field(default=4, ge=1, le=100)
    """Passes over each rollout."""
    steps_per_update: int = Field(default=2048, ge=1)
    """Environment steps collected (over all vector envs) per update."""
    total_steps: int = Field(default=100_000, ge=1)
    """Environment steps of the whole run."""

    cel_rules = (
        CelRule(
            "self.batchSize <= self.stepsPerUpdate",
            "batchSize must be less than or equal to stepsPerUpdate",
            ".batchSize",
        ),
    )

    @model_validator(mode="after")
    def _batch_fits_rollout(self) -> Self:
        if self.batch_size > self.steps_per_update:
            raise invariant_error(
                self, "batchSize must be less than or equal to stepsPerUpdate", ".batchSize"
            )
        return self


class RewardNormalizationSpec(ApiModel):
    enabled: bool = True
    """Normalize rewards over a rolling window before computing advantages."""
    window: int = Field(default=1000, ge=1)
    """Rewards kept in the rolling window."""
    clip: float = Field(default=10.0, gt=0)
    """Normalized rewards are clipped to ±clip."""
    epsilon: float = Field(default=1.0e-8, gt=0)
    """Added to the standard deviation to avoid division by zero."""
    min_samples: int = Field(default=100, ge=1)
    """No normalization until this many rewards have been seen."""


class CheckpointStorageSpec(ApiModel):
    size: str = Field(default="10Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
    """Size of the checkpoint PersistentVolumeClaim (a Kubernetes quantity)."""
    storage_class_name: str | None = None
    """StorageClass of the claim; the cluster default when unset."""
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = "ReadWriteOnce"
    """Access mode of the claim. A ModelPin whose policy comes from this run mounts the claim
    read-only in every replica: with more than one node, use ReadWriteMany (and a StorageClass that
    offers it), since a ReadWriteOnce claim is mounted on one node only."""


class CheckpointSpec(ApiModel):
    interval: int = Field(default=500, ge=1)
    """Save a checkpoint every this many environment steps."""
    keep: int = Field(default=5, ge=1)
    """Most recent checkpoints kept (≥ 1)."""
    keep_best: bool = True
    """Keep the checkpoint with the best mean reward separately."""
    storage: CheckpointStorageSpec = Field(default_factory=CheckpointStorageSpec)
    """Where checkpoints live."""


class RollbackSpec(ApiModel):
    enabled: bool = True
    """Roll back automatically when training goes unstable."""
    kl_threshold: float = Field(default=0.03, gt=0)
    """Approximate KL above this on consecutive updates triggers a rollback."""
    loss_spike_factor: float = Field(default=2.0, gt=1)
    """Value loss above this multiple of its baseline triggers a rollback."""
    reward_drop_fraction: float = Field(default=0.3, gt=0, lt=1)
    """Recent mean reward falling by this fraction of the baseline triggers a rollback."""
    window: int = Field(default=100, ge=1)
    """Episodes in the recent reward window (< baselineWindow)."""
    baseline_window: int = Field(default=1000, ge=2)
    """Episodes in the baseline reward window."""
    max_rollbacks: int = Field(default=3, ge=0)
    """Rollbacks allowed before the run is marked Failed."""
    steps_back: int = Field(default=1, ge=1)
    """How many checkpoints to go back on a rollback."""

    cel_rules = (
        CelRule("self.window < self.baselineWindow", "window must be less than baselineWindow", ".window"),
    )

    @model_validator(mode="after")
    def _window_inside_baseline(self) -> Self:
        if self.window >= self.baseline_window:
            raise invariant_error(self, "window must be less than baselineWindow", ".window")
        return self


class CurationSpec(ApiModel):
    min_reward: float = -10.0
    """Lowest reward accepted."""
    max_reward: float = 10.0
    """Highest reward accepted."""
    min_rating: float = Field(default=1.0, ge=0)
    """Lowest user rating accepted."""
    max_rating: float = Field(default=5.0, ge=0)
    """Highest user rating accepted."""
    outlier_method: Literal["zscore", "mad"] = "zscore"
    """Outlier test: z-score against mean/std, or the robust median/MAD variant."""
    z_score_threshold: float = Field(default=3.0, gt=0)
    """Samples further than this many (robust) deviations from the centre are outliers."""
    max_submissions_per_user: int = Field(default=5, ge=1)
    """At most this many samples per user within rateLimitWindowMinutes."""
    rate_limit_window_minutes: int = Field(default=60, ge=1)
    """Length of the per-user rate-limit window."""
    min_response_seconds: float = Field(default=2.0, ge=0)
    """Faster responses are treated as careless clicks."""
    max_response_seconds: float = Field(default=600.0, gt=0)
    """Slower responses are treated as abandoned sessions."""
    require_ifra_compliance: bool = True
    """Reject feedback on formulas that broke an IFRA limit."""

    cel_rules = (
        CelRule("self.minReward < self.maxReward", "minReward must be less than maxReward", ".minReward"),
        CelRule("self.minRating < self.maxRating", "minRating must be less than maxRating", ".minRating"),
        CelRule(
            "self.minResponseSeconds < self.maxResponseSeconds",
            "minResponseSeconds must be less than maxResponseSeconds",
            ".minResponseSeconds",
        ),
    )

    @model_validator(mode="after")
    def _ranges_ordered(self) -> Self:
        if self.min_reward >= self.max_reward:
            raise invariant_error(self, "minReward must be less than maxReward", ".minReward")
        if self.min_rating >= self.max_rating:
            raise invariant_error(self, "minRating must be less than maxRating", ".minRating")
        if self.min_response_seconds >= self.max_response_seconds:
            raise invariant_error(
                self, "minResponseSeconds must be less than maxResponseSeconds", ".minResponseSeconds"
            )
        return self


class RetuningSpec(ApiModel):
    enabled: bool = True
    """Suggest hyperparameter changes from curated feedback."""
    min_samples: int = Field(default=100, ge=1)
    """Curated samples needed before any suggestion."""
    max_samples: int = Field(default=300, ge=1)
    """Most recent curated samples considered."""

    cel_rules = (
        CelRule(
            "self.minSamples <= self.maxSamples",
            "minSamples must be less than or equal to maxSamples",
            ".minSamples",
        ),
    )

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Self:
        if self.min_samples > self.max_samples:
            raise invariant_error(self, "minSamples must be less than or equal to maxSamples", ".minSamples")
        return self


class FeedbackSpec(ApiModel):
    curation: CurationSpec = Field(default_factory=CurationSpec)
    """Which user feedback is kept for reward-model fitting."""
    retuning: RetuningSpec = Field(default_factory=RetuningSpec)
    """Hyperparameter suggestions from curated feedback."""


class TrainingConfig(ApiModel):
    """Everything the trainer needs to know about the algorithm; the TrainingRun embeds it."""

    env: EnvSpec = Field(default_factory=EnvSpec)
    """The environment to train on."""
    ppo: PPOSpec = Field(default_factory=PPOSpec)
    """PPO hyperparameters and schedules."""
    reward_normalization: RewardNormalizationSpec = Field(default_factory=RewardNormalizationSpec)
    """Rolling reward normalization."""
    checkpoints: CheckpointSpec = Field(default_factory=CheckpointSpec)
    """Checkpoint cadence and retention."""
    rollback: RollbackSpec = Field(default_factory=RollbackSpec)
    """Automatic rollback on instability."""
    feedback: FeedbackSpec = Field(default_factory=FeedbackSpec)
    """Feedback curation and retuning."""
