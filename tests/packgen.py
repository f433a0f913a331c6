"""A generated wildcard pack shaped like the collections that ship with the
sd-dynamic-prompts extension (parrotzone, nsp, devilkkw, artists, jumbo: 1,695 .txt
files, ~78,000 lines), which this machine cannot download.

What makes those packs hard to load, reproduced here (deterministically, from a seed):

* nested folders, names with spaces (``artists/European Art/baroque``);
* index files that refer to files by bare name: in the same folder, or in a folder
  below it (dynamicprompts finds these with ``**/name``), and ``jumbo``'s references to
  its own files written from the top of ``jumbo`` (``__artists/European Art/…__``);
* danbooru-style tag lists with emoticons (``<o> <o>``, ``> <``, ``| |``, ``^_^``) and
  bracketed data (``Name[1]``, ``stalwart [dated]``, an unmatched ``}``);
* inline choices ``{a|b}`` and weights in some lines;
* YAML files in the nested-mapping format (``publicprompts.yaml``), and a JSON one.

``write_pack(root, scale)`` writes it; ``scale=1.0`` gives about 1,700 files and 78,000
lines, a smaller scale a pack of the same shape. It returns what it wrote: every
wildcard name, and the number of distinct lines of each, for the tests to check that
the pack loads in full.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Pack", "write_pack"]

WORDS = (
    "ancient weathered glowing overgrown abandoned colossal tiny ornate crumbling futuristic "
    "serene haunted sunlit frozen floating rusty crystal gilded mossy neon velvet marble "
    "copper amber silver obsidian ivory scarlet cobalt emerald misty stormy golden hidden "
    "lighthouse cathedral market bridge forest harbour garden tower village canyon desert "
    "glacier volcano temple library observatory station monastery orchard lagoon meadow"
).split()
NAMES = (
    "Anna Berg Carlo Dahl Elin Faure Goya Hals Ingres Jansen Klee Lotto Monet Nolde Orpen "
    "Perov Quast Repin Sisley Turner Uhde Vermeer Wyeth Ysaye Zorn"
).split()
EMOTICONS = ["<o> <o>", "> <", "| |", "|| ||", "^_^", ">_<", "@ @", "= =", ". .", "^o^", "O o", "X3"]
DATA_LINES = ["Name[1]", "stalwart [dated]", "figure [left]", "smile }", "crown {broken", "rank [2] insignia"]
PERIODS = ["baroque", "medieval", "modern", "neoclassical", "renaissance", "romanticism"]


@dataclass
class Pack:
    """What :func:`write_pack` wrote: each wildcard name → its number of distinct lines."""

    root: Path
    lines: dict[str, int] = field(default_factory=dict)
    files: int = 0
    total_lines: int = 0


class _Writer:
    def __init__(self, root: Path, seed: int) -> None:
        self.pack = Pack(root)
        self.rng = random.Random(seed)

    def phrase(self, n: int = 3) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(n))

    def write(self, name: str, lines: list[str]) -> None:
        path = self.pack.root / (name + ".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        distinct = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.pack.lines[name] = len(distinct)
        self.pack.files += 1
        self.pack.total_lines += len(lines)

    def plain(self, k: int, count: int) -> list[str]:
        """``count`` distinct prompt-like lines; some with a choice or a weight."""
        out = []
        for j in range(count):
            line = f"{self.phrase(self.rng.randint(1, 4))} {k}-{j}"
            roll = self.rng.random()
            if roll < 0.08:
                line = f"{line} {{{self.rng.choice(WORDS)}|{self.rng.choice(WORDS)}}}"
            elif roll < 0.10:
                line = f"{self.rng.choice(['2', '3', '0.5'])}:: {line}"
            out.append(line)
        return out


def _parrotzone(w: _Writer, files: int, per_file: int) -> None:
    for k in range(files):
        w.write(f"parrotzone/{w.rng.choice(WORDS)}_{k}", w.plain(k, per_file))


def _nsp(w: _Writer, files: int, per_file: int) -> None:
    for k in range(files):
        w.write(f"nsp/nsp-{w.rng.choice(WORDS)}-{k}", w.plain(k, per_file))


def _devilkkw(w: _Writer, files: int, per_file: int) -> None:
    folders = ["animals", "attire", "body-1", "background", "audio", "emotions"]
    for k in range(files):
        lines = [f"{w.rng.choice(WORDS)}_{w.rng.choice(WORDS)}_{k}_{j}" for j in range(per_file)]
        if k % 3 == 0:
            lines += EMOTICONS
        if k % 4 == 1:
            lines += DATA_LINES
        w.write(f"devilkkw/{folders[k % len(folders)]}/{folders[k % len(folders)]}_{k}", lines)


def _artists(w: _Writer, files: int, per_file: int) -> None:
    """Painters by period; each period has an index file that refers to its files by bare
    name: those beside it, and those in a folder below it."""
    per_period = max(2, files // len(PERIODS))
    for p, period in enumerate(PERIODS):
        base = f"artists/European Art/{period}"
        names = []
        for k in range(per_period - 1):
            sub = "" if k % 2 == 0 else f"{period}_schools/"
            name = f"{period}_painters_{k}"
            lines = [f"{w.rng.choice(NAMES)} {w.rng.choice(NAMES)} {p}-{k}-{j}" for j in range(per_file)]
            w.write(f"{base}/{sub}{name}", lines)
            names.append(name)
        w.write(f"{base}/{period}", [f"__{n}__" for n in names])


def _jumbo(w: _Writer, files: int, per_file: int) -> None:
    """A pack of its own inside the folder, which refers to its files from its own top."""
    colours = ["black", "blue", "green", "red", "white"]
    for c in colours:
        w.write(f"jumbo/aesthetics/colours/{c}", [f"{c} {w.phrase(2)} {j}" for j in range(per_file)])
    w.write(
        "jumbo/aesthetics/general_aesthetics", [f"__aesthetics/colours/{c}__ {w.phrase(1)}" for c in colours]
    )
    for k in range(max(1, files - len(colours) - 1)):
        period = PERIODS[k % len(PERIODS)]
        w.write(
            f"jumbo/artists/European Art/{period}/jumbo_{period}_{k}",
            [f"{w.rng.choice(NAMES)} {k}-{j}" for j in range(per_file)]
            + [f"in the style of __artists/European Art/{period}/jumbo_{period}_{k}_extra__"],
        )
        w.write(
            f"jumbo/artists/European Art/{period}/jumbo_{period}_{k}_extra",
            [f"{w.rng.choice(NAMES)} extra {k}-{j}" for j in range(4)],
        )


def _structured(w: _Writer) -> None:
    root = w.pack.root
    yaml_text = """# publicprompts, the nested-mapping format of dynamicprompts and the Impact Pack
