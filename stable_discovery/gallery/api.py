"""What the page may send, checked: query parameters of the listing and rating bodies.

Anything malformed raises :class:`ApiError` with an HTTP status (4xx) and a message that
the page shows as it is; nothing is changed before a request has passed every check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stable_discovery.gallery.paths import EXPERIMENT_RE
from stable_discovery.store.filters import ABSENT, Filters
from stable_discovery.store.gallery_queries import END

__all__ = [
    "ApiError",
    "Filters",
    "RateRequest",
    "parse_filters",
    "parse_rate",
    "parse_int",
    "page_args",
    "window_args",
    "parse_words",
    "parse_archive",
    "MAX_BODY",
]

MAX_BODY = 16 * 1024
MAX_LIMIT = 1000
#: The largest sample index (the store's 64-bit integers).
MAX_INDEX = 2**63 - 1
_INT_RE = re.compile(r"^-?[0-9]{1,18}$")
_BOOL_WORDS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


class ApiError(Exception):
    """A request the gallery refuses: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RateRequest:
    """A validated rating change: fields left as ``...`` are not touched."""

    experiment: str
    index: int
    favourite: Any = ...
    stars: Any = ...
    rejected: Any = ...


def parse_int(text: str | None, what: str, *, low: int = 0, high: int | None = None) -> int:
    """A whole number from a query parameter, within bounds, else a 400."""
    if text is None or not _INT_RE.match(text):
        raise ApiError(400, f"{what} must be a whole number, not {text!r}")
    value = int(text)
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ApiError(400, f"{what} must be {bound}, not {value}")
    return value


def _one(params: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = params.get(key)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, f"{key} given {len(values)} times")
    return values[0]


def _tristate(params: Mapping[str, Sequence[str]], key: str) -> bool | None:
    text = _one(params, key)
    if text is None or text == "" or text == "any":
        return None
    if text.lower() not in _BOOL_WORDS:
        raise ApiError(400, f"{key} must be 1, 0 or any, not {text!r}")
    return _BOOL_WORDS[text.lower()]


def parse_filters(params: Mapping[str, Sequence[str]]) -> Filters:
    """Filters from a query string parsed by ``urllib.parse.parse_qs``.

    ``fav`` and ``rejected``: 1, 0 or any; ``stars``: none, 1..5 (at least) or any;
    ``v``: ``NAME:CHOICE``, repeatable (``NAME:-1``: the name is absent); ``q``: words
    that must all occur in the prompt.
    """
    stars = _one(params, "stars")
    if stars in (None, "", "any"):
        stars = None
    elif stars != "none":
        stars = str(parse_int(stars, "stars", low=1, high=5))
    values: dict[str, list[int]] = {}
    for item in params.get("v", ()):
        name, sep, choice = item.rpartition(":")
        if not sep or not name or len(name) > 200:
            raise ApiError(400, f"a value filter is NAME:CHOICE, not {item!r}")
        values.setdefault(name, []).append(parse_int(choice, f"the choice of {name}", low=ABSENT))
    if len(values) > 64 or sum(len(v) for v in values.values()) > 512:
        raise ApiError(400, "too many value filters")
    return Filters(
        favourite=_tristate(params, "fav"),
        rejected=_tristate(params, "rejected"),
        stars=stars,
        values=tuple((name, tuple(sorted(set(cs)))) for name, cs in values.items()),
        words=parse_words(_one(params, "q")),
    )


def parse_words(text: str | None) -> tuple[str, ...]:
    """The words of a prompt search (``q``): split on spaces, at most 16 of them."""
    if not text:
        return ()
    if len(text) > 500:
        raise ApiError(400, "the search text is too long (500 characters at most)")
    words = tuple(dict.fromkeys(text.split()))
    if len(words) > 16:
        raise ApiError(400, "too many search words (16 at most)")
    return words


def page_args(params: Mapping[str, Sequence[str]]) -> tuple[int | None, int]:
    """``after`` (the last index already shown; absent for the first page) and ``limit``."""
    after_text = _one(params, "after")
    after = None if after_text in (None, "") else parse_int(after_text, "after", low=-1)
    limit_text = _one(params, "limit")
    limit = 200 if limit_text in (None, "") else parse_int(limit_text, "limit", low=1, high=MAX_LIMIT)
    return after, limit


def window_args(params: Mapping[str, Sequence[str]]) -> tuple[int | None, bool, float | None]:
    """``before`` (a page that ends below this index; ``end``: the last page), ``total``
    (1: count the matches with this page too) and ``since`` (the samples recorded after
    this moment, a ``stamp`` the server gave)."""
    before_text = _one(params, "before")
    before = None
    if before_text == "end":
        before = END
    elif before_text not in (None, ""):
        before = parse_int(before_text, "before")
    total = _tristate(params, "total") is True
    since_text = _one(params, "since")
    since = None
    if since_text not in (None, ""):
        try:
            since = float(since_text)
        except ValueError:
            raise ApiError(400, f"since must be a time the server gave, not {since_text!r}") from None
        if since != since or since in (float("inf"), float("-inf")):
            raise ApiError(400, f"since must be a time the server gave, not {since_text!r}")
    return before, total, since


def parse_archive(body: bytes) -> tuple[str, bool]:
    """An archive change: ``{"experiment": str, "archived": bool}``."""
    data = _json_object(body)
    unknown = sorted(set(data) - {"experiment", "archived"})
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}; expected archived, experiment")
    experiment, archived = data.get("experiment"), data.get("archived")
    if not isinstance(experiment, str) or not EXPERIMENT_RE.fullmatch(experiment):
        raise ApiError(400, "experiment must be an experiment's name")
    if not isinstance(archived, bool):
        raise ApiError(400, "archived must be true or false")
    return experiment, archived


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "the body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "the body nests too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


def _target(data: dict[str, Any]) -> tuple[str, int]:
    """The experiment and index a rating body names, checked."""
    experiment = data.get("experiment")
    if not isinstance(experiment, str) or not experiment:
        raise ApiError(400, "experiment must be a name (a string)")
    if not EXPERIMENT_RE.fullmatch(experiment):
        shown = experiment.encode("utf-8", "replace").decode()[:100]
        raise ApiError(400, f"{shown!r} is not an experiment name")
    index = data.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_INDEX:
        raise ApiError(400, f"index must be a whole number from 0 to {MAX_INDEX}")
    return experiment, index


def parse_rate(body: bytes) -> RateRequest:
    """A rating body: ``{"experiment": str, "index": int, "favourite": bool,
    "stars": 1..5 or null, "rejected": bool}``, at least one of the last three."""
    data = _json_object(body)
    allowed = {"experiment", "index", "favourite", "stars", "rejected"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}; expected {', '.join(sorted(allowed))}")
    experiment, index = _target(data)
    changes: dict[str, Any] = {}
    for key in ("favourite", "rejected"):
        if key in data:
            if not isinstance(data[key], bool):
                raise ApiError(400, f"{key} must be true or false")
            changes[key] = data[key]
    if "stars" in data:
        stars = data["stars"]
        if stars is not None and (not _is_int(stars) or not 1 <= stars <= 5):
            raise ApiError(400, "stars must be 1 to 5, or null to clear")
        changes["stars"] = stars
    if not changes:
        raise ApiError(400, "nothing to change: give favourite, stars or rejected")
    return RateRequest(experiment=experiment, index=index, **changes)
