"""`http`: POST the batch to a scoring service and read one score per completion back."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any

from pydantic import Field, validate_call

from grpokit.errors import RewardConfigError, RunError
from grpokit.rewards.common import ROW_COLUMN, TRL_REWARD_KWARGS, RewardFunc, text_of
from grpokit.secrets import remember_secret

logger = logging.getLogger("grpokit.rewards")

# Worth another try: the server is overloaded, restarting or behind a flaky proxy.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class HttpRewardError(RunError):
    """The scoring service failed (no answer, an error status, or an answer that is not scores).

    A `GrpokitError`: it stops the run whatever `on_error` says, because a service that is down fails
    every completion alike, and scoring each one alone would only repeat the wait.
    """


@validate_call
def http_reward(
    *,
    url: Annotated[str, Field(pattern=r"^https?://")],
    timeout: Annotated[float, Field(gt=0)] = 30.0,
    retries: Annotated[int, Field(ge=0)] = 2,
    retry_backoff: Annotated[float, Field(ge=0)] = 1.0,
    columns: list[str] | None = None,
    headers: dict[str, str] = {},  # noqa: B006 -- validate_call copies defaults; never mutated
    api_key_env: str | None = None,
    metric_name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")] = "http",
) -> RewardFunc:
    """Scores from a web service: the batch goes out as JSON, one score per completion comes back.

    Request: `POST url` with `Content-Type: application/json` and the body

        {"prompts": [...], "completions": [...], "completion_texts": ["...", ...],
         "columns": {"answer": [...], ...}}

    `prompts` and `completions` as GRPOTrainer passes them (strings, or chat message lists),
    `completion_texts` the completions' text, and `columns` the dataset columns (all of them, or those
    listed in `columns`), one value per completion. Response: status 200 and either a JSON list of
    numbers (or nulls: not applicable) or an object `{"scores": [...]}`, one per completion.

    Failures: a status in 408/429/5xx, a timeout or a refused connection is retried `retries` times,
    waiting `retry_backoff`, then twice that, ...; other statuses are not retried. When every try
    fails, or the response is not one score per completion, `HttpRewardError` stops the run with the
    URL, the status and the start of the response body (whatever `on_error` says: see the class).

    Parameters:
        url: the service's URL (http:// or https://).
        timeout: seconds to wait for the connection and for each read of the response.
        retries: further tries after a failed one (default 2).
        retry_backoff: seconds before the first retry, doubling each time.
        columns: dataset columns to send (default: all; values must be JSON-serialisable).
        headers: extra request headers.
        api_key_env: name of an environment variable whose value is sent as
            `Authorization: Bearer <value>`, so no secret sits in the config.
            A user and password in the url (`https://user:pass@host/score`) are sent as HTTP Basic
            auth instead, and never appear in a message (the url is shown without them).
        metric_name: the metric name (`rewards/<metric_name>/mean`), to tell several services apart.

    Example:
        >>> reward = http_reward(url="http://127.0.0.1:8000/score", timeout=10)
        >>> reward(prompts=["2+2="], completions=["4"], answer=["4"])   # service answers {"scores": [1.0]}
        [1.0]
    """
    all_headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}
    url, basic_auth = split_url_credentials(url)
    if basic_auth is not None:
        if api_key_env is not None or any(name.lower() == "authorization" for name in headers):
            raise RewardConfigError(
                'reward "http": the url has a user and password, and api_key_env or an Authorization header gives other credentials',
                fix="give the credentials one way: in the url (sent as HTTP Basic auth), api_key_env, or headers",
            )
        all_headers["Authorization"] = basic_auth
    if api_key_env is not None:
        if not os.environ.get(api_key_env):
            raise RewardConfigError(
                f'reward "http": api_key_env names {api_key_env}, which is not set in the environment',
                fix=f"export {api_key_env}=... before starting, or remove api_key_env",
            )
        all_headers["Authorization"] = f"Bearer {os.environ[api_key_env]}"
    return HttpReward(url, timeout, retries, retry_backoff, columns, all_headers, metric_name)


def split_url_credentials(url: str) -> tuple[str, str | None]:
    """`url` without its `user:password@` part, and that part as a Basic `Authorization` value (None if absent).

    The password (and the whole header value) is remembered as a secret, so it is masked in every log
    line and message from then on.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    value = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    for secret in (password, value, value.removeprefix("Basic ")):
        remember_secret(secret)
    host = parts.netloc.rsplit("@", 1)[-1]
    bare = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, value


class HttpReward:
    """The `http` reward. A class, not a closure, so TRL can pickle it into worker processes."""

    def __init__(
        self,
        url: str,
        timeout: float,
        retries: int,
        retry_backoff: float,
        columns: list[str] | None,
        headers: dict[str, str],
        name: str,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.columns = columns
        self.headers = headers
        self.__name__ = name
        self.required_columns = frozenset(columns or ())

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        body = json.dumps(self.payload(prompts, completions, kwargs), ensure_ascii=False).encode("utf-8")
        scores = self.scores_from(self.post(body))
        if len(scores) != len(completions):
            raise HttpRewardError(
                f'reward "{self.__name__}": {self.url} returned {len(scores)} scores for {len(completions)} completions',
                fix="the service must answer one score (or null) per completion, in order",
            )
        return scores

    def payload(self, prompts: list, completions: list, kwargs: dict[str, Any]) -> dict[str, Any]:
        dataset_columns = {
            key: value for key, value in kwargs.items() if key not in TRL_REWARD_KWARGS and key != ROW_COLUMN
        }
        if self.columns is not None:
            dataset_columns = {key: dataset_columns[key] for key in self.columns if key in dataset_columns}
        return {
            "prompts": prompts,
            "completions": completions,
            "completion_texts": [text_of(completion) for completion in completions],
            "columns": dataset_columns,
        }

    def post(self, body: bytes) -> bytes:
        """The response body of a successful POST, after up to `retries` retries."""
        failures: list[str] = []
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.retry_backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.read()
            except urllib.error.HTTPError as error:
                detail = error.read(300).decode("utf-8", "replace")
                failures.append(f"status {error.code} {error.reason}: {' '.join(detail.split())[:200]}")
                if error.code not in RETRYABLE_STATUS:
                    break
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
                reason = getattr(error, "reason", error)
                timed_out = isinstance(reason, TimeoutError) or "timed out" in str(reason)
                failures.append(f"timed out after {self.timeout:g} s" if timed_out else f"no response: {reason}")
            logger.debug('reward "%s": try %d on %s failed: %s', self.__name__, attempt + 1, self.url, failures[-1])
        raise HttpRewardError(
            f'reward "{self.__name__}": POST {self.url} failed ({len(failures)} '
            f"{'try' if len(failures) == 1 else 'tries'}); last: {failures[-1]}",
            where=f"url {self.url}",
            fix="check that the service is up and answers 200 with one score per completion; "
            "raise `timeout` or `retries` if it is slow",
        )

    def scores_from(self, raw: bytes) -> list[float | None]:
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        scores = answer.get("scores") if isinstance(answer, dict) else answer
        if not isinstance(scores, list) or not all(
            score is None or (isinstance(score, int | float) and not isinstance(score, bool)) for score in scores
        ):
            text = raw[:200].decode("utf-8", "replace")
            raise HttpRewardError(
                f'reward "{self.__name__}": {self.url} answered 200 but not with scores: {text!r}',
                fix='answer a JSON list of numbers or {"scores": [...]}, one per completion',
            )
        return [None if score is None else float(score) for score in scores]
