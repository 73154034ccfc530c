"""`grpokit launch sagemaker`: the pure request building, the dry run, and a launch against moto.

Nothing here reaches AWS: the launch tests run against a `moto_server` on 127.0.0.1 that the
`moto` fixture starts on a free port and stops afterwards.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from grpokit.cli import app
from grpokit.errors import ConfigError, DataError, RewardConfigError
from grpokit.launch.sagemaker import plan as plan_module
from grpokit.launch.sagemaker import settings as settings_module
from grpokit.launch.sagemaker import staging as staging_module

REPO = Path(__file__).resolve().parents[1]
ROLE = "arn:aws:iam::123456789012:role/GrpokitTestRole"
AWS_VARIABLE_PREFIXES = ("AWS_", "SAGEMAKER_", "BOTO")
SECRETS = ("hf_SECRET_TOKEN_123", "wandb-SECRET-456")


def _has_sdk() -> bool:
    try:
        import sagemaker.train  # noqa: F401
    except ImportError:
        return False
    return True


needs_sdk = pytest.mark.skipif(
    not _has_sdk(), reason="the SageMaker SDK is an optional extra: pip install 'grpokit[sagemaker]'"
)


def write_config(directory: Path, **extra) -> Path:
    """A small launchable config with local data; `extra` keys override or add."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": f"{a}+{a}=", "answer": str(2 * a)} for a in range(8)]
    (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (directory / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]), encoding="utf-8")
    config = {
        "model_id": "builtin:tiny",
        "train_dataset_path": str(directory / "train.jsonl"),
        "test_dataset_path": str(directory / "test.jsonl"),
        "token": SECRETS[0],
        "wandb_token": SECRETS[1],
        "max_steps": 3,
        "per_device_train_batch_size": 2,
        "num_generations": 2,
        **extra,
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- pure: settings


def test_settings_precedence_defaults_then_section_then_flags():
    section = {"instance_type": "ml.g6e.2xlarge", "spot": True, "tags": {"team": "a", "project": "x"}}
    flags = {"instance_type": "ml.p5.48xlarge", "instance_count": None, "tags": {"team": "b"}}
    settings = settings_module.resolve_settings(section, flags, source="c.yaml", env={"AWS_REGION": "eu-west-1"})
    assert settings.instance_type == "ml.p5.48xlarge"  # flag wins over the section
    assert settings.instance_count == 1  # default (flag not given)
    assert settings.spot is True  # from the section
    assert settings.tags == {"team": "b", "project": "x"}  # merged key by key
    assert settings.region == "eu-west-1"  # from the environment
    assert settings.resolved_max_wait_seconds == 2 * settings.max_runtime_seconds


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"instance_typ": "ml.g5.xlarge"}, "unknown config key 'sagemaker.instance_typ'"),
        (
            {"spot": True, "max_runtime_seconds": 100, "max_wait_seconds": 50},
            "must be at least max_runtime_seconds",
        ),
        ({"max_wait_seconds": 50}, "only applies to spot training"),
        ({"instance_count": 0}, "sagemaker.instance_count"),
        ({"job_name": "my_job"}, "sagemaker.job_name"),
    ],
)
def test_bad_settings_name_the_key(section, message):
    with pytest.raises(ConfigError) as raised:
        settings_module.resolve_settings(section, {}, source="c.yaml", env={})
    assert message in raised.value.message
    assert "c.yaml" in raised.value.message


def test_env_and_tag_flags():
    assert settings_module.parse_key_values(["a=1", "b=x=y"], option="--tag") == {"a": "1", "b": "x=y"}
    assert settings_module.parse_key_values(["HF_TOKEN"], option="--env", local_env={"HF_TOKEN": "t"}) == {
        "HF_TOKEN": "t"
    }
    with pytest.raises(ConfigError, match="not set in this shell"):
        settings_module.parse_key_values(["MISSING"], option="--env", local_env={})
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        settings_module.parse_key_values(["novalue"], option="--tag")


