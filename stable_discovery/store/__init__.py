"""The run store: the workspace's SQLite database and its image folders. Every SQL
statement of the project lives in this package (``tests/test_store.py`` checks it):

* :mod:`.database`: :class:`Store`, the connection, experiments, samples and ratings;
* :mod:`.migrations`: the schema, as named migrations;
* :mod:`.lookups`: small questions about one experiment (its id, whether a sample is done);
* :mod:`.gallery_queries`: the gallery's pages, counts and facets;
* :mod:`.stats_queries`: the per-value counts behind ``sdp stats``;
* :mod:`.export`: the records and files ``sdp export`` and the gallery's download write;
* :mod:`.trash`: the workspace's trash (``sdp rm``).

The query modules take an open connection (``Store.db``) and return plain data.
"""

from __future__ import annotations

from stable_discovery.store.database import (
    DB_FILE,
    DEFAULT_WORKSPACE,
    ENV_WORKSPACE,
    Experiment,
    ExperimentSpec,
    Store,
    StoreError,
    check_name,
    read_experiment_names,
    sample_from_record,
    workspace_path,
)

__all__ = [
    "DB_FILE",
    "DEFAULT_WORKSPACE",
    "ENV_WORKSPACE",
    "Experiment",
    "ExperimentSpec",
    "Store",
    "StoreError",
    "check_name",
    "read_experiment_names",
    "sample_from_record",
    "workspace_path",
]
