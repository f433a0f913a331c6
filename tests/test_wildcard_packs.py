"""Wildcard packs as users have them: lookup from the referring file's folder and
anywhere below, YAML and JSON files, symbolic links, files read as data, and a
generated pack shaped like the sd-dynamic-prompts collections (tests/packgen.py) that
loads in full."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stable_discovery.cli.main import main
from stable_discovery.errors import Source, TemplateError
from stable_discovery.language import compiler
from stable_discovery.language.program import loads
from stable_discovery.language.syntax import WildcardRef
from stable_discovery.language.wildcard_lines import WildcardLines
from stable_discovery.language.wildcards import WildcardLibrary
from stable_discovery.plugins import get_sampler
from stable_discovery.space.nodes import TextPick
from tests.helpers import write_files
from tests.packgen import write_pack

COMB = get_sampler("combinatorial")
RANDOM = get_sampler("random")


def expand(template: str, folder: Path, literal: bool = False) -> list[str]:
    program = loads(template, wildcard_dirs=[folder], wildcards_literal=literal)
    return [s.prompt for s in COMB.samples(program, 0, program.count(), 0)]


# ---------------------------------------------------------------------------------------
# lookup


def test_lookup_from_the_top_then_the_referring_folder_then_anywhere(tmp_path):
    d = write_files(
        tmp_path,
        {
            "mood.txt": "top mood\n",
            "a/mood.txt": "a mood\n",
            "a/b/deep.txt": "deep\n",
            "a/index.txt": "__mood__ / __deep__ / __b/deep__\n",
            "c/index.txt": "__mood__ / __deep__\n",
        },
    )
    assert expand("__a/index__", d) == ["top mood / deep / deep"]
    lib = WildcardLibrary([d])
    assert [lib.lookup(p, "a")[::3] for p in ["mood", "deep", "b/deep"]] == [
        ("mood", "top"),
        ("a/b/deep", "anywhere"),
        ("a/b/deep", "folder"),
    ]
    (d / "mood.txt").unlink()
    lib = WildcardLibrary([d])
    assert lib.lookup("mood", "a").pattern == "a/mood"
    assert lib.lookup("mood", "c").pattern == "a/mood"  # below the top, one place
    assert lib.lookup("mood", "").how == "anywhere"


def test_the_trace_names_a_wildcard_as_found(tmp_path):
    d = write_files(tmp_path, {"x/y/colour.txt": "red\nblue\n"})
    program = loads("__colour__ __y/colour__", wildcard_dirs=[d])
    assert [v.name for v in program.variables] == ["__x/y/colour__"]  # one wildcard, used twice
    assert sorted(expand("__colour__ __y/colour__", d)) == ["blue blue", "blue red", "red blue", "red red"]


def test_an_ambiguous_name_lists_the_candidates(tmp_path):
    d = write_files(tmp_path, {"p/mystical.txt": "a\n", "q/r/mystical.txt": "b\n", "q/s/other.txt": "c\n"})
    with pytest.raises(TemplateError) as err:
        loads("x __mystical__", wildcard_dirs=[d])
    assert err.value.message == (
        "wildcard __mystical__ is not at the top of the wildcard folders, and is in several places "
        "below: __p/mystical__, __q/r/mystical__"
    )
    assert err.value.offset == 2 and err.value.hint == "write the one you mean with its folder"
    assert expand("__p/*__ __q/*/other__", d) == ["a c"]


def test_a_glob_below_the_top(tmp_path):
    d = write_files(
        tmp_path,
        {"pack/styles/oil.txt": "oil\n", "pack/styles/ink.txt": "ink\n", "pack/x.txt": "__styles/*__\n"},
    )
    assert sorted(expand("__x__", d)) == ["ink", "oil"]
    assert sorted(expand("__styles/*__", d)) == ["ink", "oil"]


def test_names_with_spaces_and_other_characters(tmp_path):
    d = write_files(tmp_path, {"European Art/baroque.txt": "Rubens\n", "a, b & c's.txt": "odd\n"})
    assert expand("__European Art/baroque__ __a, b & c's__", d) == ["Rubens odd"]
    assert expand("a __ b __ c", d) == ["a __ b __ c"]  # spaces at the ends: not a name


def test_a_name_given_twice_in_one_folder_is_an_error(tmp_path):
    d = write_files(tmp_path, {"animals.txt": "cat\n", "animals.yaml": "- dog\n"})
    with pytest.raises(TemplateError) as err:
        loads("__animals__", wildcard_dirs=[d])
    assert "is given by two files" in err.value.message and "animals.yaml (key list)" in err.value.message


# ---------------------------------------------------------------------------------------
# YAML and JSON


def test_yaml_and_json_key_paths_are_wildcard_names(tmp_path):
    d = write_files(
        tmp_path,
        {
            "sub/pantry.yaml": (
                "# sdp reads it as dynamicprompts does\ncars:\n  ford: [Mustang, Focus]\n  one: single\n"
            ),
            "list.yml": "- alpha\n- 1990\n- ''\n- yes\n",
            "j/p.json": '{"a": {"b": ["x", {"text": "y", "weight": 2}]}}',
        },
    )
    assert expand("__sub/cars/ford__", d) == ["Mustang", "Focus"]
    assert expand("__sub/cars/one__", d) == ["single"]
    assert expand("__list__", d) == ["alpha", "1990", "yes"]  # a number is its text
    program = loads("__j/a/b__", wildcard_dirs=[d])
    var = program.variables[0]
    assert [(line.value, line.weight, line.number) for line in var.lines] == [("x", 1.0, 1), ("y", 2.0, 1)]
    assert program.wildcard_files == (d / "j" / "p.json",)


def test_errors_in_yaml_and_json_are_located(tmp_path):
    d = write_files(
        tmp_path,
        {
            "w.yaml": "good: [a]\nbad:\n  - 2:: beagle\n",
            "n.yaml": "x:\n  - {text: t, weight: heavy}\n",
            "broken.yaml": "a: [b\n",
            "broken.json": '{"a": ["b",]}',
            "brace.yaml": "flow: ['a }']\nblock:\n  - b }\n",
            "indented.txt": "  \t c }\n",
        },
    )
    for name, where in [
        ("flow", "brace.yaml:1:11"),
        ("block", "brace.yaml:3:7"),
        ("indented", "indented.txt:1:7"),
    ]:
        with pytest.raises(TemplateError) as err:  # a line's errors point at its column in the file
            loads(f"__{name}__", wildcard_dirs=[d])
        assert err.value.location == f"{d / where}", name
    assert expand("__good__", d) == ["a"]
    with pytest.raises(TemplateError) as err:
        loads("__bad__", wildcard_dirs=[d])
    assert err.value.location == f"{d / 'w.yaml'}:3:5" and "quotes" in (err.value.hint or "")
    with pytest.raises(TemplateError) as err:
        loads("__x__", wildcard_dirs=[d])
    assert err.value.message == "a weight must be a number, 0 or more, got 'heavy'"
    with pytest.raises(TemplateError) as err:
        loads("__a__", wildcard_dirs=[d])
    assert "could not be read" in (err.value.hint or "") and "not valid YAML" in (err.value.hint or "")
    program = loads("__good__", wildcard_dirs=[d])
    assert (
        sorted(w.message.split(":")[0] for w in program.warnings)
        == ["this wildcard file could not be read (its wildcards are unknown)"] * 2
    )


# ---------------------------------------------------------------------------------------
# files read as data


def test_a_file_read_as_data(tmp_path):
    d = write_files(
        tmp_path, {"emo.txt": "<o> <o>\nName[1]\nstalwart [dated]\n{red|blue} }x{\n\\n back\\slash\n"}
    )
    with pytest.raises(TemplateError) as err:
        loads("__emo__", wildcard_dirs=[d])
    assert err.value.message == "'}' without a matching '{'" and "--wildcards-literal" in (
        err.value.hint or ""
    )
    assert expand("__emo__", d, literal=True) == [
        "<o> <o>",
        "Name[1]",
        "stalwart [dated]",
        "red }x{",
        "blue }x{",
        "\\n back\\slash",
    ]
    program = loads("__emo__", wildcard_dirs=[d], wildcards_literal=True, notes=True)
    assert [(n.line, n.reason) for n in program.notes] == [
        (1, "'<o>' is text here"),
        (2, "'[' is text here"),
        (3, "'[' is text here"),
        (4, "the unmatched '}' is text here"),
    ]


def test_front_matter_decides_for_a_file(tmp_path):
    d = write_files(
        tmp_path,
        {
            "data.txt": "# sdp: literal\n[x] <y>\n",
            "tpl.txt": "#sdp:template\n[x]\n",
            "d.yaml": "# sdp: literal\nyd: ['[x] <y>']\n",
            "t.yaml": "# sdp: template\nyt: ['[x]']\n",
        },
    )
    assert expand("__data__", d) == expand("__yd__", d) == ["[x] <y>"]
    assert expand("__tpl__", d, literal=True) == expand("__yt__", d, literal=True) == ["", "x"]


def test_check_warns_about_brackets_in_a_wildcard_file_read_as_a_template_by_default(tmp_path):
    """dynamicprompts' packs mean `Name[1]` as text: where nothing says how to read a file,
    its first optional part is warned about (once per file), with how to read it as data."""
    d = write_files(
        tmp_path,
        {
            "names.txt": "plain\nName[1]\nstalwart [dated]\n",
            "more.yaml": "more: ['x {a|[b]}']\n",
            "chosen.txt": "# sdp: template\nName[1]\n",
            "a1111.txt": "[cat|dog]\n",
        },
    )
    program = loads("__names__ __more__ __chosen__ __a1111__", wildcard_dirs=[d])
    found = sorted((w.source.where(w.offset), w.message.split(" is ")[0]) for w in program.warnings)
    assert found == [
        (f"{d / 'a1111.txt'}:1:1", "[cat|dog]"),  # said once, as A1111's alternation
        (f"{d / 'more.yaml'}:1:14", "[b]"),
        (f"{d / 'names.txt'}:2:5", "[1]"),
    ]
    assert all(
        "--wildcards-literal" in (w.hint or "") for w in program.warnings if "a1111" not in w.source.name
    )
    assert not loads("__names__", wildcard_dirs=[d], wildcards_literal=True).warnings


def test_the_setting_reads_wildcards_as_data(tmp_path):
    d = write_files(tmp_path, {"emo.txt": "<o> <o>\n"})
    program = loads("@wildcard_lines = literal\nprompt = __emo__", wildcard_dirs=[d])
    assert program.wildcards_literal and [s.prompt for s in COMB.samples(program, 0, 1, 0)] == ["<o> <o>"]


def test_check_verbose_lists_the_lines_read_differently(tmp_path, capsys):
    d = write_files(tmp_path, {"emo.txt": "<o> <o>\nplain\n"})
    assert main(["check", "-e", "__emo__", "--wildcards", str(d), "--wildcards-literal", "-v"]) == 0
    out = capsys.readouterr().out
    assert "wildcard files read: 1 (as data)" in out
    assert f"{d / 'emo.txt'}:1: <o> <o>  ('<o>' is text here)" in out


# ---------------------------------------------------------------------------------------
# long wildcards: one node for all their lines


def test_a_long_wildcard_samples_as_a_pick_of_its_lines(tmp_path, monkeypatch):
    lines = [f"line {k}" for k in range(1500)]
    lines += ["3:: heavy", "0.5:: light", "2:: pick {one|two}", "in __small__"]
    d = write_files(
        tmp_path,
        {
            "big.txt": "\n".join(lines) + "\n",
            "g/a.txt": "\n".join(lines[:700]),
            "g/b.txt": "\n".join(lines[600:]),
            "small.txt": "x\ny {p|q}\n",
        },
    )
    for template in ["a __big__ b", "__g/*__", "{2$$__big__} __big__"]:
        program = loads(template, wildcard_dirs=[d])
        assert any(isinstance(n, TextPick) for n in _nodes(program.root))
        fast, comb = _draws(program)
        monkeypatch.setattr(compiler, "RAND_TABLE_LIMIT", 10**9)
        program = loads(template, wildcard_dirs=[d])
        assert not any(isinstance(n, TextPick) for n in _nodes(program.root))
        assert _draws(program) == (fast, comb)
        monkeypatch.undo()


def _draws(program):
    """300 random samples; the count, the first 2,000 combinations (in order) and 300
    spread over the whole space (each decoded alone)."""
    fast = [(s.prompt, s.trace) for s in RANDOM.samples(program, 0, 300, 3)]
    count = program.count()
    first = [(s.prompt, s.trace) for s in COMB.samples(program, 0, min(count, 2000), 0)]
    spread = [COMB.sample(program, i, 0) for i in range(0, count, max(1, count // 300))]
    spread = [(s.prompt, s.trace) for s in spread]
    return fast, (count, first, spread)


def _nodes(root):
    stack, seen = [root], []
    while stack:
        n = stack.pop()
        seen.append(n)
        stack.extend(getattr(n, "children", ()) or getattr(n, "alts", ()))
    return seen


def test_wraps_around_shared_slots(tmp_path):
    program = loads("s = x | y\nprompt = %{<s> ... end$$<s> mid} <s>")
    assert program.count() == 2
    assert [s.prompt for s in COMB.samples(program, 0, 2, 0)] == ["x x mid end x", "y y mid end y"]
    assert {s.prompt for s in RANDOM.samples(program, 0, 40, 0)} == {"x x mid end x", "y y mid end y"}


# ---------------------------------------------------------------------------------------
# a pack shaped like the real ones


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    return write_pack(tmp_path_factory.mktemp("pack"), scale=0.08)


def test_a_generated_pack_loads_in_full(pack):
    """Every wildcard of the pack loads (read as data): its lines, and the wildcards they
    refer to, by bare name from sibling folders or from the top of the pack's own folder."""
    template = " ".join(f"__{name}__" for name in pack.lines)
    program = loads(template, wildcard_dirs=[pack.root], wildcards_literal=True, notes=True)
    assert program.count() > 1
    assert len(program.wildcard_files) == pack.files
    assert any("is text here" in n.reason for n in program.notes)  # emoticons, brackets
    library = WildcardLibrary([pack.root], literal=True)
    lines = WildcardLines(library)
    src = Source("<t>", "")
    assert {name: len(lines.get(WildcardRef(name, 0), src)) for name in pack.lines} == pack.lines


