"""The next template: the experiment's own template with weights learned from favourites.

``refine(store, experiment)`` returns the text of the experiment's template (as stored
with the experiment; for a JSON config, its converted ``.sdp``) where

* every traced slot with several alternatives, and every sampled setting, has its
  alternatives re-weighted ``N::`` by the estimates of :mod:`.learn`, written as
  percentages that add up to 100 per definition;
* an optional part ``[x]`` of ``prompt``/``negative`` whose slot is used nowhere else is
  weighed against its absence ``[w::x]``, from the images with and without it;
* with ``drop=True``, values that clearly lose (seen, and the whole 95% interval of
  their favourite rate below the base rate) are removed — never every value of a slot;
* a sampler that ignores weights (``legacy``, ``combinatorial``, ``shuffle``) becomes
  ``random``; an ``exploit`` sampler becomes ``random`` too, its ``@exploit`` line
  commented out, since the learned weights are now written in the template;
* a header comment names the experiment and the favourites and images the weights came
  from (a previous refine header is replaced).

Everything else — comments, layout, other definitions — is kept as written: only the
weights (and dropped alternatives) of the rewritten definitions change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from stable_discovery.analysis.learn import DEFAULT_PRIOR, Learned, learn
from stable_discovery.errors import SdpError, Source
from stable_discovery.language.parser import parse
from stable_discovery.language.syntax import Alternative, Choice, Definition, SlotRef
from stable_discovery.store.database import Experiment, Store

__all__ = ["refine", "refine_template", "reweight", "Refined", "HEADER_MARK", "format_weight"]

#: The first words of the header comment refine writes.
HEADER_MARK = "# sdp refine:"
#: Samplers whose samples do not follow weights.
WEIGHTLESS_SAMPLERS = ("legacy", "combinatorial", "shuffle")
ENTRY_POINTS = ("prompt", "negative")

_WEIGHT_BEFORE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)[ \t]*::[ \t]*\Z")


class RefineError(SdpError):
    """The rewritten template did not come out as planned (a bug: please report it)."""

    exit_code = 1


@dataclass(frozen=True)
class Refined:
    """The next template's text, with what was dropped and what it was learned from."""

    text: str
    learned: Learned
    dropped: tuple[tuple[str, str], ...]  # (slot or @setting, value text)
    sampler_note: str | None
    rewritten: tuple[str, ...]  # slot / @setting names whose weights were written


def format_weight(w: float) -> str:
    """A weight as the grammar reads it: plain decimals, 3 significant digits, no exponent."""
    if w <= 0:
        return "0"
    text = f"{w:.3g}"
    if "e" in text:
        text = f"{w:.6f}".rstrip("0").rstrip(".")
        if text in ("", "0"):
            text = "0.000001"
    return text


# ---------------------------------------------------------------------------------------
# positions in the source


def _alt_end(alt: Alternative) -> int:
    return alt.start + len(alt.text)


def _weight_start(text: str, region_start: int, alt: Alternative) -> int:
    """Where the alternative's ``N::`` begins (its text start when it has none)."""
    m = _WEIGHT_BEFORE.search(text, region_start, alt.start)
    return m.start() if m else alt.start


def _line_end(text: str, pos: int) -> int:
    nl = text.find("\n", pos)
    return len(text) if nl == -1 else nl


def _eq_end(text: str, d: Definition) -> int:
    return text.index("=", d.start + len(d.name)) + 1


@dataclass
class _Edit:
    start: int
    end: int
    text: str


