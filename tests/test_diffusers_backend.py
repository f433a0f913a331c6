"""The diffusers backend through the real diffusers path, with the tiny random-weights model.

Kept fast: 64x64 images, a few steps, one torch thread. The tiny model is built into a
temporary cache folder (``SDP_CACHE_DIR``), never into the user's cache.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import numpy as np

from stable_discovery.backends.base import Backend, BackendError, Batch, GenerationKey
from stable_discovery.backends.diffusers_backend import (
    SCHEDULER_CLASSES,
    DiffusersBackend,
    check_dependencies,
    scheduler_label,
)
from stable_discovery.backends.tiny import build_tiny_model, tiny_model_path
from stable_discovery.language.settings import SCHEDULERS
from stable_discovery.sampling.sample import Sample

STEPS = 4


@pytest.fixture(scope="module")
def backend(cache_dir: Path) -> Iterator[DiffusersBackend]:
    b = DiffusersBackend(device="cpu", threads=1)
    yield b
    b.close()


def key(
    width: int = 64, height: int = 64, steps: int = STEPS, scheduler: str = "ddim", guidance: float = 7.5
) -> GenerationKey:
    return GenerationKey("tiny", width, height, steps, guidance, scheduler)


def sample(index: int, prompt: str = "a cat", seed: int | None = None, negative: str = "") -> Sample:
    return Sample(index, prompt, negative, {}, index if seed is None else seed, {})


def arrays(images) -> list[np.ndarray]:
    return [np.asarray(im, dtype=np.int16) for im in images]


def test_is_a_backend(backend: DiffusersBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "diffusers"


def test_images_have_the_size_and_mode_of_the_key(backend: DiffusersBackend) -> None:
    images = backend.generate(Batch(key(), (sample(0), sample(1, "a dog"))))
    assert [(im.size, im.mode) for im in images] == [((64, 64), "RGB")] * 2
    wide = backend.generate(Batch(key(width=96, height=64, steps=2), (sample(0),)))
    assert wide[0].size == (96, 64)
    assert backend.device == "cpu" and backend.dtype == "float32"


def test_an_image_does_not_depend_on_its_batch(backend: DiffusersBackend) -> None:
    samples = [
        sample(0, "a cat"),
        sample(1, "a dog in the rain", negative="blurry"),
        sample(2, "a cat", seed=12345),
        sample(3, "ünïcødé 🐶 prompt"),
        sample(4, ""),
        sample(5, "a very long prompt " * 20),  # longer than 77 tokens: truncated the same way
    ]
    alone = {s.index: arrays(backend.generate(Batch(key(), (s,))))[0] for s in samples}
    for group in ([0, 1, 2, 3], [4, 2, 0], [5, 0, 1, 2, 3, 4], [3, 3]):
        got = arrays(backend.generate(Batch(key(), tuple(samples[i] for i in group))))
        for i, image in zip(group, got, strict=False):
            diff = int(np.abs(image - alone[i]).max())
            assert diff <= 1, f"sample {i} in batch {group} differs by {diff} levels from alone"


def test_the_same_batch_again_is_bit_identical(backend: DiffusersBackend) -> None:
    batch = Batch(key(scheduler="euler_a"), (sample(0), sample(1, "a dog"), sample(2, seed=7)))
    first = [im.tobytes() for im in backend.generate(batch)]
    second = [im.tobytes() for im in backend.generate(batch)]
    assert first == second


def test_seeds_prompts_and_negatives_change_the_image(backend: DiffusersBackend) -> None:
    base, other_seed, other_prompt, negative = arrays(
        backend.generate(
            Batch(
                key(),
                (
                    sample(0, "a cat", seed=1),
                    sample(1, "a cat", seed=2),
                    sample(2, "a dog", seed=1),
                    sample(3, "a cat", seed=1, negative="ugly"),
                ),
            )
        )
    )
    for other in (other_seed, other_prompt, negative):
        assert np.abs(base - other).max() > 8


def test_the_scheduler_setting_switches_the_scheduler(backend: DiffusersBackend) -> None:
    assert set(SCHEDULER_CLASSES) == set(SCHEDULERS)
    names = [n for n in SCHEDULERS if n != "flow_euler"]  # flow matching: SD 3 and Flux only
    try:
        import scipy  # noqa: F401  - LMS needs it
    except ImportError:
        names.remove("lms")
    seen = {}
    for name in names:
        images = backend.generate(Batch(key(steps=4, scheduler=name), (sample(0),)))
        assert images[0].size == (64, 64)
        scheduler = backend._loaded["tiny"].pipe.scheduler
        assert type(scheduler).__name__ == SCHEDULER_CLASSES[name][0]
        # the model's own config carries over (SD 2.1 predicts v)
        assert scheduler.config.prediction_type == "v_prediction"
        seen[name] = scheduler
    assert seen["dpm++2m_karras"].config.use_karras_sigmas is True
    assert not seen["dpm++2m"].config.use_karras_sigmas
    assert scheduler_label("euler_a") == "Euler a" and scheduler_label("ddim") == "DDIM"


def test_too_few_steps_for_pndm_is_a_backend_error(backend: DiffusersBackend) -> None:
    with pytest.raises(BackendError, match="at least 4 steps"):
        backend.generate(Batch(key(steps=3, scheduler="pndm"), (sample(0),)))


def test_lms_without_scipy_is_a_backend_error(backend: DiffusersBackend) -> None:
    try:
        import scipy  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match="scipy"):
            backend.generate(Batch(key(steps=2, scheduler="lms"), (sample(0),)))
    else:
        pytest.skip("scipy is installed")


def _unreachable(model: str, monkeypatch: pytest.MonkeyPatch) -> BackendError:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackendError) as info:
        DiffusersBackend(device="cpu").check_available(model)
    err = info.value
    assert err.exit_code == 1
    message = str(err)
    assert model in message
    assert "--model tiny" in message
    assert "Traceback" not in message and "\n" not in message
    return err


def test_an_uncached_model_offline_names_the_way_out(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    err = _unreachable("nobody-sdp-test/no-such-model", monkeypatch)
    message = str(err)
    assert "HF_HUB_OFFLINE" in message
    assert "hf download nobody-sdp-test/no-such-model" in message
    assert "local Hugging Face cache" in message
    # what from_pretrained raised stays chained for debugging
    assert isinstance(err.__cause__, OSError)


def test_an_invalid_id_or_missing_folder(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert "no such folder" in str(_unreachable(str(tmp_path / "not-there"), monkeypatch))
    assert "no such folder" in str(_unreachable("a/b/c", monkeypatch))


def test_an_empty_or_incomplete_folder(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "model_index.json" in str(_unreachable(str(empty), monkeypatch))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model_index.json").write_text(
        '{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}'
    )
    assert "diffusers folder" in str(_unreachable(str(partial), monkeypatch))
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"x")
    assert "single file" in str(_unreachable(str(single), monkeypatch))


def test_a_gpu_asked_for_without_one(cache_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendError, match="no CUDA GPU"):
        DiffusersBackend(device="cuda").check_available("tiny")
    with pytest.raises(BackendError, match="float16 needs a GPU"):
        DiffusersBackend(device="cpu", dtype="float16").check_available("tiny")


def test_missing_packages_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` fail
    with pytest.raises(BackendError, match=r"pip install -e '\.\[diffusers\]'"):
        check_dependencies()


def test_bad_knobs_are_refused() -> None:
    with pytest.raises(BackendError):
        DiffusersBackend(attention="flash9")
    with pytest.raises(BackendError):
        DiffusersBackend(dtype="int3")
    with pytest.raises(BackendError):
        DiffusersBackend(threads=0)


def test_describe_model(backend: DiffusersBackend) -> None:
    assert backend.describe_model("tiny") == "tiny-sd2-v1"
    assert backend.describe_model("stabilityai/stable-diffusion-2-1") == "stabilityai/stable-diffusion-2-1"
    assert backend.describe_model("/models/my-sd21/") == "my-sd21"


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_the_tiny_model_rebuilds_byte_identical(cache_dir: Path, tmp_path: Path) -> None:
    cached = tiny_model_path()
    assert cached.parent == cache_dir and cached.name == "tiny-sd2-v1"
    rebuilt = build_tiny_model(tmp_path / "again")
    digests = _digests(cached)
    assert digests == _digests(rebuilt)
    assert {
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
        "tokenizer/tokenizer.json",
    } <= set(digests)
    # built once, then reused; no temporary folders left behind
    stamp = (cached / "model_index.json").stat().st_mtime_ns
    assert tiny_model_path() == cached
    assert (cached / "model_index.json").stat().st_mtime_ns == stamp
    assert [p.name for p in cache_dir.iterdir()] == ["tiny-sd2-v1"]


def test_the_tiny_tokenizer_is_a_real_byte_level_bpe(cache_dir: Path) -> None:
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tiny_model_path() / "tokenizer")
    assert len(tok) > 500  # not the broken 3-token tokenizer
    assert tok.model_max_length == 77
    ids = tok("the cat 🐶")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.unk_token_id not in ids[1:-1]
    assert len(ids) > 4
    assert tok("")["input_ids"] == [tok.bos_token_id, tok.eos_token_id]


def test_importing_the_backend_imports_no_torch() -> None:
    code = (
        "import sys, stable_discovery.backends.diffusers_backend, stable_discovery.backends.tiny; "
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_name_that_is_no_model_says_so_and_suggests_one(cache_dir: Path) -> None:
    with pytest.raises(BackendError) as info:
        DiffusersBackend(device="cpu").check_available("tinyy")
    message = str(info.value)
    assert "did you mean 'tiny'?" in message
    assert "owner/name" in message and "\n" not in message


def test_an_unreachable_hub_is_told_at_once_without_retries(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Port 9 on the loopback refuses at once: the model is looked for in the local cache
    alone (huggingface_hub would retry five times, half a minute, before giving up)."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    calls: list[bool] = []
    real = huggingface_hub.hf_hub_download

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(bool(kwargs.get("local_files_only")))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recording)
    with pytest.raises(BackendError) as info:
        DiffusersBackend(device="cpu").check_available("nobody-sdp-test/no-such-model")
    message = str(info.value)
    assert "the Hub could not be reached" in message and "hf download" in message
    assert calls == [True]  # the cache only


def test_the_hub_probe_tells_an_answer_from_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import http.server
    import threading

    from stable_discovery.backends.hub import hub_unreachable

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert hub_unreachable("owner/name") is None  # a 404 is an answer
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        assert hub_unreachable("owner/name")  # refused: a reason
    finally:
        server.shutdown()
