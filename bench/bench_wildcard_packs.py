"""Loading big wildcard trees and files: whole-process time and peak memory (issue 11).

Run from the repository root:  python bench/bench_wildcard_packs.py [--repeats N]
    [--before TREE] [--skip-big]

Two parts, each command a fresh process (wall time: best of N; peak memory: the
process's maximum resident set size, from ``wait4``):

1. **A pack shaped like the sd-dynamic-prompts collections** (``tests/packgen.py``:
   1,686 files, 76,610 lines, nested folders, names with spaces, references by bare
   name, emoticons, YAML and JSON files), read as data: ``sdp check`` and ``sdp sample
   -n 1000`` of ``__*__`` (every file of the pack, union of their lines), side by side
   with dynamicprompts 0.31 in the same run: a ``WildcardManager`` and
   ``RandomPromptGenerator.generate("__*__", N)`` for N = 1 (what loading costs it) and
   N = 1000.
2. **A 50 MB wildcard file** (887,468 distinct lines) used by a one-line template:
   ``sdp check`` and ``sdp sample -n 1000``, for this tree and, with ``--before TREE``,
   for another source tree (the main branch before this issue) in the same run; and
   dynamicprompts generating 1000 prompts from it.

Both files are generated deterministically (fixed seeds) into a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _template_bench import ROOT, machine_report, table

from tests.packgen import write_pack

WORDS = (
    "ancient weathered glowing overgrown abandoned colossal tiny ornate crumbling futuristic serene "
    "haunted sunlit frozen floating rusty crystal gilded mossy neon velvet marble copper amber silver "
    "obsidian ivory scarlet cobalt emerald misty stormy golden hidden lighthouse cathedral market "
    "bridge forest harbour garden tower village canyon desert glacier volcano temple library"
).split()

PEER = """
import sys
from dynamicprompts.generators import RandomPromptGenerator
from dynamicprompts.wildcards import WildcardManager
generator = RandomPromptGenerator(WildcardManager(sys.argv[1]), seed=0)
prompts = generator.generate(sys.argv[2], num_images=int(sys.argv[3]))
assert len(prompts) == int(sys.argv[3])
"""


def run(cmd: list[str], tree: Path, cwd: Path) -> tuple[float, float]:
    """One fresh process: wall seconds and peak resident memory (MB)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024


def best(cmd: list[str], tree: Path, cwd: Path, repeats: int) -> tuple[float, float]:
    runs = [run(cmd, tree, cwd) for _ in range(repeats)]
    return min(w for w, _ in runs), max(m for _, m in runs)


def sdp(*args: str) -> list[str]:
    return [sys.executable, "-m", "stable_discovery", *args]


def peer(folder: Path, template: str, n: int) -> list[str]:
    return [sys.executable, "-c", PEER, str(folder), template, str(n)]


def pack_part(tmp: Path, repeats: int) -> str:
    pack = write_pack(tmp / "pack")
    size = sum(p.stat().st_size for p in pack.root.rglob("*") if p.is_file())
    literal = ["--wildcards", str(pack.root), "--wildcards-literal"]
    rows = []
    for label, cmd in [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("sdp count -e 'x' (start-up alone)", sdp("count", "-e", "x")),
        ("sdp check -e '__*__' (every file)", sdp("check", "-e", "__*__", *literal)),
        ("sdp sample -e '__*__' -n 1000", sdp("sample", "-e", "__*__", *literal, "-n", "1000")),
        ("dynamicprompts: generate('__*__', 1)", peer(pack.root, "__*__", 1)),
        ("dynamicprompts: generate('__*__', 1000)", peer(pack.root, "__*__", 1000)),
    ]:
        wall, mem = best(cmd, ROOT, tmp, repeats)
        rows.append([label, f"{wall:.2f} s", f"{mem:.0f} MB"])
    head = f"pack: {pack.files:,} files, {pack.total_lines:,} lines, {size / 1e6:.1f} MB, read as data\n"
    return head + table(["command (fresh process)", "wall (best)", "peak memory"], rows)


def big_file(folder: Path, size: int) -> int:
    rng = random.Random(5)
    folder.mkdir(parents=True, exist_ok=True)
    written = k = 0
    with open(folder / "big.txt", "w", encoding="utf-8") as f:
        while written < size:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) + f" {k}\n"
            f.write(line)
            written += len(line)
            k += 1
    return k


def big_part(tmp: Path, repeats: int, before: Path | None) -> str:
    lines = big_file(tmp / "big" / "wildcards", 50_000_000)
    (tmp / "big" / "t.sdp").write_text("prompt = a __big__ scene\n", encoding="utf-8")
    cwd = tmp / "big"
    trees = [("this tree", ROOT)] + ([("before", before)] if before is not None else [])
    rows = []
    for name, tree in trees:
        for label, cmd in [
            ("sdp check t.sdp", sdp("check", "t.sdp")),
            ("sdp sample t.sdp -n 1000", sdp("sample", "t.sdp", "-n", "1000")),
        ]:
            wall, mem = best(cmd, tree, cwd, repeats)
            rows.append([name, label, f"{wall:.2f} s", f"{mem:.0f} MB", f"{mem / 50:.1f}x"])
    wall, mem = best(peer(cwd / "wildcards", "a __big__ scene", 1000), ROOT, cwd, repeats)
    rows.append(["dynamicprompts", "generate(…, 1000)", f"{wall:.2f} s", f"{mem:.0f} MB", f"{mem / 50:.1f}x"])
    head = f"wildcard file: 50.0 MB, {lines:,} distinct lines\n"
    return head + table(
        ["tree", "command (fresh process)", "wall (best)", "peak memory", "of the file"], rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another source tree to run the 50 MB part with")
    parser.add_argument("--skip-big", action="store_true", help="leave the 50 MB file out")
    args = parser.parse_args()
    print(machine_report())
    with tempfile.TemporaryDirectory() as tmp:
        print(pack_part(Path(tmp), args.repeats))
        if not args.skip_big:
            print(big_part(Path(tmp), args.repeats, args.before))


if __name__ == "__main__":
    main()
