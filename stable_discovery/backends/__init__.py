"""Image backends: turn batches of samples into images.

The core never imports a backend's heavy dependencies; each backend imports them when
it is opened. Built-in backends: ``dummy`` (no torch; for tests and dry runs) and
``diffusers`` (Stable Diffusion through diffusers/torch; ``--model tiny`` builds a tiny
random-weights pipeline locally).
"""

from stable_discovery.backends.base import Backend, BackendError, Batch, GenerationKey

__all__ = ["Backend", "Batch", "BackendError", "GenerationKey"]
