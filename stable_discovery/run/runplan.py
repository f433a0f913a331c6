"""What a run will do, settled before anything is generated: the options a user gave
(:class:`RunOptions`) and the template resolved into a :class:`RunPlan` (sampler, seed,
count, batch size, the experiment's spec and the parsed setting overrides)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stable_discovery.errors import UsageError
from stable_discovery.language.program import Program
from stable_discovery.run.autobatch import AUTO_BATCH
from stable_discovery.sampling.sample import Sample
from stable_discovery.store.database import MAX_INT, ExperimentSpec, check_name

if TYPE_CHECKING:
    from stable_discovery.sampling.samplers import Sampler

__all__ = [
    "RunOptions",
    "RunPlan",
    "resolve_plan",
    "resolve_count",
    "sampler_name",
    "wildcards_hash",
    "parse_overrides",
    "apply_overrides",
    "apply_defaults",
    "parsed_overrides",
    "DEFAULT_BATCH",
]

#: Images per backend call without ``--batch`` and ``@batch`` (on a CPU: a GPU backend
#: prefers ``auto``, the largest batch that fits).
DEFAULT_BATCH = 4

#: Settings that ``--set`` does not take (they have options of their own).
_NOT_OVERRIDABLE = ("count", "seed", "sampler", "batch", "device", "optimize", "compile")


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for (``sdp run``'s options); ``None``: the template's value."""

    name: str
    backend: str = "diffusers"
    #: images per backend call, or ``"auto"`` (the largest batch that fits in memory)
    batch: int | str | None = None
    count: int | None = None
    seed: int | None = None
    sampler: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    sinks: tuple[str, ...] = ()
    backend_options: dict[str, Any] = field(default_factory=dict)
    #: the folders ``<lora:…>`` tags are looked up in (for the ``Lora hashes`` of the PNGs)
    lora_dirs: tuple[str, ...] = ()
    #: keep at most this many models loaded: the run goes through its models this many
    #: at a time, so that each is still loaded once (``None``: all at once)
    max_models: int | None = None
    #: threads that encode and write the PNG files while the next batch is generated
    #: (0: the generating thread writes, one batch at a time; ``None``: half the cores,
    #: 2 to 8)
    encoders: int | None = None


@dataclass(frozen=True)
class RunPlan:
    """A run resolved against its template: everything the driver needs to know."""

    program: Program
    options: RunOptions
    sampler: Sampler
    seed: int
    count: int
    batch_size: int
    spec: ExperimentSpec
    #: ``--set``/``--model`` values parsed (``size`` split into ``width`` and ``height``).
    overrides: Mapping[str, Any]
    #: per model, the settings its family defaults to (``sdp run`` asks the backend once
    #: the models are found); they fill what neither the template nor ``--set`` sets
    model_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: ``--batch auto``: batches of ``batch_size`` are made in the pieces that fit
    auto_batch: bool = False
    #: whether ``--batch`` or ``@batch`` says the batch (else the backend may choose auto)
    batch_given: bool = False

    def todo(self, done: set[int]) -> Iterator[Sample]:
        """The samples not done yet, in order, with the overrides and the model's
        family defaults applied."""
        explicit = self.explicit_settings()
        for sample in self.sampler.samples(self.program, 0, self.count, self.seed):
            if sample.index not in done:
                sample = apply_overrides(sample, self.overrides)
                defaults = self.model_defaults.get(str(sample.settings.get("model")))
                yield apply_defaults(sample, defaults, explicit) if defaults else sample

    def explicit_settings(self) -> frozenset[str]:
        """The generation settings the template or ``--set`` gives a value."""
        names = set(self.program.settings) | set(self.overrides)
        if "size" in names:
            names |= {"width", "height"}
        return frozenset(names)

    def models(self) -> list[str]:
        """The models the run may load (for a backend's ``prepare``), sorted."""
        return sorted({str(self.overrides.get("model", m)) for m in _template_models(self.program)})


def sampler_name(program: Program, requested: str | None = None) -> str:
    """The sampler a run uses: ``--sampler``, else ``@sampler``, else ``random``."""
    return str(requested or program.setting("sampler", "random"))


def resolve_plan(
    program: Program,
    template_path: str | None,
    options: RunOptions,
    sampler: Sampler,
    setting_specs: Mapping[str, Any] | None = None,
) -> RunPlan:
    """The plan of a run. ``sampler`` is the one :func:`sampler_name` names (the caller
    looks it up, built-in or from a plugin); ``setting_specs`` parse the overrides
    (default: the built-in settings)."""
    from stable_discovery.language.settings import BUILTIN_SETTINGS

    specs = setting_specs or {s.name: s for s in BUILTIN_SETTINGS}
    check_name(options.name)
    seed = options.seed if options.seed is not None else int(program.setting("seed", 0))
    if not -MAX_INT - 1 <= seed <= MAX_INT:
        source = "--seed" if options.seed is not None else "@seed"
        raise UsageError(
            f"{source} {seed} is too large for the run store: a run's seed is a 64-bit "
            f"integer, from {-MAX_INT - 1} to {MAX_INT}"
        )
    count = resolve_count(program, sampler, options.count)
    spec = ExperimentSpec(
        name=options.name,
        template_path=template_path,
        template_text=program.source.text,
        wildcards_hash=wildcards_hash(program),
        sampler=sampler_name(program, options.sampler),
        seed=seed,
        count=count,
        backend=options.backend,
        overrides=dict(options.overrides),
        variables=tuple((v.name, v.kind) for v in program.variables),
    )
    batch = options.batch if options.batch is not None else program.setting("batch")
    auto = batch == "auto"
    return RunPlan(
        program=program,
        options=options,
        sampler=sampler,
        seed=seed,
        count=count,
        batch_size=AUTO_BATCH if auto else _batch_size(batch),
        spec=spec,
        overrides=parsed_overrides(options.overrides, specs),
        auto_batch=auto,
        batch_given=batch is not None,
    )


