"""Install revision 1 of the shipped rule catalogue (pathways/catalogue/catalogue_r1.toml, frozen)
as the first published rule set; 0016_install_revision_2 then installs revision 2 after it."""

from typing import Any

from django.db import migrations

CATALOGUE_VERSION = "2026-11-22.1"


def install(apps: Any, schema_editor: Any) -> None:
    from pathways.engine import CATALOGUE_R1_PATH
    from pathways.rules import install_catalogue

    if apps.get_model("pathways", "RuleSet").objects.exists():
        return
    install_catalogue(
        version=CATALOGUE_VERSION,
        path=CATALOGUE_R1_PATH,
        get_model=lambda name: apps.get_model("pathways", name),
    )


def uninstall(apps: Any, schema_editor: Any) -> None:
    apps.get_model("pathways", "RuleSet").objects.filter(version=CATALOGUE_VERSION).delete()


class Migration(migrations.Migration):
    dependencies = [("pathways", "0001_initial")]
    operations = [migrations.RunPython(install, uninstall)]
