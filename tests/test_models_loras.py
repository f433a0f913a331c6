"""Model families, LoRA tags and A1111 emphasis without torch: the parts that run when a
template loads (tags checked against the LoRA folders, families told from files), the
planner's model passes, family defaults, and the ``Lora hashes`` of the PNG metadata."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from stable_discovery.backends.base import BackendError, GenerationKey
from stable_discovery.backends.emphasis import BREAK, parse_emphasis, plain_text, split_breaks
from stable_discovery.backends.families import (
    TINY_FAMILIES,
    detect_folder,
    detect_model,
    detect_single_file,
    families_summary,
)
from stable_discovery.cli.main import main
from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.loras import (
    LoraLibrary,
    LoraTagError,
    check_lora_tags,
    lora_hash,
    lora_key,
    split_lora_tags,
)
from stable_discovery.language.program import loads
from stable_discovery.run.planner import plan_by_model
from stable_discovery.run.pngmeta import a1111_parameters, parse_parameters
from stable_discovery.run.runplan import apply_defaults
from stable_discovery.sampling.sample import Sample

# -- A1111 emphasis ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("a fox", [("a fox", 1.0)]),
        ("a (fox)", [("a ", 1.0), ("fox", 1.1)]),
        ("a ((fox))", [("a ", 1.0), ("fox", pytest.approx(1.21))]),
        ("a (fox:1.5) runs", [("a ", 1.0), ("fox", 1.5), (" runs", 1.0)]),
        ("a (fox:1.0) runs", [("a fox runs", 1.0)]),  # equal weights merge: the plain prompt
        ("a [fox]", [("a ", 1.0), ("fox", pytest.approx(1 / 1.1))]),
        (r"a \(fox\)", [("a (fox)", 1.0)]),  # escaped: literal brackets
        ("(a (fox:2))", [("a ", 1.1), ("fox", pytest.approx(2.2))]),
        ("(unclosed", [("unclosed", 1.1)]),  # A1111 closes brackets at the end
        ("", [("", 1.0)]),
    ],
)
def test_emphasis_reads_like_a1111(text: str, pieces: list) -> None:
    assert parse_emphasis(text) == pieces


def test_break_starts_a_new_chunk_group() -> None:
    pieces = parse_emphasis("a fox BREAK (snow:1.2)")
    assert ("BREAK", BREAK) in pieces
    assert split_breaks(pieces) == [[("a fox", 1.0)], [("snow", 1.2)]]
    assert plain_text(pieces) == "a fox snow"
    assert parse_emphasis("BREAKFAST") == [("BREAKFAST", 1.0)]  # a word, not a break


# -- LoRA tags -----------------------------------------------------------------------------


def test_lora_tags_are_taken_out_of_the_text() -> None:
    text, tags = split_lora_tags("a fox <lora:film-grain:0.8>, snow <lora:Style_v2>")
    assert text == "a fox , snow"
    assert [(t.name, t.weight) for t in tags] == [("film-grain", 0.8), ("Style_v2", 1.0)]
    assert split_lora_tags("a fox")[0] == "a fox"
    assert split_lora_tags("a fox <lora:x:0>")[0] == "a fox"  # weight 0 still leaves the text


def test_the_lora_set_is_sorted_and_a_name_counts_once() -> None:
    assert lora_key("<lora:b:0.5> x <lora:a:-1>") == (("a", -1.0), ("b", 0.5))
    with pytest.raises(LoraTagError, match="tagged twice"):
        lora_key("<lora:a:1> <lora:a:0.5>")
    with pytest.raises(LoraTagError, match="not a number"):
        lora_key("<lora:a:0.5:0.7>")


def test_the_generation_key_groups_by_lora_set_and_weighting() -> None:
    settings = {"model": "m", "width": 64, "height": 64, "steps": 3, "guidance": 7.0, "scheduler": "ddim"}
    a = GenerationKey.of(Sample(0, "x <lora:a:0.5>", "", settings, 0, {}))
    b = GenerationKey.of(Sample(1, "y <lora:a:0.5>", "", settings, 1, {}))
    c = GenerationKey.of(Sample(2, "y <lora:a:1>", "", settings, 2, {}))
    d = GenerationKey.of(Sample(3, "y", "", {**settings, "weighting": "none"}, 3, {}))
    assert a == b and a != c
    assert a.loras == (("a", 0.5),) and a.weighting == "a1111" and d.weighting == "none"
    with pytest.raises(BackendError, match="sample 4"):
        GenerationKey.of(Sample(4, "<lora:a:zz>", "", settings, 4, {}))


def _lora_file(path: Path, payload: bytes = b"\x00" * 16) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + payload)
    return path


def test_unknown_lora_fails_at_load_time_with_did_you_mean(tmp_path: Path) -> None:
    _lora_file(tmp_path / "loras" / "film-grain.safetensors")
    _lora_file(tmp_path / "loras" / "styles" / "watercolour.safetensors")  # subfolders count
    library = LoraLibrary([tmp_path / "loras"])
    assert library.names() == ["film-grain", "watercolour"]
    text = "style = a | b <lora:film-grian:0.5>\nprompt = x <style>\n"
    with pytest.raises(TemplateError) as info:
        check_lora_tags(Source("t.sdp", text), [], library)
    message = info.value.format()
    assert "t.sdp:1:21" in message and "did you mean 'film-grain'" in message
    # known names, tags built by the template and tags in comments pass
    ok = "prompt = <lora:watercolour:0.7> <lora:{a|b}:1> # <lora:nope:1>\n"
    check_lora_tags(Source("t.sdp", ok), [], library)


def test_sdp_check_points_at_the_tiny_models_own_loras(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without @model the template is checked for the default model, which has no
    tiny-detail: a near name says where it is."""
    tmpl = tmp_path / "t.sdp"
    tmpl.write_text("prompt = a cat <lora:tiny-detial:0.8>\n")
    assert main(["check", str(tmpl)]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'tiny-detail'? it comes with the tiny models (--model tiny)" in err


def test_tags_in_wildcard_files_are_checked(tmp_path: Path) -> None:
    wild = tmp_path / "wildcards" / "styles.txt"
    wild.parent.mkdir()
    wild.write_text("ink\nfilm <lora:nope:1>\n")
    with pytest.raises(TemplateError, match=r"styles.txt:2:\d+.*unknown LoRA 'nope'"):
        check_lora_tags(Source("t.sdp", "prompt = x\n"), [wild], LoraLibrary([tmp_path]))


def test_sdp_check_finds_a_tag_in_any_case_in_a_wildcard_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wild = tmp_path / "wildcards" / "styles.txt"
    wild.parent.mkdir()
    wild.write_text("ink\n" * 2000 + "film <LoRA:nope:1>\n")  # files are read a line at a time
    tmpl = tmp_path / "t.sdp"
    tmpl.write_text("prompt = x __styles__\n")
    assert main(["check", str(tmpl), "--loras", str(tmp_path)]) == 2
    assert "styles.txt:2001:" in capsys.readouterr().err


def test_sdp_check_and_run_refuse_an_unknown_lora(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _lora_file(tmp_path / "loras" / "film-grain.safetensors")
    tmpl = tmp_path / "t.sdp"
    tmpl.write_text("prompt = a fox <lora:film-grian:0.5>\n@count = 1\n")
    assert main(["check", str(tmpl)]) == 2
    assert "did you mean 'film-grain'" in capsys.readouterr().err
    ws = tmp_path / "ws"
    assert main(["run", str(tmpl), "--backend", "dummy", "--workspace", str(ws)]) == 2
    assert not ws.exists()  # refused before anything was made
    other = tmp_path / "elsewhere"
    _lora_file(other / "film-grian.safetensors")
    assert main(["check", str(tmpl), "--loras", str(other)]) == 0


def test_lora_hashes_are_a1111s_addnet_hash(tmp_path: Path) -> None:
    path = _lora_file(tmp_path / "x.safetensors", b"\x01" * 16)
    assert lora_hash(path) == hashlib.sha256(b"\x01" * 16).hexdigest()[:12]
    settings = {"steps": 20, "scheduler": "euler", "guidance": 7.0, "width": 64, "height": 64}
    text = a1111_parameters(
        "a fox <lora:x:0.8>", "", settings, 1, "m", {"x": "0123456789ab", "y": "ba9876543210"}
    )
    assert 'Lora hashes: "x: 0123456789ab, y: ba9876543210"' in text
    back = parse_parameters(text)
    assert back["Lora hashes"] == "x: 0123456789ab, y: ba9876543210"
    assert back["Prompt"] == "a fox <lora:x:0.8>"  # the recorded prompt keeps its tags


# -- families --------------------------------------------------------------------------------


def _folder(root: Path, pipeline: str, **configs: dict) -> Path:
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    for name, config in configs.items():
        (root / name).mkdir()
        filename = "scheduler_config.json" if name == "scheduler" else "config.json"
        (root / name / filename).write_text(json.dumps(config))
    return root


def test_a_folders_family_comes_from_its_model_index(tmp_path: Path) -> None:
    vae = {"block_out_channels": [128, 256, 512, 512]}
    sd15 = _folder(
        tmp_path / "sd15",
        "StableDiffusionPipeline",
        text_encoder={"hidden_size": 768},
        unet={"sample_size": 64},
        vae=vae,
    )
    sd21 = _folder(
        tmp_path / "sd21",
        "StableDiffusionPipeline",
        text_encoder={"hidden_size": 1024},
        unet={"sample_size": 96},
        vae=vae,
    )
    xl = _folder(tmp_path / "xl", "StableDiffusionXLPipeline", unet={"sample_size": 128}, vae=vae)
    schnell = _folder(tmp_path / "schnell", "FluxPipeline", transformer={"guidance_embeds": False})
    other = _folder(tmp_path / "i2i", "StableDiffusionImg2ImgPipeline")
    assert detect_folder("a", sd15).family.key == "sd1"
    assert detect_folder("a", sd15).defaults["width"] == 512
    assert detect_folder("b", sd21).family.key == "sd2" and detect_folder("b", sd21).defaults["width"] == 768
    info = detect_folder("c", xl)
    assert info.label == "SDXL" and info.defaults == {
        "width": 1024,
        "height": 1024,
        "steps": 40,
        "guidance": 5.0,
        "scheduler": "euler",
    }
    flux = detect_folder("d", schnell)
    assert flux.family.key == "flux" and not flux.guidance
    assert flux.defaults["guidance"] == 0.0 and flux.defaults["steps"] == 4
    assert detect_folder("e", other).family is None
    assert detect_folder("e", other).pipeline == "StableDiffusionImg2ImgPipeline"


def _checkpoint(path: Path, keys: list[str]) -> Path:
    header = json.dumps({k: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]} for k in keys}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 4)
    return path


