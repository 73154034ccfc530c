"""Health checks: each check's logic worked out by hand, then crafted runs that trip them, stop with exit code 3,
leave a checkpoint that resumes, and a report whose health section a headless browser renders at the top."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import skip_unless_in_ci
from grpokit.config import load_config
from grpokit.errors import ConfigError
from grpokit.outputs.health_events import HealthEvent, append_health_event, job_stop_event, read_health_events
from grpokit.outputs.report import write_report
from grpokit.outputs.report_health import health_rows, health_verdict
from grpokit.outputs.run_record import load_run
from grpokit.trainer.health import HealthCallback, HealthOptions, gradients_are_finite
from grpokit.trainer.health_checks import HealthMonitor

RUN_TIMEOUT_S = 300

# ----------------------------------------------------------------------------- the checks, by hand


def monitor(**sections) -> HealthMonitor:
    return HealthMonitor(HealthOptions(**sections), max_completion_length=8)


def feed(health: HealthMonitor, logs: list[dict]) -> list[tuple[int, str, str]]:
    """(step, check, status) of every transition while feeding one log per step from step 1."""
    return [(step, t.check, t.status) for step, log in enumerate(logs, start=1) for t in health.observe(log, step)]


def test_zero_spread_fires_after_patience_logs_in_a_row_and_names_each_reward():
    health = monitor(zero_spread={"threshold": 0.9, "patience": 3, "action": "warn"})
    shares = [1.0, 1.0, 0.5, 1.0, 0.95, 1.0, 1.0, 1.0]
    logs = [{"frac_reward_zero_std": share, "rewards/exact/frac_zero_std": 1.0} for share in shares]
    assert feed(health, logs) == [(6, "zero_spread", "warned")]  # 3 in a row after the dip, not again at 7 and 8
    message = monitor(zero_spread={"patience": 1}).observe(logs[0], 1)[0].message
    assert "in 100% of groups" in message and "(per reward: exact 100%)" in message and "1 log in a row" in message


def test_with_dynamic_sampling_zero_spread_reads_the_share_before_groups_were_dropped():
    health = monitor(zero_spread={"patience": 1})
    assert health.observe({"frac_reward_zero_std": 0.0, "dynamic_sampling/zero_spread_share": 0.5}, 1) == []
    [transition] = health.observe({"frac_reward_zero_std": 0.0, "dynamic_sampling/zero_spread_share": 0.97}, 2)
    assert transition.status == "tripped" and transition.value == 0.97


def test_a_warned_check_recovers_and_can_fire_again():
    health = monitor(truncation={"threshold": 0.5, "patience": 2})
    ratios = [0.6, 0.7, 0.1, 0.9, 0.8]
    assert feed(health, [{"completions/clipped_ratio": r} for r in ratios]) == [
        (2, "truncation", "warned"),
        (3, "truncation", "recovered"),
        (5, "truncation", "warned"),
    ]


def test_truncation_with_action_stop_trips_and_says_the_limit():
    [transition] = monitor(truncation={"patience": 1, "action": "stop"}).observe({"completions/clipped_ratio": 1.0}, 1)
    assert transition.status == "tripped" and "max_completion_length=8" in transition.message
    assert "raise max_completion_length" in transition.fix


def test_length_and_entropy_compare_with_the_mean_of_the_first_logs():
    # baseline: mean of the first 5 logs = 10.0; collapse below 2.5, explode above 40
    lengths = [8, 12, 10, 9, 11, 2.4, 2.4, 20, 41, 41]
    health = monitor(length={"patience": 2})
    assert feed(health, [{"completions/mean_length": v} for v in lengths]) == [
        (7, "length", "warned"),
        (8, "length", "recovered"),
        (10, "length", "warned"),
    ]
    entropies = [0.5, 0.5, 0.5, 0.5, 0.5, 0.049, 0.049]  # collapse below 0.05
    health = monitor(entropy={"patience": 2})
    [(step, name, status)] = feed(health, [{"entropy": v} for v in entropies])
    assert (step, name, status) == (7, "entropy", "warned")


def test_kl_is_only_checked_when_logged():
    health = monitor(kl={"threshold": 1.0, "patience": 2})
    assert feed(health, [{"loss": 0.1}] * 3) == [] and "kl" not in health.statuses()
    assert feed(health, [{"kl": 1.5}, {"kl": 0.5}, {"kl": 1.1}, {"kl": 2.0}]) == [(4, "kl", "warned")]


def test_reward_hacking_is_training_reward_up_and_eval_reward_down_at_consecutive_evaluations():
    health = monitor(reward_hacking={"patience": 2})
    logs = [
        {"reward": 0.2}, {"reward": 0.4}, {"eval_reward": 0.50},  # train mean 0.3, eval 0.50
        {"reward": 0.5}, {"eval_reward": 0.45},  # train 0.5 up, eval down: 1
        {"reward": 0.7}, {"eval_reward": 0.40},  # train 0.7 up, eval down: 2 -> fires
    ]
    transitions = [t for step, log in enumerate(logs, 1) for t in health.observe(log, step)]
    assert [(t.check, t.status) for t in transitions] == [("reward_hacking", "warned")]
    assert "2 evaluations in a row" in transitions[0].message
    assert "training 0.300 -> 0.700, eval 0.500 -> 0.400" in transitions[0].message


def test_nonfinite_loss_or_grad_norm_trips_at_once():
    for logs in ({"loss": math.nan, "grad_norm": 1.0}, {"loss": 0.1, "grad_norm": math.inf}):
        [transition] = monitor().observe(logs, 4)
        assert transition.status == "tripped" and transition.value is None
    assert monitor().observe({"loss": 0.1, "grad_norm": 2.0}, 1) == []


def test_an_off_check_reads_nothing():
    health = monitor(truncation={"action": "off", "patience": 1})
    assert health.observe({"completions/clipped_ratio": 1.0}, 1) == [] and "truncation" not in health.statuses()


def test_a_resumed_run_keeps_the_baseline_of_its_first_logs():
    health = monitor(entropy={"patience": 1})
    health.seed_baselines([{"step": s, "entropy": 1.0} for s in range(1, 6)] + [{"step": 6, "eval_reward": 1.0}])
    assert [t.status for t in health.observe({"entropy": 0.09}, 50)] == ["warned"]


def test_health_section_is_validated_with_the_closest_key():
    with pytest.raises(ConfigError, match=r"(?s)unknown config key 'health.zero_spread.treshold'.*did you mean 'health.zero_spread.threshold'"):
        load_config(data={"model_id": "builtin:tiny", "train_dataset_path": "x", "health": {"zero_spread": {"treshold": 0.5}}})
    with pytest.raises(ConfigError, match="health.truncation.action"):
        load_config(data={"model_id": "builtin:tiny", "train_dataset_path": "x"}, overrides=["health.truncation.action=halt"])


def test_the_demo_defaults_stay_quiet_on_a_healthy_run(tmp_path):
    # the demo's own shape: binary reward, completions of 3-4 tokens, entropy halving as it learns
    health = HealthMonitor(HealthOptions(), max_completion_length=5)
    logs = [
        {"loss": 0.01, "grad_norm": 4.0, "frac_reward_zero_std": 0.375 * (i % 2), "completions/clipped_ratio": 0.03 * (i % 3 == 0),
         "completions/mean_length": 3.0 + (i % 9) / 10, "entropy": 0.5 - 0.27 * i / 120}
        for i in range(120)
    ]
    assert feed(health, logs) == []


# ----------------------------------------------------------------------------- the callback and the gradient check


def fake_run(step: int, **args):
    state = SimpleNamespace(is_world_process_zero=True, global_step=step)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    return SimpleNamespace(output_dir="ckpts", fp16=False, **args), state, control


def test_callback_records_statuses_events_and_stops_with_a_checkpoint(tmp_path):
    callback = HealthCallback(HealthOptions(zero_spread={"patience": 2}), tmp_path)
    args, state, control = fake_run(1)
    logs = {"frac_reward_zero_std": 1.0, "loss": 0.0}
    callback.on_log(args, state, control, logs=logs)
    assert logs["health/zero_spread"] == 0 and logs["health/nonfinite"] == 0 and not control.should_save
    args, state, control = fake_run(2)
    logs = {"frac_reward_zero_std": 1.0, "loss": 0.0}
    callback.on_log(args, state, control, logs=logs)
    assert logs["health/zero_spread"] == 2 and control.should_save and control.should_training_stop
    assert callback.trip.check == "zero_spread" and callback.trip.checkpoint == Path("ckpts/checkpoint-2")
    [event] = read_health_events(tmp_path / "health.jsonl")
    assert (event.step, event.check, event.status, event.exit_code) == (2, "zero_spread", "tripped", 3)
    eval_logs = {"eval_reward": 0.5}
    callback.on_log(args, state, control, logs=eval_logs)
    assert eval_logs == {"eval_reward": 0.5}, "eval logs get no health keys"


def test_nonfinite_gradients_are_dropped_before_the_optimizer_step(tmp_path):
    model = torch.nn.Linear(2, 1)
    model(torch.ones(1, 2)).sum().backward()
    assert gradients_are_finite(model)
    model.weight.grad[0, 0] = math.nan
    assert not gradients_are_finite(model)
    weights = model.weight.detach().clone()
    callback = HealthCallback(HealthOptions(), tmp_path)
    args, state, control = fake_run(6)
    callback.on_pre_optimizer_step(args, state, control, model=model)
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    assert torch.equal(model.weight.detach(), weights), "the NaN update was not applied"
    state.global_step = 7
    callback.on_step_end(args, state, control)
    assert control.should_save and control.should_training_stop and callback.trip.check == "nonfinite"
    assert "this update was not applied" in callback.trip.message


def test_job_exit_code_comes_from_the_stop_event(tmp_path):
    started = time.time()
    append_health_event(tmp_path / "health.jsonl", HealthEvent(1, "kl", "warned", "high", time=started + 1))
    assert job_stop_event(1, tmp_path, since=started) is None, "a warning is no stop"
    append_health_event(tmp_path / "health.jsonl", HealthEvent(2, "hang", "tripped", "stuck", exit_code=4, time=started - 60))
    assert job_stop_event(1, tmp_path, since=started) is None, "an earlier run's stop does not count"
    append_health_event(tmp_path / "health.jsonl", HealthEvent(3, "zero_spread", "tripped", "flat", exit_code=3, time=started + 2))
    assert job_stop_event(1, tmp_path, since=started).exit_code == 3
    assert job_stop_event(0, tmp_path, since=started) is None and job_stop_event(143, tmp_path, since=started) is None


# ----------------------------------------------------------------------------- crafted runs: exit code 3, checkpoint resumes

CRAFTED_REWARDS = '''
import math

import torch

_nan_hook = None


def _nan_forward(module, inputs, output):
    """An overflow in the training forward pass; generation (no grad) stays finite."""
    if torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.is_floating_point():
        return output * math.nan
    return None


def constant(prompts, completions, **kwargs):
    """Every completion scores the same: every group has zero spread."""
    return [1.0 for _ in completions]


def nan_at_step_2(prompts, completions, trainer_state=None, **kwargs):
    """Digits in the completion; at step 2 the training forward pass turns NaN."""
    global _nan_hook
    poisoned = trainer_state.global_step + 1 == 2
    if poisoned and _nan_hook is None:
        _nan_hook = torch.nn.modules.module.register_module_forward_hook(_nan_forward)
    elif not poisoned and _nan_hook is not None:
        _nan_hook.remove()
        _nan_hook = None
    return [float(sum(ch.isdigit() for ch in completion)) for completion in completions]
'''

# check -> (config changes that trip it, the step it trips at, the override that lets a resumed run go on)
CRAFTED = {
    "zero_spread": ({"rewards": [{"name": "./crafted.py:constant"}], "health": {"zero_spread": {"patience": 2}}}, 2,
                    ["health.zero_spread.action=warn"]),
    "truncation": ({"max_completion_length": 1, "health": {"truncation": {"patience": 1, "action": "stop"}}}, 1,
                   ["health.truncation.action=warn"]),
    "nonfinite": ({"rewards": [{"name": "./crafted.py:nan_at_step_2"}]}, 2, []),
}


def crafted_config(tmp_path: Path, tiny_config: dict, check: str) -> Path:
    (tmp_path / "crafted.py").write_text(CRAFTED_REWARDS, encoding="utf-8")
    changes, _, _ = CRAFTED[check]
    config = {**tiny_config, "max_steps": 3, **changes}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def grpokit(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        environment.pop(name, None)
    command = [sys.executable, "-m", "grpokit", *args]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def train_command(config_path: Path, *, real_process: bool) -> tuple[int, str]:
    """`grpokit train CONFIG`: its exit code and stderr, in a process of its own or in this one (the same CLI code)."""
    if real_process:
        result = grpokit("train", str(config_path), cwd=config_path.parent)
        return result.returncode, result.stderr
    from typer.testing import CliRunner

    from grpokit.cli import app

    result = CliRunner().invoke(app, ["train", str(config_path)], terminal_width=400)
    return result.exit_code, result.stderr


# The NaN run has a process of its own (its forward hook must not outlive it): about 30 s on 2 busy cores.
@pytest.mark.slow  # every case trains
@pytest.mark.parametrize("check, real_process", [("nonfinite", True), ("truncation", False), ("zero_spread", False)])
def test_crafted_run_trips_the_check_exits_3_and_its_checkpoint_resumes(tmp_path, tiny_config, check, real_process):
    config_path = crafted_config(tmp_path, tiny_config, check)
    _, trip_step, resume_overrides = CRAFTED[check]
    out = Path(tiny_config["output_dir"])
    exit_code, stderr = train_command(config_path, real_process=real_process)
    stderr = one_line(stderr)
    assert exit_code == 3, stderr[-4000:]
    assert f"error: health check '{check}' stopped the run at step {trip_step}:" in stderr
    checkpoint = out / "checkpoints" / f"checkpoint-{trip_step}"
    assert f"where: {checkpoint} (saved" in stderr and "fix:" in stderr and "Traceback" not in stderr
    assert (checkpoint / "grpokit_complete.json").is_file(), "the stop saved a complete checkpoint first"
    assert not (out / "adapter_model.safetensors").exists(), "a stopped run saves no final model"
    [event] = [e for e in read_health_events(out / "health.jsonl") if e.status == "tripped"]
    assert (event.check, event.step, event.exit_code) == (check, trip_step, 3)
    assert f'data-check="{check}" data-status="tripped"' in (out / "report.html").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, trip_step + 1)) and lines[-1][f"health/{check}"] == 2

    if check == "nonfinite":  # the NaN update was never applied: the checkpoint holds the weights of the step before
        before = load_file(str(out / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors"))
        after = load_file(str(checkpoint / "adapter_model.safetensors"))
        assert all(torch.equal(before[name], after[name]) and torch.isfinite(after[name]).all() for name in before)

    from grpokit.trainer import train

    resumed = train(load_config(config_path, resume_overrides))  # the same config (with the fix, if any) resumes
    assert resumed.resumed_from == checkpoint and resumed.global_step == 3 and resumed.stopped_by_health is None
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_a_health_stop_on_2_processes_stops_every_rank_at_the_same_step_with_exit_3(tmp_path, tiny_config):
    config_path = crafted_config(tmp_path, {**tiny_config, "gradient_checkpointing": False}, "zero_spread")
    result = grpokit("train", str(config_path), "--nproc", "2", cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-5000:]
    assert "stopped: in 100% of groups every completion got the same reward" in one_line(result.stderr)
    out = Path(tiny_config["output_dir"])
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (out / "checkpoints" / "checkpoint-2" / "grpokit_complete.json").is_file()
    assert not (out / "checkpoints" / "checkpoint-3").exists()


# ----------------------------------------------------------------------------- the report's health section


def crafted_run_dir(tmp_path: Path) -> Path:
    """A run directory as a stopped run leaves it: zero_spread tripped at step 6, truncation warned at 3, kl never logged."""
    out = tmp_path / "stopped-run"
    out.mkdir()
    lines = []
    for step in range(1, 7):
        statuses = {"nonfinite": 0, "zero_spread": 2 if step == 6 else 0, "truncation": 1 if step >= 3 else 0, "length": 0, "entropy": 0}
        lines.append({"step": step, "reward": 0.1 * step, "frac_reward_zero_std": 0.2 * step, "completions/clipped_ratio": 0.6,
                      "completions/mean_length": 7.5, "entropy": 0.4, "grad_norm": 1.0, "loss": 0.0, "learning_rate": 1e-5,
                      "step_time": 2.0, "num_tokens": 1000.0 * step, "dynamic_sampling/groups_dropped": step % 3,
                      **{f"health/{name}": code for name, code in statuses.items()}})
    (out / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    append_health_event(out / "health.jsonl", HealthEvent(3, "truncation", "warned", "60% of completions were cut"))
    append_health_event(out / "health.jsonl", HealthEvent(6, "zero_spread", "tripped", "in 100% of groups <b>same</b>", exit_code=3))
    config = {"model_id": "builtin:tiny", "max_completion_length": 8, "health": HealthOptions(kl={"action": "off"}).model_dump()}
    (out / "grpokit_config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return out


def test_health_section_statuses_from_events_and_metrics(tmp_path):
    run = load_run(crafted_run_dir(tmp_path))
    rows = {row.name: row for row in health_rows(run)}
    assert (rows["zero_spread"].status, rows["zero_spread"].at, rows["zero_spread"].action) == ("tripped", "tripped at step 6", "stop")
    assert (rows["truncation"].status, rows["truncation"].at) == ("warned", "warned at step 3")
    assert rows["nonfinite"].status == "ok" and rows["hang"].status == "ok"
    assert rows["kl"].status == "off" and rows["reward_hacking"].status == "not checked"
    verdict = health_verdict(list(rows.values()))
    assert verdict.status == "stopped" and "zero_spread" in verdict.text and "exit code 3" in verdict.text


def test_report_puts_health_first_and_draws_every_logged_quantity(tmp_path):
    out = crafted_run_dir(tmp_path)
    paths = write_report(out)
    html = paths.html.read_text(encoding="utf-8")
    assert html.index('id="health"') < html.index("<h2>Curves</h2>") < html.index('id="dynamics"')
    assert "&lt;b&gt;same&lt;/b&gt;" in html, "event messages are escaped"
    from grpokit.outputs.report_plots import dynamics_panels

    titles = [panel.title for panel in dynamics_panels([load_run(out).metrics], load_run(out).config)]
    for title in ("completion length (tokens)", "truncated share (cut at the limit)", "zero-spread share (groups)", "entropy (nats / token)",
                  "learning rate", "grad norm", "step time (s)", "tokens / s", "dynamic sampling: groups dropped"):
        assert title in titles
    assert "KL to the reference" not in titles, "kl was never logged"
    assert paths.dynamics.read_bytes().startswith(b"\x89PNG")


def chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)


LAYOUT_PROBE = """<script>
const box = (el) => { const r = el.getBoundingClientRect(); return {top: r.top, height: r.height, width: r.width}; };
const tripped = document.querySelector('tr[data-status="tripped"] .badge');
const layout = {health: box(document.getElementById('health')), verdict: box(document.getElementById('health-verdict')),
  curves: box(document.getElementById('curves')), dynamics: box(document.getElementById('dynamics')),
  dynamicsLoaded: document.getElementById('dynamics').naturalWidth,
  trippedColor: getComputedStyle(tripped).color, trippedBackground: getComputedStyle(tripped).backgroundColor,
  verdictText: document.getElementById('health-verdict').innerText};
