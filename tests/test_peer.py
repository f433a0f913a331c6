"""dynamicprompts users feel at home: the peer's syntax works, or is refused with a place
(docs/language.md, Coming from dynamicprompts).

A differential suite against dynamicprompts 0.31: for what this language supports, the
set of prompts is the peer's (compared without whitespace where the two trim
differently); for what it refuses, the error says where. Covered: the wrap command,
variables (immediate, not, defaults, used in wildcard files), sampling methods,
wildcard lookup (from the referring file's folder, anywhere below), YAML and JSON
wildcard files, symbolic links, choices inside wildcard names, wildcard files read as
data, and ``sdp convert --from dynamicprompts``.

Where dynamicprompts' combinatorial generator gives only a first value (an immediate
variable, a choice inside a wildcard name, both documented limitations of it), the
peer's set is collected from its random generator instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stable_discovery.cli.main import main
from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.from_peer import from_dynamicprompts
from stable_discovery.language.program import loads
from stable_discovery.plugins import get_sampler
from tests.helpers import write_files

pytest.importorskip("dynamicprompts")

from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator
from dynamicprompts.wildcards import WildcardManager

COMB = get_sampler("combinatorial")


def ours(template: str, folder: Path | None = None, literal: bool = False, squash: str = "") -> set[str]:
    """Every prompt of a template here, each with its whitespace runs replaced by
    ``squash`` ("": removed, " ": one space)."""
    program = loads(template, wildcard_dirs=[folder] if folder else (), wildcards_literal=literal)
    assert program.count() <= 2000
    return {squash.join(s.prompt.split()) for s in COMB.samples(program, 0, program.count(), 0)}


def theirs(template: str, folder: Path | None = None, squash: str = "") -> set[str]:
    generator = CombinatorialPromptGenerator(WildcardManager(folder))
    return {squash.join(p.split()) for p in generator.generate(template, max_prompts=4000)}


def theirs_random(template: str, folder: Path | None = None, n: int = 150, squash: str = "") -> set[str]:
    """The peer's set collected from its random generator (for what its combinatorial one
    gives only a first value of), a fresh generator for each prompt: an immediate
    variable is chosen once per generator."""
    manager = WildcardManager(folder)
    out = set()
    for seed in range(n):
        (prompt,) = RandomPromptGenerator(manager, seed=seed).generate(template, num_images=1)
        out.add(squash.join(prompt.split()))
    return out


def refused(template: str, folder: Path | None = None) -> TemplateError:
    with pytest.raises(TemplateError) as err:
        loads(template, wildcard_dirs=[folder] if folder else ())
    return err.value


@pytest.fixture(scope="module")
def peer_data(tmp_path_factory) -> Path:
    """A wildcard folder shaped like dynamicprompts' own test data."""
    return write_files(
        tmp_path_factory.mktemp("peer"),
        {
            "colors-cold.txt": "blue\ngreen\n",
            "colors-warm.txt": "red\nyellow\n# a comment\n\nred\n",
            "animal.txt": "cat\ndog\n",
            "animals/all-references.txt": (
                "# files within this folder\n__mammals/canine__\n__mammals/feline__\n__mystical__\n"
            ),
            "animals/mammals/canine.txt": "dog\nwolf\n",
            "animals/mammals/feline.txt": "cat\ntiger\n",
            "animals/mystical.txt": "unicorn\ndragon\n",
            "animals/reptiles/lizards.yaml": "- iguana\n- gecko\n",
            "animals/reptiles/snakes.txt": "cobra\npython\n",
            "pantry.yaml": (
                "clothing:\n  - T-shirt\n  - Pants\n  - Shoes\nartists:\n  finnish:\n"
                "    - Akseli Gallen-Kallela\n    - Helene Schjerfbeck\n  dutch:\n    - Rembrandt\n"
            ),
            "flavors/sour.txt": "lemon\ngrapefruit\n",
            "flavors/sweet.txt": "chocolate\nstrawberry\n",
            "flavors/pantry.json": '{"bitter": ["coffee", "dark chocolate"]}',
            "shapes.yaml": "- circle\n- square\n",
            "wrappers.txt": (
                "Art Deco, ..., sleek, geometric forms\nPop Art, ....., vivid colors, flat color\n"
            ),
            "publicprompts/plush-toy.yaml": "- Cute kawaii squishy ${animal} plush toy, soft lighting\n",
            "light/indoor.txt": "lamp\ncandle\n",
            "light/outdoor.txt": "sun\nmoon\n",
            "referencing-colors.txt": "__colors-cold__\n__colors-warm__\n",
            "emoticons.txt": "<o> <o>\n> <\n| |\nName[1]\nstalwart [dated]\n^_^\n",
        },
    )


