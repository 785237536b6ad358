"""An admin URL with an object id that is not a number (a mistyped link, a relative URL a
browser resolved against the page, a probe) is "not found", never a server error."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(client: Any) -> Any:
    """A superuser's client that answers a server error as the user would see it (a 500)."""
    superuser = User.objects.create_superuser("root", password="correct horse battery staple")
    client.force_login(superuser)
    client.raise_request_exception = False
    return client


@pytest.mark.parametrize("object_id", ["widgets.css", "\u00b2", "1\u00b2"])
def test_every_object_page_of_every_admin_answers_a_non_numeric_id_without_error(
    client: Any, object_id: str
) -> None:
    """ "²" is a digit to str.isdigit, not to int() or the database: the rule, try-it, rule-set
    and history pages answered it with a server error."""
    checked = []
    for model in admin.site._registry:
        opts = model._meta
        for suffix in ("change/", "history/", "delete/", "try/", "history/1/", ""):
            path = f"/admin/{opts.app_label}/{opts.model_name}/{object_id}/{suffix}"
            response = client.get(path, follow=True)
            assert response.status_code in (200, 403, 404), (path, response.status_code)
            checked.append(path)
    assert any("/pathways/rule/" in path for path in checked)


@pytest.mark.parametrize("value", ["abc", "\u00b2", "1x"])
def test_an_id_that_is_not_a_number_in_a_query_or_form_is_not_a_server_error(
    client: Any, value: str
) -> None:
    listed = client.get("/admin/pathways/rule/", {"rule_set": value})
    assert listed.status_code == 200 and "0 rules" in listed.content.decode()
    started = client.post("/admin/pathways/ruleset/start-draft/", {"base": value})
    assert started.status_code == 404


@pytest.mark.parametrize("year", ["9999", "99999", "-1", "0"])
def test_a_year_lookup_beyond_the_calendar_on_any_admin_list_is_a_400_naming_it(
    client: Any, year: str
) -> None:
    """Django lets any local date field's lookup through (?due__year=99999), and the year's
    bounds overflow when the query is built: every admin list with a date field, the
    libraries' included, was a server error (9999 too where the date drill-down reads the
    year after)."""
    checked = []
    for model in admin.site._registry:
        opts = model._meta
        for field in opts.concrete_fields:
            if field.get_internal_type() not in ("DateField", "DateTimeField"):
                continue
            path = f"/admin/{opts.app_label}/{opts.model_name}/?{field.name}__year={year}"
            response = client.get(path)
            assert response.status_code == 400, (path, response.status_code)
            assert f"{field.name}__year={year}: a year from 1 to 9998" in response.content.decode()
            checked.append(path)
    assert any("/auth/user/" in path for path in checked)
    assert any("/pathways/accesslog/?at__year" in path for path in checked)
    # A year lookup followed by a comparison; each value of a repeated key; a year in range is
    # a list as before.
    for key in ("at__year__gte", "at__year__lt", "at__year__exact", "at__iso_year__gt"):
        response = client.get(f"/admin/pathways/accesslog/?{key}=99999")
        assert response.status_code == 400, key
    assert client.get("/admin/pathways/accesslog/?at__year=99999&at__year=2026").status_code == 400
    assert client.get("/admin/pathways/accesslog/?at__year=2026").status_code == 200
