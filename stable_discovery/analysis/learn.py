"""Weights learned from an experiment's favourites: shrunk estimates per value.

Used by ``sdp refine`` (written into the next template) and by the ``exploit`` sampler
(applied inside a run); both give the same weights.

The estimate for a value seen on ``n`` images, ``f`` of them favourites, in an
experiment whose base rate is ``p0 = F / N``:

* **shrunk rate** ``r = (f + k·p0) / (n + k)``: the posterior mean under a
  Beta(k·p0, k·(1−p0)) prior centred on the base rate. ``k = max(10, m / p0)`` images,
  where ``m`` (``prior``, default 2) is the prior's worth in favourites: a value seen
  twice with two favourites moves only a little, one seen 200 times moves a lot.
* **factor** ``(r / p0) ** strength``: how much more (or less) often the value should be
  sampled. ``strength`` 1 is the plain ratio; 0 changes nothing; 2 is greedier.
* the new weight of an alternative is **its template weight × factor**; refine writes
  them normalised to percentages per slot. Values never seen have factor 1.
* an optional part ``[x]`` whose slot is used nowhere else gets the weight
  ``w · factor(present) / factor(absent)`` against the absent case (``[w::x]``).

Rows are matched to template alternatives by the alternative's text as written, so an
edited template (values added, removed or moved) still gets the right weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stable_discovery.analysis.stats import StatsReport, ValueStats, experiment_stats, wilson
from stable_discovery.errors import Source, UsageError
from stable_discovery.language.parser import parse
from stable_discovery.language.syntax import Definition
from stable_discovery.store.database import Experiment, Store

__all__ = ["Estimate", "Learned", "learn", "learn_from_report", "DEFAULT_PRIOR", "MIN_PRIOR_IMAGES"]

#: The prior's default worth, in favourites (``m``).
DEFAULT_PRIOR = 2.0
#: The prior is worth at least this many images (``k >= 10``).
MIN_PRIOR_IMAGES = 10.0


@dataclass(frozen=True)
class Estimate:
    """One value's counts and what they imply: shrunk rate and sampling factor."""

    images: int
    favourites: int
    rate: float  # raw favourites / images
    shrunk: float  # (favourites + k·p0) / (images + k)
    factor: float  # (shrunk / p0) ** strength
    high: float  # upper bound of the 95% Wilson interval (for --drop)
    loses: bool  # seen, and the whole interval is below the base rate


@dataclass(frozen=True)
class Learned:
    """What an experiment's favourites say, keyed by slot/setting and text as written."""

    experiment: str
    images: int
    favourites: int
    rejected: int
    base_rate: float
    k: float
    prior: float
    strength: float
    sampler: str
    include_rejected: bool = False
    min_stars: int | None = None
    values: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    presence: dict[str, tuple[Estimate, Estimate]] = field(default_factory=dict)

    def factor(self, name: str, text: str) -> float:
        """The sampling factor of a value (1 when it was never seen)."""
        est = self.values.get(name, {}).get(text)
        return est.factor if est is not None else 1.0


def _prior_images(base: float, prior: float) -> float:
    return max(MIN_PRIOR_IMAGES, prior / base) if base > 0 else MIN_PRIOR_IMAGES


def _estimate(images: int, favourites: int, high: float, base: float, k: float, strength: float) -> Estimate:
    shrunk = (favourites + k * base) / (images + k)
    factor = (shrunk / base) ** strength if base > 0 else 1.0
    return Estimate(
        images=images,
        favourites=favourites,
        rate=favourites / images if images else 0.0,
        shrunk=shrunk,
        factor=factor,
        high=high,
        loses=images > 0 and high < base,
    )


def template_alternatives(text: str, name: str = "<template>") -> dict[tuple[bool, str], Definition]:
    """The definitions of a template by (is_setting, name); parse errors propagate."""
    return {(d.is_setting, d.name): d for d in parse(Source(name, text)).definitions}


def learn_from_report(
    report: StatsReport,
    template_text: str,
    *,
    sampler: str = "random",
    strength: float = 1.0,
    prior: float = DEFAULT_PRIOR,
) -> Learned:
    """Estimates from a stats report and the experiment's template text."""
    if strength < 0:
        raise UsageError(f"--strength must be 0 or more, not {strength}")
    if prior < 0:
        raise UsageError(f"--prior must be 0 or more, not {prior}")
    if report.favourites == 0:
        raise UsageError(
            f"{report.experiment!r} has no favourites among its {report.images:,} images yet: "
            f"mark some first (sdp fav {report.experiment} INDEX..., or in the gallery)"
        )
    base = report.base_rate
    k = _prior_images(base, prior)
    definitions = template_alternatives(template_text, report.experiment)
    values: dict[str, dict[str, Estimate]] = {}
    presence: dict[str, tuple[Estimate, Estimate]] = {}
    absent_rows: list[ValueStats] = []
    for row in report.values:
        if row.absent:
            absent_rows.append(row)
            continue
        d = definitions.get((row.kind == "setting", row.name))
        if d is None or not 0 <= row.index < len(d.alternatives):
            continue  # the stored template and the trace disagree: nothing to learn
        text = d.alternatives[row.index].text
        values.setdefault(row.name, {})[text] = _estimate(
            row.images, row.favourites, row.high, base, k, strength
        )
    for row in absent_rows:
        n = report.images - row.images
        f = report.favourites - row.favourites
        present = _estimate(n, f, wilson(f, n)[1], base, k, strength)
        absent = _estimate(row.images, row.favourites, row.high, base, k, strength)
        presence[row.name] = (present, absent)
    return Learned(
        experiment=report.experiment,
        images=report.images,
        favourites=report.favourites,
        rejected=report.rejected,
        base_rate=base,
        k=k,
        prior=prior,
        strength=strength,
        sampler=sampler,
        include_rejected=report.include_rejected,
        min_stars=report.min_stars,
        values=values,
        presence=presence,
    )


def learn(
    store: Store,
    experiment: str | Experiment,
    *,
    strength: float = 1.0,
    prior: float = DEFAULT_PRIOR,
    include_rejected: bool = False,
    min_stars: int | None = None,
) -> Learned:
    """Estimates from an experiment's favourites (see the module docstring)."""
    exp = experiment if isinstance(experiment, Experiment) else store.require(experiment)
    report = experiment_stats(store, exp, include_rejected=include_rejected, min_stars=min_stars)
    return learn_from_report(report, exp.template_text, sampler=exp.sampler, strength=strength, prior=prior)
