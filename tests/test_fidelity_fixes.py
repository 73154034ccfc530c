"""The smaller differences a migrating user trips on (issue 11, point 6), each fixed and checked here."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from grpokit.cli import app
from grpokit.config import load_config
from grpokit.errors import ConfigError, RunError
from grpokit.model.builtin import resolve_model_path
from grpokit.outputs.hub import HubPush, push_model_folder
from grpokit.rewards import build_reward
from grpokit.trainer import train

# ----------------------------------------------------------------------------- a causal LM as the reward model


@pytest.fixture(scope="module")
def causal_lm_dir(tmp_path_factory) -> Path:
    """A tiny Qwen2ForCausalLM: what the sample notebook passes as its reward model (a chat model)."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    directory = tmp_path_factory.mktemp("causal_lm")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny"))
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_a_causal_lm_as_reward_model_is_warned_about(causal_lm_dir, caplog):
    caplog.set_level(logging.WARNING, logger="grpokit.rewards")
    reward = build_reward("reward_model", model_name_or_path=str(causal_lm_dir), device="cpu")
    reward(prompts=["1+1="], completions=["2"])
    [warning] = [r.getMessage() for r in caplog.records if "is not a trained reward model" in r.getMessage()]
    assert "(saved as Qwen2ForCausalLM)" in warning and "score.weight is initialised at random" in warning


def test_a_sequence_classification_reward_model_gets_no_warning(tmp_path, caplog):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny"))
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    Qwen2ForSequenceClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    caplog.set_level(logging.WARNING, logger="grpokit.rewards")
    build_reward("reward_model", model_name_or_path=str(tmp_path), device="cpu")(prompts=["Q"], completions=["A"])
    assert "not a trained reward model" not in caplog.text


# ----------------------------------------------------------------------------- push_to_hub


