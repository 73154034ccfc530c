"""A Hugging Face Hub id without a network: one quick answer instead of a minute of retries.

Given a Hub id, transformers asks the Hub for every file, and huggingface_hub retries each request
five times with back-off: without a network, a minute and some sixty warning lines before an error
that speaks of `trust_remote_code`. `check_hub_reachable(model_id)` asks once, with a short timeout,
before any of that:

- the Hub answers (any HTTP status): nothing to do;
- it does not, and the model is in the local Hugging Face cache: this process goes offline
  (`HF_HUB_OFFLINE`), so the cached copy loads at once, with one line saying so;
- it does not, and the model is not cached: `ConfigError` saying to point `model_id` at a local folder,
  or to download the model where there is a network.

With `HF_HUB_OFFLINE=1` already set, transformers looks only in the cache; a model that is not there
gets the same message. The answer is remembered per process and Hub id.
"""

from __future__ import annotations

import functools
import logging
import os

from grpokit.errors import ConfigError

logger = logging.getLogger("grpokit.model")

HUB_TIMEOUT_S = 3.0  # connect + read; the Hub answers a HEAD in well under a second where there is a network
CACHE_PROBE_FILE = "config.json"  # every model repository has one


def offline_error(model_id: str, reason: str) -> ConfigError:
    """The one message for a Hub id that cannot be fetched here."""
    return ConfigError(
        f"cannot download model_id '{model_id}': {reason}, and it is not in the local Hugging Face cache",
        where="model_id",
        fix=(
            f"point model_id at a local folder holding the model (config.json, weights, tokenizer), or download it "
            f"where there is a network (`hf download {model_id} --local-dir DIR`, then model_id: DIR; or run once "
            "online to fill the cache, then HF_HUB_OFFLINE=1)"
        ),
    )


def is_cached(model_id: str, revision: str | None = None) -> bool:
    """Whether the local Hugging Face cache holds this model's config (a model downloaded before)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model_id, CACHE_PROBE_FILE, revision=revision)
    return isinstance(found, str)


def hub_unreachable_reason(timeout_s: float = HUB_TIMEOUT_S) -> str | None:
    """Why the Hub (`HF_ENDPOINT`, proxies included) does not answer within `timeout_s`; None when it answers."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import constants, get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout_s, follow_redirects=False)
    except httpx2.TimeoutException:
        return f"the Hugging Face Hub ({constants.ENDPOINT}) did not answer within {timeout_s:g} s"
    except httpx2.TransportError as error:
        return f"the Hugging Face Hub ({constants.ENDPOINT}) cannot be reached ({type(error).__name__}: {error})"
    return None


def go_offline() -> None:
    """This process (and those it starts) reads the Hugging Face cache only: no request, no retry."""
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub.is_offline_mode, which transformers asks


@functools.cache
def check_hub_reachable(model_id: str, revision: str | None = None) -> None:
    """Before loading a Hub id: answer at once when it cannot be fetched (see the module docstring).

    Raises:
        ConfigError: the Hub does not answer (or `HF_HUB_OFFLINE` is set) and the model is not cached.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        if not is_cached(model_id, revision):
            raise offline_error(model_id, "HF_HUB_OFFLINE is set")
        return
    reason = hub_unreachable_reason()
    if reason is None:
        return
    if not is_cached(model_id, revision):
        raise offline_error(model_id, reason)
    logger.warning("%s: loading model_id '%s' from the local Hugging Face cache (offline for this run)", reason, model_id)
    go_offline()
