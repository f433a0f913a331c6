"""How much template the parsers accept: limits that keep malformed or huge input from
costing unbounded time or memory."""

from __future__ import annotations

__all__ = ["MAX_NESTING", "MAX_SPECIAL"]

#: Deepest nesting of ``{}`` and ``[]`` accepted; deeper input is refused with an error.
MAX_NESTING = 64
#: Most characters with a meaning (``{ } [ ] | < _ \``) in one template source. Parsing
#: costs memory and time per token, so a 10 MB line made of choices is refused at once
#: instead of taking minutes and gigabytes; long lists belong in wildcard files, whose
#: lines are parsed one by one.
MAX_SPECIAL = 100_000
