"""The HTML report: statistics worked out by hand, a self-contained page, `grpokit report` and `grpokit train`."""

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
from grpokit.outputs.report import (
    completion_rows,
    load_run,
    moving_average,
    read_jsonl,
    reward_statistics,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_lines(path: Path, records: list[dict], tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records) + tail, encoding="utf-8")
    return path


METRICS = [
    {"step": 0, "heldout_accuracy": 0.5},
    {"step": 1, "reward": 0.25, "reward_std": 0.4, "rewards/match/mean": 0.5, "rewards/len/mean": 0.0},
    {"step": 2, "reward": 0.75, "reward_std": 0.3, "rewards/match/mean": 1.0, "rewards/len/mean": 0.5},
    {"step": 3, "reward": 0.5, "reward_std": 0.2, "rewards/match/mean": 0.5, "rewards/len/mean": 0.5,
     "rewards/match/std": 0.1, "heldout_accuracy": 0.75},
]
COMPLETIONS = [
    {"step": 0, "prompt": "1+2=", "answer": "3", "completion": "4", "reward": 0.0},
    {"step": 0, "prompt": "<b>5+5=</b>", "answer": "10", "completion": "<script>x</script>", "reward": 0.0},
    {"step": 2, "prompt": "1+2=", "answer": "3", "completion": "5", "reward": 0.0},
    {"step": 3, "prompt": "1+2=", "answer": "3", "completion": "3", "reward": 1.0},
    {"step": 3, "prompt": "<b>5+5=</b>", "answer": "10", "completion": "", "reward": 0.0},
]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory as a 3-step training leaves it, with a secret already masked in its config."""
    out = tmp_path / "run"
    write_lines(out / "metrics.jsonl", METRICS)
    write_lines(out / "completions.jsonl", COMPLETIONS)
    config = {"model_id": "builtin:tiny", "learning_rate": 0.0001, "token": "***"}
    (out / "grpokit_config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return out


def test_reward_statistics_match_hand_computed_values():
    stats = {s.name: s for s in reward_statistics(METRICS)}
    assert list(stats) == ["reward (total)", "match", "len"]
    total = stats["reward (total)"]
    assert (total.steps, total.first, total.last) == (3, 0.25, 0.5)
    assert total.mean == pytest.approx(0.5)  # (0.25 + 0.75 + 0.5) / 3
    assert (total.minimum, total.maximum, total.last_std) == (0.25, 0.75, 0.2)
    match = stats["match"]
    assert match.mean == pytest.approx(2.0 / 3.0) and match.last_std == 0.1
    assert stats["len"].last_std is None  # never logged


def test_moving_average_uses_fewer_values_at_the_start():
    assert moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert moving_average([], 3) == []


def test_completion_rows_pair_first_and_last_step_by_prompt():
    first, last, rows = completion_rows(COMPLETIONS)
    assert (first, last) == (0, 3)
    assert [row.prompt for row in rows] == ["1+2=", "<b>5+5=</b>"]
    assert rows[0].before["completion"] == "4" and rows[0].after["completion"] == "3"
    assert completion_rows([]) == (None, None, [])
    single = completion_rows(COMPLETIONS[:2])
    assert single[1] is None and all(row.after is None for row in single[2])


def test_read_jsonl_skips_a_line_cut_short(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", [{"step": 1}, {"step": 2}], tail='{"step": 3, "rew')
    assert [record["step"] for record in read_jsonl(path)] == [1, 2]


def test_report_is_self_contained_and_holds_config_curves_and_completions(run_dir):
    paths = write_report(run_dir)
    html = paths.html.read_text(encoding="utf-8")
    assert paths.html == run_dir / "report.html" and paths.plot == run_dir / "curves.png"
    # Config, per-reward statistics and the completions table are all there.
    differs = html.split('<table id="config-differs">')[1].split("</table>")[0]  # what differs from the defaults, first
    assert "<code>model_id</code></td><td><code>builtin:tiny</code>" in differs and "<code>token</code></td><td><code>***</code>" in differs
    assert '<pre id="config">learning_rate: 0.0001' in html, "then the rest"
    assert '<table id="rewards">' in html and "<td>match</td>" in html
    assert '<table id="completions">' in html and "completion (step 0)" in html and "completion (step 3)" in html
    # Values from the run are escaped, never markup.
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "&lt;b&gt;5+5=&lt;/b&gt;" in html
    # No external assets: the one image is inline base64 and decodes to the PNG written next to it.
    assert not re.search(r"""(src|href)=["'](?!data:)""", html) and "<link" not in html
    encoded = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(encoded) == paths.plot.read_bytes()
    image = Image.open(io.BytesIO(paths.plot.read_bytes()))
    assert image.format == "PNG" and image.size[0] > image.size[1] > 100  # two panels side by side


def test_report_of_a_running_training_reads_what_is_there(tmp_path):
    out = tmp_path / "running"
    write_lines(out / "metrics.jsonl", [{"step": 1, "reward": 0.5}], tail='{"step": 2, "rew')
    paths = write_report(out)
    html = paths.html.read_text(encoding="utf-8")
    assert "1 step logged" in html and "recorded no sample completions" in html and "holds no resolved config" in html
    assert paths.plot.read_bytes().startswith(PNG_MAGIC)


def test_report_without_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no metrics.jsonl"):
        load_run(tmp_path)


def grpokit(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "grpokit", *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)


def test_cli_report_writes_the_report_and_names_it(run_dir):
    result = grpokit("report", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert "report.html" in result.stdout and (run_dir / "report.html").is_file()


def test_cli_report_on_a_directory_without_a_run_exits_2(tmp_path):
    result = grpokit("report", str(tmp_path))
    assert result.returncode == 2
    assert "no metrics.jsonl" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_train_writes_the_report_and_grpokit_report_rebuilds_it(tmp_path, tiny_config):
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(tiny_config), encoding="utf-8")
    out = Path(tiny_config["output_dir"])

    trained = grpokit("train", str(config_path))
    assert trained.returncode == 0, trained.stderr
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "rouge_l" in html and "<code>learning_rate</code></td><td><code>0.001</code>" in html and "2 steps logged" in html

    (out / "report.html").unlink()
    rebuilt = grpokit("report", str(out))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "2 steps logged" in (out / "report.html").read_text(encoding="utf-8")
