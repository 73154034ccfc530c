"""The run's health record: what the health checks and the hang watchdog saw, one JSON object per line.

`health.jsonl` (in output_dir) is written by rank 0 while training (`grpokit.trainer.health`,
`grpokit.trainer.watchdog`) and read by the report, the compare view and `grpokit train --nproc`
(which exits with the code of the check that stopped the job: torchrun itself only says "1").

| field | meaning |
|---|---|
| `step` | the optimizer step the event was seen at |
| `check` | one of `CHECKS` below |
| `status` | `warned` (the check fired, action warn), `tripped` (it fired with action stop: the run stopped), `recovered` (the condition cleared) |
| `value` | the measured value (None when there is none) |
| `message` | one line: what was seen and how to fix it |
| `exit_code` | on a `tripped` event: the exit code of the stop (3 health check, 4 hang) |
| `time` | Unix time |

Like `metrics.jsonl`, the file is truncated to the resumed step when a run resumes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grpokit.outputs.files import HEALTH_FILE

WARNED, TRIPPED, RECOVERED = "warned", "tripped", "recovered"
# Every check, in the order the report lists them: (name, what it watches, the metrics.jsonl keys it reads).
CHECKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("nonfinite", "loss or gradient norm NaN / inf", ("loss", "grad_norm")),
    ("zero_spread", "groups whose completions all got the same reward", ("frac_reward_zero_std",)),
    ("truncation", "completions cut at max_completion_length", ("completions/clipped_ratio",)),
    ("length", "mean completion length collapsing or exploding", ("completions/mean_length",)),
    ("entropy", "token entropy collapsing", ("entropy",)),
    ("kl", "KL to the reference model blowing up (beta > 0)", ("kl",)),
    ("reward_hacking", "training reward rising while eval reward falls", ("eval_reward",)),
    ("tool_failures", "the agent's tool calls failing", ("tools/failure_share",)),
    ("tool_calls", "the policy no longer calling its tools", ("tools/calls_per_completion",)),
    ("hang", "no step completing in time (the hang watchdog)", ("step_time",)),
)
CHECK_NAMES = tuple(name for name, _, _ in CHECKS)
STATUS_KEY_PREFIX = "health/"  # `health/<check>` in each training log: 0 ok, 1 warned, 2 tripped
STATUS_CODES = {"ok": 0, WARNED: 1, TRIPPED: 2}


@dataclass(frozen=True)
class HealthEvent:
    """One line of `health.jsonl`."""

    step: int
    check: str
    status: str
    message: str
    value: float | None = None
    exit_code: int | None = None
    time: float = field(default_factory=time.time)


def append_health_event(path: str | Path, event: HealthEvent) -> None:
    """Add `event` as one line (a line is one write: a reader sees it whole or not at all)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(event), ensure_ascii=False) + "\n")


def read_health_events(path: str | Path) -> list[HealthEvent]:
    """The events of a `health.jsonl` in order; lines cut short or of another shape are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    events = []
    known = set(HealthEvent.__dataclass_fields__)
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record: Any = json.loads(line)
            events.append(HealthEvent(**{key: value for key, value in record.items() if key in known}))
        except (json.JSONDecodeError, TypeError, AttributeError):
            continue
    return events


def stop_event_since(path: str | Path, since: float) -> HealthEvent | None:
    """The last `tripped` event written at or after Unix time `since`, or None.

    `grpokit train --nproc` reads it after torchrun returns, to exit with the stopping check's code.
    """
    stops = [e for e in read_health_events(path) if e.status == TRIPPED and e.exit_code and e.time >= since]
    return stops[-1] if stops else None


def job_stop_event(launcher_code: int, output_dir: str | Path, *, since: float) -> HealthEvent | None:
    """The event that stopped a multi-process job, when torchrun reports its plain failure (exit code 1).

    torchrun exits 1 whatever code a rank exited with; a health stop (3) or a hang (4) leaves a `tripped`
    event in output_dir's `health.jsonl`, whose `exit_code` the job should exit with. None otherwise:
    success, signals (128 + N) and other failures keep their code.
    """
    if launcher_code != 1:
        return None
    return stop_event_since(Path(output_dir) / HEALTH_FILE, since)