def _definition_edit(text: str, d: Definition, weights: Sequence[float | None]) -> _Edit:
    """Rewrite a definition's alternatives: ``weights[k]`` is the new weight, or None to
    remove the alternative. Separators, comments and texts of kept ones are unchanged."""
    alts = d.alternatives
    eq_end = _eq_end(text, d)
    ends = [_alt_end(a) for a in alts]
    wstarts = []
    for k, alt in enumerate(alts):
        region = eq_end if k == 0 else ends[k - 1]
        wstarts.append(_weight_start(text, region, alt))
    # segment k runs from seg_starts[k] to seg_starts[k+1]: its separator (up to wstarts[k]),
    # its weight and text, and what follows on its line (a comment) when the next
    # alternative starts on another line
    seg_starts = [eq_end]
    for k in range(1, len(alts)):
        between = text[ends[k - 1] : wstarts[k]]
        seg_starts.append(text.index("\n", ends[k - 1]) if "\n" in between else ends[k - 1])
    region_end = _line_end(text, ends[-1])
    seg_starts.append(region_end)
    first_sep = text[eq_end : wstarts[0]]
    pieces: list[str] = []
    for k, alt in enumerate(alts):
        w = weights[k]
        sep = first_sep if not pieces else text[seg_starts[k] : wstarts[k]]
        if w is None:
            # a dropped alternative sharing a line with a kept one leaves that line's
            # comment in place; one on a line of its own goes with its comment
            if pieces and "\n" not in sep:
                pieces.append(text[ends[k] : seg_starts[k + 1]])
            continue
        pieces.append(sep)
        if sep.endswith(("|", "=")):
            pieces.append(" ")
        pieces.append(format_weight(w) + (":: " if alt.text else "::"))
        pieces.append(text[alt.start : seg_starts[k + 1]])
    return _Edit(eq_end, region_end, "".join(pieces))


def _apply(text: str, edits: list[_Edit]) -> str:
    edits = sorted(edits, key=lambda e: e.start)
    out, pos = [], 0
    for e in edits:
        if e.start < pos:
            raise RefineError("overlapping edits while rewriting the template")
        out.append(text[pos : e.start])
        out.append(e.text)
        pos = e.end
    out.append(text[pos:])
    return "".join(out)


# ---------------------------------------------------------------------------------------
# deciding the weights


def _slot_refs(nodes: Sequence[object], counts: dict[str, int]) -> None:
    for node in nodes:
        if isinstance(node, SlotRef):
            counts[node.name] = counts.get(node.name, 0) + 1
        elif isinstance(node, Choice):
            for alt in node.alternatives:
                _slot_refs(alt.parts, counts)


def _new_weights(
    d: Definition, learned: Learned, drop: bool, key: str
) -> tuple[list[float | None], list[str]]:
    """Per alternative: the new weight (percent), or None when dropped; and dropped texts."""
    alts = d.alternatives
    raw = [a.weight * learned.factor(key, a.text) for a in alts]
    estimates = learned.values.get(key, {})
    losing = {
        a.text
        for a in alts
        if drop and a.weight > 0 and (est := estimates.get(a.text)) is not None and est.loses
    }
    alive = [a for a in alts if a.weight > 0]
    if alive and all(a.text in losing for a in alive):
        best = max(alive, key=lambda a: estimates[a.text].shrunk)
        losing.discard(best.text)
    total = sum(w for a, w in zip(alts, raw, strict=False) if a.text not in losing)
    weights: list[float | None] = []
    for a, w in zip(alts, raw, strict=False):
        weights.append(None if a.text in losing else (100.0 * w / total if total > 0 else a.weight))
    dropped = []
    for a in alts:
        if a.text in losing and a.text not in dropped:
            dropped.append(a.text)
    return weights, dropped


