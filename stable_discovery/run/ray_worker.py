"""The Ray side of ``--executor ray``: :class:`BatchWorker` (made a Ray actor when a run
starts) holds one backend, loaded once, and turns batches into the experiment's PNG
files, encoded with their metadata on the worker (:class:`WorkerOptions`), so that the
driver only writes bytes and rows; without options, into images packed for the trip
back (:func:`pack_image`, :func:`unpack_image`).

Ray itself is imported only inside a worker, never when this module is imported.
"""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stable_discovery.backends.base import Backend, BackendError, Batch
from stable_discovery.run.autobatch import BatchFitter
from stable_discovery.run.files import PngSpec
from stable_discovery.run.recording import LoraHashes

__all__ = ["BackendLookup", "BatchWorker", "WorkerOptions", "pack_image", "unpack_image"]

#: The backends installed where it is called, by name (``stable_discovery.plugins.backends``);
#: sent to each worker, pickled by reference, and called there.
BackendLookup = Callable[[], Mapping[str, Callable[..., Any]]]

#: Image modes sent as raw pixel buffers (exact and cheap); others go as PNG bytes.
_RAW_MODES = frozenset({"1", "L", "LA", "RGB", "RGBA", "I", "F", "I;16"})


def pack_image(image: Any) -> tuple[Any, ...]:
    """A PIL image as something cheap to send: ``("raw", mode, size, bytes)``, or
    ``("png", bytes)`` for modes without a plain pixel buffer (palette images)."""
    if image.mode in _RAW_MODES:
        return ("raw", image.mode, tuple(image.size), image.tobytes())
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return ("png", buf.getvalue())


def unpack_image(packed: tuple[Any, ...]) -> Any:
    """The PIL image :func:`pack_image` packed."""
    from PIL import Image

    if packed[0] == "raw":
        _kind, mode, size, data = packed
        return Image.frombytes(mode, tuple(size), data)
    with Image.open(io.BytesIO(packed[1])) as im:
        im.load()
        return im.copy()


@dataclass(frozen=True)
class WorkerOptions:
    """What a run asks of every worker: encode each image as its PNG file with ``png``
    (the LoRA hashes of its parameters found in ``lora_dirs`` on the worker's machine,
    where its backend finds the LoRAs), and with ``auto_batch`` make each batch in the
    pieces that fit in the worker's GPU (remembered by the worker)."""

    png: PngSpec
    lora_dirs: tuple[str, ...] = ()
    auto_batch: bool = False


class BatchWorker:
    """Holds one backend, loaded once, and turns batches into PNG files (with
    :class:`WorkerOptions`) or packed images.

    The backend is found by name among the worker machine's own backends
    (``backend_lookup``, called on the worker); one it does not know (registered at run
    time in the driver) comes from ``shipped_factory``, the driver's factory pickled
    with ``ray.cloudpickle``."""

    def __init__(
        self,
        backend_name: str,
        backend_options: dict[str, Any],
        shipped_factory: bytes | None,
        backend_lookup: BackendLookup | None = None,
        options: WorkerOptions | None = None,
    ) -> None:
        self.backend_name = backend_name
        self.backend_options = dict(backend_options)
        self.shipped_factory = shipped_factory
        self.backend_lookup = backend_lookup
        self.options = options
        self.backend: Backend | None = None
        self.fitter = BatchFitter() if options is not None and options.auto_batch else None
        self.hashes = LoraHashes(options.lora_dirs if options is not None else ())

    def _backend(self) -> Backend:
        if self.backend is None:
            self.backend = self._factory()(**self.backend_options)
        return self.backend

    def _factory(self) -> Callable[..., Backend]:
        installed = self.backend_lookup() if self.backend_lookup is not None else {}
        factory = installed.get(self.backend_name)
        if factory is not None:
            return factory
        if self.shipped_factory is not None:
            return self._unpickle_factory(self.shipped_factory)
        known = ", ".join(installed) or "none"
        raise BackendError(
            f"backend {self.backend_name!r} is not installed on worker host "
            f"{socket.gethostname()} (it has: {known}); install the plugin that "
            "provides it on every machine of the cluster"
        )

    def _unpickle_factory(self, shipped: bytes) -> Callable[..., Backend]:
        import ray.cloudpickle as cloudpickle

        try:
            factory: Callable[..., Backend] = cloudpickle.loads(shipped)
        except Exception as exc:  # noqa: BLE001 - the module is missing here
            raise BackendError(
                f"backend {self.backend_name!r} is not installed on worker host "
                f"{socket.gethostname()} ({type(exc).__name__}: {exc}); install "
                "stable-discovery and the plugin that provides it on every machine "
                "of the cluster"
            ) from None
        return factory

    def ready(self) -> dict[str, Any]:
        """Load the backend; where this worker runs."""
        self._backend()
        import ray

        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
        }

    def generate(self, batch: Batch) -> tuple[list[Any], float, str]:
        """(the images as PNG files, or packed; seconds; the batch's model as the
        backend describes it)."""
        backend = self._backend()
        t0 = time.perf_counter()
        if self.fitter is not None:
            images = [im for _piece, made, _s in self.fitter.generate(backend, batch) for im in made]
        else:
            images = list(backend.generate(batch))
        seconds = time.perf_counter() - t0
        described = backend.describe_model(batch.key.model)
        if self.options is None:
            return [pack_image(im) for im in images], seconds, described
        png = self.options.png
        hashes = self.hashes(batch.key.model, [n for n, _w in batch.key.loras])
        encoded = [png.encode(s, im, described, hashes) for s, im in zip(batch.samples, images, strict=True)]
        return encoded, seconds, described

    def describe_model(self, model: str) -> str:
        return self._backend().describe_model(model)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