@pytest.mark.parametrize(
    ("region", "instance_type", "expected"),
    [
        (
            "us-east-1",
            "ml.g5.2xlarge",
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.8.0-gpu-py312",
        ),
        (
            "eu-west-1",
            "ml.p4d.24xlarge",
            "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.8.0-gpu-py312",
        ),
        (
            "us-west-2",
            "ml.m5.xlarge",
            "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:2.8.0-cpu-py312",
        ),
        (
            "af-south-1",
            "ml.g5.xlarge",
            "626614931356.dkr.ecr.af-south-1.amazonaws.com/pytorch-training:2.8.0-gpu-py312",
        ),
        (
            "cn-north-1",
            "ml.g5.xlarge",
            "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-training:2.8.0-gpu-py312",
        ),
    ],
)
def test_default_image_uri(region, instance_type, expected):
    assert settings_module.default_image_uri(region, instance_type) == expected


@needs_sdk
def test_image_registry_accounts_match_the_sdk_table():
    """Our copy of the DLC registry accounts agrees with the SDK's own image table."""
    import sagemaker.core

    table_path = Path(sagemaker.core.__file__).parent / "image_uri_config" / "pytorch.json"
    versions = json.loads(table_path.read_text())["training"]["versions"]
    entry = versions[settings_module.PYTORCH_DLC_VERSION]
    assert settings_module.PYTORCH_DLC_PYTHON in entry["py_versions"]
    for region, account in entry["registries"].items():
        assert (
            settings_module.DLC_REGION_ACCOUNTS.get(region, settings_module.DLC_DEFAULT_ACCOUNT) == account
            or "iso" in region
            or region.startswith("eusc")
        )


def test_neuron_instances_need_their_own_image():
    with pytest.raises(ConfigError, match="Trainium"):
        settings_module.default_image_uri("us-east-1", "ml.trn1.32xlarge")


# ----------------------------------------------------------------------------- pure: the plan


def plan_for(tmp_path: Path, section: dict | None = None, **extra) -> plan_module.JobPlan:
    config_path = write_config(tmp_path / "project", **extra)
    launch_config = plan_module.read_launch_config(config_path)
    settings = settings_module.resolve_settings(
        {"region": "us-east-1", **(section or {})}, {}, source=str(config_path), env={}
    )
    return plan_module.plan_job(
        launch_config.training_config, settings, config_dir=config_path.parent, cwd=tmp_path
    )


def test_plan_moves_secrets_to_environment_and_paths_to_the_container(tmp_path):
    plan = plan_for(tmp_path)
    assert plan.environment == {"HF_TOKEN": "hf_SECRET_TOKEN_123", "WANDB_API_KEY": "wandb-SECRET-456"}
    assert "token" not in plan.container_config and "wandb_token" not in plan.container_config
    assert plan.hyperparameters == {"config": "/opt/ml/input/data/config/grpokit.yaml"}
    assert plan.container_config["train_dataset_path"] == "/opt/ml/input/data/train"
    assert plan.container_config["test_dataset_path"] == "/opt/ml/input/data/test"
    assert plan.container_config["output_dir"] == "/opt/ml/model"
    assert plan.container_config["checkpoint_dir"] == "/opt/ml/checkpoints"
    assert plan.container_config["model_id"] == "builtin:tiny"  # ships inside the package
    assert plan.channels == {
        "train": str(tmp_path / "project" / "train.jsonl"),
        "test": str(tmp_path / "project" / "test.jsonl"),
    }


def test_s3_uris_pass_through_as_channels(tmp_path):
    plan = plan_for(tmp_path, train_dataset_path="s3://data-bucket/grpo/train/", model_id="s3://models/qwen/")
    assert plan.channels["train"] == "s3://data-bucket/grpo/train/"
    assert plan.channels["model"] == "s3://models/qwen/"
    assert plan.container_config["model_id"] == "/opt/ml/input/data/model"


def test_missing_local_data_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist on this machine"):
        plan_for(tmp_path, train_dataset_path="/opt/ml/input/data/train/")


def test_unknown_secret_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="would be uploaded to S3"):
        plan_module.plan_job(
            {"model_id": "m", "train_dataset_path": "s3://b/t", "my_api_key": "sk-1"},
            settings_module.SageMakerSettings(region="us-east-1"),
            config_dir=tmp_path,
            cwd=tmp_path,
        )


def test_user_reward_files_travel_in_the_config_channel(tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "my_rewards.py").write_text(
        "def short(prompts, completions, **kw):\n    return [1.0] * len(completions)\n"
    )
    plan = plan_for(tmp_path, rewards=["rouge_l", {"name": "my_rewards.py:short", "weight": 0.5}])
    assert plan.container_config["rewards"] == [
        "rouge_l",
        {"name": "rewards/my_rewards.py:short", "weight": 0.5},
    ]
    assert plan.reward_files == {"rewards/my_rewards.py": tmp_path / "project" / "my_rewards.py"}
    with pytest.raises(RewardConfigError, match="not found"):
        plan_for(tmp_path / "other", rewards=[{"name": "missing.py:fn"}])