def test_the_pack_needs_to_be_read_as_data(pack):
    with pytest.raises(TemplateError) as err:
        loads("__devilkkw/*/*__", wildcard_dirs=[pack.root])
    assert "--wildcards-literal" in (err.value.hint or "")
    program = loads(
        "__devilkkw/*/*__ __artists/European Art/*/*__ __jumbo/*/*__",
        wildcard_dirs=[pack.root],
        wildcards_literal=True,
    )
    assert program.count() > 0


# ---------------------------------------------------------------------------------------
# refine and the exploit sampler with YAML files, indented lines and data files


def test_refine_weighs_yaml_items_and_indented_lines_in_copies(tmp_path):
    import yaml

    from stable_discovery import plugins
    from stable_discovery.analysis.refine import refine_result
    from stable_discovery.language.program import load
    from stable_discovery.store.database import Store
    from tests.helpers import make_experiment, rate_by

    wild = write_files(
        tmp_path / "wildcards",
        {
            "w.yaml": "# sdp: literal\nplaces:\n  room: [kitchen, 'a {big|small} hall', <o>]\n"
            "  yard: garden\n",
            "t.txt": "  a {red|blue} ball\n\tplain\n",
        },
    )
    template = "prompt = __places/room__ __t__ {x|y}\n"
    path = tmp_path / "t.sdp"
    path.write_text(template, encoding="utf-8")
    rule = rate_by({("__places/room__", "kitchen"): 0.5, ("__t__{1}", "blue"): 0.5}, 0.05)
    with Store(tmp_path / "ws") as store:
        make_experiment(store, "p", template, 800, rule, template_path=str(path), wildcards=(wild,))
        result = refine_result(store, "p", wildcards_to="next-wildcards")
    assert set(result.wildcards) == {"next-wildcards/w.yaml", "next-wildcards/t.txt"}
    txt = result.wildcards["next-wildcards/t.txt"]
    assert re.fullmatch(r"  [\d.]+:: a \{[\d.]+::red\|[\d.]+::blue\} ball\n\t[\d.]+:: plain\n", txt), txt
    copy = result.wildcards["next-wildcards/w.yaml"]
    assert copy.startswith("# sdp: literal\n")  # read as the original is
    room = yaml.safe_load(copy)["places"]["room"]
    texts = [item if isinstance(item, str) else item["text"] for item in room]
    assert texts[0] == "kitchen" and texts[2] == "<o>"
    assert re.fullmatch(r"a \{[\d.]+::big\|[\d.]+::small\} hall", texts[1]), texts[1]
    weight = {t: (1.0 if isinstance(i, str) else i["weight"]) for t, i in zip(texts, room, strict=True)}
    assert weight["kitchen"] > 1.5 * weight["<o>"]
    # the refined template and its copies load, with the same variables
    nxt = tmp_path / "next.sdp"
    nxt.write_text(result.text, encoding="utf-8")
    for rel, text in result.wildcards.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    refined = load(nxt)
    assert [v.name for v in refined.variables] == [v.name for v in load(path).variables]
    assert refined.count() == load(path).count()
    # the exploit sampler reads the same weighted YAML (as a stand-in for the file)
    exploit = tmp_path / "exploit.sdp"
    exploit.write_text(
        template + f"@sampler = exploit\n@exploit = p\n@exploit_workspace = {tmp_path / 'ws'}\n",
        encoding="utf-8",
    )
    program = load(exploit, [wild], plugins.setting_specs())
    a = [s.prompt for s in get_sampler("exploit").samples(program, 0, 300, 5)]
    b = [s.prompt for s in RANDOM.samples(refined, 0, 300, 5)]
    assert a == b


