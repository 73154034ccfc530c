"""`grpokit compare A B` / `grpokit report A B`: configs diffed by hand, completions for the same prompts, one page."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from grpokit.errors import ConfigError
from grpokit.outputs.compare import common_prompt_rows, config_diff, flatten, run_summary, write_compare
from grpokit.outputs.health_events import HealthEvent, append_health_event
from grpokit.outputs.run_record import load_run


def write_run(directory: Path, *, learning_rate: float, rewards: list[float], completions: list[dict], tripped: bool = False) -> Path:
    directory.mkdir(parents=True)
    lines = [
        {"step": step, "reward": reward, "completions/mean_length": 4.0 + step, "entropy": 0.5, "learning_rate": learning_rate,
         "step_time": 2.0, "num_tokens": 100.0 * step, "health/zero_spread": 2 if tripped and step == len(rewards) else 0}
        for step, reward in enumerate(rewards, start=1)
    ]
    (directory / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    (directory / "sample_completions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in completions), encoding="utf-8")
    config = {
        "model_id": "builtin:tiny",
        "learning_rate": learning_rate,
        "rewards": [{"name": "exact_match", "weight": 1.0}],
        "health": {"zero_spread": {"action": "stop", "threshold": 0.95}},
    }
    (directory / "grpokit_config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    if tripped:
        append_health_event(directory / "health.jsonl", HealthEvent(len(rewards), "zero_spread", "tripped", "flat", exit_code=3))
    return directory


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a = write_run(
        tmp_path / "lr-1e-4", learning_rate=1e-4, rewards=[0.2, 0.4, 0.6],
        completions=[
            {"step": 1, "prompt": "1+2=", "completion": "4", "reward": 0.0},
            {"step": 3, "prompt": "1+2=", "completion": "3", "reward": 1.0},
            {"step": 3, "prompt": "5+5=", "completion": "<b>10</b>", "reward": 1.0},
            {"step": 3, "prompt": "only in a", "completion": "x", "reward": 0.0},
        ],
    )
    b = write_run(
        tmp_path / "lr-3e-4", learning_rate=3e-4, rewards=[0.2, 0.1], tripped=True,
        completions=[
            {"step": 2, "prompt": "5+5=", "completion": "11", "reward": 0.0},
            {"step": 2, "prompt": "1+2=", "completion": "", "reward": 0.0},
        ],
    )
    return a, b


def test_flatten_and_config_diff_by_hand():
    assert flatten({"a": 1, "s": {"x": True, "y": [1, 2]}}) == {"a": "1", "s.x": "True", "s.y": "[1, 2]"}
    rows = config_diff([{"lr": 1e-4, "seed": 0, "health": {"kl": {"action": "warn"}}}, {"lr": 3e-4, "seed": 0, "beta": 0.04}])
    assert rows == [("lr", ["0.0001", "0.0003"]), ("health.kl.action", ["warn", "(not set)"]), ("beta", ["(not set)", "0.04"])]


def test_completions_for_the_prompts_every_run_recorded(two_runs):
    runs = [load_run(path) for path in two_runs]
    rows = common_prompt_rows(runs)
    assert [row.prompt for row in rows] == ["1+2=", "5+5="], "in the first run's order; 'only in a' is left out"
    assert [record["completion"] for record in rows[0].records] == ["3", ""], "each run's latest completion"


def test_run_summary_by_hand(two_runs):
    summary = run_summary(load_run(two_runs[0]))
    assert summary["steps logged"] == 3 and summary["reward, first 10 steps"] == pytest.approx(0.4)
    assert summary["seconds / step (median)"] == 2.0 and summary["tokens / s (median)"] == pytest.approx(50.0)  # 100 tokens / 2 s


def test_compare_page_diffs_configs_overlays_curves_and_shows_health(two_runs, tmp_path):
    page = write_compare(list(two_runs), tmp_path / "cmp" / "compare.html")
    html = page.read_text(encoding="utf-8")
    assert "grpokit compare: lr-1e-4 vs lr-3e-4" in html
    config_table = html[html.index('<table id="compare-config">') :]
    assert "<code>learning_rate</code></td><td><code>0.0001</code></td><td><code>0.0003</code>" in config_table
    assert "<code>model_id</code>" not in config_table.split("</table>")[0], "equal keys are not listed"
    health = html[html.index('<table id="compare-health">') : html.index("</table>")]
    assert "stopped by the health check zero_spread" in health and "tripped at step 2" in health
    completions = html[html.index('<table id="compare-completions">') :]
    assert "&lt;b&gt;10&lt;/b&gt;" in completions and "only in a" not in completions
    assert not re.search(r"""(src|href)=["'](?!data:)""", html), "self-contained"
    encoded = re.search(r'id="compare-curves" [^>]*src="data:image/png;base64,([^"]+)"', html).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(encoded))).format == "PNG"


def test_compare_needs_two_runs(two_runs, tmp_path):
    with pytest.raises(ConfigError, match="two or more run directories"):
        write_compare([two_runs[0]], tmp_path / "x.html")
    with pytest.raises(ConfigError, match="no metrics.jsonl"):
        write_compare([two_runs[0], tmp_path], tmp_path / "x.html")


def grpokit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grpokit", *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_cli_report_of_two_runs_is_the_compare_page(two_runs, tmp_path):
    from typer.testing import CliRunner

    from grpokit.cli import app

    output = tmp_path / "side-by-side.html"
    result = CliRunner().invoke(app, ["report", str(two_runs[0]), str(two_runs[1]), "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "compare:" in result.stdout and output.is_file()
    result = CliRunner().invoke(app, ["compare", str(two_runs[0])])
    assert result.exit_code == 2 and "two or more run directories" in result.stderr


def test_cli_compare_writes_compare_html_in_the_current_directory(two_runs, tmp_path):
    result = grpokit("compare", str(two_runs[0]), str(two_runs[1]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "compare.html").is_file()