publicprompts:
  plush-toy:
    - Cute kawaii squishy {fox|manatee|owl} plush toy, realistic texture, visible stitch line
    - "2:: soft smooth lighting, __parrotzone/*__ plush toy"
  claymation:
    - "{cute|angry} claymation __devilkkw/animals/*__, studio lighting"
  styles:
    poster:
      - retro travel poster of a __artists/European Art/baroque/baroque__
      - {text: minimal flat poster, weight: 3}
"""
    (root / "publicprompts.yaml").write_text(yaml_text, encoding="utf-8")
    w.pack.lines.update(
        {"publicprompts/plush-toy": 2, "publicprompts/claymation": 1, "publicprompts/styles/poster": 2}
    )
    (root / "flavors").mkdir(exist_ok=True)
    (root / "flavors" / "pantry.json").write_text(
        json.dumps({"bitter": ["coffee", "dark chocolate"], "sweet": {"fruit": ["mango", "lychee"]}}),
        encoding="utf-8",
    )
    w.pack.lines.update({"flavors/bitter": 2, "flavors/sweet/fruit": 2})
    w.pack.files += 2


def write_pack(root: Path, scale: float = 1.0, seed: int = 11) -> Pack:
    """Write the pack into ``root`` (which must be empty or absent): at ``scale`` 1,
    about 1,700 files and 78,000 lines."""
    root.mkdir(parents=True, exist_ok=True)
    w = _Writer(root, seed)

    def n(files: int) -> int:
        return max(2, round(files * scale))

    _parrotzone(w, n(260), 60)
    _nsp(w, n(120), 200)
    _devilkkw(w, n(460), 38)
    _artists(w, n(420), 22)
    _jumbo(w, n(215), 30)
    _structured(w)
    return w.pack
