"""Random-sampling and combinatorial-expansion throughput: stable-discovery vs dynamicprompts.

Run from the repository root:  python bench/bench_sampling.py [--quick]

Both tools get the same templates in the same run. Every measurement starts from the
template *text* (dynamicprompts parses inside ``generate``; ours calls ``loads``/``load``
inside the timed region too), and is the best of several repeats, because the machine is
shared. Before anything is timed, the script checks that the outputs are equivalent:

* combinatorial: our expansion equals dynamicprompts' (as a list, after collapsing
  whitespace the way our prompts are collapsed) for every template;
* random: the share of samples containing each of a set of marker phrases agrees
  within 5 standard errors (fixed seeds, so the check is deterministic).

Targets (issue 2): ours >= 10x dynamicprompts for random sampling, >= 5x for
combinatorial expansion.
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _template_bench import best_of, machine_report, spread, table
from dynamicprompts.generators import (
    CombinatorialPromptGenerator,
    RandomPromptGenerator,
)
from dynamicprompts.wildcards import WildcardManager

from stable_discovery.language.program import Program, load, loads
from stable_discovery.plugins import get_sampler

RANDOM_TARGET = 10.0
COMBINATORIAL_TARGET = 5.0

# ---------------------------------------------------------------------------------------
# templates

GOLDEN_CONFIG = (
    '{"subjects": ["a Golden Retriever wearing sunglasses"], "actions": ["walking on a tropical '
    'beach", "floating in space", "floating in space with galaxies in the background", "floating '
    'in space with the moon in the background", "black background", "grey background", "white '
    'background"], "suffixes_1": ["vector graphics", "art deco"], "suffixes_2": [], "suffixes_3": '
    '["teal and pink - synthwave style", "teal and pink"], "steps": [40, 50, 60], "num_configs": '
    '10000, "generator_seed": 1338}'
)

ACTIONS = (
    "walking on a tropical beach|floating in space|floating in space with galaxies in the "
    "background|floating in space with the moon in the background|black background|grey "
    "background|white background"
)

#: The original tool's golden-retriever config, in dynamicprompts syntax (63 prompts).
GOLDEN_DP = (
    "a Golden Retriever wearing sunglasses {" + ACTIONS + "}"
    "{|, vector graphics|, art deco}{|, teal and pink - synthwave style|, teal and pink}"
)

#: The same as a .sdp with slots and the config's sampled @steps (189 samples). The
#: optional suffixes are weighted 1:2 so that, as in the original tool and in
#: dynamicprompts, "absent", "first" and "second" each come a third of the time
#: (``[, <suffix_1>]`` would make "absent" half the time).
GOLDEN_SDP = """\
subject  = a Golden Retriever wearing sunglasses
action   = walking on a tropical beach | floating in space
         | floating in space with galaxies in the background
         | floating in space with the moon in the background
         | black background | grey background | white background
suffix_1 = vector graphics | art deco
suffix_3 = teal and pink - synthwave style | teal and pink
prompt   = <subject> <action>{|2::, <suffix_1>}{|2::, <suffix_3>}
@steps   = 40 | 50 | 60
"""

#: A larger template: nested choices, weights, a multi-select, an empty alternative.
#: 81,000 combinations.
LARGE_DP = (
    "{2::a photo|a painting|an illustration|a 3d render|a sketch} of "
    "{a {young|old} {man|woman}|a {red|black|white} {cat|dog|fox}|"
    "{a castle|a lighthouse} {at dawn|at night}|a robot} "
    "{standing|sitting|running} in {a forest|a city street|the desert|a snowy field|space}, "
    "{2$$vivid colors|soft light|high contrast|film grain}, "
    "{by {Monet|Hokusai|Moebius}|trending on artstation|}"
)

#: The same space written with slots (every slot traced), plus a negative prompt.
LARGE_SDP = """\
medium  = 2:: a photo | a painting | an illustration | a 3d render | a sketch
subject = a {young|old} {man|woman} | a {red|black|white} {cat|dog|fox}
        | {a castle|a lighthouse} {at dawn|at night} | a robot
