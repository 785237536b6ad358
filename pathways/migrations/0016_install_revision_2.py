"""Install revision 2 of the clinical contract (pathways/catalogue/catalogue.toml) as a new rule
set version; every earlier version stays, so stored results still trace to their rules.

- The version in force is the shipped revision 1, unchanged (a fresh or untouched install): revision
  2 is published and put in force.
- The site runs its own tuned version: revision 2 is installed as a DRAFT based on it, for the
  site's four-eyes review (the admin shows a notice until it is published or deleted), so that a
  site's own tuning is never overwritten.
"""

from typing import Any

from django.db import migrations

from pathways.rules import (
    REVISION_1_VERSION,
    REVISION_2_DRAFT_NOTE,
    REVISION_2_PUBLISHED_NOTE,
    REVISION_2_VERSION,
)

DRAFT_NOTE = REVISION_2_DRAFT_NOTE
PUBLISHED_NOTE = REVISION_2_PUBLISHED_NOTE


def _free_version(rule_set_model: Any) -> str:
    version, number = REVISION_2_VERSION, 1
    while rule_set_model.objects.filter(version=version).exists():
        number += 1
        version = f"{REVISION_2_VERSION.rsplit('.', 1)[0]}.{number}"
    return version


def install(apps: Any, schema_editor: Any) -> None:
    from django.utils import timezone

    from pathways import engine
    from pathways.rules import install_rule_set

    def model(name: str) -> Any:
        return apps.get_model("pathways", name)

    rule_set_model = model("RuleSet")
    current = rule_set_model.objects.filter(is_current=True).first()
    untouched = current is None or current.version == REVISION_1_VERSION
    if rule_set_model.objects.filter(note__in=[DRAFT_NOTE, PUBLISHED_NOTE]).exists():
        return  # already installed (a re-run after a rollback of this migration's data)
    row = rule_set_model.objects.create(
        status="draft",
        based_on=current,
        note=PUBLISHED_NOTE if untouched else DRAFT_NOTE,
        created_at=timezone.now(),
    )
    catalogue = engine.load_catalogue(engine.CATALOGUE_PATH, version=REVISION_2_VERSION)
    install_rule_set(catalogue, into=row, get_model=model)
    if not untouched:
        return
    rule_set_model.objects.filter(is_current=True).update(is_current=False)
    row.version = _free_version(rule_set_model)
    row.status = "published"
    row.is_current = True
    row.published_at = timezone.now()
    row.save()


def uninstall(apps: Any, schema_editor: Any) -> None:
    rule_set_model = apps.get_model("pathways", "RuleSet")
    installed = rule_set_model.objects.filter(note__in=[DRAFT_NOTE, PUBLISHED_NOTE])
    for row in installed:
        if row.is_current and row.based_on_id is not None:
            rule_set_model.objects.filter(pk=row.pk).update(is_current=False)
            rule_set_model.objects.filter(pk=row.based_on_id).update(is_current=True)
    installed.delete()


class Migration(migrations.Migration):
    dependencies = [("pathways", "0015_rules_revision2")]
    operations = [migrations.RunPython(install, uninstall)]
