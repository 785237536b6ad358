"""The README names every module of the app and every environment variable the settings read."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(heading: str) -> str:
    start = README.index(f"## {heading}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_what_is_where_names_every_module_of_the_app() -> None:
    table = _section("What is where")
    named = set(re.findall(r"`([^`]+)`", table))
    modules = {
        f"pathways/{path.name}"
        for path in (ROOT / "pathways").glob("*.py")
        if path.name not in {"__init__.py", "apps.py"}
    }
    missing = {module for module in modules if module not in named}
    assert not missing, f"README 'What is where' does not name: {sorted(missing)}"


def test_the_environment_table_names_every_variable_the_settings_read() -> None:
    settings = (ROOT / "alpcare" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r"""(?:environ\.get|env\w*)\(\s*["']([A-Z][A-Z0-9_]+)["']""", settings))
    assert {"DJANGO_DEBUG", "DJANGO_LOG_LEVEL"} <= read  # envbool() and os.environ.get() alike
    table = _section("Environment")
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", table, flags=re.MULTILINE))
    missing = read - documented
    assert not missing, f"README 'Environment' does not name: {sorted(missing)}"
