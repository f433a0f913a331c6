"""The run store: the workspace's SQLite database and its image folders. Every SQL
statement of the project lives in this package."""

from __future__ import annotations

from stable_discovery.store.database import (
    DEFAULT_WORKSPACE,
    ENV_WORKSPACE,
    Experiment,
    ExperimentSpec,
    Store,
    StoreError,
    check_name,
    sample_from_record,
    workspace_path,
)

__all__ = [
    "DEFAULT_WORKSPACE",
    "ENV_WORKSPACE",
    "Experiment",
    "ExperimentSpec",
    "Store",
    "StoreError",
    "check_name",
    "sample_from_record",
    "workspace_path",
]