# ---------------------------------------------------------------------------------------
# supported: the same prompts as dynamicprompts

SAME_AS_COMBINATORIAL = [
    # the wrap command (dynamicprompts' tests/test_wrapping.py)
    "%{happy ... on a meadow$${fox|cow}}",
    "%{happy … on a meadow$${fox|cow}}",
    "%{happy ᠁ on a meadow$${fox|cow}}",
    "%{happy ......... on a meadow$${fox|cow}}",
    "%{happy $${fox|cow}}",
    "%{... in jail$${fox|cow}}",
    "%{ {cool|hot} ...$${fox|cow}}",
    "%{__wrappers__$${fox|cow}}",
    "%{{a|b}... and ...$$x}",
    # variables set without '!': each use chosen anew
    "${a={x|y}} ${a} ${a}",
    "${a={x|y}} ${a} and ${b:z}",
    "${a={x|{y|z}}} ${a:w}",
    "${b=__colors-cold__} ${b} / ${b}",
    "${s={big|small}} %{a ... one$${s}}",
    # the combinatorial method, which is what both samplers here already do
    "{!a|b} {c|!d}",
    "{!2$$a|b|c}",
    "__!animal__",
    # wildcards: lookup from the referring file's folder, then anywhere below (**/name)
    "__animals/all-references__",
    "__canine__",
    "__reptiles/*__",
    "__animals/*__",
    # YAML and JSON wildcard files, next to .txt files
    "__clothing__",
    "__artists/finnish__ __artists/*__",
    "__flavors/*__",
    "__flavors/bitter__",
    "__shapes__",
    "__animals/reptiles/lizards__",
    "{2$$ and $$__flavors/*__}",
    "__referencing-colors__",
    "__colors-*__",
]


@pytest.mark.parametrize("template", SAME_AS_COMBINATORIAL)
def test_the_same_prompts_as_dynamicprompts(template, peer_data):
    assert ours(template, peer_data) == theirs(template, peer_data)


SAME_AS_RANDOM = [
    # an immediate variable is chosen once: dynamicprompts' combinatorial generator gives
    # only its first value; here it is a slot, every value listed
    "${a=!{x|y}} ${a} ${a}",
    "${a=!{x|y}} ${b={p|q}} ${a}-${b}-${a}",
    # a variable used in a wildcard file (dynamicprompts' discussion 61)
    "${animal=!{fox|manatee}} __publicprompts/plush-toy__",
    # a choice inside a wildcard name
    "__light/{indoor|outdoor}__",
    "a __light/{outdoor}__",
]


@pytest.mark.parametrize("template", SAME_AS_RANDOM)
def test_the_same_prompts_as_dynamicprompts_random_generator(template, peer_data):
    assert ours(template, peer_data) == theirs_random(template, peer_data)


def test_an_immediate_variable_is_one_slot_in_the_trace(peer_data):
    program = loads("${a=!{x|2::y}} ${a} ${a}")
    assert [(v.name, v.kind, v.values) for v in program.variables] == [("a", "slot", ("x", "y"))]
    sample = next(get_sampler("random").samples(program, 0, 1, 0))
    assert set(sample.trace) == {"a"}


