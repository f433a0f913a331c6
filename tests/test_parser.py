"""Error messages: every one names file:line:col, shows the line with a caret under the
place, and says what to do (docs/language.md, Errors)."""

from __future__ import annotations

import pytest

from stable_discovery.errors import SdpError, Source, TemplateError
from stable_discovery.language.parser import MAX_NESTING, grammar_path, is_definitions_file, parse, parse_bare
from stable_discovery.language.program import load, loads
from stable_discovery.language.syntax import Choice, SlotRef, Text, WildcardRef
from tests.helpers import error, expand


def check(err: TemplateError, where: str, message: str, line: str, col: int, hint: str | None = None):
    """The formatted error is exactly: location + message, the line, a caret, the hint."""
    lines = err.format().split("\n")
    assert lines[0] == f"{where}: error: {message}"
    assert lines[1] == "    " + line
    pad = "".join("\t" if ch == "\t" else " " for ch in line[: col - 1])
    assert lines[2] == "    " + pad + "^"
    if hint is None:
        assert len(lines) == 3
    else:
        assert lines[3] == "hint: " + hint
    assert err.exit_code == 2
    assert isinstance(err, SdpError)


# ---------------------------------------------------------------------------------------
# brackets


def test_unclosed_brace_in_a_bare_template():
    check(error("a {b|c"), "<template>:1:7", "unclosed '{' opened at 1:3", "a {b|c", 7, "add the closing '}'")


def test_unclosed_bracket():
    check(error("a [b"), "<template>:1:5", "unclosed '[' opened at 1:3", "a [b", 5, "add the closing ']'")


def test_unclosed_brace_on_a_definition_line():
    err = error("s = a | {b | c\nprompt = <s>")
    check(
        err,
        "<template>:1:15",
        "unclosed '{' opened at 1:9",
        "s = a | {b | c",
        15,
        "close it with '}' on the same line, or write \\{ for a literal character",
    )


def test_unclosed_brace_reports_the_innermost():
    err = error("prompt = {a|{b|c}|[d")
    assert err.message == "unclosed '[' opened at 1:19"


def test_unclosed_in_a_later_line_of_a_bare_template():
    check(
        error("x\ny {a|b"), "<template>:2:7", "unclosed '{' opened at 2:3", "y {a|b", 7, "add the closing '}'"
    )


def test_unmatched_closing_brace():
    check(error("a}"), "<template>:1:2", "'}' without a matching '{'", "a}", 2, "write \\} for a literal '}'")


def test_unmatched_closing_bracket():
    check(
        error("prompt = x]"),
        "<template>:1:11",
        "']' without a matching '['",
        "prompt = x]",
        11,
        "write \\] for a literal ']'",
    )


def test_extra_closing_brace_after_a_choice():
    check(
        error("prompt = {a|b}}"),
        "<template>:1:15",
        "'}' without a matching '{'",
        "prompt = {a|b}}",
        15,
        "write \\} for a literal '}'",
    )


def test_mismatched_brackets():
    check(error("{a]"), "<template>:1:3", "'{' opened at 1:1 is closed by ']'", "{a]", 3, "close it with '}'")
    check(
        error("prompt = {a|[b}]"),
        "<template>:1:15",
        "'[' opened at 1:13 is closed by '}'",
        "prompt = {a|[b}]",
        15,
        "close it with ']'",
    )


def test_escaped_brackets_do_not_count():
    assert expand("\\{ \\[ \\} \\]") == ["{ [ } ]"]
    assert expand("{a\\}|b}") == ["a}", "b"]


def test_brackets_inside_comments_do_not_count():
    assert expand("x # {unclosed [") == ["x"]
    assert expand("prompt = x # }\n".replace("prompt = ", "")) == ["x"]


def test_multi_select_unclosed():
    check(
        error("prompt = {2$$a|b"),
        "<template>:1:17",
        "unclosed '{' opened at 1:10",
        "prompt = {2$$a|b",
        17,
        "add the closing '}'",
    )


def test_nesting_limit():
    deep = "{" * (MAX_NESTING + 1) + "x" + "}" * (MAX_NESTING + 1)
    err = error(deep)
    assert err.message == f"nesting deeper than {MAX_NESTING} levels of {{}} and []"
    assert err.location == f"<template>:1:{MAX_NESTING + 1}"
    assert err.hint == "flatten the template, or move inner parts into slots"