const pre = document.createElement('pre'); pre.id = 'layout'; pre.textContent = JSON.stringify(layout); document.body.appendChild(pre);
</script>"""


@pytest.mark.slow
def test_the_rendered_report_shows_the_health_section_at_the_top(tmp_path):
    browser = chromium()
    if browser is None:
        skip_unless_in_ci("no headless Chromium on this machine (Debian: apt-get install chromium)")
    out = crafted_run_dir(tmp_path)
    html = write_report(out).html.read_text(encoding="utf-8")
    probe = out / "probe.html"  # the report plus a script that reports the page's layout as the browser laid it out
    probe.write_text(html.replace("</body>", LAYOUT_PROBE + "</body>"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900"]
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    match = re.search(r'<pre id="layout">(.*?)</pre>', dom.stdout)
    assert match, dom.stderr[-2000:]
    layout = json.loads(match.group(1).replace("&quot;", '"'))
    assert 0 < layout["health"]["top"] < 200 and layout["health"]["height"] > 100, "the health section is first on the page"
    assert layout["health"]["top"] < layout["curves"]["top"] < layout["dynamics"]["top"]
    assert layout["verdict"]["top"] + layout["verdict"]["height"] < 900, "the verdict is on the first screen"
    assert layout["verdictText"].startswith("stopped by the health check zero_spread (tripped at step 6")
    assert layout["trippedColor"] == "rgb(180, 35, 24)" and layout["trippedBackground"] == "rgb(254, 226, 226)"
    assert layout["dynamicsLoaded"] > 500, "the panels image decodes"

    shot = tmp_path / "report.png"  # and the pixels: the verdict's red bar is drawn where the layout says
    subprocess.run([browser, *flags, f"--screenshot={shot}", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=False)
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    middle = int(layout["verdict"]["top"] + layout["verdict"]["height"] / 2)
    row = [image.getpixel((x, middle)) for x in range(image.size[0])]
    assert (180, 35, 24) in row, "the red bar of a tripped verdict"
    assert any(pixel == (254, 242, 242) for pixel in row), "its pale red background"


@pytest.mark.slow
def test_health_events_reach_mlflow_wandb_and_tensorboard(tmp_path, tiny_config, monkeypatch):
    pytest.importorskip("wandb")
    import mlflow

    from grpokit.trainer import train
    from test_tracking_wandb import wandb_records

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # a sqlite store keeps its artifacts in ./mlruns
    (tmp_path / "crafted.py").write_text(CRAFTED_REWARDS, encoding="utf-8")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = {
        **tiny_config, "max_steps": 3, "rewards": [{"name": str(tmp_path / "crafted.py") + ":constant"}],
        "health": {"zero_spread": {"patience": 2}}, "report_to": ["wandb", "tensorboard"],
        "wandb_project": "grpokit-health", "wandb_mode": "offline", "mlflow_uri": uri, "mlflow_experiment_name": "health",
        "log_completions_every": 0, "system_metrics_interval": 0,
    }
    try:
        result = train(load_config(data=config))
    finally:
        mlflow.set_tracking_uri(None)
    assert result.stopped_by_health.check == "zero_spread" and result.global_step == 2
    out = Path(tiny_config["output_dir"])

    client = mlflow.tracking.MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("health").experiment_id])
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "health/zero_spread")] == [(1, 0.0), (2, 2.0)]

    [run_file] = (out / "wandb").glob("offline-run-*/run-*.wandb")
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in wandb_records(run_file)
        if record.WhichOneof("record_type") == "history"
    ]
    assert {row["_step"]: row["health/zero_spread"] for row in history} == {1: 0, 2: 2}

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(out / "tensorboard"))
    accumulator.Reload()
    assert [(e.step, e.value) for e in accumulator.Scalars("train/health/zero_spread")] == [(1, 0.0), (2, 2.0)]


def test_a_run_resumed_past_a_stop_is_not_reported_as_stopped(tmp_path):
    out = crafted_run_dir(tmp_path)
    with (out / "metrics.jsonl").open("a", encoding="utf-8") as handle:  # resumed at step 6 with the check set to warn
        handle.write(json.dumps({"step": 7, "reward": 0.7, "health/zero_spread": 0}) + "\n")
    rows = {row.name: row for row in health_rows(load_run(out))}
    assert rows["zero_spread"].at == "tripped at step 6, resumed after" and not rows["zero_spread"].stopped_the_run
    verdict = health_verdict(list(rows.values()))
    assert verdict.status == "warnings" and verdict.text == "warnings: zero_spread (tripped at step 6, resumed after), truncation (warned at step 3)"