def test_a_variable_set_without_bang_is_chosen_at_each_use(peer_data):
    program = loads("${a={x|y}} ${a} ${a}")
    assert [(v.name, v.kind) for v in program.variables] == [("a", "choice")]
    traces = {tuple(s.trace) for s in COMB.samples(program, 0, program.count(), 0)}
    assert traces == {("a", "a#2")}


def test_weights_of_structured_wildcards_are_dynamicprompts(tmp_path):
    d = write_files(
        tmp_path, {"w.yaml": "weighted:\n  - '3:: cat'\n  - {text: elephant, weight: 50}\n  - rhino\n"}
    )
    program = loads("__weighted__", wildcard_dirs=[d])
    var = next(v for v in program.variables if v.kind == "wildcard")
    mine = {line.value: line.weight for line in var.lines}
    peer = {str(v).strip(): getattr(v, "weight", 1.0) for v in WildcardManager(d).get_values("weighted")}
    assert mine == peer == {"cat": 3.0, "elephant": 50.0, "rhino": 1.0}


def test_symlinked_folders_and_files_are_followed(tmp_path):
    # dynamicprompts' test_wildcard_symlinks, and a link back up that would never end
    outside = write_files(tmp_path / "outside", {"wilderness.txt": "plants\nforest\n"})
    wild = write_files(tmp_path / "wildcards", {"animals/internet.txt": "doggo\ncatto\n"})
    (wild / "friendos.txt").symlink_to(wild / "animals" / "internet.txt")
    (wild / "wildly").symlink_to(outside)
    for template in ["__friendos__", "__wildly/*__", "__wildly/wilderness__ __animals/internet__"]:
        assert ours(template, wild) == theirs(template, wild)
    (wild / "animals" / "up").symlink_to(wild)  # a cycle: dynamicprompts would walk it forever
    program = loads("__wildly/*__ __animals/internet__", wildcard_dirs=[wild])
    assert program.count() == 4
    assert any("leads back to" in w.message for w in program.warnings)


def test_emoticons_and_brackets_are_text_in_a_file_read_as_data(peer_data):
    assert ours("__emoticons__", peer_data, literal=True) == theirs("__emoticons__", peer_data)


# ---------------------------------------------------------------------------------------
# refused: an error at the place, with a hint


@pytest.mark.parametrize(
    ("template", "col", "words"),
    [
        ("a {~x|y}", 3, "random sampling"),
        ("a {@x|y}", 3, "cyclical sampling"),
        ("a { ~2$$x|y}", 3, "random sampling"),
        ("a __~animal__", 5, "random sampling of a wildcard"),
        ("a __@animal__", 5, "cyclical sampling of a wildcard"),
        ("a __publicprompts/plush-toy(animal=fox)__", 3, "wildcard parameters"),
        ("{2$$ $ $$cat|dog|bird}", 8, "'$$' inside a multi-select"),
        ("x ${5}", 3, "starts a dynamicprompts variable"),
        ("{x|${a=y}}", 4, "is set here, inside another construct"),
        ("${a=x} ${a=y}", 8, "set twice"),
        ("${a=${b}} ${b=${a}} ${a}", 15, "in a cycle"),
        ("${nope}", 1, "unknown variable ${nope}"),
        ("${my-var=!x}", 3, "contains '-'"),
        ("__{a|b}/{c|d}__", 9, "one choice"),
        ("a } b", 3, "without a matching"),
        ("${k=!x} a __animals/${k}__", 21, "a wildcard name that uses a variable"),
        ("a {% for k in x %}b{% endfor %}", 3, "Jinja2 statement"),
        ("a {-$$x|y}", 3, "is not a multi-select"),
    ],
)
def test_what_has_no_equivalent_is_refused_at_its_place(template, col, words, peer_data):
    err = refused(template, peer_data)
    assert err.source is not None and err.offset is not None
    assert err.source.line_col(err.offset) == (1, col), err.format()
    assert words in err.message and err.hint


