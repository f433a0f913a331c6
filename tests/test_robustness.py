"""Hostile input: binary, invalid UTF-8, NUL, empty, huge, deeply nested, exponential.
Each gives a TemplateError with a place, or the right result, promptly: never another
exception, a hang or unbounded memory (docs/language.md, Errors and Known limitations)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from stable_discovery.cli.main import main
from stable_discovery.errors import TemplateError
from stable_discovery.language.parser import MAX_NESTING
from stable_discovery.language.program import load, loads
from stable_discovery.plugins import get_sampler

COMB = get_sampler("combinatorial")
RANDOM = get_sampler("random")
SHUFFLE = get_sampler("shuffle")


def refused(text: str = None, path: Path = None, wildcards=()) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        if path is not None:
            load(path, wildcards or None)
        else:
            loads(text, wildcard_dirs=wildcards)
    err = info.value
    err.format()
    return err


def exercise(program, n_random: int = 3) -> int:
    """Count, stream, decode the ends, shuffle and sample: all must work."""
    n = program.count()
    list(itertools.islice(COMB.samples(program, 0, n, 0), 3))
    COMB.sample(program, 0, 0)
    COMB.sample(program, n - 1, 0)
    SHUFFLE.sample(program, n // 2, 0)
    list(RANDOM.samples(program, 0, n_random, 0))
    return n


# ---------------------------------------------------------------------------------------
# bytes


def test_binary_file(tmp_path):
    path = tmp_path / "image.sdp"
    path.write_bytes(bytes(range(256)) * 4)
    err = refused(path=path)
    assert "UTF-8" in err.message or "NUL" in err.message
    assert err.location.startswith(str(path))


def test_png_header(tmp_path):
    path = tmp_path / "x.sdp"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert refused(path=path).message == "not valid UTF-8 (byte 0x89)"


def test_invalid_utf8(tmp_path):
    path = tmp_path / "latin1.sdp"
    path.write_bytes("prompt = café crème\n".encode("latin-1"))
    err = refused(path=path)
    assert "not valid UTF-8" in err.message
    assert err.hint == "save the file as UTF-8"


def test_nul_in_a_file(tmp_path):
    path = tmp_path / "nul.sdp"
    path.write_bytes(b"prompt = a\x00b")
    assert refused(path=path).message == "contains a NUL character; is this a binary file?"


def test_nul_in_a_wildcard_file(tmp_path):
    (tmp_path / "w.txt").write_bytes(b"ok\nbad\x00line\n")
    err = refused("__w__", wildcards=[tmp_path])
    assert "NUL" in err.message
    assert err.location.startswith(str(tmp_path / "w.txt"))


@pytest.mark.parametrize("data", [b"", b"\n", b"   \n\t\n", b"# only a comment\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path, data):
    path = tmp_path / "empty.sdp"
    path.write_bytes(data)
    with pytest.raises(TemplateError) as info:
        load(path)
    assert info.value.message.startswith("the template is empty")
    assert info.value.location == f"{path}:1:1"


def test_empty_file_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "empty.sdp"
    path.write_bytes(b"")
    for command in ("expand", "count", "sample", "run"):
        assert (
            main(
                [command, str(path), "--workspace", str(tmp_path / "ws")]
                if command == "run"
                else [command, str(path)]
            )
            == 2
        )
        captured = capsys.readouterr()
        assert (
            captured.out == "" and "the template is empty" in captured.err and "Traceback" not in captured.err
        )
    assert not (tmp_path / "ws").exists()


def test_empty_wildcard_folder_file(tmp_path):
    (tmp_path / "w.txt").write_bytes(b"")
    assert refused("__w__", wildcards=[tmp_path]).message == "wildcard __w__ has no lines"


# ---------------------------------------------------------------------------------------
# huge


@pytest.mark.slow
def test_ten_megabyte_line_of_text():
    text = "word " * 2_000_000
    program = loads(text)
    assert program.count() == 1
    (sample,) = COMB.samples(program, 0, 1, 0)
    assert len(sample.prompt) == len(text) - 1


def test_ten_megabyte_line_in_a_definition(tmp_path):
    path = tmp_path / "big.sdp"
    path.write_text("prompt = " + "x" * 10_000_000 + " | y\n", encoding="utf-8")
    program = load(path)
    assert program.count() == 2
    assert [len(s.prompt) for s in COMB.samples(program, 0, 2, 0)] == [10_000_000, 1]


@pytest.mark.parametrize("unit", ["{a|b} ", "prompt = {a|b}", "_ ", "< ", "\\( ", "a|"])
def test_ten_megabyte_line_of_syntax_is_refused_at_once(unit):
    text = unit * (10_000_000 // len(unit))
    err = refused(text)
    assert "too large" in err.message or "too many" in err.message
    assert err.hint is not None and "wildcard" in err.hint


@pytest.mark.slow
def test_many_alternatives_are_fine_in_a_wildcard_file(tmp_path):
    (tmp_path / "big.txt").write_text("\n".join(f"value {i}" for i in range(100_000)), encoding="utf-8")
    program = loads("__big__", wildcard_dirs=[tmp_path])
    assert program.count() == 100_000
    assert COMB.sample(program, 99_999, 0).prompt == "value 99999"


def test_huge_multi_select():
    alts = "|".join(f"v{i}" for i in range(1000))
    program = loads("{500$$" + alts + "}")
    assert program.count() == math.perm(1000, 500)
    exercise(program)
    first = COMB.sample(program, 0, 0).prompt.split(",")
    assert first == [f"v{i}" for i in range(500)]
    assert len(set(RANDOM.sample(program, 7, 0).prompt.split(","))) == 500


def test_huge_multi_select_range():
    alts = "|".join(f"v{i}" for i in range(300))
    program = loads("{1-300$$" + alts + "}")
    assert program.count() == sum(math.perm(300, k) for k in range(1, 301))
    exercise(program)
    last = COMB.sample(program, program.count() - 1, 0).prompt.split(",")
    assert last == [f"v{i}" for i in range(299, -1, -1)]


def test_huge_multi_select_with_inner_choices():
    alts = "|".join(f"{{a{i}|b{i}}}" if i % 2 else f"v{i}" for i in range(200))
    program = loads("{1-3$$" + alts + "}")
    exercise(program)


def test_count_beyond_any_use_is_refused():
    # {N$$...} of {N$$...} of ...: the count's digits alone would fill the memory
    text = "{200$$" + "|".join(f"v{i}" for i in range(400)) + "}"
    for _ in range(3):
        text = (
            "{300$$"
            + "|".join(f"w{i} {text}" for i in range(2))
            + "|"
            + "|".join(f"u{i}" for i in range(400))
            + "}"
        )
    err = refused(text)
    assert err.message == "more than 10^100000 combinations: too many to count exactly"
    assert err.location.startswith("<template>:1:")


def test_long_sequence_of_large_parts_streams():
    program = loads("{4$$a|b|c|d|e|f|g|h|i|j} " * 600 + "{x|y}")
    assert program.count() == 5040**600 * 2
    first = list(itertools.islice(COMB.samples(program, 0, program.count(), 0), 3))
    assert [s.prompt[-9:] for s in first] == ["a,b,c,d x", "a,b,c,d y", "a,b,c,e x"]
    assert [COMB.sample(program, i, 0).prompt for i in range(3)] == [s.prompt for s in first]


# ---------------------------------------------------------------------------------------
# deep


@pytest.mark.parametrize("opener, closer", [("{", "}"), ("[", "]"), ("{2$$", "}")])
def test_nesting_ten_thousand_deep(opener, closer):
    err = refused(opener * 10_000 + "x" + closer * 10_000)
    assert err.message == f"nesting deeper than {MAX_NESTING} levels of {{}} and []"


def test_unclosed_ten_thousand_deep():
    assert "nesting deeper" in refused("{" * 10_000).message
    assert "nesting deeper" in refused("prompt = " + "[" * 10_000).message


def test_deepest_allowed_nesting_samples():
    text = "".join(f"{{z{i}|" for i in range(MAX_NESTING - 1)) + "a|b" + "}" * (MAX_NESTING - 1)
    program = loads(text)
    assert exercise(program) == MAX_NESTING + 1
    program = loads("[" * MAX_NESTING + "x" + "]" * MAX_NESTING)
    exercise(program)


def chain(n: int, body: str) -> str:
    """Slots s0 .. sN, each written as ``body`` with NEXT the next slot and I its number."""
    lines = [f"s{i} = " + body.replace("NEXT", f"<s{i + 1}>").replace("I", str(i)) for i in range(n)]
    return "\n".join(lines) + f"\ns{n} = a | b\nprompt = <s0>\n"


@pytest.mark.slow
def test_ten_thousand_slots_in_a_chain():
    err = refused(chain(10_000, "NEXT x"))
    assert "nests too deeply" in err.message
    assert err.location.startswith("<template>:")
    assert err.hint is not None


@pytest.mark.slow
def test_ten_thousand_slots_in_a_cycle():
    text = "\n".join(f"s{i} = <s{(i + 1) % 10_000}>" for i in range(10_000)) + "\nprompt = <s0>"
    err = refused(text)
    assert "nests too deeply" in err.message or "cycle" in err.message


def test_a_long_but_allowed_chain_samples():
    program = loads(chain(40, "NEXT x | yI"))
    n = exercise(program)
    assert n == 40 + 2
    assert COMB.sample(program, 0, 0).prompt == "a" + " x" * 40


def test_deep_nesting_inside_a_chain_of_slots_is_refused_with_a_place():
    nest = "".join(f"{{z{k}|" for k in range(12)) + "NEXT" + "}" * 12
    err = refused(chain(10, nest))  # 10 slots x 12 choices: too deep to sample safely
    assert "nests too deeply" in err.message
    line, col = err.source.line_col(err.offset)
    assert err.source.line_text(line).startswith("s")
    exercise(loads(chain(4, nest)))  # 4 x 12 is fine


def test_shared_slot_reused_deep_inside_choices():
    nest = "".join(f"{{z{i}|" for i in range(60)) + "<s>" + "}" * 60
    program = loads(
        "s = " + "".join(f"{{y{i}|" for i in range(60)) + "a" + "}" * 60 + "\n" + "prompt = <s> " + nest
    )
    exercise(program)


# ---------------------------------------------------------------------------------------
# exponential


def test_slot_doubling_is_refused():
    text = chain(60, "NEXT NEXT | y")
    err = refused(text)
    assert err.message.startswith("the template can make prompts of up to ")
    assert err.location.startswith("<template>:")


def test_wildcard_doubling_is_refused(tmp_path):
    for i in range(60):
        (tmp_path / f"w{i}.txt").write_text(f"__w{i + 1}__ __w{i + 1}__\n", encoding="utf-8")
    (tmp_path / "w60.txt").write_text("a\n", encoding="utf-8")
    assert refused("__w0__", wildcards=[tmp_path]).message.startswith("the template can make prompts")
    program = loads("__w50__", wildcard_dirs=[tmp_path])  # 2**10 'a's: fine
    (sample,) = COMB.samples(program, 0, 1, 0)
    assert sample.prompt == " ".join(["a"] * 1024)


def test_wildcard_multi_select_chain_is_linear_to_compile(tmp_path):
    for i in range(40):
        (tmp_path / f"w{i}.txt").write_text(
            f"{{2$$__w{i + 1}__|x}} {{2$$__w{i + 1}__|y}}\n", encoding="utf-8"
        )
    (tmp_path / "w40.txt").write_text("a\nb\n", encoding="utf-8")
    err = refused("__w0__", wildcards=[tmp_path])
    assert "combinations" in err.message or "characters" in err.message
    program = loads("__w37__", wildcard_dirs=[tmp_path])
    exercise(program)


def test_nested_shared_slots_count_without_enumerating():
    # each level doubles the space; counting stays linear in the template
    program = loads(chain(60, "NEXT x | NEXT y"))
    assert program.count() == 2**61
    assert COMB.sample(program, 0, 0).prompt == "a" + " x" * 60
    assert COMB.sample(program, 2**61 - 1, 0).prompt == "b" + " y" * 60
    exercise(program)


@pytest.mark.slow
def test_many_shared_slots_in_one_prompt():
    n = 800
    text = (
        "\n".join(f"s{i} = a{i} | b{i}" for i in range(n))
        + "\nprompt = "
        + " ".join(f"<s{i}> <s{i}>" for i in range(n))
    )
    program = loads(text)
    assert program.count() == 2**n
    last = COMB.sample(program, 2**n - 1, 0).prompt.split()
    assert last[:4] == ["b0", "b0", "b1", "b1"] and last[-1] == f"b{n - 1}"
    exercise(program)


# ---------------------------------------------------------------------------------------
# through the command line: exit status 2 and a message, whatever the input


@pytest.mark.slow
@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)),
        b"\xff" * 1000,
        ("{a|b} " * 400_000).encode(),
        b"{" * 10_000,
        chain(3000, "NEXT").encode(),
        b"prompt = <prompt>",
    ],
)
def test_command_line_reports_hostile_input(tmp_path, capsys, data):
    path = tmp_path / "hostile.sdp"
    path.write_bytes(data)
    for command in ("check", "count", "expand"):
        assert main([command, str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith(str(path))
        assert "Traceback" not in captured.err
