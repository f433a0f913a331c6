"""Whether the Hugging Face Hub can be reached, asked once and quickly.

huggingface_hub retries a failed request five times with growing pauses (about half a
minute) before it gives up: without a network, ``--model owner/name`` would keep a user
waiting that long for an error. One plain request with a short timeout answers the
question first; a model the Hub cannot serve is then looked for in the local cache only.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from urllib.parse import quote

__all__ = ["DEFAULT_ENDPOINT", "HubUnreachable", "hub_unreachable"]

DEFAULT_ENDPOINT = "https://huggingface.co"

#: Seconds to wait for the Hub's answer.
TIMEOUT = 5.0


class HubUnreachable(OSError):
    """The Hub did not answer (no network, no name resolution, a timeout)."""


def hub_unreachable(model: str, timeout: float = TIMEOUT) -> str | None:
    """``None`` when the Hub answers a request about ``model`` (whatever the answer: a
    missing or gated model is for the download to report), else why it did not. Honours
    ``HF_ENDPOINT`` and the usual proxy variables."""
    endpoint = (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    request = urllib.request.Request(f"{endpoint}/api/models/{quote(model, safe='/')}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except urllib.error.URLError as e:
        reason = e.reason
        return str(reason.strerror if isinstance(reason, OSError) and reason.strerror else reason)
    except TimeoutError:
        return f"no answer from {endpoint} within {timeout:g} s"
    except OSError as e:
        return str(e)
