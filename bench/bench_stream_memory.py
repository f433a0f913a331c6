"""Memory while streaming 10 million samples to /dev/null (``sdp sample`` and ``sdp expand``).

Run from the repository root:  python bench/bench_stream_memory.py [-n 10000000]

Each command runs as a subprocess with its standard output on /dev/null. The script polls
the process every 0.2 s: resident memory (VmRSS, and the peak VmHWM) from
/proc/PID/status, and the bytes written so far (wchar) from /proc/PID/io. The byte
offset where line 1,000,000 ends is computed beforehand in this process (the same
samples: the prompt texts are a pure function of template, seed and index), so the
poll that first sees that many bytes written gives "RSS after 1 M samples".

Commands:
* ``sdp sample golden.sdp -n N --seed 0``: the golden-retriever template (slots, a
  sampled @steps), random sampler;
* ``sdp expand big.sdp --limit N``: a space of 10^30 combinations (10 slots of 1,000
  alternatives each), odometer order; also the time until its first line appears.

Target (issue 2): memory flat, i.e. RSS after 10 M about the same as after 1 M.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _template_bench import machine_report, rss_kib, table
from bench_sampling import GOLDEN_SDP  # the same golden template

#: RSS growth between the 1 M mark and the end that still counts as flat.
FLAT_KIB = 4 * 1024
POLL_S = 0.2


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def big_template(slots: int = 10, alternatives: int = 1000, seed: int = 1) -> str:
    rng = random.Random(seed)
    adj = (
        "red blue green amber violet golden silver crimson teal ivory misty ancient glowing tiny huge"
    ).split()
    noun = "cat castle forest robot ship garden tower river city dragon owl bridge lamp mask crown".split()
    lines = [f"# {alternatives}^{slots} combinations"]
    for i in range(1, slots + 1):
        alts = [f"{rng.choice(adj)} {rng.choice(noun)} {k}" for k in range(alternatives)]
        lines.append(f"part{i:02d} = " + " | ".join(alts))
    lines.append("prompt = " + ", ".join(f"<part{i:02d}>" for i in range(1, slots + 1)))
    return "\n".join(lines) + "\n"


def bytes_until(samples, mark: int) -> int:
    """Bytes of the first ``mark`` output lines (UTF-8, newline included)."""
    total = 0
    for k, s in enumerate(samples):
        if k == mark:
            break
        total += len(s.prompt.encode("utf-8")) + 1
    return total


def wchar(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return -1


def stream(cmd: list[str], mark_bytes: int, n: int) -> dict:
    """Run ``cmd`` with stdout on /dev/null, polling its memory and progress."""
    with open("/dev/null", "wb") as devnull:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=devnull)
        first = at_mark = last = None
        t_mark = None
        while proc.poll() is None:
            mem = rss_kib(proc.pid)
            written = wchar(proc.pid)
            now = time.perf_counter() - t0
            if mem and written >= 0:
                last = (now, written, mem)
                if first is None and written > 0:
                    first = last
                if at_mark is None and written >= mark_bytes:
                    at_mark, t_mark = last, now
            time.sleep(POLL_S)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
    return {"wall": wall, "first": first, "mark": at_mark, "t_mark": t_mark, "last": last, "n": n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000_000, help="samples per command (default 10 M)")
    ap.add_argument("--mark", type=int, default=1_000_000, help="the early mark (default 1 M)")
    args = ap.parse_args()
    n, mark = args.n, min(args.mark, args.n)

    print("# bench_stream_memory: streaming samples to /dev/null")
    print(machine_report())
    print()

    from stable_discovery.language.program import load
    from stable_discovery.plugins import get_sampler

    tmp = Path(tempfile.mkdtemp(prefix="sdp-bench-stream-"))
    sdp = shutil.which("sdp") or "sdp"
    try:
        golden = tmp / "golden.sdp"
        golden.write_text(GOLDEN_SDP, encoding="utf-8")
        big = tmp / "big.sdp"
        big.write_text(big_template(), encoding="utf-8")
        big_count = load(big).count()
        print(f"big.sdp: {big_count:,} combinations ({len(str(big_count)) - 1} digits)")

        # time to the first line of a 10^30 space, next to the start-up alone
        tiny = tmp / "tiny.sdp"
        tiny.write_text("prompt = a {red|blue} ball\n", encoding="utf-8")
        firsts = []
        for path in (tiny, big):
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                p = subprocess.Popen([sdp, "expand", str(path)], stdout=subprocess.PIPE)
                assert p.stdout is not None
                p.stdout.readline()
                best = min(best, time.perf_counter() - t0)
                p.kill()
                p.wait()
            firsts.append(best)
        print(
            f"time to the first line: sdp expand big.sdp {firsts[1] * 1000:.0f} ms "
            f"(sdp expand of a 2-line space, start-up alone: {firsts[0] * 1000:.0f} ms; best of 3)"
        )
        print()

        runs = []
        # where line `mark` ends, computed in process (also an in-process rate, for reference)
        for label, path, sampler, cmd in [
            (
                "sdp sample golden.sdp (random)",
                golden,
                "random",
                [sdp, "sample", str(golden), "-n", str(n), "--seed", "0"],
            ),
            (
                "sdp expand big.sdp (10^30 space)",
                big,
                "combinatorial",
                [sdp, "expand", str(big), "--limit", str(n)],
            ),
        ]:
            program = load(path)
            t0 = time.perf_counter()
            mark_bytes = bytes_until(get_sampler(sampler).samples(program, 0, mark, 0), mark)
            t_in = time.perf_counter() - t0
            print(
                f"{label}: first {mark:,} lines = {mark_bytes:,} bytes "
                f"(computed in process at {mark / t_in:,.0f} samples/s)"
            )
            shown = " ".join(["sdp"] + [c.replace(str(tmp), "$TMP") for c in cmd[1:]]) + " > /dev/null"
            print(f"  running: {shown}")
            sys.stdout.flush()
            result = stream(cmd, mark_bytes, n)
            result["label"] = label
            result["cmd"] = shown
            runs.append(result)

        print()
        rows = []
        verdicts = []
        for r in runs:
            first, at_mark, last = r["first"], r["mark"], r["last"]
            growth = last[2]["VmRSS"] - at_mark[2]["VmRSS"]
            flat = growth <= FLAT_KIB and last[2]["VmHWM"] - at_mark[2]["VmRSS"] <= FLAT_KIB
            verdicts.append(flat)
            later = (r["n"] - mark) / (last[0] - r["t_mark"]) if last[0] > r["t_mark"] else float("nan")
            rows.append(
                [
                    r["label"],
                    mib(first[2]["VmRSS"]),
                    mib(at_mark[2]["VmRSS"]),
                    mib(last[2]["VmRSS"]),
                    mib(last[2]["VmHWM"]),
                    f"{growth / 1024:+.1f}",
                    f"{r['wall']:.1f}",
                    f"{r['n'] / r['wall']:,.0f}",
                    f"{later:,.0f}",
                    "flat" if flat else "GROWS",
                ]
            )
        print(
            table(
                [
                    "command",
                    "RSS start MiB",
                    f"RSS @{mark / 1e6:g}M MiB",
                    f"RSS @{n / 1_000_000:g}M (last poll) MiB",
                    "peak (VmHWM) MiB",
                    f"growth {mark / 1e6:g}M→end MiB",
                    "wall s",
                    "samples/s (overall)",
                    f"samples/s after {mark / 1e6:g}M",
                    "memory",
                ],
                rows,
            )
        )
        print()
        for r in runs:
            print(f"  {r['cmd']}")
        print(f"RSS start: first poll after output began; last poll is within {POLL_S} s of the end.")
        print(f"flat: RSS and peak at most {FLAT_KIB // 1024} MiB above the RSS at the {mark:,} mark.")
        print("memory target:", "met" if all(verdicts) else "MISSED")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
