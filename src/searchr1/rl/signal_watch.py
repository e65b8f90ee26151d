"""The trainer's refusal to waste a run: when none of the first steps had a learning signal (every GRPO group
rewarded alike, so every advantage was 0), stop with a message that says why and what to change."""
from __future__ import annotations

from searchr1.errors import SearchR1Error


class TrainingStalled(SearchR1Error):
    """The run cannot learn as configured (e.g. no step ever had a learning signal)."""


class SignalWatch:
    """Watches the first ``limit`` steps a process trains: when each skipped its update for lack of signal
    (``actor/skipped_zero_adv``), :meth:`update` raises :class:`TrainingStalled`. ``limit`` 0 = off."""

    def __init__(self, limit: int):
        self.limit, self.seen, self.rewards = limit, 0, []

    def update(self, metrics: dict[str, float]) -> None:
        if not self.limit or self.seen >= self.limit:
            return
        self.seen += 1
        if metrics.get("actor/skipped_zero_adv") == 1.0:
            self.rewards.append(metrics.get("reward/mean", 0.0))
        if self.seen == self.limit and len(self.rewards) == self.limit:
            raise TrainingStalled(zero_signal_message(self.limit, sum(self.rewards) / self.limit, metrics))


def zero_signal_message(steps: int, reward: float, metrics: dict[str, float]) -> str:
    """Why the first ``steps`` steps had no learning signal, and what to change."""
    if reward <= 0.0:
        why = (f"no sampled trajectory was rewarded in the first {steps} steps (reward 0; answered "
               f"{metrics.get('rollout/answered', 0.0):.2f}, format {metrics.get('reward/format', 0.0):.2f}): "
               "the policy does not yet produce correct answers in the search protocol")
        fix = ("give it a cold start first (cold_start.mode=auto: SFT on scripted-teacher trajectories of "
               "SearchWorld questions; other data: --recipe sft with sft.train_file), sample more "
               "(rollout.temperature, algorithm.group_size), or train on easier questions")
    else:
        why = f"every sampled trajectory was rewarded in the first {steps} steps (reward {reward:.2f})"
        fix = "train on harder questions or use a stricter reward (algorithm.reward=em)"
    return (f"{why}; every group scored alike, so every advantage was 0 and nothing was learned. To fix: {fix}. "
            "(guards.max_zero_adv_steps=0 turns this check off.)")