def _optional_edits(
    text: str, definitions: Sequence[Definition], learned: Learned
) -> tuple[list[_Edit], list[str]]:
    """``[x]`` in prompt/negative whose slot is used only there: presence vs absence."""
    counts: dict[str, int] = {}
    for d in definitions:
        if not d.is_setting:
            for alt in d.alternatives:
                _slot_refs(alt.parts, counts)
    edits: list[_Edit] = []
    names: list[str] = []
    for d in definitions:
        if d.is_setting or d.name not in ENTRY_POINTS or len(d.alternatives) != 1:
            continue
        for node in d.alternatives[0].parts:
            if not (isinstance(node, Choice) and node.optional and len(node.alternatives) == 2):
                continue
            present = node.alternatives[1]  # [a|b] has a choice here: no slot is found
            slot = next(
                (
                    p.name
                    for p in present.parts
                    if isinstance(p, SlotRef) and counts.get(p.name) == 1 and p.name in learned.presence
                ),
                None,
            )
            if slot is None:
                continue
            with_it, without = learned.presence[slot]
            w = present.weight * with_it.factor / without.factor
            wstart = _weight_start(text, node.start + 1, present)
            if wstart == present.start:  # no weight yet: write it right after the '['
                edits.append(_Edit(node.start + 1, node.start + 1, format_weight(w) + "::"))
            else:
                edits.append(_Edit(wstart, present.start, format_weight(w) + "::"))
            names.append(slot)
    return edits, names


# ---------------------------------------------------------------------------------------
# the header and the sampler


def _header(
    learned: Learned, dropped: Sequence[tuple[str, str]], note: str | None, optional_slots: Sequence[str]
) -> list[str]:
    rejected = (
        f"; {learned.rejected:,} rejected images left out"
        if learned.rejected and not learned.include_rejected
        else (f"; {learned.rejected:,} rejected images counted as losers" if learned.rejected else "")
    )
    winners = "favourites" if learned.min_stars is None else f"favourites or {learned.min_stars}+ star images"
    lines = [
        f"{HEADER_MARK} weights learned from experiment {learned.experiment!r}:",
        f"#   {learned.favourites:,} {winners} among {learned.images:,} images "
        f"(base rate {learned.base_rate:.2%}{rejected}).",
        "#   New weight = the template's weight x (shrunk rate / base rate)"
        + (f"^{learned.strength:g}" if learned.strength != 1 else "")
        + ", as percentages per slot;",
        f"#   shrunk rate = (favourites + k x base rate) / (images + k), k = {learned.k:.3g} "
        f"(a prior worth {learned.prior:g} favourites).",
    ]
    if optional_slots:
        lines.append(
            "#   Optional parts [w::x] are weighed against their absence the same way: "
            + ", ".join(f"<{s}>" for s in optional_slots)
            + "."
        )
    if dropped:
        shown = "; ".join(f"{name}: {value}" for name, value in dropped)
        lines.append(f"#   Dropped (95% interval below the base rate): {shown}.")
    if note:
        lines.append(f"#   {note}")
    return lines


def _strip_header(text: str) -> str:
    if not text.startswith(HEADER_MARK):
        return text
    lines = text.split("\n")
    i = 1
    while i < len(lines) and lines[i].startswith("#   "):
        i += 1
    return "\n".join(lines[i:])


def _sampler_edits(text: str, definitions: Sequence[Definition], used: str) -> tuple[list[_Edit], str | None]:
    sampler_def = next((d for d in definitions if d.is_setting and d.name == "sampler"), None)
    written = sampler_def.alternatives[0].text if sampler_def is not None else "random"
    edits: list[_Edit] = []
    note = None
    if written in WEIGHTLESS_SAMPLERS or written == "exploit":
        assert sampler_def is not None
        alt = sampler_def.alternatives[0]
        edits.append(_Edit(alt.start, _alt_end(alt), "random"))
        if written == "exploit":
            note = (
                "The experiment used the exploit sampler; its weights are now written here, "
                "so @sampler = random (and @exploit is commented out)."
            )
            for d in definitions:
                if d.is_setting and d.name in ("exploit", "exploit_workspace"):
                    line_start = text.rfind("\n", 0, d.start) + 1
                    edits.append(_Edit(line_start, line_start, "# "))
        else:
            note = (
                f"The experiment used the {written} sampler, which ignores weights: "
                "this template uses @sampler = random."
            )
    elif used in WEIGHTLESS_SAMPLERS:
        note = (
            f"The experiment ran with --sampler {used}, which ignores weights: "
            "run this template with the random sampler."
        )
    return edits, note


