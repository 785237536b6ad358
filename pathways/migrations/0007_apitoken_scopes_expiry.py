"""API tokens get scopes and an expiry (issue 9): existing tokens keep what they could do
(assess and read) and expire one year after this migration runs."""

from typing import Any

from django.db import migrations, models

import pathways.models


def grant_existing_tokens_their_old_reach(apps: Any, schema_editor: Any) -> None:
    ApiToken = apps.get_model("pathways", "ApiToken")
    ApiToken.objects.filter(scopes="").update(scopes="assess read")


class Migration(migrations.Migration):
    dependencies = [
        ("pathways", "0006_patient_clinic_name_index"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="apitoken",
            options={"ordering": ["-created_at"]},
        ),
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(default=pathways.models._api_token_expiry),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="scopes",
            field=models.CharField(
                default="", help_text="Space-separated: what the token may call.", max_length=100
            ),
        ),
        migrations.RunPython(grant_existing_tokens_their_old_reach, migrations.RunPython.noop),
    ]
