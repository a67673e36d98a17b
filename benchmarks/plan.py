"""How much of each benchmark a run does: ``FULL`` for numbers, ``SMOKE`` to check it all works."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and durations of every benchmark in one run."""

    name: str
    latency_rounds: int
    latency_per_round: int
    throughput_duration: float
    throughput_repeats: int
    caller_threads: int
    scaling_duration: float
    scaling_repeats: int
    scaling_threads: int
    trainings: int
    train_sleep: float
    memory_features: int
    scale_trainings: int
    many_models: int
    many_duration: float
    ray: bool
    batch_inputs: int = 100_000
    batch_repeats: int = 2
    pressure_memory_limit: str = "800MB"
    pressure_fraction: float = 0.25
    pressure_model_mb: float = 40
    pressure_threads: int = 4
    step_phases: tuple[float, float, float] = (4.0, 10.0, 8.0)  # seconds at 1, 16, 1 callers
    gang_steps: int = 30  # DDP steps per training, per world size (1, 2, 3 ranks)
    gang_repeats: int = 3
    gang_warmups: int = 1  # rounds of 1, 2, 3 ranks first, not counted


FULL = Plan("full", 20, 100, 2.0, 3, 16, 1.5, 6, 8, 20, 0.1, 26_000_000, 1000, 1000, 2.0, True)
SMOKE = dataclasses.replace(
    Plan("smoke", 3, 30, 0.3, 1, 16, 0.5, 1, 8, 3, 0.05, 1_000_000, 20, 20, 0.3, False, 2_000, 1),
    pressure_memory_limit="600MB",
    pressure_fraction=0.05,
    pressure_model_mb=8,
    pressure_threads=2,
    step_phases=(0.3, 1.0, 0.3),
    gang_steps=5,
    gang_repeats=1,
    gang_warmups=0,
)