pose    = standing | sitting | running
place   = a forest | a city street | the desert | a snowy field | space
look    = {2$$vivid colors|soft light|high contrast|film grain}
artist  = Monet | Hokusai | Moebius
credit  = {by <artist>|trending on artstation|}
prompt  = <medium> of <subject> <pose> in <place>, <look>, <credit>
negative = blurry, lowres
"""

#: Wildcards (written to a temporary folder): some lines hold inline choices, one file
#: nests another, and one is used in a multi-select. 2 * 37 * 37 * 20 = 54,760.
WILDCARD_DP = "{a photo|an oil painting} of __animal__ in __place__, {2$$__style__}"
WILDCARD_SDP = """\
medium = a photo | an oil painting
prompt = <medium> of __animal__ in __place__, {2$$__style__}
"""

ANIMALS = [
    "a red fox",
    "an {arctic|Ethiopian} wolf",
    "a snowy owl",
    "a {black|ginger|tabby} cat",
    "a golden retriever",
    "a border collie",
    "a {brown|polar} bear",
    "a bald eagle",
    "a humpback whale",
    "a sea turtle",
    "a {green|red} parrot",
    "a koala",
    "a giant panda",
    "a bengal tiger",
    "a snow leopard",
    "a {white|chestnut} horse",
    "a highland cow",
    "a hedgehog",
    "a red panda",
    "a raccoon",
    "an axolotl",
    "a chameleon",
    "a flamingo",
    "a peacock",
    "a {king|emperor} penguin",
    "a sloth",
    "a capybara",
    "a lynx",
    "an otter",
    "a hummingbird",
]  # 30 lines, 37 values

PLACES = [
    "a misty forest",
    "a neon-lit city street at night",
    "a sunflower field",
    "the desert",
    "a snowy mountain pass during __weather__",
    "a Japanese garden",
    "an abandoned library",
    "a coral reef",
    "a cozy cabin",
    "a lighthouse on a cliff during __weather__",
    "a bamboo grove",
    "a medieval castle courtyard",
    "a busy train station",
    "a lavender field",
    "a volcanic landscape",
    "an art deco hotel lobby",
    "a foggy harbor",
    "a tropical beach during __weather__",
    "a greenhouse",
    "a space station",
    "an autumn park",
    "a frozen lake",
    "a rooftop garden",
    "a canyon at sunset",
    "a rainy alley during __weather__",
]  # 25 lines: 21 plain + 4 that nest __weather__

WEATHER = ["a thunderstorm", "light rain", "heavy fog", "a snowstorm"]  # places: 21 + 4 * 4 = 37

STYLES = [
    "cinematic lighting",
    "watercolor",
    "studio ghibli style",
    "highly detailed",
    "bokeh",
]  # 2 of 5, ordered: 20

GOLDEN_MARKERS = [
    "walking on a tropical beach",
    "floating in space,",
    "galaxies",
    "the moon",
    "black background",
    "grey background",
    "white background",
    "vector graphics",
    "art deco",
    "synthwave",
    ", teal and pink",
    "background, art deco",
]
LARGE_MARKERS = [
    "a photo of",
    "a painting of",
    "a 3d render",
    "a robot",
    "young",
    "fox",
    "a lighthouse",
    "sitting",
    "the desert",
    "vivid colors",
    "film grain,",
    "by Monet",
    "trending",
    "film grain, by",
]
WILDCARD_MARKERS = [
    "a photo of",
    "arctic wolf",
    "polar bear",
    "tabby",
    "axolotl",
    "a thunderstorm",
    "heavy fog",
    "a misty forest",
    "watercolor",
    "bokeh,",
    "hummingbird",
]


def write_wildcards(folder: Path) -> None:
    (folder / "animal.txt").write_text("# animals\n" + "\n".join(ANIMALS) + "\n", encoding="utf-8")
    (folder / "place.txt").write_text("\n".join(PLACES) + "\n", encoding="utf-8")
    (folder / "weather.txt").write_text("\n".join(WEATHER) + "\n", encoding="utf-8")
    (folder / "style.txt").write_text("\n".join(STYLES) + "\n", encoding="utf-8")


def norm(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------
# the two tools


class Case:
    """One template, as dynamicprompts text and as one or more of our programs."""

    def __init__(
        self,
        name: str,
        dp_text: str,
        ours: dict[str, Callable[[], object]],
        markers: list[str],
        wildcard_dir: Path | None,
        n_random_dp: int,
        n_random_ours: int,
        comb_repeat: int = 1,
    ) -> None:
        self.name = name
        self.dp_text = dp_text
        self.ours = ours  # label -> () -> Program (loads the template: timed)
        self.markers = markers
        self.wm = WildcardManager(wildcard_dir) if wildcard_dir else None
        self.n_random_dp = n_random_dp
        self.n_random_ours = n_random_ours
        self.comb_repeat = comb_repeat  # tiny spaces are expanded several times per timing
        self.dp_comb_times: list[float] = []
        self.dp_comb_size = 0


def dp_random(case: Case, n: int, seed: int = 1) -> list[str]:
    gen = RandomPromptGenerator(case.wm, seed=seed, ignore_whitespace=True)
    return gen.generate(case.dp_text, n)


def dp_combinatorial(case: Case) -> list[str]:
    gen = CombinatorialPromptGenerator(case.wm, ignore_whitespace=True)
    out: list[str] = []
    for _ in range(case.comb_repeat):
        out = gen.generate(case.dp_text, max_prompts=None)
    return out


def ours_random(make: Callable[[], object], n: int, sampler: str = "random", seed: int = 1) -> int:
    program = make()
    sink = collections.deque(maxlen=1)
    sink.extend(get_sampler(sampler).samples(program, 0, n, seed))
    return n


def ours_random_prompts(make: Callable[[], object], n: int, seed: int = 1) -> int:
    program = make()
    sink = collections.deque(maxlen=1)
    sink.extend(get_sampler("random").prompts(program, 0, n, seed))
    return n


def ours_combinatorial(make: Callable[[], object], repeat: int) -> int:
    total = 0
    sampler = get_sampler("combinatorial")
    for _ in range(repeat):
        program = make()
        count = program.count()
        sink = collections.deque(maxlen=1)
        sink.extend(sampler.samples(program, 0, count, 0))
        total += count
    return total


# ---------------------------------------------------------------------------------------
# equivalence checks (not timed)


def check_combinatorial(case: Case) -> tuple[dict[str, int], set[str]]:
    """Compares the expansions; dynamicprompts' run is timed and kept as its first repeat."""
    t0 = time.perf_counter()
    raw = dp_combinatorial(case)
    case.dp_comb_times.append(time.perf_counter() - t0)
    theirs = [norm(p) for p in raw]
    sizes = {"dynamicprompts": len(theirs)}
    case.dp_comb_size = len(theirs)
    orders: set[str] = set()
    for label, make in case.ours.items():
        program = make()
        mine = [s.prompt for s in get_sampler("combinatorial").samples(program, 0, program.count(), 0)]
        sizes[label] = len(mine)
        if len(mine) == len(theirs):
            if mine != theirs:
                # dynamicprompts sorts a wildcard's values; ours keeps file order
                assert collections.Counter(mine) == collections.Counter(theirs), (
                    f"{case.name}/{label}: expansions differ from dynamicprompts"
                )
                orders.add(f"{label}: same set, other order")
        else:
            # sampled settings multiply the space: every prompt k times, same set
            k = len(mine) // len(theirs)
            assert len(mine) == k * len(theirs), (case.name, label, len(mine), len(theirs))
            counts = collections.Counter(mine)
            assert set(counts) == set(theirs) and set(counts.values()) == {k}, (
                f"{case.name}/{label}: expansion set differs from dynamicprompts"
            )
    return sizes, orders


