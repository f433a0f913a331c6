"""The stages of compiling a template, each on its own: definitions, reference counts,
wildcard lines, the compiled space and its limits (program.compile_source chains them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.compiler import SEPARATOR, compile_space
from stable_discovery.language.definitions import definitions_of, settings_specs
from stable_discovery.language.measure import MAX_PROMPT_CHARS, check_limits, measure
from stable_discovery.language.parser import parse
from stable_discovery.language.program import compile_source
from stable_discovery.language.references import count_references
from stable_discovery.language.settings import SettingSpec
from stable_discovery.language.syntax import Text, WildcardRef
from stable_discovery.language.wildcard_lines import WildcardLines
from stable_discovery.language.wildcards import WildcardLibrary
from stable_discovery.space.nodes import Lit, Pick, Ref, Seq


def _definitions(text: str, extra: tuple[SettingSpec, ...] = ()):
    source = Source("t.sdp", text)
    return source, definitions_of(source, parse(source), settings_specs(extra))


@pytest.fixture
def wild(tmp_path: Path) -> WildcardLines:
    (tmp_path / "colour.txt").write_text("red\n<shade> green\nred\n# a comment\n\n{blue|navy}\n")
    (tmp_path / "empty.txt").write_text("# nothing here\n")
    return WildcardLines(WildcardLibrary([tmp_path]))


# ---------------------------------------------------------------------------------------
# definitions


def test_definitions_sort_slots_and_settings_in_source_order():
    _, d = _definitions("b = x | y\nprompt = <b>\n@steps = 20 | 2:: 30\n@seed = 4\na = z")
    assert list(d.slots) == ["b", "prompt", "a"]
    assert list(d.settings) == ["steps", "seed"]
    steps = d.settings["steps"]
    assert steps.values == (20, 30) and steps.texts == ("20", "30") and steps.weights == (1.0, 2.0)
    assert steps.sampled and not d.settings["seed"].sampled
    assert not d.is_bare


def test_a_bare_template_defines_its_prompt_alone():
    source, d = _definitions("  a {red|blue} ball \n")
    assert d.is_bare and d.settings == {}
    (alt,) = d.slots["prompt"].alternatives
    assert alt.text == "a {red|blue} ball" and alt.weight == 1.0 and d.slots["prompt"].source is source


def test_extra_settings_are_known_and_override_builtins():
    spec = SettingSpec("steps", lambda t: "custom " + t, "plugin steps")
    _, d = _definitions("prompt = a\n@steps = 7", (spec,))
    assert d.settings["steps"].values == ("custom 7",)
    assert d.specs["steps"] is spec


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("prompt = a\nprompt = b", "prompt is defined twice (first at 1:1)", 11),
        ("prompt = a\n@steps = x", "@steps: expected a step count, got 'x'", 20),
        ("promt = a", "no `prompt = …` definition: the prompt is the template's entry point "
         "(is <promt> meant to be it?)", 0),
        ("prompt = a\nsteps = b\n@steps = 3", "'steps' is both a slot and a setting; the trace needs "
         "one name for one thing", 11),
        ("prompt = a\n@width = 64\n@size = 64x64", "use either @size or @width/@height, not both", 23),
    ],
)  # fmt: skip
def test_definition_mistakes_are_located(text, message, offset):
    with pytest.raises(TemplateError) as err:
        _definitions(text)
    assert err.value.message == message and err.value.offset == offset


# ---------------------------------------------------------------------------------------
# references


def test_a_slot_referenced_twice_is_shared(wild):
    _, d = _definitions("a = x | y\nb = <a> | z\nprompt = <a> {<b>|q}\nnegative = <b>")
    assert count_references(d.slots, ["prompt", "negative"], wild) == {"a": 2, "b": 2}


def test_a_slot_inside_a_wildcard_line_counts_as_shared(wild):
    _, d = _definitions("shade = pale | dark\nprompt = __colour__")
    assert count_references(d.slots, ["prompt"], wild) == {"shade": 2}


def test_the_first_undefined_slot_in_source_order_is_reported(wild):
    _, d = _definitions("prompt = {<one>|<two>}\nnegative = <three>\nother = x")
    with pytest.raises(TemplateError) as err:
        count_references(d.slots, ["prompt", "negative"], wild)
    assert err.value.message == "unknown slot <one>" and err.value.hint == "defined slots: <other>"


# ---------------------------------------------------------------------------------------
# wildcard lines


def test_wildcard_lines_are_distinct_parsed_and_cached(wild):
    src = Source("t.sdp", "__colour__")
    lines = wild.get(WildcardRef("colour", 0), src)
    assert [line.text for line in lines] == ["red", "<shade> green", "{blue|navy}"]
    assert [line.source.first_line for line in lines] == [1, 2, 6]
    assert lines[0][0] == (Text("red", 0),)
    assert wild.get(WildcardRef("colour", 0), src) is lines


def test_unknown_and_empty_wildcards_are_errors_at_the_reference(wild):
    src = Source("t.sdp", "x __colr__ __empty__")
    with pytest.raises(TemplateError) as err:
        wild.get(WildcardRef("colr", 2), src)
    assert err.value.message == "unknown wildcard __colr__: did you mean __colour__?"
    assert err.value.offset == 2
    with pytest.raises(TemplateError) as err:
        wild.get(WildcardRef("empty", 11), src)
    assert err.value.message == "wildcard __empty__ has no lines" and err.value.offset == 11


# ---------------------------------------------------------------------------------------
# the compiled space


def test_compile_space_lays_out_prompt_negative_and_sampled_settings(tmp_path):
    source, d = _definitions("a = x | y\nprompt = <a> <a>\nnegative = bad\n@steps = 3 | 4\n@seed = 1")
    space = compile_space(source, d, WildcardLibrary([tmp_path]))
    assert space.used_slots == ("prompt", "a", "negative")
    assert space.shared_slots == ("a",)
    assert space.sampled_settings == ("steps",)
    assert isinstance(space.root, Seq)
    prompt, sep1, negative, sep2, steps, sep3 = space.root.children
    assert isinstance(prompt, Seq) and [type(k) for k in prompt.children] == [Ref, Lit, Ref]
    assert isinstance(negative, Lit) and negative.text == "bad"
    assert all(isinstance(s, Lit) and s.text == SEPARATOR for s in (sep1, sep2, sep3))
    assert isinstance(steps, Pick) and steps.name == "steps" and steps.texts == ("3", "4")


def test_compile_source_equals_the_stages_chained(tmp_path):
    text = "a = x | 2:: y\nprompt = <a> {1-2$$<a>|b|c}\n@guidance = 5 | 7"
    program = compile_source(Source("t.sdp", text), [tmp_path])
    source, d = _definitions(text)
    space = compile_space(source, d, WildcardLibrary([tmp_path]))
    assert program.count() == 2 * (3 + 6) * 2  # <a>, 1 or 2 of 3 in order, @guidance
    assert measure(program.root) == measure(space.root)
    assert (program.used_slots, program.shared_slots, program.sampled_settings) == (
        space.used_slots,
        space.shared_slots,
        space.sampled_settings,
    )


def test_limits_refuse_a_prompt_that_can_grow_too_long():
    source = Source("t.sdp", "prompt = x")
    half = Lit("x" * (MAX_PROMPT_CHARS // 2 + 1))
    check_limits(Seq([half, Lit(" ")]), source, 0)  # just over half the limit: fine
    with pytest.raises(TemplateError) as err:
        check_limits(Seq([half, Pick([half, Lit("y")], [1.0, 1.0])]), source, 0)
    assert err.value.message.startswith("the template can make prompts of up to 50,000,002 characters")