def test_refine_of_an_experiment_read_as_data_says_so_in_the_template(tmp_path):
    from stable_discovery.analysis.refine import refine_result
    from stable_discovery.language.program import load
    from stable_discovery.store.database import Store
    from tests.helpers import make_experiment, rate_by

    wild = write_files(tmp_path / "wildcards", {"faces.txt": "<o> <o>\nName[1]\n}:-)\n"})
    template = "prompt = a __faces__ {x|y}\n"
    path = tmp_path / "t.sdp"
    path.write_text(template, encoding="utf-8")
    with Store(tmp_path / "ws") as store:
        assert loads(template, wildcard_dirs=[wild], wildcards_literal=True).count() == 6
        # the experiment as `sdp run --wildcards-literal` makes it (the helper has no such option)
        (wild / "faces.txt").write_text("# sdp: literal\n<o> <o>\nName[1]\n}:-)\n", encoding="utf-8")
        make_experiment(
            store, "p", template, 200, rate_by({}, 0.2), template_path=str(path), wildcards=(wild,)
        )
        (wild / "faces.txt").write_text("<o> <o>\nName[1]\n}:-)\n", encoding="utf-8")
        result = refine_result(store, "p", wildcards_to="next-wildcards", wildcards_literal=True)
    assert result.text.count("@wildcard_lines = literal") == 1
    nxt = tmp_path / "next.sdp"
    nxt.write_text(result.text, encoding="utf-8")
    for rel, text in result.wildcards.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    assert {s.prompt for s in COMB.samples(load(nxt), 0, 6, 0)} == {
        f"a {face} {xy}" for face in ["<o> <o>", "Name[1]", "}:-)"] for xy in "xy"
    }


