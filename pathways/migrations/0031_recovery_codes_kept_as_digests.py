"""Recovery codes are kept as digests (pathways.twofactor.recovery_code_digest): the codes
already stored in clear (django-otp keeps them so) are replaced by their digests, so that they
go on working and a copy of the database yields none."""

from typing import Any

from django.db import migrations

# django-otp's random_token(): 8 characters; a digest has 16.
CLEAR_LENGTH = 8


def digest_codes(apps: Any, schema_editor: Any) -> None:
    from pathways.twofactor import recovery_code_digest

    StaticToken = apps.get_model("otp_static", "StaticToken")
    for token in StaticToken.objects.select_related("device"):
        if len(token.token) == CLEAR_LENGTH:
            token.token = recovery_code_digest(token.device.user_id, token.token)
            token.save(update_fields=["token"])


class Migration(migrations.Migration):
    dependencies = [
        ("pathways", "0030_rule_firing_run"),
        ("otp_static", "0003_add_timestamps"),
    ]

    operations = [migrations.RunPython(digest_codes, migrations.RunPython.noop)]