def test_a_single_files_family_comes_from_its_tensor_names(tmp_path: Path) -> None:
    unet = "model.diffusion_model.input_blocks.0.0.weight"
    assert (
        detect_single_file(
            "a", _checkpoint(tmp_path / "a.safetensors", [unet, "cond_stage_model.transformer.x"])
        ).family.key
        == "sd1"
    )
    assert (
        detect_single_file(
            "b", _checkpoint(tmp_path / "b.safetensors", [unet, "cond_stage_model.model.x"])
        ).family.key
        == "sd2"
    )
    assert (
        detect_single_file(
            "c", _checkpoint(tmp_path / "c.safetensors", [unet, "conditioner.embedders.1.model.x"])
        ).family.key
        == "sdxl"
    )
    sd3 = "model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias"
    assert detect_single_file("d", _checkpoint(tmp_path / "d.safetensors", [sd3])).family.key == "sd3"
    dev = _checkpoint(
        tmp_path / "e.safetensors",
        ["double_blocks.0.img_attn.norm.key_norm.scale", "guidance_in.in_layer.weight"],
    )
    schnell = _checkpoint(tmp_path / "f.safetensors", ["double_blocks.0.img_attn.norm.key_norm.scale"])
    assert detect_single_file("e", dev).guidance and not detect_single_file("f", schnell).guidance
    junk = tmp_path / "g.safetensors"
    junk.write_bytes(b"x")
    assert detect_single_file("g", junk).family is None
    assert detect_single_file("h", tmp_path / "h.ckpt").family is None  # pickles are not opened


