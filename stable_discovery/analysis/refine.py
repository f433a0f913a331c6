"""The next template: the experiment's own template with weights learned from favourites.

``refine(store, experiment)`` returns the text of the experiment's template (as stored
with the experiment; for a JSON config, its converted ``.sdp``) where every traced
variable is re-weighted by the estimates of :mod:`.learn`, where it is written
(:mod:`.reweight`):

* slots and sampled settings: ``N::`` on their alternatives, percentages per definition;
* inline choices: ``{31::green|9.5::red}``; multi-select items: each item's weight;
* optional parts: presence against absence, ``[1.52::x]`` (``[a|b]`` becomes
  ``[p::{wa::a|wb::b}]``);
* wildcard lines: ``N::`` in a copy of each wildcard file the template reads
  (:attr:`Refined.wildcards`; ``sdp refine -o NEXT.sdp`` writes them to a folder beside
  it, ``NEXT-wildcards/``, and the template reads them from there: ``@wildcards``);
* with ``drop=True``, values that clearly lose (seen, and the whole 95% interval of
  their favourite rate below the base rate) are removed from slots and settings, and
  weighted 0 in inline choices and wildcard files (so that no name shifts) — never every
  value of a variable;
* a sampler that ignores weights (``legacy``, ``combinatorial``, ``shuffle``) becomes
  ``random``; an ``exploit`` sampler becomes ``random`` too, its ``@exploit`` line
  commented out, since the learned weights are now written in the template;
* a header comment names the experiment and the favourites and images the weights came
  from (a previous refine header is replaced).

Everything else — comments, layout, other definitions — is kept as written: only
weights (and dropped alternatives) change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_discovery.analysis.learn import DEFAULT_PRIOR, Learned, learn
from stable_discovery.analysis.reweight import Reweighted, reweight
from stable_discovery.analysis.rewrite import Edit, alt_end, apply_edits, format_weight
from stable_discovery.errors import SdpError, Source, TemplateError
from stable_discovery.language.parser import parse
from stable_discovery.language.program import compile_source, default_wildcard_dirs
from stable_discovery.language.settings import SettingSpec
from stable_discovery.language.syntax import Definition
from stable_discovery.language.variables import value_text
from stable_discovery.store.database import Experiment, Store

__all__ = [
    "refine",
    "refine_result",
    "refine_template",
    "reweight",
    "Refined",
    "HEADER_MARK",
    "format_weight",
    "wildcard_folder",
]

#: The first words of the header comment refine writes.
HEADER_MARK = "# sdp refine:"
#: Samplers whose samples do not follow weights.
WEIGHTLESS_SAMPLERS = ("legacy", "combinatorial", "shuffle")


class RefineError(SdpError):
    """The rewritten template did not come out as planned (a bug: please report it)."""

    exit_code = 1


@dataclass(frozen=True)
class Refined:
    """The next template's text, with what was dropped and what it was learned from.

    ``wildcards`` maps a path relative to the refined template (``NEXT-wildcards/
    styles/painting.txt``) to the text of a weighted copy of a wildcard file: the refined
    template reads its wildcards from that folder (``@wildcards``). Empty when the
    template reads none, or when no folder was given (``wildcard_note`` says so).
    """

    text: str
    learned: Learned
    dropped: tuple[tuple[str, str], ...]  # (variable, value text)
    sampler_note: str | None
    rewritten: tuple[str, ...]  # the variables whose weights were written
    wildcards: dict[str, str] = field(default_factory=dict)
    wildcard_note: str | None = None


def wildcard_folder(output: Path) -> str:
    """The folder, beside a refined template, that holds its wildcard copies."""
    return output.stem + "-wildcards"


# ---------------------------------------------------------------------------------------
# the header and the sampler


def _header(
    learned: Learned,
    dropped: Sequence[tuple[str, str]],
    note: str | None,
    optional_slots: Sequence[str],
    folder: str | None,
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
        + ", as percentages per variable;",
        f"#   shrunk rate = (favourites + k x base rate) / (images + k), k = {learned.k:.3g} "
        f"(a prior worth {learned.prior:g} favourites).",
    ]
    if learned.presences:
        lines.append(
            "#   Optional parts [w::x] and multi-select items are weighed against their absence "
            "the same way"
            + (": " + ", ".join(f"<{s}>" for s in optional_slots) if optional_slots else "")
            + "."
        )
    if folder is not None:
        lines.append(f"#   Wildcard lines are weighted N:: in copies of the wildcard files, in {folder}/.")
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


def _sampler_edits(text: str, definitions: Sequence[Definition], used: str) -> tuple[list[Edit], str | None]:
    sampler_def = next((d for d in definitions if d.is_setting and d.name == "sampler"), None)
    written = sampler_def.alternatives[0].text if sampler_def is not None else "random"
    edits: list[Edit] = []
    note = None
    if written in WEIGHTLESS_SAMPLERS or written == "exploit":
        assert sampler_def is not None
        alt = sampler_def.alternatives[0]
        edits.append(Edit(alt.start, alt_end(alt), "random"))
        if written == "exploit":
            note = (
                "The experiment used the exploit sampler; its weights are now written here, "
                "so @sampler = random (and @exploit is commented out)."
            )
            for d in definitions:
                if d.is_setting and d.name in ("exploit", "exploit_workspace"):
                    line_start = text.rfind("\n", 0, d.start) + 1
                    edits.append(Edit(line_start, line_start, "# "))
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
# the whole template


_SETTING_SPECIAL = re.compile(r"([{}\[\]<>|#$_\\])")


def _wildcards_edits(text: str, definitions: Sequence[Definition], folder: str) -> list[Edit]:
    """``@wildcards = FOLDER``: replacing the template's own, or first in the body."""
    value = _SETTING_SPECIAL.sub(r"\\\1", folder)
    for d in definitions:
        if d.is_setting and d.name == "wildcards":
            alt = d.alternatives[0]
            return [Edit(alt.start, alt_end(alt), value)]
    return [Edit(0, 0, f"@wildcards = {value}   # this template's weighted copies of its wildcard files\n")]


