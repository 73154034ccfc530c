"""One masking function for the saved config, the logs and every error message."""

from __future__ import annotations

import logging

import pytest
import typer
import yaml

from grpokit import secrets
from grpokit.cli.common import reporting_errors
from grpokit.config import load_config
from grpokit.errors import ConfigError
from grpokit.secrets import MaskingFilter, mask_secrets, mask_text, remember_secret


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://bob:hunter2@mlflow.example:5000/x", "https://bob:***@mlflow.example:5000/x"),
        ("reward at http://svc:tok3n@10.0.0.1/score failed", "reward at http://svc:***@10.0.0.1/score failed"),
        ("no secret here: http://host/path", "no secret here: http://host/path"),
        ("", ""),
    ],
)
def test_mask_text_hides_url_passwords_anywhere_in_a_line(text, expected):
    assert mask_text(text) == expected


def test_remembered_secret_values_are_masked_in_any_text(monkeypatch):
    monkeypatch.setattr(secrets, "_remembered", set())
    remember_secret("hf_abcdefSECRET")
    remember_secret("abc")  # too short to mask inside text without hiding ordinary words
    assert mask_text("token hf_abcdefSECRET rejected; abc stays") == "token *** rejected; abc stays"


def test_loading_a_config_remembers_its_secrets(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(secrets, "_remembered", set())
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**tiny_config, "wandb_token": "wandb-LOADED-SECRET-1"}), encoding="utf-8")
    load_config(path)
    assert mask_text("W&B said: bad key wandb-LOADED-SECRET-1") == "W&B said: bad key ***"
    assert mask_secrets({"wandb_token": "x", "nested": {"api_key": "y"}}) == {"wandb_token": "***", "nested": {"api_key": "***"}}


def test_log_lines_pass_through_the_mask(monkeypatch):
    monkeypatch.setattr(secrets, "_remembered", {"s3cr3t-token-value"})
    record = logging.LogRecord("grpokit", logging.WARNING, __file__, 1, "calling %s with %s", ("https://u:pw@h/", "s3cr3t-token-value"), None)
    assert MaskingFilter().filter(record) is True
    assert record.getMessage() == "calling https://u:***@h/ with ***"


def test_error_messages_pass_through_the_mask(capsys, monkeypatch):
    monkeypatch.setattr(secrets, "_remembered", {"hf_ERROR_SECRET_9"})
    with pytest.raises(typer.Exit) as stopped, reporting_errors():
        raise ConfigError("could not reach https://me:pass@hub.example/ with hf_ERROR_SECRET_9", where="c.yaml")
    assert stopped.value.exit_code == 2
    err = capsys.readouterr().err
    assert "pass@" not in err and "hf_ERROR_SECRET_9" not in err
    assert "https://me:***@hub.example/" in err and "***" in err
