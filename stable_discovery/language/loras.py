"""LoRA tags: ``<lora:NAME:WEIGHT>`` in a prompt, and the folders their files come from.

A tag names a LoRA file (``NAME.safetensors`` in a LoRA folder: ``--loras DIR``,
repeatable, else ``loras/`` beside the template, plus a model folder's own ``loras/``)
and the weight it is applied with (``<lora:NAME>`` means weight 1). The tag is taken
out of the text the text encoder reads; the prompt recorded keeps it, as A1111 does.

Everything here is plain text and file handling (no torch): tags are checked when the
template loads (:func:`check_lora_tags`: an unknown name is an error at its place in
the template, with the names that exist), and the backend loads the files later.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stable_discovery.errors import Source, TemplateError

__all__ = [
    "LORA_TAG",
    "LoraTag",
    "LoraTagError",
    "LoraLibrary",
    "find_lora_tags",
    "split_lora_tags",
    "lora_key",
    "check_lora_tags",
    "has_lora_tag",
    "lora_hash",
    "default_lora_dirs",
]

#: A LoRA tag as A1111 writes it: ``<lora:NAME>`` or ``<lora:NAME:WEIGHT>``.
LORA_TAG = re.compile(r"<lora:([^<>]*)>", re.IGNORECASE)
_WEIGHT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# characters that mean the name is built by the template ({a|b}, __wildcard__, <slot>)
_DYNAMIC = re.compile(r"[{}\[\]|<>$]|__")


@dataclass(frozen=True)
class LoraTag:
    """One tag: the LoRA's name, its weight, and where it is in its text."""

    name: str
    weight: float
    start: int
    end: int


class LoraTagError(ValueError):
    """A ``<lora:…>`` tag that does not read as ``<lora:NAME:WEIGHT>``."""

    def __init__(self, message: str, start: int) -> None:
        super().__init__(message)
        self.start = start


def _parse(body: str, start: int) -> tuple[str, float]:
    name, sep, weight_text = body.partition(":")
    name = name.strip()
    if not name:
        raise LoraTagError("a LoRA tag needs a name: <lora:NAME:WEIGHT>", start)
    if not sep:
        return name, 1.0
    weight_text = weight_text.strip()
    if not _WEIGHT.fullmatch(weight_text):
        raise LoraTagError(
            f"LoRA weight {weight_text!r} is not a number: write <lora:{name}:0.8> "
            "(A1111's separate text-encoder and UNet weights are not supported)",
            start,
        )
    return name, float(weight_text)


def find_lora_tags(text: str) -> list[LoraTag]:
    """The LoRA tags of a prompt, in order. Raises :class:`LoraTagError` for a tag
    that does not read."""
    tags = []
    for m in LORA_TAG.finditer(text):
        name, weight = _parse(m.group(1), m.start())
        tags.append(LoraTag(name, weight, m.start(), m.end()))
    return tags


def split_lora_tags(text: str) -> tuple[str, tuple[LoraTag, ...]]:
    """The prompt without its LoRA tags (spaces around them closed up) and the tags."""
    tags = find_lora_tags(text)
    if not tags:
        return text, ()
    return " ".join(LORA_TAG.sub(" ", text).split()), tuple(tags)


def lora_key(text: str) -> tuple[tuple[str, float], ...]:
    """The LoRA set of a prompt: (name, weight) pairs sorted by name. A name tagged twice
    is an error (which weight was meant?)."""
    seen: dict[str, float] = {}
    for tag in find_lora_tags(text):
        if tag.name in seen:
            raise LoraTagError(f"LoRA {tag.name!r} is tagged twice in one prompt", tag.start)
        seen[tag.name] = tag.weight
    return tuple(sorted(seen.items()))


def default_lora_dirs(template: Path | None) -> tuple[Path, ...]:
    """``loras/`` beside the template (``./loras`` for a template given with ``-e``)."""
    return ((template.parent if template is not None else Path(".")) / "loras",)