def test_a_yaml_item_over_several_lines_keeps_its_comments_to_their_lines(tmp_path):
    """The real publicprompts.yaml starts each item with '# Usage: …' lines: a comment
    ends at the end of its own line, not at the end of the item (as dynamicprompts reads it)."""
    d = write_files(
        tmp_path,
        {
            "a.yaml": "first:\n  - |\n    # Usage: __first__\n    hello,\n    world\n"
            "last:\n  - |\r\n    hello, # greeting\r\n    # note\r\n    {big|small} world\r\n"
        },
    )
    for literal in (False, True):
        program = loads("X __first__ __last__ Y", wildcard_dirs=[d], wildcards_literal=literal)
        prompts = [s.prompt for s in COMB.samples(program, 0, 2, 0)]
        assert prompts == ["X hello, world hello, big world Y", "X hello, world hello, small world Y"]


def test_the_first_mistake_of_a_wildcard_file_is_the_one_reported(tmp_path):
    """A pack with many dangling references is cleaned top to bottom, one check at a time."""
    d = write_files(tmp_path, {"w.txt": "a\n__missing_one__\nb\n__missing_two__\nc <p1> <p2>\n"})
    with pytest.raises(TemplateError) as err:
        loads("x __w__", wildcard_dirs=[d])
    assert err.value.message.startswith("unknown wildcard __missing_one__")
    assert err.value.location == f"{d / 'w.txt'}:2:1"
    d2 = write_files(tmp_path / "two", {"v.txt": "a <p1> <p2>\n"})
    with pytest.raises(TemplateError) as err:
        loads("x __v__", wildcard_dirs=[d2])
    assert err.value.message.startswith("unknown slot <p1>")


def test_a_misspelt_bare_name_is_matched_by_its_last_part(tmp_path):
    d = write_files(
        tmp_path, {"people/scandinavia.txt": "Danish\n", "people/europe.txt": "__scandinavian__\n"}
    )
    with pytest.raises(TemplateError) as err:
        loads("x __people/europe__", wildcard_dirs=[d])
    assert "did you mean __people/scandinavia__?" in err.value.message
