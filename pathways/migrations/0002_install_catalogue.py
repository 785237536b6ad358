"""Install the shipped rule catalogue (pathways/catalogue/catalogue.toml) as the first published
rule set, so that `migrate` on a fresh database gives the whole catalogue."""

from typing import Any

from django.db import migrations

CATALOGUE_VERSION = "2026-11-22.1"


def install(apps: Any, schema_editor: Any) -> None:
    from pathways.rules import install_catalogue

    if apps.get_model("pathways", "RuleSet").objects.exists():
        return
    install_catalogue(
        version=CATALOGUE_VERSION,
        get_model=lambda name: apps.get_model("pathways", name),
    )


def uninstall(apps: Any, schema_editor: Any) -> None:
    apps.get_model("pathways", "RuleSet").objects.filter(version=CATALOGUE_VERSION).delete()


class Migration(migrations.Migration):
    dependencies = [("pathways", "0001_initial")]
    operations = [migrations.RunPython(install, uninstall)]
