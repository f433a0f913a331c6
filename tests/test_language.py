"""Every construct of the .sdp language (docs/language.md)."""

from __future__ import annotations

import pytest

from stable_discovery.errors import TemplateError
from stable_discovery.language.program import load, loads
from stable_discovery.plugins import get_sampler
from tests.helpers import expand, records, traces

# ---------------------------------------------------------------------------------------
# literal text and whitespace


def test_plain_text_is_one_prompt():
    assert expand("a photo of a cat") == ["a photo of a cat"]


def test_whitespace_is_collapsed_and_stripped():
    assert expand("  a \t photo   of\ta cat  ") == ["a photo of a cat"]


def test_empty_and_blank_templates_are_refused():
    """An empty file is a mistake (the wrong file, a template not saved), not a request
    for images of an empty prompt."""
    for text in ("", "   \n\t ", "# only a comment\n\n"):
        with pytest.raises(TemplateError, match="the template is empty") as info:
            expand(text)
        assert info.value.hint and "prompt = " in info.value.hint


def test_non_ascii_text_passes_through():
    assert expand("ein Hund {im Café|am Meer} 🐕") == ["ein Hund im Café 🐕", "ein Hund am Meer 🐕"]


# ---------------------------------------------------------------------------------------
# inline choices


def test_choice_gives_each_alternative():
    assert expand("a {red|green|blue} ball") == ["a red ball", "a green ball", "a blue ball"]


def test_alternatives_are_trimmed():
    assert expand("x{ a | b }y") == ["xay", "xby"]


def test_nested_choices():
    assert expand("{a|{b|c} d}") == ["a", "b d", "c d"]
    assert expand("{1|{2|{3|{4|5}}}}") == ["1", "2", "3", "4", "5"]


def test_empty_alternatives_are_kept_once():
    assert expand("x {a||b} y") == ["x a y", "x y", "x b y"]
    assert expand("{|}") == [""]
    assert expand("{}") == [""]


def test_identical_alternatives_count_once():
    assert expand("{a|b|a}") == ["a", "b"]
    assert loads("{a| a |b}").count() == 2


def test_odometer_order_leftmost_slowest():
    assert expand("{a|b}{1|2|3}") == ["a1", "a2", "a3", "b1", "b2", "b3"]


def test_pipe_outside_braces_is_text_in_a_bare_template():
    assert expand("a|b") == ["a|b"]
    assert expand("{x|y} | z") == ["x | z", "y | z"]


# ---------------------------------------------------------------------------------------
# weights


def test_weights_do_not_change_the_space():
    assert expand("{3::a|b|0.5::c}") == ["a", "b", "c"]
    assert expand("{ 2 :: a | .5::b}") == ["a", "b"]


def test_zero_weight_alternative_still_exists_combinatorially():
    assert expand("{0::a|b}") == ["a", "b"]


def test_zero_weight_alternative_is_never_sampled():
    program = loads("{0::a|b}")
    prompts = {s.prompt for s in get_sampler("random").samples(program, 0, 500, 0)}
    assert prompts == {"b"}


def test_weight_syntax_outside_a_choice_start_is_text():
    assert expand("3::a") == ["3::a"]
    assert expand("{a 3::b|c}") == ["a 3::b", "c"]


def test_weight_in_definitions():
    program = loads("s = 9:: a | b\nprompt = <s>")
    assert [s.prompt for s in records(program)] == ["a", "b"]
    assert program.slots["s"].alternatives[0].weight == 9.0


# ---------------------------------------------------------------------------------------
# optional parts


def test_optional_part():
    assert expand("a[ b]") == ["a", "ab"]
    assert expand("a [b] c") == ["a c", "a b c"]


def test_optional_is_empty_or_alternative():
    assert loads("[x]").count() == loads("{|x}").count() == 2
    assert expand("[x]") == expand("{|x}") == ["", "x"]


