"""The one place that hides secrets: in the saved config, in logs and in every error message.

Two kinds of secret are masked:

- the value of every config key whose last word names a secret (`token`, `hub_token`, `wandb_token`,
  `api_key`, `password`, an `Authorization` header, ...), by `mask_secrets` on a config mapping;
- the userinfo of a URL (`https://user:password@host` -> `https://user:***@host`, a lone
  `https://token@host` -> `https://***@host`), the passwords of URLs in a loaded config wherever they
  appear (`pass@host:8000` in a library's message), and every secret value seen while loading a
  config (`remember_secret`), by `mask_text` on any text.

`MaskingFilter` applies `mask_text` to every log record; the CLI applies it to every error message;
`grpokit_config.yaml`, the logged config and the trackers' params go through `mask_secrets`.

Example:
    >>> mask_secrets({"wandb_token": "abc", "mlflow_uri": "https://bob:hunter2@host/"})
    {'wandb_token': '***', 'mlflow_uri': 'https://bob:***@host/'}
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"
# A key is a secret when its last word is one of these: token, hub_token, wandb_token, api_key, ...
SECRET_KEY_LAST_WORDS = (
    "token", "secret", "password", "key", "apikey", "credentials", "authorization", "auth", "cookie",
)  # fmt: skip
# scheme://user:password@host -> group 1 is everything before the password.
URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]+):[^/@\s]+@")
# scheme://token@host (userinfo without a password: often a token) -> group 1 is the scheme.
URL_LONE_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@:\s]+@")
# The password of scheme://user:password@host, remembered when a config is loaded.
URL_USERINFO_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]+:([^/@\s]+)@")
# Secret values shorter than this are not masked inside free text: "abc" would mask unrelated words.
MIN_REMEMBERED_LENGTH = 6

_remembered: set[str] = set()


def is_secret_key(key: str) -> bool:
    """True when `key` names a secret: its last word (split on `_` or `-`) is a secret word."""
    return key.lower().replace("-", "_").rsplit("_", 1)[-1] in SECRET_KEY_LAST_WORDS


def remember_secret(value: Any) -> None:
    """Mask `value` wherever it appears in text from now on (logs and error messages of this process)."""
    if isinstance(value, str) and len(value) >= MIN_REMEMBERED_LENGTH:
        _remembered.add(value)


def remember_secrets_in(value: Any, key: str = "") -> None:
    """Remember every value of a secret key in a config mapping (nested sections and lists included)."""
    if isinstance(value, dict):
        for child_key, child in value.items():
            remember_secrets_in(child, str(child_key))
    elif isinstance(value, list):
        for item in value:
            remember_secrets_in(item, key)
    elif key and is_secret_key(key):
        remember_secret(value)
    elif isinstance(value, str) and "@" in value:
        for match in URL_USERINFO_PASSWORD.finditer(value):  # a library may print the URL cut up
            remember_secret(match.group(1))


def mask_text(text: str) -> str:
    """`text` with URL passwords and every remembered secret value replaced by `***`."""
    text = URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = URL_LONE_USERINFO.sub(rf"\1{MASK}@", text)
    for secret in sorted(_remembered, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy of a config value with every secret key's value, and every URL password, replaced by `***`."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item, key) for item in value]
    if key and is_secret_key(key) and value not in (None, "", False) and not isinstance(value, (int, float)):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    return value


class MaskingFilter(logging.Filter):
    """Masks secrets in every log record that passes through the handler it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