def _literal_setting(text: str, source_name: str) -> str:
    """``@wildcard_lines = literal`` first in a template of definitions that does not say
    how its wildcard files are read (the experiment read them as data: so do its copies)."""
    definitions = parse(Source(source_name, text)).definitions
    if not definitions or any(d.is_setting and d.name == "wildcard_lines" for d in definitions):
        return text
    line = "@wildcard_lines = literal   # the experiment read its wildcard files as data\n"
    return apply_edits(text, [Edit(0, 0, line)])


def _compile(body: str, source_name: str, options: Mapping[str, Any]) -> Any:
    """The experiment's template, compiled to find where its variables are written."""
    dirs = options.get("wildcard_dirs", ())
    try:
        return compile_source(
            Source(source_name, body),
            tuple(Path(d) for d in dirs),
            options.get("extra_settings", ()),
            base_dir=options.get("base_dir"),
            wildcards_literal=bool(options.get("wildcards_literal")),
        )
    except TemplateError as exc:
        raise TemplateError(
            f"the experiment's template does not load any more, so it cannot be refined: {exc.message}",
            exc.source,
            exc.offset,
            hint=exc.hint or "give the wildcard folders it used with --wildcards DIR",
        ) from None


def _copies(result: Reweighted, folder: str) -> dict[str, str]:
    """Each copy's path (relative to the refined template) → its text: a .txt file as a
    .txt file, a YAML or JSON file as YAML (its key paths unchanged)."""
    from stable_discovery.language.structured import STRUCTURED_SUFFIXES

    return {
        f"{folder}/{result.wildcard_names[p]}"
        + (".yaml" if p.suffix.lower() in STRUCTURED_SUFFIXES else ".txt"): t
        for p, t in result.wildcard_texts.items()
    }