def test_optional_with_alternatives():
    assert expand("[a|b]") == ["", "a", "b"]
    assert expand("[a|b]") == expand("{|{a|b}}")


def test_optional_with_alternatives_is_absent_half_the_time():
    program = loads("[a|b|c|d]")
    samples = list(get_sampler("random").samples(program, 0, 4000, 7))
    absent = sum(1 for s in samples if s.prompt == "")
    assert 1800 < absent < 2200


def test_repeated_optionals_keep_both_paths():
    # a documented limitation: different choice paths that render alike are both kept
    assert expand("[x][x]") == ["", "x", "x", "xx"]


# ---------------------------------------------------------------------------------------
# multi-select


def test_multi_select_is_ordered():
    assert expand("{2$$a|b|c}") == ["a,b", "a,c", "b,a", "b,c", "c,a", "c,b"]


def test_multi_select_custom_joiner_is_verbatim():
    assert expand("{2$$ and $$a|b}") == ["a and b", "b and a"]
    assert expand("{2$$-$$a|b}") == ["a-b", "b-a"]


def test_multi_select_ranges():
    assert expand("{1-2$$a|b}") == ["a", "b", "a,b", "b,a"]
    assert expand("{-2$$a|b|c}") == expand("{1-2$$a|b|c}")
    assert loads("{-2$$a|b|c}").count() == 3 + 6
    assert loads("{2-$$a|b|c}").count() == 6 + 6
    assert expand("{0-1$$a|b}") == ["", "a", "b"]


def test_multi_select_clamps_to_the_number_of_alternatives():
    assert expand("{5$$a|b}") == ["a,b", "b,a"]
    assert loads("{3-9$$a|b|c|d}").count() == 24 + 24


def test_multi_select_zero():
    assert expand("{0$$a|b}") == [""]


def test_multi_select_spaces_in_prefix():
    assert expand("{ 2 $$a|b}") == ["a,b", "b,a"]


def test_multi_select_duplicates_count_once():
    assert expand("{2$$a|a|b}") == ["a,b", "b,a"]


def test_multi_select_with_nested_choices():
    assert loads("{2$$a|{b|c}}").count() == 4
    assert set(expand("{2$$a|{b|c}}")) == {"a,b", "a,c", "b,a", "c,a"}


def test_multi_select_large_count_is_exact():
    alts = "|".join(f"v{i}" for i in range(30))
    assert loads("{5$$" + alts + "}").count() == 30 * 29 * 28 * 27 * 26


def test_multi_select_random_picks_distinct_alternatives():
    program = loads("{3$$a|b|c|d|e}")
    for s in get_sampler("random").samples(program, 0, 300, 3):
        parts = s.prompt.split(",")
        assert len(parts) == 3 and len(set(parts)) == 3


def test_multi_select_range_random_covers_counts():
    program = loads("{1-3$$a|b|c}")
    sizes = {len(s.prompt.split(",")) for s in get_sampler("random").samples(program, 0, 300, 3)}
    assert sizes == {1, 2, 3}


# ---------------------------------------------------------------------------------------
# escapes and literal characters


@pytest.mark.parametrize("char", list("{}[]<>|#$_\\"))
def test_every_escape_gives_the_literal_character(char):
    assert expand("a\\" + char + "b") == ["a" + char + "b"]


@pytest.mark.parametrize("char", list("{}[]<>|#$_\\"))
def test_escapes_inside_choices(char):
    assert expand("{x\\" + char + "|y}") == ["x" + char, "y"]


def test_all_escapes_in_a_definition():
    program = loads("prompt = \\{ \\} \\[ \\] \\< \\> \\| \\# \\$ \\_ \\\\")
    assert [s.prompt for s in records(program)] == ["{ } [ ] < > | # $ _ \\"]


def test_escaped_bar_in_a_definition_is_not_a_separator():
    program = loads("prompt = a \\| b | c")
    assert [s.prompt for s in records(program)] == ["a | b", "c"]


