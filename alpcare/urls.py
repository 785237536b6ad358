from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import path
from django.views.generic import RedirectView

from pathways import (
    analytics,
    cds_hooks,
    changes,
    health,
    inbox,
    monitoring,
    tokens,
    twofactor,
    views,
)
from pathways.api import api

admin.site.site_header = "alpcare administration"
admin.site.site_title = "alpcare admin"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("patients/", views.patient_list, name="patient_list"),
    path("patients/new/", views.patient_new, name="patient_new"),
    path("patients/<int:pk>/", views.patient_detail, name="patient_detail"),
    path("patients/<int:pk>/edit/", views.patient_edit, name="patient_edit"),
    path("patients/<int:pk>/results/", views.patient_add_result, name="patient_add_result"),
    path("patients/<int:pk>/results/<int:result_pk>/", views.result_edit, name="result_edit"),
    path(
        "patients/<int:pk>/results/<int:result_pk>/remove/",
        views.result_remove,
        name="result_remove",
    ),
    path(
        "patients/<int:pk>/case/preview/",
        views.patient_case_preview,
        name="patient_case_preview",
    ),
    path(
        "patients/<int:pk>/follow-ups/<int:follow_up_pk>/done/",
        views.follow_up_done,
        name="follow_up_done",
    ),
    path(
        "patients/<int:pk>/follow-ups/<int:follow_up_pk>/undo/",
        views.follow_up_undo,
        name="follow_up_undo",
    ),
    path("patients/<int:pk>/cards/", views.card_action, name="card_action"),
    path("patients/<int:pk>/responsible/", views.patient_responsible, name="patient_responsible"),
    path(
        "patients/<int:pk>/follow-ups.ics",
        views.patient_follow_ups_ics,
        name="patient_follow_ups_ics",
    ),
    path("worklist.csv", views.worklist_csv, name="worklist_csv"),
    path("case/preview/", views.case_preview, name="case_preview"),
    path("case/rows/lab/", views.case_add_lab_row, name="case_add_lab_row"),
    path("case/rows/therapy/", views.case_add_therapy_row, name="case_add_therapy_row"),
    path("rules/changes/<int:pk>/", changes.publication_changes, name="publication_changes"),
    path(
        "rules/changes/<int:pk>/dismiss/",
        changes.publication_notice_dismiss,
        name="publication_notice_dismiss",
    ),
    path("lab-feed/inbox/", inbox.hl7_inbox, name="hl7_inbox"),
    path("lab-feed/inbox/<int:result_pk>/", inbox.hl7_inbox_match, name="hl7_inbox_match"),
    path(
        "lab-feed/inbox/<int:result_pk>/dismiss/",
        inbox.hl7_inbox_dismiss,
        name="hl7_inbox_dismiss",
    ),
    path(
        "lab-feed/inbox/<int:result_pk>/restore/",
        inbox.hl7_inbox_restore,
        name="hl7_inbox_restore",
    ),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("account/api-tokens/", tokens.api_tokens, name="api_tokens"),
    path("account/api-tokens/<int:pk>/revoke/", tokens.api_token_revoke, name="api_token_revoke"),
    path("accounts/login/", twofactor.LoginView.as_view(), name="login"),
    path("accounts/login/code/", twofactor.two_factor_verify, name="two_factor_verify"),
    path("accounts/two-factor/", twofactor.two_factor, name="two_factor"),
    path("accounts/two-factor/setup/", twofactor.two_factor_setup, name="two_factor_setup"),
    path("accounts/two-factor/confirm/", twofactor.two_factor_confirm, name="two_factor_confirm"),
    path(
        "accounts/two-factor/recovery-codes/",
        twofactor.two_factor_recovery_codes,
        name="two_factor_recovery_codes",
    ),
    path("accounts/two-factor/off/", twofactor.two_factor_off, name="two_factor_off"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz/queue", monitoring.queue_health, name="healthz_queue"),
    path("admin/rule-analytics/", analytics.rule_analytics_view, name="rule_analytics"),
    # CDS Hooks 2.0: discovery is public (no patient data); calls and feedback need the EHR's JWT.
    path("cds-services", cds_hooks.discovery, name="cds_discovery"),
    path("cds-services/<str:service_id>", cds_hooks.service, name="cds_service"),
    path("cds-services/<str:service_id>/feedback", cds_hooks.feedback, name="cds_feedback"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("api/docs", login_required(RedirectView.as_view(url="/api/v1/docs")), name="api_docs"),
]