def refine_template(
    text: str,
    learned: Learned,
    *,
    drop: bool = False,
    source_name: str = "<template>",
    wildcards_to: str | None = None,
    **options: Any,
) -> Refined:
    """The refined text of ``text`` (normally the experiment's own template).

    ``wildcards_to`` is the folder (relative to the refined template) for weighted copies
    of the wildcard files it reads; ``options``: ``wildcard_dirs``, ``base_dir`` (the
    template's folder) and ``extra_settings`` (plugins' settings), to load the template.
    """
    body = _strip_header(text)
    definitions = parse(Source(source_name, body)).definitions
    sampler_edits, note = _sampler_edits(body, definitions, learned.sampler)
    body = apply_edits(body, sampler_edits)  # settings with one value: reweight never touches them
    result = reweight(_compile(body, source_name, options), learned, drop=drop)
    new_body = result.text
    copies: dict[str, str] = {}
    wildcard_note = None
    if result.wildcard_texts and wildcards_to is not None:
        if not definitions:
            new_body = _as_definitions(new_body)
        defs = parse(Source(source_name, new_body)).definitions
        new_body = apply_edits(new_body, _wildcards_edits(new_body, defs, wildcards_to))
        copies = _copies(result, wildcards_to)
    elif result.wildcard_texts:
        wildcard_note = (
            "Wildcard lines are not weighted in this output: give -o NEXT.sdp to write weighted "
            "copies of the wildcard files beside it."
        )
    if options.get("wildcards_literal"):
        new_body = _literal_setting(new_body, source_name)
    header = _header(learned, result.dropped, note, result.optional_slots, wildcards_to if copies else None)
    out = "\n".join(header) + "\n" + (new_body if new_body.startswith("\n") else "\n" + new_body)
    _verify(out, source_name, result.dropped)
    return Refined(out, learned, result.dropped, note, result.rewritten, copies, wildcard_note)


def _as_definitions(text: str) -> str:
    """A bare template as a definitions file (so that it can take ``@wildcards``): its
    comment lines kept, the rest one ``prompt = …`` line, '|' outside braces escaped."""
    comments, body = [], []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            if stripped:
                comments.append(stripped)
            continue
        code, hashmark, comment = _split_comment(stripped)
        if hashmark:
            comments.append("#" + comment)
        body.append(code.strip())
    prompt = "prompt = " + _escape_top_level_bars(" ".join(b for b in body if b))
    return "\n".join(comments + [prompt]) + "\n"


def _split_comment(line: str) -> tuple[str, str, str]:
    """A line's code and its comment (a '#' not escaped and not naming a choice)."""
    for m in re.finditer(r"\\.|[{\[]#[A-Za-z_][A-Za-z0-9_]*:|#", line):
        if m.group() == "#":
            return line[: m.start()], "#", line[m.end() :]
    return line, "", ""


def _escape_top_level_bars(text: str) -> str:
    out, depth, i = [], 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 2
            continue
        depth += 1 if ch in "{[" else -1 if ch in "}]" else 0
        out.append("\\|" if ch == "|" and depth == 0 else ch)
        i += 1
    return "".join(out)


def _verify(text: str, source_name: str, dropped: Sequence[tuple[str, str]]) -> None:
    try:
        defs = parse(Source(source_name + " (refined)", text)).definitions
    except SdpError as exc:  # pragma: no cover - a bug in the rewriting
        raise RefineError(f"the refined template does not parse: {exc}") from None
    gone = {
        (("@" if d.is_setting else "") + d.name, value_text(a, text))
        for d in defs
        for a in d.alternatives
        if a.weight > 0
    }
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
    **options: Any,
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
        **options,
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
    wildcards_to: str | None = None,
    wildcard_dirs: Sequence[Path] = (),
    extra_settings: Sequence[SettingSpec] = (),
    wildcards_literal: bool = False,
) -> Refined:
    """Like :func:`refine`, with what was dropped and learned (``sdp refine`` reports it).

    The experiment's template is loaded again to find where its variables are written:
    its wildcards from ``wildcard_dirs``, else ``wildcards/`` beside the template file
    (read as data with ``wildcards_literal``); ``extra_settings`` are the plugins'
    settings it may use."""
    exp = experiment if isinstance(experiment, Experiment) else store.require(experiment)
    learned = learn(
        store,
        exp,
        strength=strength,
        prior=prior,
        include_rejected=include_rejected,
        min_stars=min_stars,
    )
    path = Path(exp.template_path) if exp.template_path else None
    return refine_template(
        exp.template_text,
        learned,
        drop=drop,
        source_name=exp.template_path or exp.name,
        wildcards_to=wildcards_to,
        wildcard_dirs=tuple(wildcard_dirs) or default_wildcard_dirs(path),
        base_dir=path.parent if path is not None else None,
        extra_settings=extra_settings,
        wildcards_literal=wildcards_literal,
    )