def test_other_backslashes_are_kept():
    assert expand("\\(masterpiece\\) \\n \\d") == ["\\(masterpiece\\) \\n \\d"]
    assert expand("trailing\\") == ["trailing\\"]


def test_escaped_slot_and_wildcard_are_text():
    assert expand("\\<name> \\__x__") == ["<name> __x__"]


def test_dollar_percent_underscore_are_literal():
    assert expand("$5 and 100% _ a_b a__b __ c") == ["$5 and 100% _ a_b a__b __ c"]
    assert expand("{$|%}") == ["$", "%"]


def test_lora_and_other_angle_text_is_literal():
    assert expand("<lora:add_detail__v2:0.5>, x") == ["<lora:add_detail__v2:0.5>, x"]
    assert expand("{<lora:a:1>|<hypernet:b>}") == ["<lora:a:1>", "<hypernet:b>"]
    assert expand("a < b > c <> <1x>") == ["a < b > c <> <1x>"]
    assert expand("a <") == ["a <"]


def test_double_colon_is_text_when_not_a_weight():
    assert expand("a::b {c|d::e}") == ["a::b c", "a::b d::e"]


# ---------------------------------------------------------------------------------------
# comments


def test_comment_in_a_bare_template():
    assert expand("a cat # with a hat\n on a mat") == ["a cat on a mat"]


def test_comment_in_definitions():
    program = loads("# header\ns = a | b # trailing\n# between\nprompt = <s> # more")
    assert [s.prompt for s in records(program)] == ["a", "b"]


def test_escaped_hash_is_not_a_comment():
    assert expand("issue \\#5") == ["issue #5"]
    program = loads("prompt = \\#1 | #2")
    assert [s.prompt for s in records(program)] == ["#1", ""]


def test_hash_comment_inside_a_choice_line_of_a_definition():
    # the comment ends the line; the choice must be closed before it
    program = loads("prompt = {a|b} # {not|parsed")
    assert [s.prompt for s in records(program)] == ["a", "b"]


# ---------------------------------------------------------------------------------------
# bare files versus definitions files


def test_bare_file_newlines_are_spaces(tmp_path):
    path = tmp_path / "t.sdp"
    path.write_text("a photo of\n{a cat|a dog}\n# comment\nin the rain\n", encoding="utf-8")
    program = load(path)
    assert program.is_bare
    assert [s.prompt for s in records(program)] == [
        "a photo of a cat in the rain",
        "a photo of a dog in the rain",
    ]


def test_choice_may_span_lines_in_a_bare_template():
    assert expand("{a|\nb}") == ["a", "b"]


def test_definitions_file_is_detected_by_any_definition_line():
    assert loads("prompt = x").is_bare is False
    assert loads("  @steps = 3\nprompt = x").is_bare is False
    assert loads("a photo = nice").is_bare is True  # 'a photo' is not an identifier
    assert loads("2x = 4").is_bare is True
    assert expand("1 + 1 == 2 {a|b}") == ["1 + 1 == 2 a", "1 + 1 == 2 b"]


def test_equal_sign_after_a_phrase_is_text_in_a_bare_template():
    assert expand("a photo, e=mc2 {x|y}") == ["a photo, e=mc2 x", "a photo, e=mc2 y"]


def test_bare_template_is_not_traced_as_a_slot():
    program = loads("{a|b}")
    assert [traces(s) for s in records(program)] == [{"prompt{1}": (0, "a")}, {"prompt{1}": (1, "b")}]
    assert program.used_slots == ("prompt",)


# ---------------------------------------------------------------------------------------
# definitions: slots, continuation lines, CRLF


def test_slot_definition_and_reference():
    program = loads("animal = cat | dog\nprompt = a <animal>")
    assert [s.prompt for s in records(program)] == ["a cat", "a dog"]
    assert [traces(s) for s in records(program)] == [
        {"animal": (0, "cat")},
        {"animal": (1, "dog")},
    ]


