"""Keeping the Hugging Face libraries quiet: no import warnings, no progress bars."""

from __future__ import annotations

__all__ = ["quiet_libraries"]


def quiet_libraries() -> None:
    """Silence diffusers' and transformers' warnings and progress bars (process-wide).

    Call before importing the pipelines: transformers warns at import time.
    Hugging Face Hub download bars are left alone, so a first download shows progress.
    """
    try:
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog
    except ImportError:  # pragma: no cover - reported by _modules()
        return
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    dlog.set_verbosity_error()
    dlog.disable_progress_bar()
