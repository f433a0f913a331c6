"""The test suite. Shared helpers live in :mod:`tests.helpers`; fixtures and hooks in
``conftest.py``."""