class LoraLibrary:
    """The LoRA files of some folders, by name (``NAME.safetensors``, searched in
    subfolders too; the first folder that has a name wins). ``extra`` adds names known
    to exist without a file yet (a tiny model's own adapters, built on first use);
    ``elsewhere`` names LoRAs that other models have (name → where they are), only to
    say so when a name is unknown here."""

    def __init__(
        self,
        dirs: Sequence[Path | str],
        extra: Iterable[str] = (),
        elsewhere: Mapping[str, str] | None = None,
    ) -> None:
        self.dirs = tuple(Path(d).expanduser() for d in dirs)
        self._files: dict[str, Path] | None = None
        self.extra = frozenset(extra)
        self.elsewhere = dict(elsewhere or {})

    def files(self) -> dict[str, Path]:
        """Name → file, every LoRA file of the folders."""
        if self._files is None:
            found: dict[str, Path] = {}
            for folder in self.dirs:
                if not folder.is_dir():
                    continue
                for path in sorted(folder.rglob("*.safetensors")):
                    found.setdefault(path.stem, path)
            self._files = found
        return self._files

    def names(self) -> list[str]:
        return sorted(set(self.files()) | self.extra)

    def find(self, name: str) -> Path | None:
        return self.files().get(name)

    def knows(self, name: str) -> bool:
        return name in self.files() or name in self.extra

    def unknown_message(self, name: str) -> str:
        """``unknown LoRA 'x'``, with the closest names and where they were looked for."""
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        where = ", ".join(str(d) for d in self.dirs) or "no folder"
        others = [n for n in self.elsewhere if n not in names]
        other = difflib.get_close_matches(name, others, n=1, cutoff=0.6)
        if close:
            hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
        elif other:
            hint = f"did you mean {other[0]!r}? it comes with {self.elsewhere[other[0]]}"
        elif names:
            shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
            hint = f"the LoRAs there: {shown}"
        else:
            hint = "there are none there; --loras DIR names a folder of LoRA .safetensors files"
        return f"unknown LoRA {name!r} (no {name}.safetensors in {where}): {hint}"


def _comment_free(text: str) -> str:
    """The text with ``#`` comments blanked out (same length, so offsets stay)."""
    out = []
    for line in text.split("\n"):
        cut = re.search(r"(?<!\\)#", line)
        out.append(line if cut is None else line[: cut.start()] + " " * (len(line) - cut.start()))
    return "\n".join(out)


def _check_text(source: Source, library: LoraLibrary, comments: bool) -> None:
    text = _comment_free(source.text) if comments else source.text
    for m in LORA_TAG.finditer(text):
        body = m.group(1)
        name = body.partition(":")[0].strip()
        if _DYNAMIC.search(body):
            continue  # built by the template: checked when its samples are made
        try:
            _parse(body, m.start())
        except LoraTagError as exc:
            raise TemplateError(str(exc), source, m.start()) from None
        if not library.knows(name):
            raise TemplateError(library.unknown_message(name), source, m.start() + len("<lora:"))


def check_lora_tags(
    source: Source,
    wildcard_files: Iterable[Path],
    library: LoraLibrary,
    texts: Mapping[Path, str] | None = None,
) -> None:
    """Raise a :class:`TemplateError` at the first LoRA tag of the template or of a
    wildcard file it reads that does not read or names no LoRA of ``library``.

    Tags whose name or weight the template builds (``<lora:{a|b}:0.5>``) are checked
    when their samples are made instead."""
    _check_text(source, library, comments=True)
    for path in wildcard_files:
        if texts is not None and path in texts:
            text: str | None = texts[path]
        else:  # only a file with a tag is read whole (a 50 MB wildcard file seldom has one)
            text = _read(path) if has_lora_tag(path) else None
        if text is not None:
            _check_text(Source(str(path), text), library, comments=True)


def has_lora_tag(path: Path) -> bool:
    """Whether a wildcard file has a ``<lora:`` tag (any case), read a line at a time."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return any("<lora:" in line.lower() for line in f)
    except OSError:
        return False


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


_HASHES: dict[tuple[str, int, int], str] = {}


def lora_hash(path: Path) -> str:
    """A1111's short hash of a LoRA file (``Lora hashes`` in the PNG parameters): the
    first 12 hex digits of the SHA-256 of the file after its safetensors header (the
    "addnet" hash A1111 and Civitai use). Cached per file, size and modification time."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    found = _HASHES.get(key)
    if found is not None:
        return found
    h = hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else 0
        f.seek(8 + n if 0 < n < st.st_size else 0, os.SEEK_SET)
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    _HASHES[key] = h.hexdigest()[:12]
    return _HASHES[key]
