"""The `http` reward against a scoring server on 127.0.0.1 started by the test: scores, retries, errors."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from grpokit.errors import RewardConfigError
from grpokit.rewards import GuardedReward, build_reward
from grpokit.rewards.http import HttpRewardError


class ScoringHandler(BaseHTTPRequestHandler):
    """/score: len(text) per completion; /fail: 500; /flaky: 503 on every other request; /slow: sleeps;
    /short: one score too few; /bad: not scores; /missing: 404."""

    requests: ClassVar[list[dict]] = []
    flaky_calls = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        scores = [float(len(text)) for text in body["completion_texts"]]
        if self.path == "/fail":
            return self.reply(500, {"error": "scorer crashed"})
        if self.path == "/missing":
            return self.reply(404, {"error": "no such route"})
        if self.path == "/flaky":
            type(self).flaky_calls += 1
            if type(self).flaky_calls % 2:
                return self.reply(503, {"error": "busy"})
        if self.path == "/slow":
            time.sleep(2)
        if self.path == "/short":
            scores = scores[:-1]
        if self.path == "/bad":
            return self.reply(200, {"result": "ok"})
        if self.path == "/list":
            return self.reply(200, [*scores[:-1], None])
        self.reply(200, {"scores": scores})

    def reply(self, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ScoringHandler)  # port 0: a free port
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [("abc", 3.0), (chat("abcd"), 4.0), ("", 0.0), ("猫が", 2.0)],
)
def test_scores_come_back_per_completion(server, completion, expected):
    reward = build_reward("http", url=f"{server}/score")
    assert reward(prompts=["Q"], completions=[completion], answer=["x"]) == [expected]


def test_request_holds_prompts_completions_and_columns(server, monkeypatch):
    monkeypatch.setenv("SCORER_TOKEN", "s3cret")
    ScoringHandler.requests.clear()
    reward = build_reward("http", url=f"{server}/score", columns=["answer"], api_key_env="SCORER_TOKEN")
    assert reward.required_columns == {"answer"}
    reward(
        prompts=["p1", "p2"], completions=["a", chat("bb")], answer=["1", "2"], other=[0, 0],
        grpokit_row=[3, 4], completion_ids=[[1], [2, 3]], log_metric=print,
    )  # fmt: skip
    request = ScoringHandler.requests[-1]
    assert request["body"] == {
        "prompts": ["p1", "p2"],
        "completions": ["a", chat("bb")],
        "completion_texts": ["a", "bb"],
        "columns": {"answer": ["1", "2"]},
    }
    assert request["auth"] == "Bearer s3cret"


def test_a_bare_list_with_nulls_is_accepted(server):
    reward = build_reward("http", url=f"{server}/list")
    assert reward(prompts=["Q", "Q"], completions=["ab", "c"]) == [2.0, None]


def test_a_retryable_status_is_retried(server):
    ScoringHandler.flaky_calls = 0
    reward = build_reward("http", url=f"{server}/flaky", retries=1, retry_backoff=0)
    assert reward(prompts=["Q"], completions=["abc"]) == [3.0]
    assert ScoringHandler.flaky_calls == 2


@pytest.mark.parametrize(
    ("path", "params", "message", "tries"),
    [
        ("/fail", {"retries": 2}, r"failed \(3 tries\); last: status 500 .*scorer crashed", 3),
        ("/missing", {"retries": 2}, r"failed \(1 try\); last: status 404", 1),  # 4xx: not retried
        ("/slow", {"retries": 0, "timeout": 0.3}, r"failed \(1 try\); last: timed out after 0.3 s", 1),
        ("/short", {}, "returned 1 scores for 2 completions", 1),
        ("/bad", {}, "answered 200 but not with scores", 1),
    ],
)
def test_failures_name_the_url_and_status(server, path, params, message, tries):
    ScoringHandler.requests.clear()
    reward = build_reward("http", url=f"{server}{path}", retry_backoff=0, **params)
    # A service failure stops the run even with on_error: zero (every item would fail alike).
    guarded = GuardedReward(reward, "http", on_error="zero")
    with pytest.raises(HttpRewardError, match=message) as raised:
        guarded(prompts=["Q", "Q"], completions=["a", "b"])
    assert f"{server}{path}" in raised.value.message
    assert raised.value.exit_code == 1
    assert len([r for r in ScoringHandler.requests if r["path"] == path]) == tries


def test_refused_connection_is_reported():
    reward = build_reward("http", url="http://127.0.0.1:9/score", retries=0, timeout=2)
    with pytest.raises(HttpRewardError, match=r"POST http://127.0.0.1:9/score failed .*no response"):
        reward(prompts=["Q"], completions=["a"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"url": "ftp://x"}, "url"),
        ({"url": "http://x", "timeout": 0}, "timeout"),
        ({"url": "http://x", "api_key_env": "GRPOKIT_TEST_UNSET_VARIABLE"}, "not set in the environment"),
    ],
)
def test_bad_params(params, message):
    with pytest.raises(RewardConfigError, match=message):
        build_reward("http", **params)