def test_continuation_lines():
    text = """
animal = cat
       | dog  # a comment
       # a comment line

       | 3:: bird
prompt = <animal>
"""
    program = loads(text)
    assert [s.prompt for s in records(program)] == ["cat", "dog", "bird"]
    assert [a.weight for a in program.slots["animal"].alternatives] == [1.0, 1.0, 3.0]


def test_continuation_after_an_empty_first_line():
    program = loads("prompt =\n  | a\n  | b")
    assert [s.prompt for s in records(program)] == ["a", "b"]
    assert len(program.slots["prompt"].alternatives) == 2


def test_definition_may_be_empty():
    program = loads("prompt = x<e>y\ne =")
    assert [s.prompt for s in records(program)] == ["xy"]


def test_crlf_file(tmp_path):
    path = tmp_path / "crlf.sdp"
    path.write_bytes(b"s = a\r\n  | b\r\nprompt = <s>!\r\n@steps = 10 | 20\r\n")
    program = load(path)
    assert [(s.prompt, s.settings["steps"]) for s in records(program)] == [
        ("a!", 10),
        ("a!", 20),
        ("b!", 10),
        ("b!", 20),
    ]


def test_crlf_text_and_bare_crlf():
    assert [s.prompt for s in records(loads("s = a\r\nprompt = <s> x\r\n"))] == ["a x"]
    assert expand("a\r\n{b|c}\r\n") == ["a b", "a c"]


def test_old_mac_line_endings(tmp_path):
    path = tmp_path / "cr.sdp"
    path.write_bytes(b"s = a | b\rprompt = <s>\r")
    assert [s.prompt for s in records(load(path))] == ["a", "b"]


def test_utf8_bom_is_ignored(tmp_path):
    path = tmp_path / "bom.sdp"
    path.write_bytes(b"\xef\xbb\xbfprompt = x | y\n")
    assert [s.prompt for s in records(load(path))] == ["x", "y"]


def test_indented_definitions():
    program = loads("   s = a | b\n\tprompt = <s>")
    assert [s.prompt for s in records(program)] == ["a", "b"]


def test_slot_names_are_identifiers():
    program = loads("_x1 = a\nA_b = b\nprompt = <_x1><A_b>")
    assert [s.prompt for s in records(program)] == ["ab"]


def test_choices_inside_slots_and_slots_inside_choices():
    program = loads("c = red | {dark|light} blue\nprompt = a {<c>|plain} ball")
    assert [s.prompt for s in records(program)] == [
        "a red ball",
        "a dark blue ball",
        "a light blue ball",
        "a plain ball",
    ]


def test_unused_slot_is_allowed_and_reported():
    program = loads("unused = a | b\nprompt = x")
    assert "unused" in program.slots
    assert "unused" not in program.used_slots
    assert program.count() == 1


def test_slot_named_like_a_setting_without_the_at_is_a_slot():
    program = loads("steps = a | b\nprompt = <steps>")
    assert [s.prompt for s in records(program)] == ["a", "b"]


# ---------------------------------------------------------------------------------------
# slots are bound once per prompt


def test_slot_used_twice_has_one_value():
    program = loads("c = red | blue\nprompt = <c> hat, <c> shoes")
    assert [s.prompt for s in records(program)] == ["red hat, red shoes", "blue hat, blue shoes"]
    assert program.shared_slots == ("c",)


def test_slot_shared_between_prompt_and_negative():
    program = loads("c = red | blue | green\nprompt = a <c> ball\nnegative = not <c>")
    recs = records(program)
    assert [(s.prompt, s.negative) for s in recs] == [
        ("a red ball", "not red"),
        ("a blue ball", "not blue"),
        ("a green ball", "not green"),
    ]
    for s in get_sampler("random").samples(program, 0, 200, 1):
        assert s.negative == "not " + s.prompt.split()[1]


def test_slot_shared_through_another_slot():
    program = loads("c = a | b\nd = <c><c>\nprompt = <d> <c>")
    assert [s.prompt for s in records(program)] == ["aa a", "bb b"]