def test_requirements_pin_this_machines_versions_and_leave_torch_to_the_image(tmp_path):
    lines = plan_for(tmp_path, wandb_token=None).requirements  # a wandb_token alone turns W&B on (the AWS sample's trigger)
    assert f"trl=={importlib.metadata.version('trl')}" in lines
    assert f"transformers=={importlib.metadata.version('transformers')}" in lines
    assert not any(line.startswith("torch") for line in lines)
    assert not any(line.startswith(("bitsandbytes", "wandb", "mlflow", "pytest")) for line in lines)
    qlora = plan_for(tmp_path / "q", load_in_4bit=True, wandb_project="p").requirements
    assert any(line.startswith("bitsandbytes") for line in qlora)
    assert any(line.startswith("wandb") for line in qlora)


def test_staged_files_hold_the_config_and_grpokit(tmp_path):
    plan = plan_for(tmp_path)
    staged = staging_module.stage_job_files(plan, tmp_path / "staging")
    shipped_config = yaml.safe_load((staged.config_dir / "grpokit.yaml").read_text())
    assert shipped_config == plan.container_config
    assert not any(secret in (staged.config_dir / "grpokit.yaml").read_text() for secret in SECRETS)
    assert (staged.code_dir / "grpokit" / "cli" / "__init__.py").is_file()
    assert (staged.code_dir / "grpokit" / "launch" / "container.py").is_file()
    assert not list(staged.code_dir.rglob("__pycache__"))
    assert (staged.code_dir / "requirements.txt").read_text().splitlines() == plan.requirements
    assert (staged.code_dir / "grpokit_entry.py").is_file()