def test_nesting_at_the_limit_is_fine():
    ok = "{" * MAX_NESTING + "x|y" + "}" * MAX_NESTING
    assert expand(ok) == ["x", "y"]
    mixed = "[{" * (MAX_NESTING // 2) + "x" + "}]" * (MAX_NESTING // 2)
    assert loads(mixed).count() == MAX_NESTING // 2 + 1


# ---------------------------------------------------------------------------------------
# definitions


def test_unknown_slot_with_suggestion():
    err = error("subject = a dog\nprompt = <subjet> runs")
    check(
        err, "<template>:2:10", "unknown slot <subjet>: did you mean <subject>?", "prompt = <subjet> runs", 10
    )


def test_unknown_slot_without_suggestion_lists_defined_slots():
    err = error("colour = red\nshape = box\nprompt = <zzz>")
    check(
        err, "<template>:3:10", "unknown slot <zzz>", "prompt = <zzz>", 10, "defined slots: <colour>, <shape>"
    )


def test_unknown_slot_when_no_other_slot_is_defined():
    err = error("prompt = <thing>")
    check(
        err,
        "<template>:1:10",
        "unknown slot <thing>",
        "prompt = <thing>",
        10,
        "define it with a line `thing = value | value`",
    )


def test_unknown_slot_in_a_bare_template():
    err = error("a <subject>")
    assert err.message == "unknown slot <subject>"
    assert err.location == "<template>:1:3"


def test_unknown_slot_inside_an_unused_slot_is_not_an_error_but_inside_a_used_one_is():
    loads("unused = <nothing>\nprompt = x")  # unused definitions are not compiled
    err = error("used = <nothing>\nprompt = <used>")
    assert err.message == "unknown slot <nothing>"
    assert err.location == "<template>:1:8"


def test_unknown_slot_only_inside_an_optional_is_still_an_error():
    err = error("prompt = x [<maybe>]")
    assert err.message == "unknown slot <maybe>"


def test_slot_cycle():
    err = error("prompt = <a>\na = x <b>\nb = y <a>")
    check(
        err,
        "<template>:3:7",
        "slots refer to each other in a cycle: <a> → <b> → <a>",
        "b = y <a>",
        7,
        "a slot cannot contain itself, directly or through other slots",
    )


def test_slot_refers_to_itself():
    err = error("prompt = <a>\na = x | <a>")
    assert err.message == "slots refer to each other in a cycle: <a> → <a>"
    assert err.location == "<template>:2:9"


def test_prompt_refers_to_itself():
    err = error("prompt = a <prompt>")
    assert err.message == "slots refer to each other in a cycle: <prompt> → <prompt>"


def test_cycle_through_a_shared_slot():
    err = error("prompt = <a> <a>\na = <b>\nb = <a>")
    assert "cycle" in err.message and "<a>" in err.message


def test_cycle_inside_an_optional_is_an_error():
    err = error("prompt = x[<a>]\na = [<a>]")
    assert "cycle" in err.message


def test_duplicate_slot_definition():
    err = error("s = a\nprompt = <s>\ns = b")
    check(
        err,
        "<template>:3:1",
        "s is defined twice (first at 1:1)",
        "s = b",
        1,
        "give alternatives in one definition: name = a | b",
    )


def test_duplicate_setting_definition():
    err = error("prompt = a\n@steps = 10\n@steps = 20")
    check(
        err,
        "<template>:3:1",
        "@steps is defined twice (first at 2:1)",
        "@steps = 20",
        1,
        "give alternatives in one definition: name = a | b",
    )


def test_missing_prompt():
    err = error("subject = a dog\n")
    check(
        err,
        "<template>:1:1",
        "no `prompt = …` definition: the prompt is the template's entry point",
        "subject = a dog",
        1,
        "add a line such as: prompt = <subject> <action>[, <style>]",
    )


def test_missing_prompt_suggests_a_near_name():
    err = error("prompts = x")
    assert err.message.endswith("(is <prompts> meant to be it?)")


def test_negative_without_prompt_is_missing_prompt():
    assert "no `prompt = …`" in error("negative = x").message


def test_slot_and_setting_with_one_name():
    err = error("prompt = <steps>\nsteps = 1\n@steps = 3")
    check(
        err,
        "<template>:2:1",
        "'steps' is both a slot and a setting; the trace needs one name for one thing",
        "steps = 1",
        1,
    )


def test_continuation_before_any_definition():
    err = error("| x\nprompt = a")
    assert err.location == "<template>:1:1"
    assert err.message.startswith("unexpected '|'")


def test_a_one_line_template_with_settings_is_told_to_name_its_prompt():
    """Settings make a file one of definitions: the bare line is then not a template."""
    err = error("a {cat|dog} in the rain\n@steps = 20")
    assert err.message == "expected '=' after the name 'a'"
    assert err.hint is not None and "write the template as `prompt = …`" in err.hint
    err = error("{a|b} in the rain\n@steps = 20")
    assert err.hint is not None and "`prompt = …`" in err.hint


def test_line_that_is_not_a_definition():
    err = error("prompt = a\n  foo bar")
    check(
        err,
        "<template>:2:6",
        "expected '=' after the name 'foo'",
        "  foo bar",
        6,
        "a definition is `name = alternative | alternative`",
    )


def test_equal_sign_without_a_name():
    err = error("prompt = a\n= x")
    assert err.location == "<template>:2:1"
    assert "expected" in err.message and "a name" in err.message


def test_setting_without_a_value_sign():
    err = error("prompt = a\n@steps")
    check(err, "<template>:2:7", "unexpected end of input, expected '='", "@steps", 7)


def test_at_sign_without_a_name():
    err = error("@ = x\nprompt = a")
    assert err.location == "<template>:1:2"
    assert err.message.endswith("expected a name")


def test_newline_closes_nothing_in_definitions_even_with_continuation():
    err = error("prompt = {a\n  | b}")
    assert err.message == "unclosed '{' opened at 1:10"


# ---------------------------------------------------------------------------------------
# weights


def test_zero_weights_in_an_inline_choice():
    check(
        error("prompt = {0::a|0::b}"),
        "<template>:1:10",
        "every alternative has weight 0, so none can be chosen",
        "prompt = {0::a|0::b}",
        10,
        "give at least one alternative a positive weight",
    )


def test_zero_weights_in_a_slot():
    check(
        error("s = 0::a | 0::b\nprompt = <s>"),
        "<template>:1:1",
        "every alternative has weight 0, so none can be chosen",
        "s = 0::a | 0::b",
        1,
        "give at least one alternative a positive weight",
    )


def test_zero_weights_in_a_multi_select():
    err = error("prompt = {1$$0::a|0::b}")
    assert err.message == "every alternative has weight 0, so none can be chosen"
    assert err.location == "<template>:1:10"
    # selecting none of them is fine
    assert expand("{0$$0::a|0::b}") == [""]


def test_zero_weights_in_a_setting():
    check(
        error("prompt = a\n@steps = 0::10 | 0::20"),
        "<template>:2:1",
        "every value of @steps has weight 0",
        "@steps = 0::10 | 0::20",
        1,
    )


def test_one_zero_weight_is_fine():
    assert loads("prompt = {0::a|b}\n@steps = 0::10 | 20").count() == 4


def test_zero_weight_in_an_optional_is_fine():
    assert expand("[0::a]") == ["", "a"]


# ---------------------------------------------------------------------------------------
# settings


def test_unknown_setting_lists_the_known_ones():
    err = error("prompt = a\n@xyzzy = 2")
    check(
        err,
        "<template>:2:1",
        "unknown setting @xyzzy",
        "@xyzzy = 2",
        1,
        "known settings: @count, @seed, @sampler, @seed_mode, @batch, @wildcards, @wildcard_lines, "
        "@steps, @guidance, @size, @width, @height, @model, @scheduler, @weighting, @device, @optimize, "
        "@compile",
    )


def test_unknown_setting_with_suggestion():
    err = error("@seeds = 2\nprompt = a")
    assert err.message == "unknown setting @seeds: did you mean @seed?"
    assert err.hint.startswith("known settings: @count")


@pytest.mark.parametrize(
    "line, message, col",
    [
        ("@steps = x", "@steps: expected a step count, got 'x'", 10),
        ("@steps = 1001", "@steps: expected a step count from 1 to 1000, got 1001", 10),
        ("@steps = 0", "@steps: expected a step count from 1 to 1000, got 0", 10),
        ("@steps = 10 | x", "@steps: expected a step count, got 'x'", 15),
        ("@steps = 10 |", "@steps: expected a step count, got ''", 14),
        ("@steps =  3:: x", "@steps: expected a step count, got 'x'", 15),
        ("@width = 7", "@width: expected a size in pixels from 8 to 8192, got 7", 10),
        ("@width = 100", "@width: sizes must be multiples of 8, got 100", 10),
        ("@height = 9000", "@height: expected a size in pixels from 8 to 8192, got 9000", 11),
        ("@size = 100x100", "@size: sizes must be multiples of 8, got 100", 9),
        ("@size = 768", "@size: expected WIDTHxHEIGHT such as 768x768, got '768'", 9),
        (
            "@batch = 0",
            "@batch: expected a batch size from 1 to 4096, got 0; or auto (the largest batch that fits)",
            10,
        ),
        ("@seed_mode = foo", "@seed_mode: expected one of index, random; got 'foo'", 14),
        ("@guidance = -1", "@guidance: expected a non-negative number, got '-1'", 13),
        ("@guidance = nan", "@guidance: expected a non-negative number, got 'nan'", 13),
        ("@guidance = inf", "@guidance: expected a non-negative number, got 'inf'", 13),
        ("@guidance = lots", "@guidance: expected a number, got 'lots'", 13),
        ("@count = -1", "@count: expected an integer at least 0, got -1", 10),
        ("@count = many", "@count: expected an integer, got 'many'", 10),
        ("@seed = x", "@seed: expected an integer, got 'x'", 9),
        ("@model =", "@model: expected a value, got nothing", 9),
        (
            "@scheduler = foo",
            "@scheduler: expected one of ddim, pndm, lms, euler, euler_a, heun, dpm++2m, "
            "dpm++2m_karras, unipc, flow_euler; got 'foo'",
            14,
        ),
    ],
)
def test_bad_setting_values(line, message, col):
    err = error("prompt = a\n" + line)
    check(err, "<template>:2:" + str(col), message, line, col)


@pytest.mark.parametrize("name", ["count", "seed", "sampler", "seed_mode", "batch"])
def test_single_valued_settings_refuse_several_values(name):
    value = {"count": "1", "seed": "1", "sampler": "random", "seed_mode": "index", "batch": "1"}[name]
    line = f"@{name} = {value} | {value}"
    err = error("prompt = a\n" + line)
    assert err.message == f"@{name} takes one value, not 2"
    assert err.location == f"<template>:2:{line.rindex(value) + 1}"


def test_setting_value_must_be_plain_text():
    err = error("prompt = a\n@steps = {10|20}")
    check(
        err,
        "<template>:2:10",
        "a value of @steps must be plain text, not a template",
        "@steps = {10|20}",
        10,
        "list the values with '|': @steps = 30 | 50",
    )


def test_size_and_width_together():
    err = error("prompt = 1\n@size = 768x512\n@width = 512")
    check(err, "<template>:2:1", "use either @size or @width/@height, not both", "@size = 768x512", 1)


# ---------------------------------------------------------------------------------------
# wildcards


def test_unknown_wildcard_with_suggestion(wildcards):
    d = wildcards({"colours": ["red"]})
    err = error("a __colour__ ball", [d])
    check(
        err,
        "<template>:1:3",
        "unknown wildcard __colour__: did you mean __colours__?",
        "a __colour__ ball",
        3,
        f"wildcard folders searched: {d}; a wildcard is a file colour.txt in one of them "
        "(--wildcards DIR adds a folder)",
    )


def test_unknown_wildcard_without_folders(tmp_path):
    err = error("prompt = __nothing__", [tmp_path / "missing"])
    assert err.message == "unknown wildcard __nothing__"
    assert err.location == "<template>:1:10"
    assert "nothing.txt" in err.hint


def test_unknown_glob(wildcards):
    d = wildcards({"a": ["x"]})
    assert error("__zzz/*__", [d]).message == "unknown wildcard __zzz/*__"


def test_unknown_wildcard_nested_in_a_wildcard_names_the_file(wildcards):
    d = wildcards({"outer": ["fine", "uses __inner__"]})
    err = error("__outer__", [d])
    path = str(d / "outer.txt")
    check(
        err,
        f"{path}:2:6",
        "unknown wildcard __inner__",
        "uses __inner__",
        6,
        f"wildcard folders searched: {d}; a wildcard is a file inner.txt in one of them "
        "(--wildcards DIR adds a folder)",
    )


def test_wildcard_cycle(wildcards):
    d = wildcards({"cyc1": ["__cyc2__"], "cyc2": ["q __cyc1__"]})
    err = error("__cyc1__", [d])
    assert err.message == "wildcards refer to each other in a cycle: __cyc1__ → __cyc2__ → __cyc1__"
    assert err.location == f"{d / 'cyc2.txt'}:1:3"


def test_wildcard_refers_to_itself(wildcards):
    d = wildcards({"me": ["a", "b __me__"]})
    err = error("__me__", [d])
    assert err.message == "wildcards refer to each other in a cycle: __me__ → __me__"


def test_wildcard_cycle_through_multi_select(wildcards):
    d = wildcards({"a": ["x", "{2$$__a__}"]})
    assert "cycle" in error("__a__", [d]).message


def test_wildcard_syntax_error_names_the_file_and_line(wildcards):
    d = wildcards({"bad": ["ok", "fine", "{a|b"]})
    check(
        error("__bad__", [d]),
        f"{d / 'bad.txt'}:3:5",
        "unclosed '{' opened at 3:1",
        "{a|b",
        5,
        "add the closing '}'; if this wildcard file is data (dynamicprompts' packs are), read it so: "
        "--wildcards-literal, @wildcard_lines = literal, or `# sdp: literal` on its first line",
    )


def test_empty_wildcard_file(wildcards):
    d = wildcards({"empty": ["", "# only a comment", "   "]})
    check(
        error("x __empty__", [d]),
        "<template>:1:3",
        "wildcard __empty__ has no lines",
        "x __empty__",
        3,
        "a wildcard file lists one value per line; blank and # lines are skipped",
    )


def test_wildcard_slot_unknown(wildcards):
    d = wildcards({"w": ["<subject>"]})
    err = error("prompt = __w__", [d])
    assert err.message == "unknown slot <subject>"
    assert err.location == f"{d / 'w.txt'}:1:1"


def test_wildcard_file_with_invalid_utf8(tmp_path):
    d = tmp_path / "w"
    d.mkdir()
    (d / "bin.txt").write_bytes(b"ok\n\xff\xfe\n")
    err = error("__bin__", [d])
    assert err.message == "not valid UTF-8 (byte 0xff)"
    assert err.location.endswith("bin.txt:2:1")
    assert err.hint == "save the file as UTF-8"


# ---------------------------------------------------------------------------------------
# files


def test_error_names_the_file(tmp_path):
    path = tmp_path / "t.sdp"
    path.write_text("subject = x\nprompt = <subjet>\n", encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        load(path)
    assert info.value.format().startswith(
        f"{path}:2:10: error: unknown slot <subjet>: did you mean <subject>?"
    )


def test_error_in_a_crlf_file_has_the_right_column(tmp_path):
    path = tmp_path / "t.sdp"
    path.write_bytes(b"s = a\r\nprompt = <t>\r\n")
    with pytest.raises(TemplateError) as info:
        load(path)
    check(info.value, f"{path}:2:10", "unknown slot <t>", "prompt = <t>", 10, "defined slots: <s>")


def test_missing_file(tmp_path):
    with pytest.raises(TemplateError) as info:
        load(tmp_path / "nope.sdp")
    assert info.value.format() == f"error: template file not found: {tmp_path / 'nope.sdp'}"


def test_folder_instead_of_a_file(tmp_path):
    with pytest.raises(TemplateError) as info:
        load(tmp_path)
    assert "is a folder" in str(info.value)


def test_invalid_utf8_names_the_place(tmp_path):
    path = tmp_path / "t.sdp"
    path.write_bytes(b"prompt = ok\nx = ab\xc3(\n")
    with pytest.raises(TemplateError) as info:
        load(path)
    assert info.value.format().splitlines()[0] == f"{path}:2:7: error: not valid UTF-8 (byte 0xc3)"
    assert info.value.format().splitlines()[-1] == "hint: save the file as UTF-8"


def test_nul_character(tmp_path):
    path = tmp_path / "t.sdp"
    path.write_bytes(b"prompt = a\x00b\n")
    with pytest.raises(TemplateError) as info:
        load(path)
    assert info.value.message == "contains a NUL character; is this a binary file?"
    assert info.value.location == f"{path}:1:11"
    assert "\x00" not in info.value.format()


def test_nul_in_text():
    err = error("a\x00b")
    assert err.location == "<template>:1:2"


# ---------------------------------------------------------------------------------------
# how the caret line is shown


def test_long_lines_are_shortened_around_the_caret():
    line = "x" * 500 + " <nope> " + "y" * 500
    err = error(line)
    shown = err.format().split("\n")
    assert shown[0] == "<template>:1:502: error: unknown slot <nope>"
    assert shown[1].startswith("    ...") and len(shown[1]) < 140
    caret = shown[2].index("^")
    assert shown[1][caret] == "<"


def test_tabs_keep_the_caret_aligned():
    err = error("s = a\t| {b\nprompt = <s>")
    check(
        err,
        "<template>:1:11",
        "unclosed '{' opened at 1:9",
        "s = a\t| {b",
        11,
        "close it with '}' on the same line, or write \\{ for a literal character",
    )


def test_unprintable_characters_are_replaced_in_the_shown_line():
    err = error("a\x07 <nope>")
    assert "\x07" not in err.format()
    assert err.format().split("\n")[1] == "    a\ufffd <nope>"


def test_str_of_an_error_has_the_location():
    err = error("a}")
    assert str(err) == "<template>:1:2: '}' without a matching '{'"


def test_error_without_source_formats_plainly():
    assert TemplateError("boom").format() == "error: boom"
    assert TemplateError("boom", Source("f.sdp", "x")).format() == "f.sdp: error: boom"


def test_source_line_col_with_first_line():
    src = Source("w.txt", "abc", first_line=7)
    assert src.where(2) == "w.txt:7:3"
    assert src.line_text(7) == "abc"


# ---------------------------------------------------------------------------------------
# the syntax tree


def test_grammar_is_found_from_the_checkout():
    assert grammar_path().name == "sdp.lark"
    assert grammar_path().is_file()


def test_definitions_file_detection():
    assert is_definitions_file("x = 1")
    assert is_definitions_file("  @steps = 1")
    assert is_definitions_file("text\nname=1")
    assert not is_definitions_file("a photo = nice")
    assert not is_definitions_file("{a|b} = c")
    assert not is_definitions_file("")


def test_parse_tree_of_a_bare_template():
    nodes = parse_bare(Source("t", "a <s> __w__ {x|2::y}"))
    assert [type(n) for n in nodes] == [Text, SlotRef, Text, WildcardRef, Text, Choice]
    choice = nodes[-1]
    assert [a.text for a in choice.alternatives] == ["x", "y"]
    assert [a.weight for a in choice.alternatives] == [1.0, 2.0]


def test_parse_tree_of_multi_select_prefixes():
    def select(text):
        (choice,) = parse_bare(Source("t", text))
        return (choice.select.low, choice.select.high, choice.select.joiner)

    assert select("{2$$a|b}") == (2, 2, ",")
    assert select("{1-3$$a|b}") == (1, 3, ",")
    assert select("{-3$$a|b}") == (1, 3, ",")
    assert select("{2-$$a|b}") == (2, None, ",")
    assert select("{2$$ and $$a|b}") == (2, 2, " and ")
    assert select("{ 1 - 2 $$a|b}") == (1, 2, ",")


def test_parse_tree_of_an_optional():
    (choice,) = parse_bare(Source("t", "[a|b]"))
    assert choice.optional
    assert [a.text for a in choice.alternatives] == ["", "a|b"]


def test_parse_of_definitions():
    parsed = parse(Source("t", "s = a\n  | b\n@steps = 1\nprompt = <s>"))
    assert parsed.bare is None
    assert [(d.name, d.is_setting, len(d.alternatives)) for d in parsed.definitions] == [
        ("s", False, 2),
        ("steps", True, 1),
        ("prompt", False, 1),
    ]


def test_alternative_start_points_at_its_first_character():
    parsed = parse(Source("t", "s =   abc |  def"))
    text = "s =   abc |  def"
    starts = [a.start for a in parsed.definitions[0].alternatives]
    assert [text[i] for i in starts] == ["a", "d"]