def _batch_size(batch: Any) -> int:
    if batch is None:
        return DEFAULT_BATCH
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 4096:
        raise UsageError(f"a batch is 1 to 4096 images, or auto; not {batch!r}")
    return batch


def resolve_count(program: Program, sampler: Sampler, requested: int | None) -> int:
    """How many images: ``--count``, else ``@count``, else every combination of a
    finite sampler; more than a finite sampler has is an error."""
    size = sampler.size(program)
    count = requested if requested is not None else program.setting("count")
    if count is None:
        if size is None:
            raise UsageError(
                f"how many images? the {sampler.name} sampler needs --count N or @count in the template"
            )
        count = size
    if count < 1 or (size is not None and count > size):
        _refuse_count(program, sampler, count, size, requested is not None)
    if count > MAX_INT:
        raise UsageError(
            f"a count of {count} images is more than the run store can number (at most {MAX_INT})"
        )
    return int(count)


def _refuse_count(program: Program, sampler: Sampler, count: int, size: int | None, flag: bool) -> None:
    """The :class:`UsageError` for a count of no images, or of more than a finite
    sampler makes; ``flag``: ``--count`` asked (else the template's ``@count``)."""
    if flag:
        asked = f"--count {count}"
    else:
        asked = f"{program.source.where(program.settings['count'].start)}: @count = {count}"
    if count < 1:
        raise UsageError(f"{asked}: a run makes at least one image")
    assert size is not None
    made = f"{size:,} {'combination' if size == 1 else 'combinations'}"
    fix = f"use --count {size:,} or less" if flag else f"lower @count to {size:,} or less"
    raise UsageError(
        f"{asked} is more than the {made} the {sampler.name} sampler makes (each once). "
        f"Either {fix}, or draw with repetition: --sampler random (or @sampler = random)"
    )


def wildcards_hash(program: Program) -> str:
    """A hash of the wildcard files the template reads (a changed file is a changed
    experiment)."""
    h = hashlib.sha256()
    if program.wildcards_literal:  # the same files read another way make other prompts
        h.update(b"read as data\0")
    for path in sorted(program.wildcard_files):
        h.update(str(path.name).encode() + b"\0")
        try:
            with open(path, "rb") as f:  # in blocks: a 50 MB wildcard file is not held whole
                while block := f.read(1 << 20):
                    h.update(block)
        except OSError:
            h.update(b"<unreadable>")
        h.update(b"\0")
    return h.hexdigest()


def parse_overrides(pairs: Iterable[str], specs: Mapping[str, Any]) -> dict[str, str]:
    """``KEY=VALUE`` pairs (``--set``), checked against the settings' parsers."""
    from stable_discovery.language.settings import SettingValueError

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("@")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {pair!r}")
        spec = specs.get(key)
        if spec is None or key in _NOT_OVERRIDABLE:
            known = ", ".join(k for k in specs if k not in _NOT_OVERRIDABLE)
            raise UsageError(f"--set {key}: not a generation setting; use one of {known}")
        try:
            spec.parse(value.strip())
        except SettingValueError as exc:
            raise UsageError(f"--set {key}: {exc}") from None
        out[key] = value.strip()
    return out


def parsed_overrides(overrides: Mapping[str, str], specs: Mapping[str, Any]) -> dict[str, Any]:
    """Checked ``--set`` texts as setting values (``size`` becomes ``width``, ``height``)."""
    parsed: dict[str, Any] = {}
    for key, text in overrides.items():
        value = specs[key].parse(text)
        if key == "size":
            parsed["width"], parsed["height"] = value
        else:
            parsed[key] = value
    return parsed


def apply_overrides(sample: Sample, overrides: Mapping[str, Any]) -> Sample:
    """The sample with settings overridden (``--set``, ``--model``). An overridden
    setting no longer varies, so its choice leaves the trace."""
    if not overrides:
        return sample
    settings = dict(sample.settings)
    settings.update(overrides)
    gone = set(overrides)
    if "width" in gone or "height" in gone:
        gone.add("size")
    trace = {k: v for k, v in sample.trace.items() if k not in gone}
    return dataclasses.replace(sample, settings=settings, trace=trace)


def apply_defaults(sample: Sample, defaults: Mapping[str, Any], explicit: frozenset[str]) -> Sample:
    """The sample with the settings nobody set taken from ``defaults``."""
    settings = dict(sample.settings)
    changed = False
    for name, value in defaults.items():
        if name not in explicit and settings.get(name) != value:
            settings[name] = value
            changed = True
    return dataclasses.replace(sample, settings=settings) if changed else sample


def _template_models(program: Program) -> list[str]:
    from stable_discovery.language.settings import GENERATION_DEFAULTS

    info = program.settings.get("model")
    if info is None:
        return [GENERATION_DEFAULTS["model"]]
    return [str(v) for v in info.values]
