"""A1111's prompt emphasis syntax, read into weighted pieces of text (no torch).

``(word)`` multiplies the attention to ``word`` by 1.1, ``((word))`` by 1.21,
``(word:1.3)`` by 1.3, ``[word]`` divides it by 1.1 (in a template, write ``\\[word\\]``:
plain brackets are optional parts there), ``\\(`` and ``\\)`` are literal brackets, and
``BREAK`` ends the current 75-token chunk. This is the algorithm of A1111's
``parse_prompt_attention``: unbalanced brackets are closed at the end, neighbouring
pieces of equal weight are merged, and the result is the same list of (text, weight)
pairs A1111 computes. The embeddings themselves are built by compel
(:mod:`.encoders`).
"""

from __future__ import annotations

import re

__all__ = ["parse_emphasis", "split_breaks", "plain_text", "BREAK"]

#: The marker of a chunk break in the pieces :func:`parse_emphasis` returns.
BREAK = -1.0

_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)

_ROUND = 1.1
_SQUARE = 1 / 1.1


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """(text, weight) pieces of a prompt; a ``("BREAK", BREAK)`` piece marks a chunk
    break. ``a (fox:1.5)`` → ``[("a ", 1.0), ("fox", 1.5)]``."""
    res: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []
    for m in _ATTENTION.finditer(text):
        _step(res, round_brackets, square_brackets, m.group(0), m.group(1))
    for pos in round_brackets:
        _multiply(res, pos, _ROUND)
    for pos in square_brackets:
        _multiply(res, pos, _SQUARE)
    if not res:
        res = [["", 1.0]]
    i = 0
    while i + 1 < len(res):  # merge runs of equal weight
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return [(str(t), float(w)) for t, w in res]


def _multiply(res: list[list], start: int, factor: float) -> None:
    for piece in res[start:]:
        piece[1] *= factor


def _step(res: list[list], rounds: list[int], squares: list[int], part: str, weight: str | None) -> None:
    """One token of the prompt, as A1111's loop reads it."""
    if part.startswith("\\"):
        res.append([part[1:], 1.0])
    elif part == "(":
        rounds.append(len(res))
    elif part == "[":
        squares.append(len(res))
    elif weight is not None and rounds:
        try:
            factor = float(weight)
        except ValueError:  # ":.)" and the like: A1111 would fail; kept as text here
            res.append([part, 1.0])
            return
        _multiply(res, rounds.pop(), factor)
    elif part == ")" and rounds:
        _multiply(res, rounds.pop(), _ROUND)
    elif part == "]" and squares:
        _multiply(res, squares.pop(), _SQUARE)
    else:
        for i, chunk in enumerate(_BREAK.split(part)):
            if i > 0:
                res.append(["BREAK", BREAK])
            res.append([chunk, 1.0])


def split_breaks(pieces: list[tuple[str, float]]) -> list[list[tuple[str, float]]]:
    """The pieces cut at each ``BREAK`` (one list per chunk group, never empty)."""
    groups: list[list[tuple[str, float]]] = [[]]
    for text, weight in pieces:
        if weight == BREAK:
            groups.append([])
        elif text:
            groups[-1].append((text, weight))
    return groups


def plain_text(pieces: list[tuple[str, float]]) -> str:
    """The text of the pieces without weights or breaks (what a pooled embedding reads)."""
    return " ".join("".join(" " if w == BREAK else t for t, w in pieces).split())
