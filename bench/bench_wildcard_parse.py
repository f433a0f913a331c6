"""Parse + compile time of a template that uses a 10,000-line wildcard file.

Run from the repository root:  python bench/bench_wildcard_parse.py [--repeats N]

The wildcard file is generated deterministically (fixed seed) into a temporary folder:
10,000 distinct lines of prompt-like text, about one in five with inline choices
(some nested, some weighted) and one in fifty referring to a second, small wildcard.

Measured:
* in process: ``load()`` (read, parse, compile, count), the very first call (which also
  builds the Lark parser) and the best of N later calls; ``load()`` + the first random
  sample (the sampler's evaluation functions are built lazily);
* cold process: ``sdp count FILE`` in a subprocess, wall time, best of N; next to
  ``sdp count`` of a one-line template (the start-up cost alone) and ``python -c pass``;
* for reference, dynamicprompts 0.31 on the same wildcard: a fresh ``WildcardManager``
  and ``RandomPromptGenerator(...).generate(template, 1)``.

Target (issue 2): parse + compile under 200 ms.
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _template_bench import best_of, machine_report, spread, table

TARGET_MS = 200.0
LINES = 10_000

ADJ = [
    "ancient",
    "weathered",
    "glowing",
    "overgrown",
    "abandoned",
    "colossal",
    "tiny",
    "ornate",
    "crumbling",
    "futuristic",
    "serene",
    "haunted",
    "sunlit",
    "frozen",
    "floating",
    "rusty",
    "crystal",
    "gilded",
    "moss-covered",
    "neon",
]
NOUN = [
    "stone bridge",
    "lighthouse",
    "cathedral",
    "greenhouse",
    "windmill",
    "observatory",
    "tea house",
    "clock tower",
    "space station",
    "treehouse",
    "market square",
    "harbor",
    "library",
    "train station",
    "monastery",
    "castle",
    "subway car",
    "bazaar",
    "canal",
    "amphitheater",
    "pagoda",
    "cabin",
    "robot workshop",
    "koi pond",
    "viaduct",
]
PLACE = [
    "over a misty river",
    "on a cliff above the sea",
    "in a pine forest",
    "in the desert",
    "under a starry sky",
    "in a rainy city",
    "on a snowy mountain",
    "in a bamboo grove",
    "at the edge of a canyon",
    "in a flooded valley",
    "beside a volcano",
    "on an island",
    "inside a giant shell",
    "among cherry blossoms",
    "on the moon",
]
LIGHT = [
    "morning light",
    "golden hour",
    "blue hour",
    "moonlight",
    "volumetric fog",
    "harsh noon sun",
    "candlelight",
    "bioluminescent glow",
    "overcast sky",
    "rim lighting",
]
STYLE = [
    "oil on canvas",
    "watercolor",
    "35mm photograph",
    "matte painting",
    "ukiyo-e",
    "pencil sketch",
    "3d render",
    "art nouveau poster",
    "isometric illustration",
    "cinematic still",
    "gouache",
    "linocut print",
]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def ok(seconds: float) -> str:
    return "met" if seconds * 1000 < TARGET_MS else "MISSED"


def wildcard_lines(n: int, seed: int = 20240) -> list[str]:
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        adj, noun, place = rng.choice(ADJ), rng.choice(NOUN), rng.choice(PLACE)
        light, style = rng.choice(LIGHT), rng.choice(STYLE)
        r = rng.random()
        if r < 0.10:  # an inline choice
            other = rng.choice(ADJ)
            line = f"a {{{adj}|{other}}} {noun} {place}, {light}, {style}"
        elif r < 0.16:  # a nested choice
            line = f"{{a {adj} {noun}|two {{{adj}|{rng.choice(ADJ)}}} {noun}s}} {place}, {light}"
        elif r < 0.20:  # weights
            line = f"a {adj} {noun} {place}, {{3::{light}|{rng.choice(LIGHT)}}}, {style}"
        elif r < 0.22:  # a nested wildcard
            line = f"a {adj} {noun} {place}, __mood__, {style}"
        else:
            line = f"a {adj} {noun} {place}, {light}, {style}"
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


TEMPLATE = """\
# uses a 10,000-line wildcard file
medium  = a photo | a painting | 2:: a concept art piece
scene   = __scenes__
detail  = highly detailed | intricate | {sharp focus|soft focus}
prompt  = <medium> of <scene>, <detail>
negative = blurry, lowres
@steps  = 30 | 50
"""

MOOD = ["serene", "eerie", "melancholic", "joyful", "mysterious", "epic"]


def best_cpu(fn, repeats: int) -> tuple[float, float, list[float]]:
    """Best wall time, best CPU time (this process) and all wall times of ``fn``."""
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), walls


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10, help="in-process repeats (best taken)")
    ap.add_argument("--cold-repeats", type=int, default=5, help="subprocess repeats (best taken)")
    args = ap.parse_args()

    print("# bench_wildcard_parse: a template with a 10,000-line wildcard file")
    print(machine_report())
    print()

    tmp = Path(tempfile.mkdtemp(prefix="sdp-bench-wild-"))
    try:
        wild = tmp / "wildcards"
        wild.mkdir()
        lines = wildcard_lines(LINES)
        (wild / "scenes.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (wild / "mood.txt").write_text("\n".join(MOOD) + "\n", encoding="utf-8")
        template = tmp / "scenes.sdp"
        template.write_text(TEMPLATE, encoding="utf-8")
        tiny = tmp / "tiny.sdp"
        tiny.write_text("prompt = a {red|blue} ball\n", encoding="utf-8")
        with_choices = sum("{" in line for line in lines)
        with_wild = sum("__" in line for line in lines)
        size = (wild / "scenes.txt").stat().st_size
        print(
            f"wildcard file: {len(lines):,} distinct lines, {size / 1024:.0f} KiB; "
            f"{with_choices:,} with inline choices, {with_wild:,} with a nested wildcard"
        )
        print(
            f"template: {template.name}\n" + "".join("    " + line + "\n" for line in TEMPLATE.splitlines())
        )

        # ---- in process --------------------------------------------------------
        t0 = time.perf_counter()
        from stable_discovery.language.program import load
        from stable_discovery.plugins import get_sampler

        t_import = time.perf_counter() - t0

        c0, t0 = time.process_time(), time.perf_counter()
        program = load(template)
        count = program.count()
        t_first, c_first = time.perf_counter() - t0, time.process_time() - c0
        print(f"combinations: {count:,}\n")

        def load_count() -> int:
            return load(template).count()

        def load_sample() -> str:
            p = load(template)
            return next(iter(get_sampler("random").samples(p, 0, 1, 0))).prompt

        def load_expand() -> str:
            p = load(template)
            return next(iter(get_sampler("combinatorial").samples(p, 0, 1, 0))).prompt

        t_load, c_load, times_load = best_cpu(load_count, args.repeats)
        t_sample, c_sample, times_sample = best_cpu(load_sample, args.repeats)
        t_expand, c_expand, times_expand = best_cpu(load_expand, args.repeats)

        # ---- cold processes ---------------------------------------------------
        sdp = shutil.which("sdp") or "sdp"

        cpu_log: list[float] = []

        def run(cmd: list[str]) -> None:
            c0 = children_cpu()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            cpu_log.append(children_cpu() - c0)

        cold = {}
        for label, cmd in [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("sdp count tiny.sdp (start-up alone)", [sdp, "count", str(tiny)]),
            ("sdp count scenes.sdp", [sdp, "count", str(template)]),
            ("sdp sample scenes.sdp -n 1", [sdp, "sample", str(template), "-n", "1"]),
        ]:
            run(cmd)  # warm the page cache
            cpu_log.clear()
            t, times, _ = best_of(lambda c=cmd: run(c), args.cold_repeats)
            cold[label] = (t, min(cpu_log), times)

        # ---- dynamicprompts, for reference ------------------------------------
        from dynamicprompts.generators import RandomPromptGenerator
        from dynamicprompts.wildcards import WildcardManager

        dp_template = (
            "{a photo|a painting|2::a concept art piece} of __scenes__, "
            "{highly detailed|intricate|{sharp focus|soft focus}}"
        )

        def dp_first() -> str:
            return RandomPromptGenerator(WildcardManager(wild), seed=0).generate(dp_template, 1)[0]

        dp_first()
        t_dp, c_dp, times_dp = best_cpu(dp_first, max(3, args.repeats // 2))

        rows = [
            [
                "in process",
                "import stable_discovery.language.program + samplers",
                ms(t_import),
                "",
                "1x",
                "",
                "",
            ],
            [
                "in process",
                "load() + count(), first call (also builds the Lark parser)",
                ms(t_first),
                ms(c_first),
                "1x",
                "",
                ok(t_first),
            ],
            [
                "in process",
                "load() + count()",
                ms(t_load),
                ms(c_load),
                f"best of {args.repeats}",
                spread(times_load),
                ok(t_load),
            ],
            [
                "in process",
                "load() + first random sample",
                ms(t_sample),
                ms(c_sample),
                f"best of {args.repeats}",
                spread(times_sample),
                "",
            ],
            [
                "in process",
                "load() + first combinatorial sample",
                ms(t_expand),
                ms(c_expand),
                f"best of {args.repeats}",
                spread(times_expand),
                "",
            ],
        ]
        base = cold["sdp count tiny.sdp (start-up alone)"][0]
        for label, (t, cpu, times) in cold.items():
            verdict = ""
            if label == "sdp count scenes.sdp":
                verdict = ok(t)
                label += f" (minus start-up: {ms(t - base)} ms)"
            rows.append(
                [
                    "cold process",
                    label,
                    ms(t),
                    ms(cpu),
                    f"best of {args.cold_repeats}",
                    spread(times),
                    verdict,
                ]
            )
        rows.append(
            [
                "dynamicprompts 0.31",
                "fresh WildcardManager + generate(template, 1)",
                ms(t_dp),
                ms(c_dp),
                f"best of {max(3, args.repeats // 2)}",
                spread(times_dp),
                "",
            ]
        )
        print(
            table(
                [
                    "where",
                    "what",
                    "wall ms",
                    "CPU ms",
                    "repeats",
                    "spread (wall)",
                    f"target < {TARGET_MS:.0f} ms (wall)",
                ],
                rows,
            )
        )
        print()
        print("wall ms: best wall-clock time; CPU ms: best user+system CPU time of the process doing")
        print("the work (less sensitive to other processes on a busy machine). spread: slowest / fastest.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
