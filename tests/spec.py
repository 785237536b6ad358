"""The spec-reading tests read ../shared/spec beside the checkout."""

from __future__ import annotations

import os


def spec_required() -> bool:
    """In CI (and wherever ALPCARE_REQUIRE_SPEC=1) a missing spec fails: it must not skip. In a
    clone on its own (a new user's `make test`) the spec-reading tests skip."""
    return os.environ.get("CI") == "true" or os.environ.get("ALPCARE_REQUIRE_SPEC") == "1"
