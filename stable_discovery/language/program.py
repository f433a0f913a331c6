"""A template, checked and compiled: slots, settings and the space of samples.

``load(path)`` and ``loads(text)`` are the entry points. Everything that can be wrong
with a template is found here, at load time: undefined slots (with the nearest name
suggested), cycles, unknown wildcards, unknown or malformed settings.

Compiling goes in stages, each a module of its own: the parser
(:mod:`.parser`) makes the syntax tree; :mod:`.definitions` sorts it into slots and
checked settings; :mod:`.references` counts how often each slot is used;
:mod:`.compiler` builds the space (:mod:`stable_discovery.space.nodes`), reading
wildcards through :mod:`.wildcard_lines`; :mod:`.measure` bounds its size.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.compiler import SEPARATOR, compile_space
from stable_discovery.language.definitions import SettingInfo, SlotInfo, definitions_of, settings_specs
from stable_discovery.language.parser import parse
from stable_discovery.language.settings import SettingSpec
from stable_discovery.language.variables import Variable
from stable_discovery.language.wildcards import WildcardLibrary, read_text_file
from stable_discovery.space.nodes import Node, OpenSpace, SpaceTooComplex

if TYPE_CHECKING:
    from stable_discovery.language.legacy_config import LegacyConfig

__all__ = ["Program", "SlotInfo", "SettingInfo", "load", "loads", "compile_source", "SEPARATOR"]


@dataclass(frozen=True, eq=False)
class Program:
    """A loaded template: what it defines, and its compiled space of samples."""

    source: Source
    slots: Mapping[str, SlotInfo]
    settings: Mapping[str, SettingInfo]
    used_slots: tuple[str, ...]
    shared_slots: tuple[str, ...]
    wildcard_dirs: tuple[Path, ...]
    root: Node = field(repr=False)
    sampled_settings: tuple[str, ...] = ()
    is_bare: bool = False
    legacy: LegacyConfig | None = None  # set when loaded from an original JSON config
    wildcard_files: tuple[Path, ...] = ()  # the wildcard files the template reads
    run_settings: frozenset[str] = frozenset()  # settings that steer the run, not each image
    variables: tuple[Variable, ...] = ()  # every traced variable, in template order
    base_dir: Path | None = None  # the template's folder (@wildcards is relative to it)
    _space: list[Node | OpenSpace] = field(default_factory=list, repr=False)

    def setting(self, name: str, default: Any = None) -> Any:
        """The single value of a setting, or ``default`` when absent."""
        info = self.settings.get(name)
        if info is None:
            return default
        return info.values[0]

    @property
    def has_negative(self) -> bool:
        return "negative" in self.slots

    def space(self) -> Any:
        """The combinatorial view: ``count`` and ``decode``; computed once.

        The root itself when it has no shared slots, else an :class:`OpenSpace` (whose
        ``decode`` differs: callers tell the two apart)."""
        if not self._space:
            if self.root.closed:
                self._space.append(self.root)
            else:
                try:
                    self._space.append(OpenSpace(self.root))
                except SpaceTooComplex as exc:
                    raise TemplateError(str(exc), self.source) from None
        return self._space[0]

    def count(self) -> int:
        """The exact number of distinct combinations."""
        space: Node | OpenSpace = self.space()
        return space.count


def compile_source(
    source: Source,
    wildcard_dirs: Sequence[Path] = (),
    extra_settings: Sequence[SettingSpec] = (),
    legacy: LegacyConfig | None = None,
    *,
    base_dir: Path | None = None,
    wildcard_texts: Mapping[Path, str] | None = None,
) -> Program:
    """Parse and compile a template source into a :class:`Program`.

    ``base_dir`` is the template's folder (``@wildcards`` is relative to it; default: the
    current directory); ``wildcard_texts`` stands in for the text of some wildcard files.

    The cyclic garbage collector is paused meanwhile: compiling a large template makes
    a great many small objects that stay alive (and next to no cycles), and the
    collector's passes over them took a fifth of the time.
    """
    enabled = gc.isenabled()
    if enabled:
        gc.disable()
    try:
        return _compile_source(source, wildcard_dirs, extra_settings, legacy, base_dir, wildcard_texts)
    finally:
        if enabled:
            gc.enable()


def _compile_source(
    source: Source,
    wildcard_dirs: Sequence[Path],
    extra_settings: Sequence[SettingSpec],
    legacy: LegacyConfig | None,
    base_dir: Path | None,
    wildcard_texts: Mapping[Path, str] | None,
) -> Program:
    if "\x00" in source.text:
        raise TemplateError(
            "contains a NUL character; is this a binary file?", source, source.text.index("\x00")
        )
    specs = settings_specs(extra_settings)
    definitions = definitions_of(source, parse(source), specs)
    wildcard_dirs = search_dirs(definitions.settings.get("wildcards"), wildcard_dirs, base_dir)
    library = WildcardLibrary(wildcard_dirs, wildcard_texts)
    space = compile_space(source, definitions, library)
    return Program(
        source=source,
        slots=definitions.slots,
        settings=definitions.settings,
        used_slots=space.used_slots,
        shared_slots=space.shared_slots,
        wildcard_dirs=tuple(wildcard_dirs),
        root=space.root,
        sampled_settings=space.sampled_settings,
        is_bare=definitions.is_bare,
        legacy=legacy,
        wildcard_files=tuple(library.files_read()),
        run_settings=frozenset(name for name, spec in specs.items() if not spec.per_image),
        variables=space.variables,
        base_dir=base_dir,
    )


def search_dirs(
    setting: SettingInfo | None, wildcard_dirs: Sequence[Path], base_dir: Path | None
) -> tuple[Path, ...]:
    """The wildcard folders, in search order: ``@wildcards`` (relative to the template's
    folder) first, then the ones given; each once."""
    dirs = list(wildcard_dirs)
    if setting is not None:
        folder = Path(setting.values[0])
        if not folder.is_absolute() and base_dir is not None:
            folder = base_dir / folder
        dirs.insert(0, folder)
    return tuple(dict.fromkeys(dirs))


def default_wildcard_dirs(path: Path | None) -> tuple[Path, ...]:
    if path is None:
        return (Path("wildcards"),)
    return (path.parent / "wildcards",)


def load(
    path: Path | str,
    wildcard_dirs: Sequence[Path | str] | None = None,
    extra_settings: Sequence[SettingSpec] = (),
) -> Program:
    """Load a ``.sdp`` template or an original stable-discovery JSON config."""
    path = Path(path)
    dirs = tuple(Path(d) for d in wildcard_dirs) if wildcard_dirs else default_wildcard_dirs(path)
    text = read_text_file(path)
    if path.suffix.lower() == ".json":
        from stable_discovery.language.legacy_config import legacy_source

        sdp_text, config = legacy_source(Source(str(path), text))
        return compile_source(
            Source(str(path) + " (as .sdp)", sdp_text),
            dirs,
            extra_settings,
            legacy=config,
            base_dir=path.parent,
        )
    return compile_source(Source(str(path), text), dirs, extra_settings, base_dir=path.parent)


def loads(
    text: str,
    name: str = "<template>",
    wildcard_dirs: Sequence[Path | str] = (),
    extra_settings: Sequence[SettingSpec] = (),
) -> Program:
    """Compile template text given directly (``sdp expand -e``)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    dirs = tuple(Path(d) for d in wildcard_dirs) if wildcard_dirs else (Path("wildcards"),)
    return compile_source(Source(name, text), dirs, extra_settings)