def test_entry_script_runs_grpokit_train_on_the_config_argument(tmp_path):
    """The generated entry script, run as the SDK runs it, is `grpokit train <--config>` (here: a missing file)."""
    staged = staging_module.stage_job_files(plan_for(tmp_path), tmp_path / "staging")
    result = subprocess.run(
        [sys.executable, str(staged.code_dir / "grpokit_entry.py"), "--config", str(tmp_path / "nope.yaml")],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "config file not found" in result.stderr
    assert str(tmp_path / "nope.yaml") in result.stderr


def test_launch_help_runs():
    result = CliRunner().invoke(app, ["launch", "sagemaker", "--help"])
    assert result.exit_code == 0
    for flag in (
        "--role",
        "--instance-type",
        "--instance-count",
        "--bucket",
        "--region",
        "--spot",
        "--wait",
        "--dry-run",
        "--image-uri",
    ):
        assert flag in result.output


# ----------------------------------------------------------------------------- the dry run


def clean_environment(home: Path) -> dict[str, str]:
    """This process's environment minus every AWS / SageMaker variable, with an empty HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(AWS_VARIABLE_PREFIXES)}
    env["HOME"] = str(home)  # no ~/.aws either
    return env


@pytest.mark.slow
@needs_sdk
def test_dry_run_prints_the_request_without_aws(tmp_path):
    config_path = write_config(
        tmp_path / "project",
        sagemaker={"instance_type": "ml.g6e.2xlarge", "volume_size_gb": 200, "tags": {"team": "grpo"}},
    )
    (tmp_path / "home").mkdir()
    result = subprocess.run(
        [
            sys.executable, "-m", "grpokit", "launch", "sagemaker", str(config_path), "--dry-run",
            "--region", "eu-west-1", "--bucket", "my-grpo-bucket", "--prefix", "runs/exp1", "--role", ROLE,
            "--spot", "--max-runtime", "3600", "--max-wait", "7200", "--instance-count", "2",
            "--env", "EXTRA_FLAG=1", "--tag", "owner=me",
        ],
        check=False, capture_output=True, text=True, cwd=tmp_path, env=clean_environment(tmp_path / "home"), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)
    job_name = request["TrainingJobName"]
    assert job_name.startswith("grpokit-")
    assert request["RoleArn"] == ROLE
    assert request["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.8.0-gpu-py312"
    )
    assert request["AlgorithmSpecification"]["ContainerEntrypoint"] == ["/bin/bash"]
    assert request["HyperParameters"] == {"config": "/opt/ml/input/data/config/grpokit.yaml"}
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.g6e.2xlarge",
        "InstanceCount": 2,
        "VolumeSizeInGB": 200,
    }
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert request["EnableManagedSpotTraining"] is True
    assert request["OutputDataConfig"]["S3OutputPath"] == "s3://my-grpo-bucket/runs/exp1/output"
    assert request["CheckpointConfig"] == {
        "S3Uri": f"s3://my-grpo-bucket/runs/exp1/grpokit/{job_name}/checkpoints",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert request["Environment"] == {"HF_TOKEN": "***", "WANDB_API_KEY": "***", "EXTRA_FLAG": "1"}
    assert sorted(request["Tags"], key=lambda t: t["Key"]) == [
        {"Key": "owner", "Value": "me"},
        {"Key": "team", "Value": "grpo"},
    ]
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]
    }
    input_prefix = f"s3://my-grpo-bucket/runs/exp1/grpokit/{job_name}/input"
    assert channels == {
        "config": f"{input_prefix}/config",
        "train": f"{input_prefix}/train/train.jsonl",
        "test": f"{input_prefix}/test/test.jsonl",
        "code": f"{input_prefix}/code",
        "sm_drivers": f"{input_prefix}/sm_drivers",
    }
    assert not any(secret in result.stdout for secret in SECRETS)
    assert "nothing uploaded" in result.stderr


@pytest.mark.slow
@needs_sdk
def test_dry_run_without_a_region_says_how_to_give_one(tmp_path):
    config_path = write_config(tmp_path / "project")
    (tmp_path / "home").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "grpokit", "launch", "sagemaker", str(config_path), "--dry-run", "--bucket", "b-1"],
        check=False, capture_output=True, text=True, cwd=tmp_path, env=clean_environment(tmp_path / "home"), timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no AWS region" in result.stderr and "--region" in result.stderr


# ----------------------------------------------------------------------------- launch against moto


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def moto(tmp_path, monkeypatch):
    """A moto server on a free loopback port, and this process's AWS settings pointed at it."""
    moto_server = Path(sys.executable).with_name("moto_server")
    if not moto_server.exists():
        pytest.skip("moto[server] is not installed")
    port = free_port()
    log = (tmp_path / "moto.log").open("w")
    process = subprocess.Popen(
        [str(moto_server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(
                        f"moto_server did not start: {(tmp_path / 'moto.log').read_text()}"
                    ) from None
                time.sleep(0.2)
        for name in list(os.environ):
            if name.startswith(AWS_VARIABLE_PREFIXES):
                monkeypatch.delenv(name)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv(
            "SAGEMAKER_VALIDATE_ROLE", "false"
        )  # moto does not implement SimulatePrincipalPolicy
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a server slow to stop on a busy machine is not a failed test
            process.kill()
            process.wait()
        log.close()


@pytest.mark.slow
@needs_sdk
def test_launch_creates_the_job_with_config_data_and_code_in_s3(tmp_path, moto, monkeypatch):
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="grpo-test-bucket")
    s3.put_object(
        Bucket="grpo-test-bucket", Key="shared/test/test.jsonl", Body=b'{"prompt": "1+1=", "answer": "2"}\n'
    )
    config_path = write_config(
        tmp_path / "project",
        test_dataset_path="s3://grpo-test-bucket/shared/test/",
        sagemaker={"instance_type": "ml.g5.2xlarge", "prefix": "exp", "tags": {"team": "grpo"}},
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        ["launch", "sagemaker", str(config_path), "--role", ROLE, "--bucket", "grpo-test-bucket", "--spot",
         "--max-runtime", "3600", "--instance-count", "2", "--wait", "--poll-seconds", "0.1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job_name = next(
        line.split()[4]
        for line in result.output.splitlines()
        if line.startswith("started SageMaker training job")
    )
    assert f"#/jobs/{job_name}" in result.output
    assert "status: Completed" in result.output  # --wait followed it to the end (moto completes jobs at once)

    job = boto3.client("sagemaker", region_name="us-east-1").describe_training_job(TrainingJobName=job_name)
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["RoleArn"] == ROLE
    assert job["HyperParameters"] == {"config": "/opt/ml/input/data/config/grpokit.yaml"}
    assert job["CheckpointConfig"] == {
        "S3Uri": f"s3://grpo-test-bucket/exp/grpokit/{job_name}/checkpoints",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://grpo-test-bucket/exp/output"
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600
    assert job["StoppingCondition"]["MaxWaitTimeInSeconds"] == 7200
    hyperparameters_text = json.dumps(job["HyperParameters"])
    assert not any(secret in hyperparameters_text for secret in SECRETS)
    assert "token" not in hyperparameters_text.lower()
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels["test"] == "s3://grpo-test-bucket/shared/test/"  # passed through, not re-uploaded

    keys = {obj["Key"] for obj in s3.list_objects_v2(Bucket="grpo-test-bucket")["Contents"]}
    input_prefix = f"exp/grpokit/{job_name}/input"
    assert f"{input_prefix}/config/grpokit.yaml" in keys
    assert f"{input_prefix}/train/train.jsonl" in keys
    assert not any(key.startswith(f"{input_prefix}/test/") for key in keys)
    assert f"{input_prefix}/code/grpokit_entry.py" in keys
    assert f"{input_prefix}/code/requirements.txt" in keys
    assert f"{input_prefix}/code/grpokit/trainer/recipe.py" in keys
    assert f"{input_prefix}/sm_drivers/sm_train.sh" in keys
    for key in keys:  # no secret was uploaded anywhere
        body = s3.get_object(Bucket="grpo-test-bucket", Key=key)["Body"].read()
        assert not any(secret.encode() in body for secret in SECRETS), key
    uploaded = yaml.safe_load(
        s3.get_object(Bucket="grpo-test-bucket", Key=f"{input_prefix}/config/grpokit.yaml")["Body"].read()
    )
    assert uploaded["train_dataset_path"] == "/opt/ml/input/data/train"
    assert uploaded["test_dataset_path"] == "/opt/ml/input/data/test"
    assert "sagemaker" not in uploaded


@needs_sdk
def test_launch_without_a_role_is_refused_before_any_upload(tmp_path, moto):
    import boto3

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="grpo-test-bucket")
    config_path = write_config(tmp_path / "project")
    result = CliRunner().invoke(
        app, ["launch", "sagemaker", str(config_path), "--bucket", "grpo-test-bucket"]
    )
    assert result.exit_code == 2
    assert "no execution role" in result.output
    assert (
        boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket="grpo-test-bucket")["KeyCount"]
        == 0
    )


# ----------------------------------------------------------------------------- the shipped example


def test_example_config_is_valid_and_plans_a_qlora_job():
    example = REPO / "examples" / "sagemaker" / "config.yaml"
    launch_config = plan_module.read_launch_config(example)
    plan_module.validate_training_config(launch_config)  # the schema, TRL's own checks
    settings = settings_module.resolve_settings(
        launch_config.sagemaker_section, {"region": "us-east-1"}, source=str(example), env={}
    )
    assert settings.spot and settings.instance_type == "ml.g5.2xlarge"
    plan = plan_module.plan_job(launch_config.training_config, settings, config_dir=example.parent, cwd=REPO)
    assert plan.container_config["load_in_4bit"] is True and plan.container_config["bf16"] is True
    assert [r["name"] for r in plan.container_config["rewards"]] == ["rouge_l", "length", "format"]
    assert any(line.startswith("bitsandbytes") for line in plan.requirements)
    assert set(plan.channels) == {"train", "test"}
    first_row = json.loads(
        (REPO / "examples" / "sagemaker" / "data" / "train.jsonl").read_text().splitlines()[0]
    )
    assert first_row["prompt"][0]["role"] == "user" and "answer" in first_row


def test_every_setting_is_a_flag_with_its_default_written_once():
    from grpokit.cli.launch import _flag_name
    from grpokit.config.sagemaker import SageMakerSettings

    result = CliRunner().invoke(app, ["launch", "sagemaker", "--help"])
    assert result.exit_code == 0
    help_text = " ".join(result.output.replace("│", " ").split())  # the panels' lines joined
    docs = (REPO / "docs" / "sagemaker.md").read_text(encoding="utf-8")
    for name, info in SageMakerSettings.model_fields.items():
        flag = f"--{_flag_name(name, info)}"
        assert flag in help_text, flag
        assert f"| `{name}` | `{flag}" in docs, f"docs/sagemaker.md's settings table should list {name} as {flag}"
        if info.default is not None and not isinstance(info.default, bool) and info.default_factory is None:
            assert f"(default: {info.default})" in help_text, name
