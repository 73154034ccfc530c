"""What a run shows of its agent: TRL's tool metrics renamed, the two tool health checks, the run-wide findings,
the report's tool panels and sample completions drawn as conversations (escaped), in the report and the compare view."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import skip_unless_in_ci
from grpokit.config.health import HealthOptions
from grpokit.outputs.compare import write_compare
from grpokit.outputs.conversation import conversation_text, conversation_turns
from grpokit.outputs.health_events import read_health_events
from grpokit.outputs.health_summary import health_findings
from grpokit.outputs.metrics import ToolMetricNamesCallback
from grpokit.outputs.report import write_report
from grpokit.outputs.report_health import health_rows
from grpokit.outputs.report_plots import dynamics_panels
from grpokit.outputs.run_record import load_run
from grpokit.outputs.tool_metrics import readable_tool_metrics
from grpokit.outputs.tracking.callback import message_text
from grpokit.trainer.health import HealthCallback
from grpokit.trainer.health_checks import HealthMonitor

CALLS, FAILURES = "tools/calls_per_completion", "tools/failure_share"

# ----------------------------------------------------------------------------- TRL's names -> grpokit's


@pytest.mark.parametrize(
    "logs, expected",
    [
        ({"tools/call_frequency": 1.5, "tools/failure_frequency": 0.25}, {CALLS: 1.5, FAILURES: 0.25}),
        ({"tools/call_frequency": 0.0, "tools/failure_frequency": 0.0}, {CALLS: 0.0}),  # no call, no share
        ({"eval_tools/call_frequency": 2.0, "eval_tools/failure_frequency": 1.0}, {"eval_" + CALLS: 2.0, "eval_" + FAILURES: 1.0}),
        ({"loss": 0.5, "reward": 1.0}, {"loss": 0.5, "reward": 1.0}),  # a run without tools: untouched
    ],
)
def test_trl_tool_metrics_get_readable_names(logs, expected):
    assert readable_tool_metrics(dict(logs)) == expected


def test_the_renaming_callback_changes_the_log_in_place_for_every_callback_after_it():
    logs = {"tools/call_frequency": 0.75, "tools/failure_frequency": 0.5, "reward": 1.0}
    ToolMetricNamesCallback().on_log(None, None, None, logs=logs)
    assert logs == {"reward": 1.0, CALLS: 0.75, FAILURES: 0.5}


# ----------------------------------------------------------------------------- health checks, by hand


def feed(monitor: HealthMonitor, logs: list[dict]) -> list[tuple[int, str, str]]:
    return [(step, t.check, t.status) for step, log in enumerate(logs, start=1) for t in monitor.observe(log, step)]


def test_tool_failures_fire_after_patience_logs_at_or_above_threshold_and_skip_logs_without_a_call():
    monitor = HealthMonitor(HealthOptions(tool_failures={"threshold": 0.5, "patience": 3}))
    logs = [{CALLS: 1.0, FAILURES: 0.6}, {CALLS: 1.0, FAILURES: 0.5}, {CALLS: 0.0},  # no call: not read, streak kept
            {CALLS: 1.0, FAILURES: 0.2}, {CALLS: 1.0, FAILURES: 0.9}, {CALLS: 1.0, FAILURES: 1.0}, {CALLS: 0.5, FAILURES: 0.7}]  # fmt: skip
    assert feed(monitor, logs) == [(7, "tool_failures", "warned")]
    [transition] = HealthMonitor(HealthOptions(tool_failures={"patience": 1})).observe({CALLS: 0.5, FAILURES: 1.0}, 1)
    assert transition.message == "100% of the tool calls failed (0.50 calls per completion), 1 log in a row at or above 50%"
    assert "docstrings" in transition.fix


def test_tool_calls_fire_when_the_policy_stops_calling_after_it_had_called():
    never = HealthMonitor(HealthOptions(tool_calls={"patience": 2}))
    assert feed(never, [{CALLS: 0.0}] * 6) == [], "a policy that never called has not stopped"
    monitor = HealthMonitor(HealthOptions(tool_calls={"patience": 3}))
    calls = [0.0, 0.3, 0.8, 0.01, 0.0, 0.02, 0.0, 0.0, 0.0, 0.4]
    assert feed(monitor, [{CALLS: value} for value in calls]) == [
        (9, "tool_calls", "warned"),  # 0.01 counts as none (stopped_below 0.01); 0.02 breaks the streak
        (10, "tool_calls", "recovered"),
    ]
    assert HealthMonitor(HealthOptions(tool_calls={"patience": 1})).observe({CALLS: 0.0}, 1) == [], "no call seen before"


def test_a_resumed_run_remembers_that_the_policy_had_called_its_tools():
    monitor = HealthMonitor(HealthOptions(tool_calls={"patience": 1}))
    monitor.seed_baselines([{"step": 1, CALLS: 0.9}, {"step": 2, CALLS: 0.5}])
    [transition] = monitor.observe({CALLS: 0.0}, 3)
    assert transition.status == "warned" and "after up to 0.9 earlier" in transition.message


def test_tool_checks_with_action_stop_stop_the_run_with_a_checkpoint(tmp_path):
    callback = HealthCallback(HealthOptions(tool_failures={"patience": 2, "action": "stop"}), tmp_path)
    for step in (1, 2):
        state = SimpleNamespace(is_world_process_zero=True, global_step=step)
        control = SimpleNamespace(should_save=False, should_training_stop=False)
        logs = {CALLS: 1.0, FAILURES: 1.0, "loss": 0.0}
        callback.on_log(SimpleNamespace(output_dir="ckpts", fp16=False), state, control, logs=logs)
    assert logs["health/tool_failures"] == 2 and control.should_save and control.should_training_stop
    assert callback.trip.check == "tool_failures" and callback.trip.checkpoint == Path("ckpts/checkpoint-2")
    [event] = read_health_events(tmp_path / "health.jsonl")
    assert (event.step, event.check, event.status, event.exit_code) == (2, "tool_failures", "tripped", 3)


def test_the_tool_checks_default_to_warn_and_are_validated():
    options = HealthOptions()
    assert (options.tool_failures.action, options.tool_failures.threshold) == ("warn", 0.5)
    assert (options.tool_calls.action, options.tool_calls.stopped_below) == ("warn", 0.01)
    with pytest.raises(ValueError):
        HealthOptions(tool_failures={"threshold": 1.5})


# ----------------------------------------------------------------------------- what held over the whole run


def lines(**series) -> list[dict]:
    length = max(len(values) for values in series.values())
    return [
        {"step": step, **{key.replace("__", "/"): values[step - 1] for key, values in series.items() if step <= len(values)}}
        for step in range(1, length + 1)
    ]


def test_findings_over_the_run_name_failing_tools_and_a_policy_that_stopped_or_never_called():
    failing = health_findings(lines(tools__calls_per_completion=[1.0] * 4, tools__failure_share=[0.5, 0.75, 0.5, 0.25]), None)
    assert [(f.name, f.text) for f in failing] == [("tool_failures", "50% of the tool calls failed, on average over the steps that made one")]
    stopped = health_findings(lines(tools__calls_per_completion=[0.5, 0.6, 0.4, 0.2, 0, 0, 0, 0]), None)
    assert [f.text for f in stopped] == ["the policy stopped calling its tools: none in the last 4 logs, after up to 0.60 calls per completion"]
    assert health_findings(lines(tools__calls_per_completion=[0.5, 0.6, 0.4, 0.2, 0, 0, 0, 0.1]), None) == []
    never = health_findings(lines(tools__calls_per_completion=[0.0] * 3), None)
    assert [f.text for f in never] == ["no completion called a tool on every step (3 of 3)"]
    assert health_findings(lines(reward=[0.1, 0.2]), None) == [], "a run without tools"


# ----------------------------------------------------------------------------- conversations

CONVERSATION = [
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "multiply", "arguments": {"a": 347, "b": 129}}}]},
    {"role": "tool", "name": "multiply", "content": "44763"},
    {"role": "assistant", "content": "The answer is 44763."},
]  # fmt: skip
HOSTILE = [
    {"role": "assistant", "content": "<script>alert(1)</script>", "tool_calls": [
        {"type": "function", "function": {"name": "multiply", "arguments": '{"a": "<b>x</b>"}'}}]},
    {"role": "tool", "name": "multiply", "content": "{'error': \"<img src=x onerror=alert(2)>\"}"},
]  # fmt: skip


def test_a_conversation_as_turns_and_as_text():
    turns = conversation_turns(CONVERSATION)
    assert [(t.role, t.text, t.name) for t in turns] == [("assistant", "", None), ("tool", "44763", "multiply"), ("assistant", "The answer is 44763.", None)]
    assert turns[0].tool_calls[0].text == "multiply(a=347, b=129)"
    assert conversation_text(CONVERSATION) == "assistant: [tool call] multiply(a=347, b=129)\ntool multiply: 44763\nassistant: The answer is 44763."
    assert message_text(CONVERSATION) == conversation_text(CONVERSATION), "the trackers' completions tables show the calls"
    assert conversation_turns("42")[0].text == "42" and conversation_turns(None)[0].text == ""
    assert conversation_turns(HOSTILE)[0].tool_calls[0].arguments == 'a="<b>x</b>"'  # JSON text arguments read too


def tool_run_dir(tmp_path: Path, name: str = "agent") -> Path:
    out = tmp_path / name
    out.mkdir()
    calls = [0.3, 0.5, 0.8, 1.0, 1.0, 1.0]
    metrics = [{"step": step, "reward": 0.3 + 0.1 * step, "loss": 0.0, CALLS: value, FAILURES: 0.0 if step < 6 else 0.5,
                "health/tool_failures": 0, "health/tool_calls": 0} for step, value in enumerate(calls, start=1)]  # fmt: skip
    (out / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in metrics), encoding="utf-8")
    prompt = "system: You are a helpful assistant.\nuser: What is 347 * 129?"
    before = {"step": 0, "prompt": prompt, "answer": "44763", "completion": message_text(HOSTILE), "messages": HOSTILE, "reward": 0.0}
    after = {"step": 6, "prompt": prompt, "answer": "44763", "completion": message_text(CONVERSATION), "messages": CONVERSATION, "reward": 1.0}
    (out / "before_after_completions.jsonl").write_text(json.dumps(before) + "\n" + json.dumps(after) + "\n", encoding="utf-8")
    config = {"model_id": "builtin:tiny-chat", "max_completion_length": 64, "health": HealthOptions().model_dump()}
    (out / "grpokit_config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return out


def test_the_report_draws_tool_panels_and_conversations_escaped(tmp_path):
    out = tool_run_dir(tmp_path)
    run = load_run(out)
    titles = [panel.title for panel in dynamics_panels([run.metrics], run.config)]
    assert "tool calls per completion" in titles and "tool failure share (of calls)" in titles
    html = write_report(out).html.read_text(encoding="utf-8")
    assert html.count('<div class="conversation">') == 2
    assert "calls <code>multiply(a=347, b=129)</code>" in html
    assert '<div class="turn tool"><span class="role">tool · multiply</span><code class="text">44763</code>' in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert 'multiply(a=&#34;&lt;b&gt;x&lt;/b&gt;&#34;)' in html
    assert {row.name for row in health_rows(run)} >= {"tool_failures", "tool_calls"}


def test_a_run_without_tools_lists_no_tool_checks_and_draws_no_tool_panels(tmp_path):
    out = tmp_path / "plain"
    out.mkdir()
    (out / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5, "health/zero_spread": 0}) + "\n", encoding="utf-8")
    (out / "grpokit_config.yaml").write_text(yaml.safe_dump({"model_id": "builtin:tiny", "health": HealthOptions().model_dump()}), encoding="utf-8")
    run = load_run(out)
    assert not {"tool_failures", "tool_calls"} & {row.name for row in health_rows(run)}
    assert not [p for p in dynamics_panels([run.metrics], run.config) if p.title.startswith("tool")]


def test_the_compare_view_draws_conversations_too(tmp_path):
    first, second = tool_run_dir(tmp_path, "a"), tool_run_dir(tmp_path, "b")
    for out in (first, second):  # compare reads the training samples
        shutil.copy(out / "before_after_completions.jsonl", out / "sample_completions.jsonl")
    html = write_compare([first, second], tmp_path / "compare.html").read_text(encoding="utf-8")
    assert html.count('<div class="conversation">') == 2 and "<script>alert" not in html


def chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)


LAYOUT_PROBE = """<script>
const turns = [...document.querySelectorAll('#completions .turn')].map((el) => {
  const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
  return {role: el.className, left: r.left, height: r.height, background: s.backgroundColor, text: el.innerText};
});
const pre = document.createElement('pre'); pre.id = 'layout'; pre.textContent = JSON.stringify(turns); document.body.appendChild(pre);
</script>"""


@pytest.mark.slow
def test_the_rendered_conversation_shows_turns_indented_tool_results_and_no_injected_markup(tmp_path):
    browser = chromium()
    if browser is None:
        skip_unless_in_ci("no headless Chromium on this machine (Debian: apt-get install chromium)")
    out = tool_run_dir(tmp_path)
    html = write_report(out).html.read_text(encoding="utf-8")
    probe = out / "probe.html"
    probe.write_text(html.replace("</body>", LAYOUT_PROBE + "</body>"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900"]
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    match = re.search(r'<pre id="layout">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert match, dom.stderr[-2000:]
    turns = json.loads(match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert [turn["role"] for turn in turns] == ["turn assistant", "turn tool", "turn assistant", "turn tool", "turn assistant"]
    assistant, tool = turns[2], turns[3]
    assert tool["left"] > assistant["left"] + 10, "a tool result is indented under the call"
    assert tool["background"] == "rgb(240, 253, 244)" and assistant["background"] == "rgb(239, 246, 255)"
    assert "<script>alert(1)</script>" in turns[0]["text"], "the hostile text is shown as text, not run"
    assert "calls multiply(a=347, b=129)" in assistant["text"]


def test_the_report_shows_a_sample_conversation_of_grpokit_eval(tmp_path):
    out = tool_run_dir(tmp_path)
    (out / "eval").mkdir()
    (out / "eval" / "eval.json").write_text(json.dumps({"model": str(out), "split": "test", "num_rows": 2, "num_samples": 1,
                                                        "reward_means": {"exact_match": 0.5}, "total_mean": 0.5}), encoding="utf-8")  # fmt: skip
    samples = [{"model": str(out), "row": 0, "completion": [{"role": "assistant", "content": "12"}], "total": 0.0},
               {"model": str(out), "row": 1, "completion": CONVERSATION, "total": 1.0}]  # fmt: skip
    (out / "eval" / "eval_samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    html = write_report(out).html.read_text(encoding="utf-8")
    section = html[html.index('<div id="eval-conversation">') :]
    assert f"A sample conversation ({out}, row 1, reward total 1.000)" in html
    assert section.index("calls <code>multiply(a=347, b=129)</code>") < section.index("The answer is 44763.")


def test_the_tool_metrics_are_renamed_before_any_callback_reads_the_log():
    import dataclasses

    from grpokit.trainer.run_callbacks import RunCallbacks

    order = [field.name for field in dataclasses.fields(RunCallbacks)]
    assert order[0] == "tool_metric_names"
    assert {"health", "tensorboard", "metrics", "tracking", "extra"} < set(order[1:])


def test_the_compare_view_lines_up_a_run_with_tools_and_one_without(tmp_path):
    agent = tool_run_dir(tmp_path, "agent")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5, "health/zero_spread": 0}) + "\n", encoding="utf-8")
    (plain / "grpokit_config.yaml").write_text(yaml.safe_dump({"model_id": "builtin:tiny", "health": HealthOptions().model_dump()}), encoding="utf-8")
    html = write_compare([agent, plain], tmp_path / "compare.html").read_text(encoding="utf-8")
    row = html[html.index("<td><code>tool_calls</code></td>") :].split("</tr>")[0]
    assert row.count("<td>") == 3 and ">ok<" in row and ">not checked<" in row, row
    assert "tool calls per completion, last 10 steps" in html
    alone = write_compare([plain, plain], tmp_path / "plain.html").read_text(encoding="utf-8")
    assert "tool_calls" not in alone and "tool calls per completion" not in alone


# The docstring is the task's own, word for word: it is the schema in the prompt, and the tiny model calls
# the tool only for the prompt it was warmed up on.
FAILING_TOOL = '''
def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    raise RuntimeError("calculator offline")
'''


@pytest.mark.slow
def test_a_run_whose_tool_always_fails_is_stopped_by_the_tool_failures_check(tmp_path):
    from grpokit.config import load_config
    from grpokit.tasks import tool_task
    from grpokit.trainer import train

    (tmp_path / "failing.py").write_text(FAILING_TOOL, encoding="utf-8")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(p.row()) + "\n" for p in tool_task.make_problems(64, seed=0)), encoding="utf-8")
    config = {
        "model_id": "builtin:tiny-chat", "use_lora": False, "train_dataset_path": str(data), "output_dir": str(tmp_path / "out"),
        "tools": ["failing.py:multiply"], "rewards": [{"name": "exact_match", "extract": "last_number"}],
        "max_steps": 2, "per_device_train_batch_size": 32, "num_generations": 8, "max_completion_length": 64,
        "max_tool_calling_iterations": 1, "learning_rate": 1e-4, "seed": 0, "logging_steps": 1, "save_strategy": "no",
        "health": {"tool_failures": {"action": "stop", "patience": 1}, "zero_spread": {"action": "off"}}, "log_completions_every": 1,
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = train(load_config(tmp_path / "config.yaml"))
    assert result.stopped_by_health is not None and result.stopped_by_health.check == "tool_failures"
    [event] = [e for e in read_health_events(tmp_path / "out" / "health.jsonl") if e.status == "tripped"]
    assert event.check == "tool_failures" and event.exit_code == 3 and event.step == result.global_step
    assert event.message.startswith("100% of the tool calls failed") and result.global_step == 1
    lines = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines[-1]["tools/failure_share"] == 1.0 and lines[-1]["health/tool_failures"] == 2
    records = [  # TRL's samples, and the first training prompts answered through the tool loop before training
        json.loads(line)
        for name in ("sample_completions.jsonl", "before_after_completions.jsonl")
        for line in (tmp_path / "out" / name).read_text(encoding="utf-8").splitlines()
    ]
    results = [m for record in records for m in record.get("messages", []) if m.get("role") == "tool"]
    assert results and all("calculator offline" in m["content"] for m in results), "the model read the error as the result"