def test_tiny_models_and_the_summary() -> None:
    assert {detect_model(name).family.key for name in TINY_FAMILIES} == {
        "sd2",
        "sdxl",
        "sd3",
        "flux",
        "pixart",
    }
    assert detect_model("tiny-sdxl").defaults["width"] == 64
    assert families_summary() == "SD 1.x, SD 2.x, SDXL, SD 3.x, Flux, PixArt"


def test_sdp_check_says_a_local_models_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xl = _folder(tmp_path / "my-xl", "StableDiffusionXLPipeline")
    tmpl = tmp_path / "t.sdp"
    tmpl.write_text(f"prompt = a fox\n@model = {xl} | tiny-flux | {tmp_path / 'gone'}\n")
    assert main(["check", str(tmpl)]) == 0
    out = capsys.readouterr().out
    assert "models:" in out
    assert f"{xl}" in out and "SDXL (a local diffusers folder)" in out
    assert "Flux (a tiny random-weights model" in out
    assert "no such folder or file" in out


def test_plugins_and_run_help_list_the_families(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    assert (
        "model families (diffusers backend): SD 1.x, SD 2.x, SDXL, SD 3.x, Flux, PixArt"
        in capsys.readouterr().out
    )
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "SD 3.x, Flux, PixArt" in " ".join(capsys.readouterr().out.split())


def test_device_goes_with_the_local_executor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "run",
                "-e",
                "a",
                "--name",
                "x",
                "--device",
                "cuda:1",
                "--executor",
                "ray",
                "--workspace",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "--device goes with --executor local" in capsys.readouterr().err


# -- the planner and the defaults ------------------------------------------------------------


def _samples(models: list[str], loras: list[str]) -> list[Sample]:
    out = []
    for i, (m, tag) in enumerate(zip(models, loras, strict=True)):
        settings = {"model": m, "width": 64, "height": 64, "steps": 3, "guidance": 7.0, "scheduler": "ddim"}
        out.append(Sample(i, f"p {tag}", "", settings, i, {}))
    return out


def test_batches_never_mix_models_or_lora_sets() -> None:
    samples = _samples(["a", "b", "a", "b", "a", "a"], ["", "", "<lora:x:1>", "", "", "<lora:x:1>"])
    batches = list(plan_by_model(lambda: samples, ["a", "b"], 4))
    for batch in batches:
        assert len({(s.settings["model"], lora_key(s.prompt)) for s in batch.samples}) == 1
    assert sorted(s.index for b in batches for s in b.samples) == list(range(6))


def test_with_a_model_cap_the_run_goes_model_by_model() -> None:
    samples = _samples(["a", "b", "c", "a", "b", "c"], [""] * 6)
    calls = []

    def source() -> list[Sample]:
        calls.append(1)
        return samples

    order = [b.key.model for b in plan_by_model(source, ["a", "b", "c"], 4, max_models=1)]
    assert order == ["a", "b", "c"] and len(calls) == 3
    two = [b.key.model for b in plan_by_model(lambda: samples, ["a", "b", "c"], 1, max_models=2)]
    assert two.index("c") > max(i for i, m in enumerate(two) if m in "ab")


def test_family_defaults_fill_only_unset_settings() -> None:
    program = loads("prompt = x\n@steps = 9\n")
    sample = Sample(0, "x", "", {"steps": 9, "guidance": 7.5, "width": 768, "height": 768}, 0, {})
    defaults = {"steps": 40, "guidance": 5.0, "width": 1024, "height": 1024}
    explicit = frozenset(program.settings)
    out = apply_defaults(sample, defaults, explicit)
    assert out.settings == {"steps": 9, "guidance": 5.0, "width": 1024, "height": 1024}
    assert apply_defaults(sample, defaults, frozenset({"steps", "guidance", "width", "height"})) is sample
