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


def _commands() -> list[str]:
    folder = ROOT / "pathways" / "management" / "commands"
    return sorted(path.stem for path in folder.glob("*.py") if path.stem != "__init__")


def test_what_is_where_names_every_command() -> None:
    """The row for pathways/management/commands/ omitted `scheduler`. Found by an audit."""
    row = next(line for line in README.splitlines() if "`pathways/management/commands/`" in line)
    missing = [name for name in _commands() if f"`{name}`" not in row]
    assert not missing, f"README 'What is where' does not name: {missing}"


def test_the_readme_documents_every_command_option() -> None:
    """Undocumented were reassess --timeout, scheduler --interval, and seed_demo --patients,
    --results, --seed and --url. Found by an audit."""
    from django.core.management import BaseCommand, load_command_class

    default = {option for action in BaseCommand().create_parser("manage.py", "x")._actions
               for option in action.option_strings}  # fmt: skip
    missing = []
    for name in _commands():
        parser = load_command_class("pathways", name).create_parser("manage.py", name)
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option not in default and option not in README:
                    missing.append(f"{name} {option}")
    assert not missing, f"README does not document: {missing}"