class FakeHub:
    """The three Hub endpoints `upload_folder` uses (create repo, preupload, commit), on 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.files: dict[str, bytes] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"

    def _handler(hub):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, payload: dict, code: int = 200) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", self.path))
                if self.path == "/api/repos/create":
                    request = json.loads(body)
                    return self._reply({"url": f"{hub.endpoint}/{request.get('organization') or 'me'}/{request['name']}"})
                if "/preupload/" in self.path:
                    files = json.loads(body)["files"]
                    return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                if "/commit/" in self.path:
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            hub.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    return self._reply({"commitUrl": f"{hub.endpoint}/me/model/commit/{'a' * 40}", "commitOid": "a" * 40})
                return self._reply({"error": "not here"}, 404)

            def do_GET(self) -> None:
                hub.requests.append(("GET", self.path))
                self._reply({"error": "not here"}, 404)

        return Handler


@pytest.fixture
def fake_hub(monkeypatch):
    import huggingface_hub.constants

    hub = FakeHub()
    thread = threading.Thread(target=hub.server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)  # what HF_ENDPOINT sets at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # conftest keeps the real Hub away
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    yield hub
    hub.server.shutdown()
    hub.server.server_close()


@pytest.mark.slow
def test_push_to_hub_with_merge_weights_pushes_the_merged_model_once(tiny_config, fake_hub):
    config = load_config(data={**tiny_config, "merge_weights": True, "push_to_hub": True, "hub_model_id": "me/model"})
    assert config.grpo_config.push_to_hub is False  # transformers never pushes a checkpoint's adapter
    train(config)
    out = Path(tiny_config["output_dir"])
    assert fake_hub.files["model.safetensors"] == (out / "model.safetensors").read_bytes()
    assert {"config.json", "tokenizer.json", "grpokit_config.yaml"} <= set(fake_hub.files)
    assert not {name for name in fake_hub.files if name.startswith(("adapter", "checkpoints/", "metrics"))}
    assert [path for _, path in fake_hub.requests] == [
        "/api/repos/create", "/api/models/me/model/preupload/main", "/api/models/me/model/commit/main",
    ]  # fmt: skip


def test_a_hub_failure_is_one_error_and_the_model_stays_saved(tmp_path, monkeypatch):
    import huggingface_hub.constants

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(RunError) as error:
        push_model_folder(model_dir, HubPush(repo_id="me/model"), token="hf_test_token")
    assert error.value.exit_code == 1
    assert error.value.what.startswith("could not push the model to the Hugging Face Hub repo 'me/model': ")
    assert "\n" not in error.value.what and f"the model is saved in {model_dir}" in error.value.fix
    assert (model_dir / "model.safetensors").read_bytes() == b"weights"


def test_hub_offline_mode_is_the_same_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RunError, match="OfflineModeIsEnabled"):  # conftest sets HF_HUB_OFFLINE=1
        push_model_folder(tmp_path, HubPush(repo_id="me/model"), token=None)


# ----------------------------------------------------------------------------- wandb_token alone


def test_wandb_token_alone_turns_wandb_on(tiny_config):
    from grpokit.outputs.tracking import build_trackers

    tracker = build_trackers(load_config(data={**tiny_config, "wandb_token": "key-123"}), is_main_process=True)
    wandb = tracker.tracker
    assert (wandb.name, wandb.project, wandb.api_key) == ("wandb", "grpokit", "key-123")
    chosen = build_trackers(load_config(data={**tiny_config, "wandb_token": "k", "wandb_project": "grpo"}), is_main_process=True)
    assert chosen.tracker.project == "grpo"
    empty = build_trackers(load_config(data={**tiny_config, "wandb_token": ""}), is_main_process=True)
    assert type(empty).__name__ == "NullTracker"  # the sample's empty token: W&B off, as there


def test_a_sagemaker_job_keeps_a_wandb_token_alone_tracking(tmp_path):
    from grpokit.launch.sagemaker import plan as planning
    from grpokit.launch.sagemaker.settings import resolve_settings

    (tmp_path / "train.jsonl").write_text('{"prompt": "1+1=", "answer": "2"}\n')
    config = {"model_id": "builtin:tiny", "train_dataset_path": str(tmp_path / "train.jsonl"), "wandb_token": "key-123"}
    settings = resolve_settings({"region": "us-east-1"}, {}, source="c.yaml", env={})
    plan = planning.plan_job(config, settings, config_dir=tmp_path, cwd=tmp_path)
    assert plan.container_config["wandb_project"] == "grpokit" and "wandb_token" not in plan.container_config
    assert plan.environment["WANDB_API_KEY"] == "key-123"
    assert any(line.startswith("wandb==") for line in plan.requirements)


# ----------------------------------------------------------------------------- tf32 on a CPU


def test_tf32_on_a_cpu_falls_back_like_bf16(tiny_config):
    config = load_config(data={**tiny_config, "tf32": True}, cuda_available=False)
    assert config.grpo_config.tf32 is None
    assert "tf32: True -> None (needs an Ampere or newer CUDA GPU and none was found; full float32 matmuls)" in config.override_lines


# ----------------------------------------------------------------------------- the summary after a resume


@pytest.mark.slow
def test_the_summary_after_a_resume_counts_the_steps_this_run_trained(tiny_config, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**tiny_config, "max_steps": 1}))
    first = CliRunner().invoke(app, ["train", str(path)])
    assert first.exit_code == 0, first.output
    assert "trained 1 steps in" in first.output
    resumed = CliRunner().invoke(app, ["train", str(path), "--set", "max_steps=2"])
    assert resumed.exit_code == 0, resumed.output
    assert "trained 1 steps (resumed at step 1, now at step 2) in" in resumed.output


# ----------------------------------------------------------------------------- grpokit rewards without a source


@pytest.mark.slow
def test_grpokit_rewards_generates_when_given_no_completions(tiny_config, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    result = CliRunner().invoke(app, ["rewards", str(path), "--rows", "2"])
    assert result.exit_code == 0, result.output
    assert "generated by builtin:tiny (greedy)" in result.output and "rouge_l" in result.output


# ----------------------------------------------------------------------------- SageMaker: warm pools, accelerate launch


def sagemaker_plan(tmp_path: Path, section: dict, **config):
    from grpokit.launch.sagemaker import plan as planning
    from grpokit.launch.sagemaker.settings import resolve_settings

    (tmp_path / "train.jsonl").write_text('{"prompt": "1+1=", "answer": "2"}\n')
    training = {"model_id": "builtin:tiny", "train_dataset_path": str(tmp_path / "train.jsonl"), **config}
    settings = resolve_settings({"region": "us-east-1", **section}, {}, source="c.yaml", env={})
    return planning.plan_job(training, settings, config_dir=tmp_path, cwd=tmp_path)


def test_keep_alive_reaches_the_job_request(tmp_path):
    pytest.importorskip("sagemaker.train")
    from grpokit.launch.sagemaker.staging import stage_job_files
    from grpokit.launch.sagemaker.submit import training_job_request

    plan = sagemaker_plan(tmp_path, {"keep_alive_seconds": 1800, "bucket": "b"})
    request = training_job_request(plan, stage_job_files(plan, tmp_path / "staging"))
    assert request["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 1800
    with pytest.raises(ConfigError, match="keep_alive_seconds .* does not work with spot training"):
        sagemaker_plan(tmp_path, {"keep_alive_seconds": 60, "spot": True})


def test_the_job_can_run_through_accelerate_launch_with_the_configs_accelerate_file(tmp_path, monkeypatch):
    pytest.importorskip("sagemaker.train")
    from grpokit.compat import sagemaker_internals
    from grpokit.launch.sagemaker.staging import stage_job_files
    from grpokit.launch.sagemaker.submit import build_model_trainer, make_session

    accelerate = Path(__file__).resolve().parents[1] / "examples" / "aws_sample" / "accelerate" / "default_config.yaml"
    (tmp_path / "default_config.yaml").write_text(accelerate.read_text())
    plan = sagemaker_plan(tmp_path, {"launcher": "accelerate", "bucket": "b", "instance_count": 2}, distributed="default_config.yaml")
    assert plan.container_config["distributed"] == "distributed/default_config.yaml"
    assert plan.command == (
        "accelerate launch --config_file /opt/ml/input/data/config/distributed/default_config.yaml"
        " --num_machines $SM_HOST_COUNT --machine_rank $SM_CURRENT_HOST_RANK --main_process_ip $SM_MASTER_ADDR"
        " --main_process_port ${SM_MASTER_PORT:-29500} grpokit_entry.py --config /opt/ml/input/data/config/grpokit.yaml"
    )
    staged = stage_job_files(plan, tmp_path / "staging")
    assert (staged.config_dir / "distributed" / "default_config.yaml").read_text() == accelerate.read_text()
    session = make_session(plan.settings, offline=True)
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")  # the SDK would ask IAM about the role
    with_role = dataclasses.replace(plan, settings=plan.settings.model_copy(update={"role": "arn:aws:iam::1:role/r"}))
    trainer = build_model_trainer(with_role, staged, session, trainer_class=sagemaker_internals.offline_trainer_class())
    assert trainer.source_code.command == plan.command and trainer.distributed is None
    with pytest.raises(ConfigError, match="launcher: accelerate needs distributed: to name an accelerate config file"):
        sagemaker_plan(tmp_path, {"launcher": "accelerate"}, distributed="ddp")


def test_the_default_launcher_is_still_torchrun(tmp_path):
    plan = sagemaker_plan(tmp_path, {})
    assert plan.command is None and plan.hyperparameters == {"config": "/opt/ml/input/data/config/grpokit.yaml"}