# ---------------------------------------------------------------------------------------


def reweight(
    text: str,
    learned: Learned,
    *,
    drop: bool = False,
    source_name: str = "<template>",
) -> tuple[str, list[tuple[str, str]], list[str], list[str]]:
    """``text`` with learned weights written in (no header, sampler unchanged).

    Returns the text, the dropped (name, value) pairs, the names rewritten and the
    optional slots weighed. The exploit sampler uses this on the template it runs.
    """
    definitions = parse(Source(source_name, text)).definitions
    edits: list[_Edit] = []
    dropped: list[tuple[str, str]] = []
    rewritten: list[str] = []
    for d in definitions:
        if len(d.alternatives) < 2 or d.name not in learned.values:
            continue
        weights, lost = _new_weights(d, learned, drop, d.name)
        edits.append(_definition_edit(text, d, weights))
        label = ("@" if d.is_setting else "") + d.name
        rewritten.append(label)
        dropped.extend((label, value) for value in lost)
    opt_edits, optional_slots = _optional_edits(text, definitions, learned)
    edits.extend(opt_edits)
    return _apply(text, edits), dropped, rewritten, optional_slots


def refine_template(
    text: str,
    learned: Learned,
    *,
    drop: bool = False,
    source_name: str = "<template>",
) -> Refined:
    """The refined text of ``text`` (normally the experiment's own template)."""
    body = _strip_header(text)
    definitions = parse(Source(source_name, body)).definitions
    sampler_edits, note = _sampler_edits(body, definitions, learned.sampler)
    body = _apply(body, sampler_edits)  # settings with one value: reweight never touches them
    new_body, dropped, rewritten, optional_slots = reweight(body, learned, drop=drop, source_name=source_name)
    header = _header(learned, dropped, note, optional_slots)
    out = "\n".join(header) + "\n" + (new_body if new_body.startswith("\n") else "\n" + new_body)
    _verify(out, source_name, dropped)
    return Refined(out, learned, tuple(dropped), note, tuple(rewritten))


def _verify(text: str, source_name: str, dropped: Sequence[tuple[str, str]]) -> None:
    try:
        defs = parse(Source(source_name + " (refined)", text)).definitions
    except SdpError as exc:  # pragma: no cover - a bug in the rewriting
        raise RefineError(f"the refined template does not parse: {exc}") from None
    gone = {(("@" if d.is_setting else "") + d.name, a.text) for d in defs for a in d.alternatives}
    for item in dropped:
        if item in gone:  # pragma: no cover - a bug in the rewriting
            raise RefineError(f"{item[0]}: {item[1]!r} was to be dropped but is still there")


def refine(
    store: Store,
    experiment: str | Experiment,
    drop: bool = False,
    strength: float = 1.0,
    *,
    prior: float = DEFAULT_PRIOR,
    include_rejected: bool = False,
    min_stars: int | None = None,
) -> str:
    """The next template's text for an experiment (see the module docstring)."""
    return refine_result(
        store,
        experiment,
        drop=drop,
        strength=strength,
        prior=prior,
        include_rejected=include_rejected,
        min_stars=min_stars,
    ).text


def refine_result(
    store: Store,
    experiment: str | Experiment,
    *,
    drop: bool = False,
    strength: float = 1.0,
    prior: float = DEFAULT_PRIOR,
    include_rejected: bool = False,
    min_stars: int | None = None,
) -> Refined:
    """Like :func:`refine`, with what was dropped and learned (``sdp refine`` reports it)."""
    exp = experiment if isinstance(experiment, Experiment) else store.require(experiment)
    learned = learn(
        store,
        exp,
        strength=strength,
        prior=prior,
        include_rejected=include_rejected,
        min_stars=min_stars,
    )
    return refine_template(exp.template_text, learned, drop=drop, source_name=exp.template_path or exp.name)