def check_random(case: Case, label: str, make: Callable[[], object], sampler: str = "random") -> float:
    """Largest difference of marker shares, in standard errors."""
    theirs = dp_random(case, case.n_random_dp, seed=7)
    program = make()
    n_ours = min(case.n_random_ours, 100_000)
    mine = [s.prompt for s in get_sampler(sampler).samples(program, 0, n_ours, 7)]
    worst = 0.0
    for m in case.markers:
        p1 = sum(m in t for t in theirs) / len(theirs)
        p2 = sum(m in t for t in mine) / len(mine)
        pooled = (p1 * len(theirs) + p2 * len(mine)) / (len(theirs) + len(mine))
        se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / len(theirs) + 1 / len(mine)))
        z = abs(p1 - p2) / se
        worst = max(worst, z)
        assert z < 5, f"{case.name}/{label}: share of {m!r} is {p2:.4f} here, {p1:.4f} in dynamicprompts"
    return worst


# ---------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="repeats of each random timing (best taken)")
    ap.add_argument("--comb-repeats", type=int, default=3, help="repeats of each combinatorial timing")
    ap.add_argument("--quick", action="store_true", help="fewer samples and repeats (a smoke run)")
    args = ap.parse_args()
    scale = 0.2 if args.quick else 1.0
    reps = 2 if args.quick else args.repeats
    creps = 1 if args.quick else args.comb_repeats

    print("# bench_sampling: stable-discovery vs dynamicprompts")
    print(machine_report())
    print()

    tmp = tempfile.TemporaryDirectory(prefix="sdp-bench-")
    base = Path(tmp.name)
    wild = base / "wildcards"
    wild.mkdir()
    write_wildcards(wild)
    (base / "golden.json").write_text(GOLDEN_CONFIG, encoding="utf-8")
    (base / "golden.sdp").write_text(GOLDEN_SDP, encoding="utf-8")
    (base / "large.sdp").write_text(LARGE_SDP, encoding="utf-8")
    (base / "wild.sdp").write_text(WILDCARD_SDP, encoding="utf-8")

    def s(n: float) -> int:
        return max(1000, int(n * scale))

    cases = [
        Case(
            "golden",
            GOLDEN_DP,
            {
                "same text (bare)": lambda: loads(GOLDEN_DP),
                ".sdp slots + @steps": lambda: load(base / "golden.sdp"),
            },
            GOLDEN_MARKERS,
            None,
            n_random_dp=s(20_000),
            n_random_ours=s(200_000),
            comb_repeat=max(1, int(300 * scale)),
        ),
        Case(
            "large",
            LARGE_DP,
            {
                "same text (bare)": lambda: loads(LARGE_DP),
                ".sdp slots": lambda: load(base / "large.sdp"),
            },
            LARGE_MARKERS,
            None,
            n_random_dp=s(5_000),
            n_random_ours=s(100_000),
        ),
        Case(
            "wildcards",
            WILDCARD_DP,
            {
                "same text (bare)": lambda: loads(WILDCARD_DP, wildcard_dirs=[wild]),
                ".sdp slots": lambda: load(base / "wild.sdp"),
            },
            WILDCARD_MARKERS,
            wild,
            n_random_dp=s(2_000),
            n_random_ours=s(100_000),
        ),
    ]

    # ---- equivalence --------------------------------------------------------------
    print("## equivalence checks (untimed)")
    for case in cases:
        sizes, orders = check_combinatorial(case)
        print(
            f"  {case.name}: combinatorial expansions equal to dynamicprompts' "
            f"({', '.join(f'{k}: {v:,}' for k, v in sizes.items())})"
            + (
                f"; {'; '.join(sorted(orders))} (dynamicprompts sorts wildcard values)"
                if orders
                else "; same order"
            )
        )
        for label, make in case.ours.items():
            z = check_random(case, label, make)
            print(f"  {case.name} / {label}: random marker shares agree (worst {z:.1f} standard errors)")

    def golden_json() -> Program:
        return load(base / "golden.json")

    z = check_random(cases[0], "JSON config, legacy", golden_json, sampler="legacy")
    print(
        f"  golden / JSON config (legacy sampler): random marker shares agree (worst {z:.1f} standard errors)"
    )
    print()

    # ---- random -------------------------------------------------------------------
    print(f"## random sampling (best of {reps}; samples/s; ours/peer)")
    rows = []
    results = []
    for case in cases:
        dp_random(case, 200)  # warm-up: imports, caches
        t_dp, times_dp, _ = best_of(lambda case=case: dp_random(case, case.n_random_dp), reps)
        rate_dp = case.n_random_dp / t_dp
        rows.append(
            [
                case.name,
                "dynamicprompts generate()",
                f"{case.n_random_dp:,}",
                f"{rate_dp:,.0f}",
                "1.0x",
                spread(times_dp),
                "",
            ]
        )
        variants = []
        for label, make in case.ours.items():
            variants.append(
                (f"ours: {label}, Sample records", lambda m=make, n=case.n_random_ours: ours_random(m, n))
            )
            if label.startswith("same text"):
                variants.append(
                    (
                        f"ours: {label}, prompts()",
                        lambda m=make, n=case.n_random_ours: ours_random_prompts(m, n),
                    )
                )
        if case.name == "golden":
            variants.append(
                (
                    "ours: JSON config, legacy sampler",
                    lambda n=case.n_random_ours: ours_random(golden_json, n, sampler="legacy"),
                )
            )
        for label, fn in variants:
            fn()  # warm-up
            t, times, _ = best_of(fn, reps)
            rate = case.n_random_ours / t
            ratio = rate / rate_dp
            met = "met" if ratio >= RANDOM_TARGET else "MISSED"
            if "legacy" in label:
                met = "n/a (info)"
            rows.append(
                [
                    case.name,
                    label,
                    f"{case.n_random_ours:,}",
                    f"{rate:,.0f}",
                    f"{ratio:.1f}x",
                    spread(times),
                    met,
                ]
            )
            if "legacy" not in label:
                results.append(("random", case.name, label, rate_dp, rate, ratio, met))
    print(
        table(
            [
                "template",
                "tool / variant",
                "samples",
                "samples/s",
                "ours/peer",
                "spread",
                f"target {RANDOM_TARGET:.0f}x",
            ],
            rows,
        )
    )
    print()

    # ---- combinatorial --------------------------------------------------------------
    print(f"## combinatorial expansion of the whole space (best of {creps}; samples/s; ours/peer)")
    rows = []
    for case in cases:
        # the timed run of the equivalence check is the first repeat
        dp_sizes = case.dp_comb_size
        _, more, _ = best_of(lambda case=case: dp_combinatorial(case), creps - 1)
        times_dp = case.dp_comb_times + more
        t_dp = min(times_dp)
        total_dp = dp_sizes * case.comb_repeat
        rate_dp = total_dp / t_dp
        note = f" x{case.comb_repeat}" if case.comb_repeat > 1 else ""
        rows.append(
            [
                case.name,
                "dynamicprompts generate(max_prompts=None)",
                f"{dp_sizes:,}{note}",
                f"{rate_dp:,.0f}",
                "1.0x",
                spread(times_dp),
                "",
            ]
        )
        for label, make in case.ours.items():
            ours_combinatorial(make, 1)  # warm-up
            t, times, total = best_of(lambda m=make, r=case.comb_repeat: ours_combinatorial(m, r), creps)
            rate = total / t
            ratio = rate / rate_dp
            met = "met" if ratio >= COMBINATORIAL_TARGET else "MISSED"
            rows.append(
                [
                    case.name,
                    f"ours: {label}, Sample records",
                    f"{total // case.comb_repeat:,}{note}",
                    f"{rate:,.0f}",
                    f"{ratio:.1f}x",
                    spread(times),
                    met,
                ]
            )
            results.append(("combinatorial", case.name, label, rate_dp, rate, ratio, met))
    print(
        table(
            [
                "template",
                "tool / variant",
                "samples",
                "samples/s",
                "ours/peer",
                "spread",
                f"target {COMBINATORIAL_TARGET:.0f}x",
            ],
            rows,
        )
    )
    print()
    print("spread: slowest repeat / fastest repeat (noise from other processes on the machine).")
    print("Sample records: index, prompt, negative, settings, image seed and trace per sample;")
    print("dynamicprompts returns prompt strings only. Template loading is inside every timing.")
    missed = [r for r in results if r[-1] != "met"]
    print(
        f"targets: {len(results) - len(missed)} of {len(results)} comparisons met"
        + (
            ""
            if not missed
            else "; missed: " + "; ".join(f"{r[0]} {r[1]} / {r[2]} ({r[5]:.1f}x)" for r in missed)
        )
    )
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