def test_a_variable_in_a_wildcard_name_is_refused_in_a_wildcard_file_too(tmp_path):
    d = write_files(tmp_path, {"vw.txt": "fish\nin __a/${x}__\n"})
    for literal in (False, True):
        with pytest.raises(TemplateError) as err:
            loads("${x=!b} __vw__", wildcard_dirs=[d], wildcards_literal=literal)
        assert err.value.location == f"{d / 'vw.txt'}:2:8"


def test_a_name_below_the_top_in_several_places_lists_them(tmp_path):
    d = write_files(tmp_path, {"x/mystical.txt": "a\n", "y/mystical.txt": "b\n"})
    err = refused("__mystical__", d)
    assert "__x/mystical__, __y/mystical__" in err.message
    # dynamicprompts takes the union of both
    assert theirs("__mystical__", d) == {"a", "b"}


def test_the_unmatched_brace_that_dynamicprompts_keeps(peer_data):
    # a template: refused (a typo should not cost a night); a file read as data: text
    assert theirs("a } b", squash=" ") == {"a } b"}
    assert ours("a \\} b", squash=" ") == {"a } b"}
    d = write_files(peer_data / "brace", {"b.txt": "a } b\n"})
    assert ours("__b__", d, literal=True, squash=" ") == {"a } b"}


# ---------------------------------------------------------------------------------------
# differences by design: A1111 brackets, whitespace


def test_a1111_brackets_are_optional_parts_and_check_warns(capsys):
    assert main(["check", "-e", "a [cat|dog] [word:0.4] [a:b:0.25] [low emphasis] [{x|y}] [#n: p|q]"]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if ": warning: " in line]
    assert [line.split(": warning: ")[1].split(" is ")[0] for line in warned] == [
        "[cat|dog]",
        "[word:0.4]",
        "[a:b:0.25]",
    ]
    assert "\\[cat\\|dog\\]" in err and "\\[word:0.4\\]" in err and "\\[a:b:0.25\\]" in err
    assert theirs("a [b]", squash=" ") == {"a [b]"}
    assert ours("a \\[b\\]", squash=" ") == {"a [b]"}


def test_whitespace_inside_braces_is_trimmed_here(peer_data):
    # dynamicprompts keeps an alternative's trailing spaces; here alternatives are trimmed
    assert theirs("x{ a | b }y", squash=" ") == {"xa y", "xb y"}
    assert ours("x{ a | b }y", squash=" ") == {"xay", "xby"}
    assert ours("x{ a | b } y", squash=" ") == theirs("x{ a | b } y", squash=" ")


# ---------------------------------------------------------------------------------------
# sdp convert --from dynamicprompts

CONVERTED = [
    "a photo of [low emphasis] and (masterpiece:1.2)",
    "an <o> <o> face and <lora:detail_v2:0.5>",
    "a } b | c",
    "\\(escaped\\) and \\{x|y} {a|b}",
    "${animal=!{cat|dog}} a ${animal} and a ${animal}",
    "${a={x|y}} ${a} ${a}",
    "# a comment\n{red|blue} ball # another\nin a {park|garden}",
    "{a|b} // a comment after a construct\n c",
    "%{happy ... on a meadow$${fox|cow}} and [b]",
    "{2$$ and $$__colors-cold__|__colors-warm__}",
    "3:: not a weight",
    "__animals/all-references__ [x]",
    "${s=!{2::big|small}} a ${s} dog",
]


@pytest.mark.parametrize("template", CONVERTED)
def test_converted_templates_give_dynamicprompts_prompts(template, peer_data):
    sdp_text, _ = from_dynamicprompts(Source("t.txt", template))
    program = loads(sdp_text, wildcard_dirs=[peer_data])
    mine = {" ".join(s.prompt.split()) for s in COMB.samples(program, 0, program.count(), 0)}
    expected = (theirs_random if "=!" in template else theirs)(template, peer_data, squash=" ")
    assert mine == expected, sdp_text