def test_shared_slot_inside_an_absent_optional_does_not_multiply():
    program = loads("s = x | y\nprompt = a[ <s>]")
    assert [s.prompt for s in records(program)] == ["a", "ax", "ay"]
    assert [traces(s) for s in records(program)] == [
        {},
        {"prompt[1]": (0, "<s>"), "s": (0, "x")},
        {"prompt[1]": (0, "<s>"), "s": (1, "y")},
    ]


def test_shared_slot_in_two_optionals():
    program = loads("s = a | b\nprompt = [<s>] [<s>]")
    assert program.count() == 7
    assert [s.prompt for s in records(program)] == ["", "a", "b", "a", "a a", "b", "b b"]


def test_shared_slot_inside_a_choice():
    program = loads("s = a | b | c\nprompt = <s> {<s>|z}\nnegative = not <s>")
    assert [(s.prompt, s.negative) for s in records(program)] == [
        ("a a", "not a"),
        ("a z", "not a"),
        ("b b", "not b"),
        ("b z", "not b"),
        ("c c", "not c"),
        ("c z", "not c"),
    ]


def test_shared_slot_with_inner_choice_is_bound_whole():
    program = loads("s = {1|2} z | w\nprompt = <s>\nnegative = <s>")
    recs = records(program)
    assert [(s.prompt, s.negative) for s in recs] == [("1 z", "1 z"), ("2 z", "2 z"), ("w", "w")]
    assert [traces(s)["s"] for s in recs] == [(0, "{1|2} z"), (0, "{1|2} z"), (1, "w")]
    for s in get_sampler("random").samples(program, 0, 200, 5):
        assert s.prompt == s.negative


def test_inline_choices_are_independent_at_each_place():
    assert expand("{a|b}{a|b}") == ["aa", "ab", "ba", "bb"]


def test_multi_select_over_a_shared_slot():
    program = loads("s = a|b\nprompt = {2$$<s>|x|y}")
    prompts = [s.prompt for s in records(program)]
    assert len(prompts) == program.count() == 10
    assert set(prompts) == {"a,x", "b,x", "a,y", "b,y", "x,a", "x,b", "x,y", "y,a", "y,b", "y,x"}


# ---------------------------------------------------------------------------------------
# the trace


def test_trace_of_prompt_with_several_alternatives():
    program = loads("prompt = a | b\nnegative = n")
    assert [traces(s) for s in records(program)] == [{"prompt": (0, "a")}, {"prompt": (1, "b")}]


def test_trace_of_negative_with_several_alternatives():
    program = loads("prompt = p\nnegative = x | y")
    recs = records(program)
    assert [s.negative for s in recs] == ["x", "y"]
    assert [traces(s) for s in recs] == [{"negative": (0, "x")}, {"negative": (1, "y")}]


def test_trace_text_is_the_alternative_as_written():
    program = loads("s =   big  {red|blue}   ball  | [x] \nprompt = <s>")
    recs = records(program)
    assert [traces(s)["s"] for s in recs] == [
        (0, "big  {red|blue}   ball"),
        (0, "big  {red|blue}   ball"),
        (1, "[x]"),
        (1, "[x]"),
    ]


def test_trace_records_every_used_slot_once():
    program = loads("a = 1 | 2\nb = <a>x | y\nprompt = <b> <a>")
    for s in records(program):
        assert set(s.trace) == {"a", "b"}


def test_single_alternative_slots_are_traced():
    program = loads("s = only\nprompt = <s>")
    assert [traces(s) for s in records(program)] == [{"s": (0, "only")}]


# ---------------------------------------------------------------------------------------
# settings


