"""Every model family through the real diffusers loading path, with the tiny
random-weight models (``tiny``, ``tiny-sdxl``, ``tiny-sd3``, ``tiny-flux``,
``tiny-pixart``), their LoRAs, single-file checkpoints and A1111 prompt weighting.

Kept quick: 64x64 images, two or three steps, one torch thread; the tiny models and
their LoRAs are built once into a temporary cache folder (``SDP_CACHE_DIR``)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytest.importorskip("compel")

import numpy as np

from stable_discovery.backends.base import BackendError, Batch, GenerationKey
from stable_discovery.backends.diffusers_backend import DiffusersBackend
from stable_discovery.backends.tiny import tiny_model_path
from stable_discovery.cli.main import main
from stable_discovery.run.pngmeta import parse_parameters, read_metadata
from stable_discovery.sampling.sample import Sample

pytestmark = [pytest.mark.torch, pytest.mark.slow]

FAMILIES = {  # tiny model → (its Model: name, whether it takes a negative prompt, weighting, LoRA)
    "tiny": ("tiny-sd2-v1", True, True, True),
    "tiny-sdxl": ("tiny-sdxl-v1", True, True, True),
    "tiny-sd3": ("tiny-sd3-v1", True, False, True),
    "tiny-flux": ("tiny-flux-v1", False, False, True),
    "tiny-pixart": ("tiny-pixart-v1", True, False, False),
}


@pytest.fixture(scope="module")
def backend(cache_dir: Path) -> Iterator[DiffusersBackend]:
    b = DiffusersBackend(device="cpu", threads=1, local_files_only=True)
    yield b
    b.close()


def sample(index: int, prompt: str, model: str = "tiny", negative: str = "", **settings: Any) -> Sample:
    base = {"model": model, "width": 64, "height": 64, "steps": 2, "guidance": 5.0}
    base["scheduler"] = {"tiny-sd3": "flow_euler", "tiny-flux": "flow_euler"}.get(model, "euler")
    base.update(settings)
    return Sample(index, prompt, negative, base, index, {})


def images(backend: DiffusersBackend, *samples: Sample) -> list[np.ndarray]:
    batch = Batch(GenerationKey.of(samples[0]), tuple(samples))
    return [np.asarray(im, dtype=np.int16) for im in backend.generate(batch)]


def one(backend: DiffusersBackend, prompt: str, model: str = "tiny", **kw: Any) -> np.ndarray:
    return images(backend, sample(0, prompt, model, **kw))[0]


def differ(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a - b).max())


# -- every family, end to end -------------------------------------------------------------


TEMPLATE = """\
animal = fox | heron | owl
prompt = a <animal> in the snow{lora}
{negative}
@steps = 2
@count = 3
@batch = 2
"""


@pytest.mark.parametrize("model", list(FAMILIES))
def test_every_family_runs_end_to_end(model: str, cache_dir: Path, tmp_path: Path) -> None:
    name, negative, _weighting, lora = FAMILIES[model]
    tmpl = tmp_path / "t.sdp"
    tmpl.write_text(
        TEMPLATE.format(
            lora=" <lora:tiny-style:0.7>" if lora else "", negative="negative = blurry" if negative else ""
        )
    )
    ws = tmp_path / "ws"
    args = ["run", str(tmpl), "--model", model, "--workspace", str(ws), "--device", "cpu"]
    assert main(args) == 0
    pngs = sorted((ws / "t").glob("*.png"))
    assert len(pngs) == 3
    params, record = read_metadata(pngs[0])
    assert params is not None and record is not None
    fields = parse_parameters(params)
    assert fields["Model"] == name and fields["Size"] == "64x64" and fields["Steps"] == "2"
    assert ("Lora hashes" in fields) == lora
    assert record["settings"]["model"] == model
    with sqlite3.connect(ws / "discovery.db") as db:
        rows = db.execute("SELECT status, file FROM samples ORDER BY idx").fetchall()
    assert rows == [("done", p.name) for p in pngs]
    # the same experiment again under another name: bit-identical images
    assert main([*args, "--name", "again"]) == 0
    for first, second in zip(pngs, sorted((ws / "again").glob("*.png")), strict=True):
        assert np.array_equal(np.asarray(_open(first)), np.asarray(_open(second)))


def _open(path: Path) -> Any:
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


@pytest.mark.parametrize("model", list(FAMILIES))
def test_an_image_does_not_depend_on_its_batch(model: str, backend: DiffusersBackend) -> None:
    negative = "blurry" if FAMILIES[model][1] else ""
    batch = [sample(i, p, model, negative) for i, p in enumerate(["a fox", "an owl at night", "a heron"])]
    together = images(backend, *batch)
    for s, im in zip(batch, together, strict=True):
        assert differ(images(backend, s)[0], im) <= 1  # 1/255: batched matmuls may round differently
    assert differ(together[0], together[1]) > 8


def test_defaults_follow_the_family(backend: DiffusersBackend) -> None:
    assert backend.model_defaults("tiny-sdxl") == {
        "width": 64,
        "height": 64,
        "steps": 40,
        "guidance": 5.0,
        "scheduler": "euler",
    }
    assert backend.model_defaults("tiny-sd3")["scheduler"] == "flow_euler"
    assert backend.model_defaults("tiny-flux")["guidance"] == 3.5


def test_what_a_model_cannot_do_is_said(backend: DiffusersBackend) -> None:
    with pytest.raises(BackendError, match="take no negative prompt"):
        one(backend, "a fox", "tiny-flux", negative="blurry")
    with pytest.raises(BackendError, match="PixArt models .* take no LoRA"):
        one(backend, "a fox <lora:tiny-style:1>", "tiny-pixart")
    with pytest.raises(BackendError, match="scheduler 'flow_euler' does not apply"):
        one(backend, "a fox", "tiny", scheduler="flow_euler")
    with pytest.raises(BackendError, match="@weighting = none"):
        one(backend, "a (fox:1.3)", "tiny-sd3")
    # with weighting off the same prompt goes to T5 and CLIP as text
    one(backend, "a (fox:1.3)", "tiny-sd3", weighting="none")
    with pytest.raises(BackendError, match="LoRA tag in the negative prompt"):
        one(backend, "a fox", "tiny", negative="<lora:tiny-style:1>")


# -- folders and single files ---------------------------------------------------------------


def test_a_saved_folder_and_a_single_file_exported_from_it_load(
    backend: DiffusersBackend, cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from diffusers import DiffusionPipeline

    from tests.ldm_export import export_single_file

    folder = tmp_path / "my-model"
    pipe = DiffusionPipeline.from_pretrained(tiny_model_path())
    pipe.save_pretrained(folder)
    single = export_single_file(pipe, tmp_path / "my-model.safetensors")
    local = DiffusersBackend(device="cpu", threads=1, local_files_only=True, single_file_config=str(folder))
    reference = one(local, "a (red:1.2) fox", str(folder), negative="blurry", scheduler="ddim")
    assert (
        differ(reference, one(backend, "a (red:1.2) fox", "tiny", negative="blurry", scheduler="ddim")) == 0
    )
    assert (
        differ(reference, one(local, "a (red:1.2) fox", str(single), negative="blurry", scheduler="ddim"))
        == 0
    )
    assert local.describe_model(str(single)) == "my-model"
    # offline, without --model-config and without the family's files in the cache
    with pytest.raises(BackendError, match=r"offline: .*--model-config DIR"):
        DiffusersBackend(device="cpu", local_files_only=True).check_available(str(single))
    tmpl = tmp_path / "t.sdp"
    tmpl.write_text(f"prompt = a fox\n@model = {folder} | {single}\n")
    assert main(["check", str(tmpl)]) == 0
    out = capsys.readouterr().out
    assert "SD 2.x (a local diffusers folder)" in out and "SD 1.x (a single-file checkpoint)" in out


def test_an_sdxl_folder_loads_from_its_model_index(backend: DiffusersBackend, tmp_path: Path) -> None:
    folder = tmp_path / "xl"
    shutil.copytree(tiny_model_path("tiny-sdxl"), folder)
    assert backend.family(str(folder)) == "SDXL"
    assert differ(one(backend, "a fox", str(folder)), one(backend, "a fox", "tiny-sdxl")) == 0


# -- LoRA -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl"])
def test_lora_weights(model: str, backend: DiffusersBackend) -> None:
    plain = one(backend, "a fox", model)
    assert differ(one(backend, "a fox <lora:tiny-detail:0>", model), plain) == 0
    full = one(backend, "a fox <lora:tiny-detail:1>", model)
    assert differ(full, plain) > 2
    both = one(backend, "a fox <lora:tiny-detail:1> <lora:tiny-style:1>", model)
    assert differ(both, full) > 2 and differ(both, plain) > 2
    assert differ(one(backend, "a fox", model), plain) == 0  # switched off again


def test_adapters_load_once_and_are_switched(cache_dir: Path) -> None:
    b = DiffusersBackend(device="cpu", threads=1)
    try:
        prompts = ["a <lora:tiny-detail:1>", "b <lora:tiny-style:0.5>", "c", "d <lora:tiny-detail:0.3>"] * 2
        for i, p in enumerate(prompts):
            images(b, sample(i, p))
        assert b.lora_loads == 2 and b.model_loads == 1
        with pytest.raises(BackendError, match="unknown LoRA 'tiny-detial'.*did you mean 'tiny-detail'"):
            images(b, sample(0, "a <lora:tiny-detial:1>"))
    finally:
        b.close()


def test_each_model_loads_once_with_a_cap(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[DiffusersBackend] = []
    original = DiffusersBackend.__init__

    def spy(self: DiffusersBackend, *args: Any, **kw: Any) -> None:
        original(self, *args, **kw)
        made.append(self)

    monkeypatch.setattr(DiffusersBackend, "__init__", spy)
    tmpl = tmp_path / "t.sdp"
    tmpl.write_text("prompt = a {fox|owl}\n@model = tiny | tiny-flux | tiny-sd3\n@steps = 2\n@count = 9\n")
    ws = tmp_path / "ws"
    assert main(["run", str(tmpl), "--workspace", str(ws), "--batch", "2", "--max-models", "1"]) == 0
    assert made[0].model_loads == 3 and made[0].max_models == 1
    with sqlite3.connect(ws / "discovery.db") as db:
        models = db.execute("SELECT settings FROM samples").fetchall()
    assert len(models) == 9


# -- prompt weighting -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl"])
def test_weights_change_the_image_and_weight_one_does_not(model: str, backend: DiffusersBackend) -> None:
    fox = one(backend, "a red fox", model, negative="blurry")
    assert differ(one(backend, "a red (fox:1.5)", model, negative="blurry"), fox) > 0
    assert differ(one(backend, "a red (fox:1.0)", model, negative="blurry"), fox) == 0
    assert differ(one(backend, "a red [fox]", model, negative="blurry"), fox) > 0
    assert differ(one(backend, "a red fox BREAK snow", model), one(backend, "a red fox snow", model)) > 0


def test_a_long_prompt_is_chunked_not_cut(backend: DiffusersBackend) -> None:
    long = ", ".join(["a red fox in the snow"] * 14)  # about 200 tokens of the tiny vocabulary
    one(backend, "warm up")
    encoder = backend._loaded["tiny"].runner._weighting_encoder()
    assert encoder.encode(long, "")["prompt_embeds"].shape[1] == 3 * 77  # three chunks, none cut
    changed_end = long[:-4] + "rain"
    assert differ(one(backend, long), one(backend, changed_end)) > 0  # the end is read
    # with weighting off the pipeline reads 77 tokens: the end makes no difference
    assert differ(one(backend, long, weighting="none"), one(backend, changed_end, weighting="none")) == 0


def test_with_weighting_off_the_text_passes_through(
    backend: DiffusersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    one(backend, "warm up")
    loaded = backend._loaded["tiny"]
    seen: list[dict[str, Any]] = []
    real = loaded.pipe

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def __call__(self, **kw: Any) -> Any:
            seen.append(kw)
            return real(**kw)

    monkeypatch.setattr(loaded, "pipe", Spy())
    one(backend, "a (fox:1.5) [x] BREAK y <lora:tiny-style:0>", weighting="none", negative="(ugly)")
    assert seen[-1]["prompt"] == ["a (fox:1.5) [x] BREAK y"] and seen[-1]["negative_prompt"] == ["(ugly)"]
    one(backend, "a (fox:1.5)")
    assert "prompt" not in seen[-1] and seen[-1]["prompt_embeds"].shape[1] == 77
