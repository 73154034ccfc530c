"""The report's answer to "is it healthy?": one row per health check, and a one-line verdict.

The verdict has three levels: healthy, warnings (a check warned, or something held over the whole run:
`grpokit.outputs.health_summary`), stopped (a check with action stop, or the hang watchdog, ended it).

A check's status comes from the run's `health.jsonl` events (tripped beats warned) and, when it never
fired, from `metrics.jsonl`: `health/<check>` was logged (the check ran and stayed ok), or the metric
it reads never appeared (not checked: KL without beta, reward hacking without an eval set).
Actions are read from the resolved config (`grpokit_config.yaml`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grpokit.outputs.health_events import CHECKS, RECOVERED, STATUS_KEY_PREFIX, TRIPPED, WARNED, HealthEvent
from grpokit.outputs.health_summary import Finding
from grpokit.outputs.run_record import RunRecord

NOT_CHECKED_REASONS = {
    "kl": "kl is logged only when beta > 0",
    "reward_hacking": "no eval_reward logged (needs test_dataset_path and an eval_strategy)",
    "tool_failures": "no tool call was made",
}
AGENT_CHECKS = ("tool_failures", "tool_calls")  # listed only for runs that logged tool metrics
RESUMED = ", resumed after"  # a tripped check the run was resumed past (with the cause fixed, or the check set to warn)
CSS_CLASS = {"ok": "ok", WARNED: "warn", TRIPPED: "bad", "not checked": "muted", "off": "muted"}


@dataclass(frozen=True)
class CheckRow:
    """One line of the health table."""

    name: str
    watches: str
    action: str  # warn | stop | off | "-" (no config)
    status: str  # ok | warned | tripped | not checked | off
    at: str  # the steps it fired / cleared at
    detail: str  # the last message, or why it was not checked
    css: str
    stopped_the_run: bool = False  # it tripped at the run's last step (not one the run was resumed past)


HEALTHY, WARNINGS, STOPPED, NOT_CHECKED = "healthy", "warnings", "stopped", "not checked"  # the verdict's levels


@dataclass(frozen=True)
class HealthVerdict:
    """The line at the top of the report and at the end of `grpokit train`."""

    status: str  # healthy | warnings | stopped | not checked (no training step logged)
    text: str
    css: str
    headline: str = ""  # the report's bar, where the findings are listed below it; "" : the text

    @property
    def title(self) -> str:
        return self.headline or self.text


def check_action(config: dict[str, Any] | None, name: str) -> str:
    section = ((config or {}).get("health") or {}).get(name)
    return str(section.get("action")) if isinstance(section, dict) and section.get("action") else "-"


def health_rows(run: RunRecord, *, agent_checks: bool = False) -> list[CheckRow]:
    """Every check's status over the run, in the order of `grpokit.outputs.health_events.CHECKS`.

    The agent's checks (`AGENT_CHECKS`) are left out of a run they never read anything in (a run without
    tools), unless `agent_checks` (the compare view lines every run's rows up).
    """
    logged = {key for line in run.metrics for key in line if key.startswith(STATUS_KEY_PREFIX)}
    last_step = max((int(line.get("step", 0)) for line in run.metrics), default=0)
    rows = []
    for name, watches, _keys in CHECKS:
        events = [event for event in run.health_events if event.check == name]
        action = check_action(run.config, name)
        status, at, detail = _status(name, events, action, ran=_ran(run, name, action, logged), last_step=last_step)
        if name in AGENT_CHECKS and status == "not checked" and not agent_checks:
            continue  # a run without tools: rows that could never apply are left out
        stopped = any(event.status == TRIPPED and event.step >= last_step for event in events)
        rows.append(CheckRow(name, watches, action, status, at, detail, CSS_CLASS[status], stopped))
    return rows


def _ran(run: RunRecord, name: str, action: str, logged: set[str]) -> bool:
    if name == "hang":  # the watchdog logs nothing while the run is fine: it ran if training logged steps
        return bool(run.metrics) and action not in ("off", "-")
    return f"{STATUS_KEY_PREFIX}{name}" in logged


def _status(name: str, events: list[HealthEvent], action: str, *, ran: bool, last_step: int) -> tuple[str, str, str]:
    fired = [event for event in events if event.status in (WARNED, TRIPPED)]
    if fired:
        status = TRIPPED if any(event.status == TRIPPED for event in fired) else WARNED
        at = ", ".join(_when(event, last_step) for event in events)
        return status, at, fired[-1].message
    if action == "off":
        return "off", "", "switched off in the config"
    if ran:
        return "ok", "", ""
    if action == "-":
        return "not checked", "", "no health: section in this run's config (a run from before the health checks)"
    return "not checked", "", NOT_CHECKED_REASONS.get(name, "the metric it reads was not logged")


def _when(event: HealthEvent, last_step: int) -> str:
    text = f"{_verb(event.status)} at step {event.step}"
    return text + RESUMED if event.status == TRIPPED and event.step < last_step else text


def _verb(status: str) -> str:
    return {WARNED: "warned", TRIPPED: "tripped", RECOVERED: "ok again"}.get(status, status)


def health_verdict(rows: list[CheckRow], findings: Sequence[Finding] = ()) -> HealthVerdict:
    """Stopped, warnings or healthy, in one line; a run with findings over the whole run is never healthy.

    `findings` come from `grpokit.outputs.health_summary.health_findings`: what held over the run even
    when no check's patience ran out (a run that learned nothing, every completion cut).
    """
    tripped = [row for row in rows if row.stopped_the_run]
    warned = [row for row in rows if row.status in (WARNED, TRIPPED) and not row.stopped_the_run]
    if tripped:
        row = tripped[0]
        if row.name == "hang":
            return HealthVerdict(STOPPED, f"stopped by the hang watchdog ({row.at}, exit code 4): resume from the last checkpoint", "bad")
        return HealthVerdict(STOPPED, f"stopped by the health check {row.name} ({row.at}, exit code 3): its checkpoint resumes", "bad")
    if warned or findings:
        checks = ", ".join(f"{row.name} ({row.at})" for row in warned)
        parts = [finding.text for finding in findings] + ([checks] if checks else [])
        count = f"{len(findings)} thing{'s' if len(findings) != 1 else ''} wrong over the whole run (below)" if findings else ""
        headline = "warnings: " + "; ".join(part for part in (count, f"checks that fired: {checks}" if checks else "") if part)
        return HealthVerdict(WARNINGS, "warnings: " + "; ".join(parts), "warn", headline)
    checked = sum(row.status == "ok" for row in rows)
    if not checked:
        return HealthVerdict(NOT_CHECKED, "no health check ran in this run", "muted")
    return HealthVerdict(HEALTHY, f"healthy: {checked} checks ran and none fired; nothing was wrong over the whole run", "ok")


def health_lines(verdict: HealthVerdict, rows: list[CheckRow], findings: Sequence[Finding]) -> list[str]:
    """The end of a run on the console: the verdict, then one line per finding and per check that fired."""
    if verdict.status != WARNINGS:
        return [f"health: {verdict.text}"]
    lines = [f"health: {WARNINGS}"]
    lines += [f"  {finding.text}. Fix: {finding.fix}" for finding in findings]
    lines += [f"  health check {row.name} {row.at}: {row.detail}" for row in rows if row.status in (WARNED, TRIPPED) and not row.stopped_the_run]
    return lines