def test_settings_values_and_defaults():
    program = loads(
        "prompt = x\n@steps = 30\n@guidance = 5.5\n@size = 512x640\n@model = m/x\n"
        "@scheduler = euler_a\n@count = 7\n@seed = -3\n@sampler = shuffle\n@batch = 4"
    )
    (s,) = records(program)
    assert s.settings["steps"] == 30
    assert s.settings["guidance"] == 5.5
    assert (s.settings["width"], s.settings["height"]) == (512, 640)
    assert s.settings["model"] == "m/x"
    assert s.settings["scheduler"] == "euler_a"
    assert program.setting("count") == 7
    assert program.setting("seed") == -3
    assert program.setting("sampler") == "shuffle"
    assert program.setting("batch") == 4
    assert program.setting("missing", "dflt") == "dflt"
    assert s.trace == {}


def test_defaults_when_settings_are_absent():
    (s,) = records(loads("x"))
    assert s.settings["steps"] == 50
    assert s.settings["guidance"] == 7.5
    assert (s.settings["width"], s.settings["height"]) == (768, 768)
    assert s.seed == 0


def test_width_and_height_settings():
    (s,) = records(loads("prompt = x\n@width = 1024\n@height = 576"))
    assert (s.settings["width"], s.settings["height"]) == (1024, 576)


def test_size_accepts_x_variants():
    for text in ("512x256", "512X256", "512 x 256", "512×256"):
        (s,) = records(loads(f"prompt = x\n@size = {text}"))
        assert (s.settings["width"], s.settings["height"]) == (512, 256)


def test_sampled_settings_multiply_the_space_and_are_traced():
    program = loads("prompt = a | b\n@steps = 10 | 20 | 4::30\n@size = 512x512 | 768x768")
    assert program.count() == 2 * 3 * 2
    recs = records(program)
    assert [(s.prompt, s.settings["steps"], s.settings["width"]) for s in recs[:4]] == [
        ("a", 10, 512),
        ("a", 10, 768),
        ("a", 20, 512),
        ("a", 20, 768),
    ]
    assert traces(recs[5]) == {"prompt": (0, "a"), "steps": (2, "30"), "size": (1, "768x768")}
    assert program.sampled_settings == ("steps", "size")


def test_sampled_settings_follow_definition_order_and_prompt_first():
    program = loads("@guidance = 5 | 9\nprompt = p | q\n@steps = 1 | 2")
    recs = records(program)
    assert [(s.prompt, s.settings["guidance"], s.settings["steps"]) for s in recs] == [
        ("p", 5.0, 1),
        ("p", 5.0, 2),
        ("p", 9.0, 1),
        ("p", 9.0, 2),
        ("q", 5.0, 1),
        ("q", 5.0, 2),
        ("q", 9.0, 1),
        ("q", 9.0, 2),
    ]


def test_setting_weights_bias_random_sampling():
    program = loads("prompt = x\n@steps = 9::10 | 20")
    steps = [s.settings["steps"] for s in get_sampler("random").samples(program, 0, 2000, 0)]
    assert 0.85 < steps.count(10) / 2000 < 0.95


def test_integer_settings_accept_underscores():
    program = loads("prompt = x\n@count = 10_000")
    assert program.setting("count") == 10000


def test_image_seed_defaults_to_the_index():
    program = loads("{a|b|c}")
    assert [s.seed for s in records(program)] == [0, 1, 2]
    assert [s.seed for s in get_sampler("random").samples(program, 5, 8, 99)] == [5, 6, 7]


def test_seed_mode_random_draws_image_seeds_from_the_seed():
    program = loads("prompt = x\n@seed_mode = random")
    r = get_sampler("random")
    seeds = [s.seed for s in r.samples(program, 0, 50, 1)]
    assert len(set(seeds)) == 50
    assert seeds == [s.seed for s in r.samples(program, 0, 50, 1)]
    assert seeds != [s.seed for s in r.samples(program, 0, 50, 2)]
    assert all(0 <= x < 2**31 for x in seeds)


# ---------------------------------------------------------------------------------------
# wildcards


def test_wildcard_picks_a_line(wildcards):
    d = wildcards({"colours": ["red", "green", "# a comment", "", "  blue  ", "red"]})
    assert expand("a __colours__ ball", [d]) == ["a red ball", "a green ball", "a blue ball"]