def test_a_converted_template_reads_its_wildcard_files_as_dynamicprompts_does(tmp_path):
    folder = write_files(tmp_path, {"faces.txt": "<o> <o>\nName[1]\n}:-)\n{happy|sad} face\n"})
    sdp_text, _ = from_dynamicprompts(Source("t.txt", "a __faces__ [x]"))
    assert "@wildcard_lines = literal\n" in sdp_text
    program = loads(sdp_text, wildcard_dirs=[folder])
    mine = {s.prompt for s in COMB.samples(program, 0, program.count(), 0)}
    assert (
        mine
        == theirs("a __faces__ [x]", folder, squash=" ")
        == {"a <o> <o> [x]", "a Name[1] [x]", "a }:-) [x]", "a happy face [x]", "a sad face [x]"}
    )
    assert "@wildcard_lines" not in from_dynamicprompts(Source("t.txt", "a {b|c}"))[0]


def test_convert_writes_slots_and_refuses_with_the_original_place(tmp_path, capsys):
    src = write_files(
        tmp_path, {"t.txt": "${animal=!{cat|dog}} a [small] ${animal}\n{a |b}c\n", "bad.txt": "ok\n {~a|b}"}
    )
    out = tmp_path / "t.sdp"
    assert main(["convert", "--from", "dynamicprompts", str(src / "t.txt"), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "animal = cat | dog\nprompt = a \\[small\\] <animal> {a|b}c\n" in text
    assert "alternative here ends with spaces" in capsys.readouterr().err
    assert main(["convert", "--from", "dynamicprompts", str(src / "bad.txt")]) == 2
    assert f"{src / 'bad.txt'}:2:2: error: '~'" in capsys.readouterr().err
    (src / "jinja.txt").write_text("a {{ c }}\n{% for c in ['red', 'blue'] %}b{% endfor %}", encoding="utf-8")
    assert main(["convert", "--from", "dynamicprompts", str(src / "jinja.txt")]) == 2
    assert f"{src / 'jinja.txt'}:2:1: error: '{{%' starts a Jinja2 statement" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# generated: templates of the peer's constructs, the same prompts

WORD = st.sampled_from(["a", "b", "cat", "red", "x y"])


@st.composite
def peer_templates(draw) -> str:
    """Variables set without '!', wraps, '!' methods, wildcards found by lookup."""
    names = []
    head = []
    for k in range(draw(st.integers(0, 2))):
        alts = draw(st.lists(WORD, min_size=1, max_size=3, unique=True))
        head.append(f"${{v{k}={{{'|'.join(alts)}}}}}")
        names.append(f"v{k}")

    def part(depth: int) -> str:
        kinds = ["word", "word", "choice", "wild"] + (["var"] if names else []) + (["wrap"] if depth else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "word":
            return draw(WORD)
        if kind == "choice":
            alts = draw(st.lists(WORD, min_size=1, max_size=3, unique=True))
            return "{" + draw(st.sampled_from(["", "!"])) + "|".join(alts) + "}"
        if kind == "wild":
            return draw(
                st.sampled_from(
                    ["__canine__", "__animals/all-references__", "__shapes__", "__flavors/bitter__"]
                )
            )
        if kind == "var":
            return "${" + draw(st.sampled_from(names)) + "}"
        marker = draw(st.sampled_from(["...", "…", ""]))
        return "%{" + draw(WORD) + " " + marker + " " + draw(WORD) + "$$" + part(0) + "}"

    body = " ".join(part(1) for _ in range(draw(st.integers(1, 3))))
    return " ".join(head + [body])


@settings(max_examples=60, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(peer_templates())
def test_generated_peer_templates_give_the_same_prompts(peer_data, template):
    assert ours(template, peer_data) == theirs(template, peer_data), template
