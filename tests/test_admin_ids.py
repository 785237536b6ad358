"""An admin URL with an object id that is not a number (a mistyped link, a relative URL a
browser resolved against the page, a probe) is "not found", never a server error."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db


def test_every_object_page_of_every_admin_answers_a_non_numeric_id_without_error(
    client: Any,
) -> None:
    superuser = User.objects.create_superuser("root", password="correct horse battery staple")
    client.force_login(superuser)
    client.raise_request_exception = False
    checked = []
    for model in admin.site._registry:
        opts = model._meta
        for suffix in ("change/", "history/", "delete/", "try/", "history/1/", ""):
            path = f"/admin/{opts.app_label}/{opts.model_name}/widgets.css/{suffix}"
            response = client.get(path, follow=True)
            assert response.status_code in (200, 403, 404), (path, response.status_code)
            checked.append(path)
    assert any("/pathways/rule/" in path for path in checked)