def test_wildcard_lines_are_templates(wildcards):
    d = wildcards({"animal": ["a {big|small} dog", "a __colour__ cat"], "colour": ["red", "blue"]})
    assert expand("__animal__", [d]) == ["a big dog", "a small dog", "a red cat", "a blue cat"]


def test_wildcard_in_a_subfolder_and_glob(wildcards):
    d = wildcards({"dir/one": ["x", "y"], "dir/two": ["z", "x"], "other": ["o"]})
    assert expand("__dir/one__", [d]) == ["x", "y"]
    assert expand("__dir/*__", [d]) == ["x", "y", "z"]
    assert sorted(expand("__*__", [d])) == ["o", "x", "y", "z"]


def test_wildcards_are_independent_at_each_place(wildcards):
    d = wildcards({"c": ["r", "b"]})
    assert expand("__c__ __c__", [d]) == ["r r", "r b", "b r", "b b"]


def test_multi_select_over_a_wildcard(wildcards):
    d = wildcards({"colours": ["red", "green", "blue"]})
    assert expand("{2$$__colours__}", [d]) == [
        "red,green",
        "red,blue",
        "green,red",
        "green,blue",
        "blue,red",
        "blue,green",
    ]
    assert expand("{2$$ & $$__colours__}", [d])[0] == "red & green"
    assert loads("{1-3$$__colours__}", wildcard_dirs=[d]).count() == 3 + 6 + 6


def test_wildcard_as_one_alternative_among_others(wildcards):
    d = wildcards({"c": ["r", "b"]})
    assert expand("{__c__|x}", [d]) == ["r", "b", "x"]


def test_wildcard_line_may_use_slots(wildcards):
    d = wildcards({"uses": ["<subject> again"]})
    program = loads("subject = s1 | s2\nprompt = __uses__ <subject>", wildcard_dirs=[d])
    assert [s.prompt for s in records(program)] == ["s1 again s1", "s2 again s2"]


def test_wildcard_with_special_characters_in_lines(wildcards):
    d = wildcards({"w": ["<lora:x__y:0.5>", "50% $off", "a \\{b\\}"]})
    assert expand("__w__", [d]) == ["<lora:x__y:0.5>", "50% $off", "a {b}"]


def test_first_wildcard_folder_wins(wildcards):
    d1 = wildcards({"c": ["first"]})
    d2 = wildcards({"c": ["second"], "only2": ["two"]})
    assert expand("__c__ __only2__", [d1, d2]) == ["first two"]


def test_default_wildcard_folder_beside_the_template(tmp_path):
    (tmp_path / "wildcards").mkdir()
    (tmp_path / "wildcards" / "c.txt").write_text("red\nblue\n", encoding="utf-8")
    path = tmp_path / "t.sdp"
    path.write_text("prompt = __c__ ball\n", encoding="utf-8")
    assert [s.prompt for s in records(load(path))] == ["red ball", "blue ball"]


def test_explicit_wildcard_folder_replaces_the_default(tmp_path, wildcards):
    (tmp_path / "wildcards").mkdir()
    (tmp_path / "wildcards" / "c.txt").write_text("default\n", encoding="utf-8")
    path = tmp_path / "t.sdp"
    path.write_text("__c__\n", encoding="utf-8")
    other = wildcards({"c": ["explicit"]})
    assert [s.prompt for s in records(load(path, [other]))] == ["explicit"]


def test_wildcard_file_with_crlf(tmp_path):
    d = tmp_path / "w"
    d.mkdir()
    (d / "c.txt").write_bytes(b"red\r\nblue\r\n")
    assert expand("__c__", [d]) == ["red", "blue"]


def test_wildcard_name_with_dash_and_dot(wildcards):
    d = wildcards({"my-list.v2": ["q"]})
    assert expand("__my-list.v2__", [d]) == ["q"]
