"""Rule tuning in the admin site: drafts edited part by part, checked, previewed, published.

Published rule sets show read-only; every save of a draft part records the draft's last editor
(four-eyes) and is validated with the engine's own checks. The work is done in publishing.py,
impact.py, versions.py and tasks.py.
"""

from __future__ import annotations

import copy
from datetime import date, datetime
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q, QuerySet
from django.forms.models import construct_instance
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from pathways import engine, impact, publishing, rules, tasks, versions
from pathways.access import is_id
from pathways.admin_history import ReadOnlyAdmin, ScopedHistoryAdmin
from pathways.engine.dates import add_months
from pathways.engine.validate import (
    anchor_problem,
    dose_band_problems,
    follow_up_code_problem,
    follow_up_trigger_problem,
    parameter_name_problem,
    rationale_problems,
    rule_code_problem,
    satisfied_by_problem,
    uln_band_problems,
)
from pathways.example_forms import RuleExampleCaseForm
from pathways.listing import listed
from pathways.models import (
    Citation,
    DoseBand,
    FollowUpRule,
    ImpactPreview,
    Parameter,
    Patient,
    PublishedRuleSetError,
    ReassessmentRun,
    Rule,
    RuleExample,
    RuleSet,
    RuleSetPublication,
    UlnBand,
)

PART_MODELS = (Rule, RuleExample, Parameter, FollowUpRule, UlnBand, DoseBand, Citation)


def _default_rule_set() -> RuleSet | None:
    """What the part lists show by default: the newest draft, else the version in force."""
    draft = RuleSet.objects.filter(status=RuleSet.Status.DRAFT).order_by("-pk").first()
    return draft or RuleSet.objects.filter(is_current=True).first()


def _rule_set_title(rule_set: RuleSet) -> str:
    if rule_set.is_draft:
        base = f", from {rule_set.based_on.label}" if rule_set.based_on else ""
        return f"{rule_set.label} (draft{base})"
    return f"{rule_set.label} (in force)" if rule_set.is_current else rule_set.label


class RuleSetFilter(admin.SimpleListFilter):
    """One rule set at a time, the newest draft by default: mixing versions would mislead."""

    title = "rule set"
    parameter_name = "rule_set"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rule_sets = RuleSet.objects.select_related("based_on").order_by("-pk")
        return [(str(rule_set.pk), _rule_set_title(rule_set)) for rule_set in rule_sets]

    def _selected(self) -> str | None:
        if self.value():
            return str(self.value())
        default = _default_rule_set()
        return str(default.pk) if default else None

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        selected = self._selected()
        if selected is None or not is_id(selected):
            return queryset.none()
        return queryset.filter(rule_set_id=int(selected))

    def choices(self, changelist: Any) -> Any:
        selected = self._selected()
        for value, label in self.lookup_choices:
            yield {
                "selected": value == selected,
                "query_string": changelist.get_query_string({self.parameter_name: value}),
                "display": label,
            }


def _may_run_previews(user: Any) -> bool:
    """Rule editors and publishers run impact previews; view-only staff read them."""
    return bool(
        user.has_perm("pathways.change_ruleset") or user.has_perm(publishing.PUBLISH_PERMISSION)
    )


def _preview_out_of_date(preview: ImpactPreview, draft: RuleSet) -> str:
    """Why a stored preview no longer says what publishing the draft would do ("" if it
    does): the draft was edited, another version was put in force, a patient's data changed
    (or a patient was added), or it was computed on an earlier day (due dates and time windows
    have moved) since."""
    if preview.draft_edited_at != draft.last_edited_at:
        return "The draft has changed"
    if not preview.published.is_current:
        return f"{preview.published.label} is no longer in force"
    if timezone.localdate(preview.requested_at) != timezone.localdate():
        return "It was computed on an earlier day"
    if patients_changed_since(preview.requested_at).exists():
        return "Patients' data have changed"
    return ""


def patients_changed_since(moment: datetime) -> QuerySet[Patient]:
    """Patients whose data changed (or who were added) after ``moment``: an index lookup
    (``patient_updated_at_idx``), asked on every view of a preview."""
    return Patient.objects.filter(updated_at__gt=moment)


def _draft_choices() -> QuerySet[RuleSet]:
    return RuleSet.objects.filter(status=RuleSet.Status.DRAFT)


class RuleSetPartAdmin(ScopedHistoryAdmin):
    """Shared by every part of a rule set: drafts editable, published sets read-only."""

    list_filter: Any = [RuleSetFilter]
    list_select_related = ["rule_set"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or obj.rule_set.is_editable)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.rule_set.is_editable)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and "rule_set" not in readonly:
            readonly.append("rule_set")  # a part never moves to another rule set
        return readonly

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (PublishedRuleSetError, publishing.TuningError) as refused:
            # The draft was submitted (or published) while this page was open: the save
            # checked it under the rule set's lock and wrote nothing.
            self.message_user(request, f"Not saved: {refused}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "rule_set":
            kwargs["queryset"] = _draft_choices()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        default = _default_rule_set()
        if "rule_set" not in initial and default is not None and default.is_draft:
            initial["rule_set"] = default.pk
        return initial

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Only a real change makes the user an editor: a Save that changes nothing records
        # nothing (else a publisher's no-op Save would bar them from publishing).
        if not change or form.has_changed() or any(fs.has_changed() for fs in formsets):
            publishing.ruleset_touch(rule_set=form.instance.rule_set, user=request.user)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            rule_set = obj.rule_set
            super().delete_model(request, obj)
            publishing.ruleset_touch(rule_set=rule_set, user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        rule_sets = RuleSet.objects.filter(pk__in=queryset.values("rule_set_id"))
        if any(not rule_set.is_editable for rule_set in rule_sets):
            raise PermissionDenied("A published or in-review rule set cannot be modified.")
        with transaction.atomic():
            for obj in queryset:  # one by one: each delete leaves a history row
                obj.delete()
            for rule_set in rule_sets:
                publishing.ruleset_touch(rule_set=rule_set, user=request.user)


def _rule_set_of(form: forms.ModelForm) -> RuleSet | None:
    if form.instance.pk is not None:
        return RuleSet.objects.filter(pk=form.instance.rule_set_id).first()
    rule_set = form.cleaned_data.get("rule_set")
    return rule_set if isinstance(rule_set, RuleSet) else None


def _require_draft(form: forms.ModelForm) -> RuleSet | None:
    rule_set = _rule_set_of(form)
    if rule_set is not None and rule_set.in_review:
        raise forms.ValidationError(
            f"Rule set {rule_set.label} is in review and locked; a publisher returns it to draft."
        )
    if rule_set is not None and not rule_set.is_draft:
        raise forms.ValidationError(
            f"Rule set {rule_set.label} is published and cannot be modified; start a draft."
        )
    return rule_set


def _names_for_conditions(rule_set: RuleSet, extra_code: str = "") -> tuple[list[str], list[str]]:
    parameter_names = list(
        Parameter.objects.filter(rule_set=rule_set).values_list("name", flat=True)
    )
    codes = list(Rule.objects.filter(rule_set=rule_set).values_list("code", flat=True))
    if extra_code:
        codes.append(extra_code)
    return parameter_names, codes


# ---------------------------------------------------------------------------------------------
# Rules, with their examples inline.


class RuleForm(forms.ModelForm):
    class Meta:
        model = Rule
        fields = [
            "rule_set",
            "code",
            "pathway",
            "priority",
            "enabled",
            "position",
            "title",
            "rationale",
            "citations",
            "condition",
            "escalate_when",
            "escalate_to",
            "suppressions",
            "evidence_note",
            "reviewed_on",
        ]
        widgets = {
            "suppressions": forms.Textarea(
                attrs={"rows": 4, "class": "vLargeTextField tuning-code"}
            ),
            "evidence_note": forms.Textarea(attrs={"rows": 2, "class": "vLargeTextField"}),
            "condition": forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField tuning-code"}),
            "escalate_when": forms.Textarea(
                attrs={"rows": 2, "class": "vLargeTextField tuning-code"}
            ),
            "rationale": forms.Textarea(attrs={"rows": 2, "class": "vLargeTextField"}),
            "title": forms.TextInput(attrs={"class": "vLargeTextField"}),
            "citations": forms.Textarea(attrs={"rows": 1, "class": "vLargeTextField"}),
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        rule_set = _require_draft(self)
        if rule_set is None:
            return cleaned
        code = cleaned.get("code") or self.instance.code
        if "code" in cleaned and (problem := rule_code_problem(cleaned["code"])) is not None:
            self.add_error("code", problem)  # the publish gate's own check and words
        parameter_names, codes = _names_for_conditions(rule_set, code)
        if "rationale" in cleaned:  # the gate's template check: placeholders, [[ ]] segments
            for problem in rationale_problems(cleaned["rationale"], parameter_names):
                self.add_error("rationale", problem)
        if "citations" in cleaned and cleaned["citations"] in (None, ""):
            cleaned["citations"] = []  # an emptied box: refused below, as the gate would
        if "citations" in cleaned and "citations" not in self.errors:
            known = set(Citation.objects.filter(rule_set=rule_set).values_list("key", flat=True))
            for problem in citation_problems(cleaned["citations"], known):
                self.add_error("citations", problem)
        for name in ("condition", "escalate_when"):
            expression = cleaned.get(name)
            if expression and name not in self.errors:
                problem = engine.check_condition(expression, parameter_names, codes)
                if problem:
                    self.add_error(name, problem)
        if bool(cleaned.get("escalate_when")) != bool(cleaned.get("escalate_to")):
            self.add_error("escalate_to", "escalate_when and escalate_to go together")
        if "suppressions" in cleaned and cleaned["suppressions"] in (None, ""):
            cleaned["suppressions"] = []  # an emptied box: no suppressions
        if "suppressions" not in self.errors:
            for problem in suppression_problems(
                cleaned.get("suppressions"), parameter_names, codes
            ):
                self.add_error("suppressions", problem)
        return cleaned


def citation_problems(value: Any, known_keys: set[str]) -> list[str]:
    """What is wrong with a rule's citations as edited: a list of the draft's citation keys."""
    if not isinstance(value, list) or not all(isinstance(key, str) for key in value):
        return ['a list of citation keys in quotes is required, such as ["S0-7"]']
    if not value:
        return ["at least one citation is required"]
    return [
        f'unknown citation "{key}": add it under Citations first, or correct the key'
        for key in value
        if key not in known_keys
    ]


def suppression_problems(value: Any, parameter_names: list[str], codes: list[str]) -> list[str]:
    """What is wrong with a rule's suppressions as edited: a list of {condition, reason}."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        return ['a list of {"condition": "…", "reason": "…"} is required']
    problems = []
    for n, item in enumerate(value, start=1):
        if not isinstance(item, dict) or set(item) != {"condition", "reason"}:
            problems.append(f'suppression {n}: give exactly "condition" and "reason"')
            continue
        if not isinstance(item["reason"], str) or not item["reason"].strip():
            problems.append(f"suppression {n}: the reason is shown to clinicians and is required")
        condition = item["condition"]
        if not isinstance(condition, str):
            problems.append(f"suppression {n}: the condition must be a CEL expression (text)")
            continue
        problem = engine.check_condition(condition, parameter_names, codes)
        if problem:
            problems.append(f"suppression {n}: {problem}")
    return problems


# A rule whose last clinical review is older than this is listed as due for review.
REVIEW_INTERVAL_MONTHS = 24  # two calendar years (730 days flagged a review a day early)
RUNS_SHOWN = 5  # re-assessment runs on a version's page, the latest first


class ReviewDueFilter(admin.SimpleListFilter):
    """Rules whose clinical review is older than two years (or never recorded)."""

    title = "clinical review"
    parameter_name = "review"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("overdue", "older than two years (or never)"), ("recent", "within two years")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        limit = review_limit()
        if self.value() == "overdue":
            return queryset.filter(Q(reviewed_on__isnull=True) | Q(reviewed_on__lt=limit))
        if self.value() == "recent":
            return queryset.filter(reviewed_on__gte=limit)
        return queryset


def review_limit() -> date:
    """The oldest review still within two calendar years of today."""
    return add_months(timezone.localdate(), -REVIEW_INTERVAL_MONTHS)


def review_overdue(rule: Rule) -> bool:
    return rule.reviewed_on is None or rule.reviewed_on < review_limit()


class RuleExampleInline(admin.TabularInline):
    """The rule's examples by name; each opens as a structured case form (example_forms.py)."""

    model = RuleExample
    extra = 0
    fields = ["name", "fires", "case_summary"]
    readonly_fields = ["case_summary"]
    show_change_link = True

    @admin.display(description="case")
    def case_summary(self, example: RuleExample) -> str:
        labs = example.case.get("labs", []) if isinstance(example.case, dict) else []
        shown = [f"{lab.get('test')} {lab.get('value')} {lab.get('unit')}" for lab in labs[-3:]]
        more = f" (+{len(labs) - 3} more)" if len(labs) > 3 else ""
        return "; ".join(shown) + more or "—"

    def _editable(self, request: HttpRequest, obj: Any, allowed: bool) -> bool:
        return allowed and (obj is None or obj.rule_set.is_editable)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a new example is written on its own page, as a structured case form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(request, obj, super().has_change_permission(request, obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(request, obj, super().has_delete_permission(request, obj))


class TryCaseForm(forms.Form):
    case = forms.CharField(
        label="Case document (JSON)",
        widget=forms.Textarea(attrs={"rows": 14, "class": "vLargeTextField tuning-code"}),
    )


@admin.register(Rule)
class RuleAdmin(RuleSetPartAdmin):
    form = RuleForm
    inlines = [RuleExampleInline]
    list_display_links = ["code"]
    list_filter = [RuleSetFilter, ReviewDueFilter, "pathway", "priority", "enabled"]
    list_per_page = 200  # a whole rule set on one page
    ordering = ["rule_set", "pathway", "position", "code"]
    search_fields = ["code", "title", "condition"]
    actions = ["disable_rules", "enable_rules"]
    change_form_template = "admin/pathways/rule/change_form.html"
    fieldsets = [
        (None, {"fields": ["rule_set", "code", "pathway", "priority", "enabled", "position"]}),
        ("Wording", {"fields": ["title", "rationale", "citations"]}),
        ("Logic", {"fields": ["condition", "escalate_when", "escalate_to", "suppressions"]}),
        ("Evidence", {"fields": ["evidence_note", "reviewed_on"]}),
    ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        notify_revision_2_draft(request)
        return super().changelist_view(request, extra_context)

    def get_list_display(self, request: HttpRequest) -> Any:
        counts = impact.rule_fire_counts()  # once per page, not per row

        @admin.display(description="fires for (patients now)")
        def fires_for(rule: Rule) -> int:
            return counts.get(rule.code, 0)

        @admin.display(description="last clinical review", ordering="reviewed_on")
        def last_review(rule: Rule) -> str:
            shown = rule.reviewed_on.isoformat() if rule.reviewed_on else "never"
            due = " (review due)" if review_overdue(rule) else ""
            return format_html('<span class="nowrap">{}</span>{}', shown, due)  # date unbroken

        return [
            "code",
            "pathway",
            "priority",
            "enabled",
            fires_for,
            "title",
            last_review,
        ]  # no rule-set column: the list shows one rule set, named in its filter

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            readonly.append("code")  # codes never change meaning (spec §4)
        return readonly

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        examples = formset.save(commit=False)
        for example in examples:
            example.rule_set_id = form.instance.rule_set_id
            example.save()
        for example in formset.deleted_objects:
            example.delete()
        formset.save_m2m()

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Rule], enabled: bool) -> None:
        rules = list(queryset.select_related("rule_set"))
        if any(not rule.rule_set.is_editable for rule in rules):
            self.message_user(
                request,
                "Published or in-review rule sets cannot be modified: start a draft (or have it "
                "returned to draft) to switch rules.",
                messages.ERROR,
            )
            return
        with transaction.atomic():
            changed = [rule for rule in rules if rule.enabled != enabled]
            for rule in changed:
                rule.enabled = enabled
                rule.save()  # save(), not update(): the change stays in the history
            for rule_set in {rule.rule_set for rule in changed}:
                publishing.ruleset_touch(rule_set=rule_set, user=request.user)
        state = "enabled" if enabled else "disabled"
        self.message_user(request, f"{len(rules)} rule(s) {state} in the draft.", messages.SUCCESS)

    @admin.action(description="Disable selected rules (draft change)", permissions=["change"])
    def disable_rules(self, request: HttpRequest, queryset: QuerySet[Rule]) -> None:
        self._set_enabled(request, queryset, False)

    @admin.action(description="Enable selected rules (draft change)", permissions=["change"])
    def enable_rules(self, request: HttpRequest, queryset: QuerySet[Rule]) -> None:
        self._set_enabled(request, queryset, True)

    def get_urls(self) -> list[URLPattern]:
        urls: list[URLPattern] = [
            path(
                "<path:object_id>/try/",
                self.admin_site.admin_view(self.try_view),
                name="pathways_rule_try",
            )
        ]
        return urls + super().get_urls()

    def _rule_context(self, request: HttpRequest, rule: Rule) -> dict[str, Any]:
        outcomes = publishing.rule_example_outcomes(rule_set=rule.rule_set, code=rule.code)
        return {
            "rule": rule,
            "facts": engine.FACTS,
            "parameters": Parameter.objects.filter(rule_set=rule.rule_set).order_by(
                "rule_code", "name"
            ),
            "example_outcomes": [(o, publishing.example_why(o)) for o in outcomes],
            "fires_for": impact.rule_fire_counts().get(rule.code, 0),
            "try_url": reverse("admin:pathways_rule_try", args=[rule.pk]),
        }

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        rule = (
            Rule.objects.select_related("rule_set").filter(pk=object_id).first()
            if is_id(str(object_id))
            else None  # the admin answers "does not exist" for an id that is not a number
        )
        context = dict(extra_context or {})
        if rule is not None and self.has_view_or_change_permission(request, rule):
            context.update(self._rule_context(request, rule))
            first = rule.examples.first()
            initial = engine.case_to_document(engine.parse_case(first.case)) if first else {}
            context["try_form"] = TryCaseForm(initial={"case": _json(initial)})
        return super().change_view(request, object_id, form_url, context)

    def try_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not is_id(str(object_id)):
            raise Http404("No such rule")
        rule = get_object_or_404(Rule.objects.select_related("rule_set"), pk=object_id)
        if not self.has_view_or_change_permission(request, rule):
            raise PermissionDenied
        form = TryCaseForm(request.POST or None)
        outcome = None
        if request.method == "POST" and form.is_valid():
            outcome = impact.rule_try_case(rule_set=rule.rule_set, text=form.cleaned_data["case"])
        context = {
            **self.admin_site.each_context(request),
            **self._rule_context(request, rule),
            "opts": self.opts,
            "title": f"Try rule {rule.code} on a case",
            "try_form": form,
            "outcome": outcome,
            "fired": outcome.fired(rule.code) if outcome else None,
        }
        return TemplateResponse(request, "admin/pathways/rule/try.html", context)


def notify_revision_2_draft(request: HttpRequest) -> None:
    """The admin's notice while revision 2 waits as a draft for the site's four-eyes review."""
    draft = rules.revision_2_draft()
    if draft is None:
        return
    url = reverse("admin:pathways_ruleset_change", args=[draft.pk])
    messages.warning(
        request,
        format_html(
            'Revision 2 of the clinical contract was installed as draft <a href="{}">{}</a>, '
            "not put in force, because this site runs its own tuned rule set. Review it (carry "
            "your tuning over), submit it and have a second publisher publish it.",
            url,
            draft.label,
        ),
    )


def _json(document: Any) -> str:
    import json

    return json.dumps(document, indent=2, ensure_ascii=False)


@admin.register(RuleExample)
class RuleExampleAdmin(RuleSetPartAdmin):
    form = RuleExampleCaseForm
    list_display = ["name", "rule", "fires", "rule_set"]
    list_select_related = ["rule", "rule_set"]
    search_fields = ["name", "rule__code"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        # A new example belongs to its rule's set: choosing the set separately could contradict it.
        head = ["rule_set", "rule", "name", "fires"] if obj else ["rule", "name", "fires"]
        case = [(title, {"fields": names}) for title, names in RuleExampleCaseForm.FIELDSETS]
        return [(None, {"fields": head}), *case]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))
        return [*readonly, "rule"] if obj is not None else readonly

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "rule":
            kwargs["queryset"] = Rule.objects.filter(
                rule_set__status=RuleSet.Status.DRAFT
            ).select_related("rule_set")
            field = super().formfield_for_foreignkey(db_field, request, **kwargs)
            field.label_from_instance = lambda rule: f"{rule.code} ({rule.rule_set.label})"
            return field
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.rule_set_id = obj.rule.rule_set_id
        super().save_model(request, obj, form, change)


# ---------------------------------------------------------------------------------------------
# Parameters: numbers with units and bounds, never CEL text.


class ParameterForm(forms.ModelForm):
    class Meta:
        model = Parameter
        fields = [
            "rule_set",
            "name",
            "value",
            "unit",
            "minimum",
            "maximum",
            "rule_code",
            "description",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        value = self.fields.get("value")
        if value is not None and self.instance.pk is not None:
            instance = self.instance
            value.widget = forms.NumberInput(
                attrs={
                    "step": "any",
                    "min": f"{instance.minimum:g}",
                    "max": f"{instance.maximum:g}",
                }
            )
            unit = f" ({instance.unit})" if instance.unit else ""
            value.label = f"{instance.label}{unit}"  # the raw name stays, read-only, above
            value.help_text = (
                f"Between {instance.minimum:g} and {instance.maximum:g}"
                f"{' ' + instance.unit if instance.unit else ''}."
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        rule_set = _require_draft(self)
        owner = cleaned.get("rule_code")
        owned_by_no_rule = (
            owner
            and rule_set is not None
            and not Rule.objects.filter(rule_set=rule_set, code=owner).exists()
        )
        if owned_by_no_rule:
            self.add_error(
                "rule_code",
                f'No rule "{owner}" in this rule set: give the code of the rule the '
                "parameter belongs to, or leave it blank for a shared parameter.",
            )
        instance = self.instance
        name = cleaned.get("name", instance.name) or ""
        name_problem = parameter_name_problem(name)
        if name_problem is not None and "name" not in self.errors:
            self.add_error("name" if "name" in self.fields else None, name_problem)
        value = cleaned.get("value")
        minimum = cleaned.get("minimum", instance.minimum)
        maximum = cleaned.get("maximum", instance.maximum)
        if value is None or minimum is None or maximum is None:
            return cleaned
        # The publish gate's own check, so the editor reads the message it would give.
        problems = publishing.parameter_problems(
            name=name,
            value=value,
            unit=cleaned.get("unit", instance.unit) or "",
            minimum=minimum,
            maximum=maximum,
        )
        for problem in problems:
            if problem != name_problem:  # that one is the name's, given on it above
                self.add_error("maximum" if minimum > maximum else "value", problem)
        return cleaned


@admin.register(Parameter)
class ParameterAdmin(RuleSetPartAdmin):
    form = ParameterForm
    list_display = ["parameter", "value_with_unit", "bounds", "rule_code", "rule_set"]
    list_display_links = ["parameter"]
    ordering = ["rule_set", "rule_code", "name"]

    @admin.display(description="parameter", ordering="name")
    def parameter(self, parameter: Parameter) -> str:
        # The human label first; the raw name (what conditions write) as secondary text.
        return format_html(
            '{}<br><small class="tuning-muted"><code>{}</code></small>',
            parameter.label,
            parameter.name,
        )

    @admin.display(description="value", ordering="value")
    def value_with_unit(self, parameter: Parameter) -> str:
        return f"{parameter.value:g} {parameter.unit}".strip()

    @admin.display(description="allowed range")
    def bounds(self, parameter: Parameter) -> str:
        return f"{parameter.minimum:g} to {parameter.maximum:g} {parameter.unit}".strip()

    search_fields = ["name", "rule_code", "description"]
    fields = ["rule_set", "name", "value", "unit", "minimum", "maximum", "rule_code", "description"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None:  # the declared range is part of the parameter's meaning
            readonly += ["name", "unit", "minimum", "maximum", "rule_code"]
        return readonly


# ---------------------------------------------------------------------------------------------
# Follow-ups, reference intervals, dose bands, citations.


class FollowUpRuleForm(forms.ModelForm):
    class Meta:
        model = FollowUpRule
        fields = [
            "rule_set",
            "position",
            "code",
            "title",
            "rules",
            "when",
            "anchor",
            "offset_value",
            "offset_parameter",
            "offset_unit",
            "satisfied_by",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        rule_set = _require_draft(self)
        if rule_set is None:
            return cleaned
        parameter_names, codes = _names_for_conditions(rule_set)
        if "code" in cleaned and (problem := follow_up_code_problem(cleaned["code"])) is not None:
            self.add_error("code", problem)  # the publish gate's own check and words
        when = cleaned.get("when")
        if when:
            problem = engine.check_condition(when, parameter_names, codes)
            if problem:
                self.add_error("when", problem)
        for name in ("rules", "satisfied_by"):
            if name in cleaned and cleaned[name] in (None, ""):
                cleaned[name] = []  # an emptied box: none
        rules_given = cleaned.get("rules", [])
        if not _text_list(rules_given):
            self.add_error(
                "rules", 'a list of rule codes in quotes is required, such as ["bone-scan"]'
            )
        else:
            unknown = [code for code in rules_given if code not in codes]
            if unknown:
                self.add_error("rules", f"Unknown rule code(s): {', '.join(unknown)}")
            if (problem := follow_up_trigger_problem(rules_given, when)) is not None:
                self.add_error("rules", problem)  # nothing would ever create it
        satisfied_by = cleaned.get("satisfied_by", [])
        if not _text_list(satisfied_by):
            self.add_error(
                "satisfied_by",
                'a list of lab tests or therapies in quotes is required, such as ["alp"] or '
                '["therapy:bisphosphonate"]',
            )
        else:
            for test in satisfied_by:
                if (problem := satisfied_by_problem(test)) is not None:
                    self.add_error("satisfied_by", problem)
        anchor = cleaned.get("anchor")
        if anchor and (problem := anchor_problem(anchor)) is not None:
            self.add_error("anchor", f"{problem}: the due date is counted from a date fact")
        if cleaned.get("offset_parameter") and cleaned["offset_parameter"] not in parameter_names:
            self.add_error("offset_parameter", "Unknown parameter.")
        if cleaned.get("offset_parameter") and cleaned.get("offset_value") is not None:
            self.add_error(
                "offset_value",
                "Give an offset value or an offset parameter, not both: the parameter's value "
                "would be used and this one ignored.",
            )
        if cleaned.get("offset_value") is not None and cleaned.get("offset_unit"):
            problem = engine.offset_problem(cleaned["offset_value"], cleaned["offset_unit"])
            if problem:  # refused here, not first at publishing
                self.add_error("offset_value", f"The offset {problem}.")
        return cleaned


def _text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


class DraftOnlyForm(forms.ModelForm):
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        _require_draft(self)
        return cleaned


class BandForm(DraftOnlyForm):
    """A reference interval or a dose band, checked on its own as the publish gate checks it,
    as the engine would read it once saved, each problem on the field it lies in."""

    @staticmethod
    def band_problems(band: Any) -> list[tuple[str, str]]:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:  # a field refused already: the band as edited is not known
            return cleaned
        edited = construct_instance(self, copy.copy(self.instance))  # not saved
        for field, problem in self.band_problems(edited):  # the publish gate's checks and words
            self.add_error(field if field in self.fields else None, problem)
        return cleaned


class UlnBandForm(BandForm):
    @staticmethod
    def band_problems(band: Any) -> list[tuple[str, str]]:
        return uln_band_problems(rules.engine_uln_band(band))


class DoseBandForm(BandForm):
    @staticmethod
    def band_problems(band: Any) -> list[tuple[str, str]]:
        return dose_band_problems(rules.engine_dose_band(band))


class CitationForm(DraftOnlyForm):
    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        old_key, new_key = self.instance.key, cleaned.get("key")
        if self.instance.pk is not None and new_key is not None and new_key != old_key:
            # Renamed, the rules citing it would cite a key that no longer exists.
            rules_citing = [
                rule.code
                for rule in Rule.objects.filter(rule_set_id=self.instance.rule_set_id)
                if isinstance(rule.citations, list) and old_key in rule.citations
            ]
            if rules_citing:
                self.add_error(
                    "key",
                    f'"{old_key}" is cited by rule(s) {", ".join(rules_citing)}: change their '
                    "citations first, then rename the key.",
                )
        return cleaned


@admin.register(FollowUpRule)
class FollowUpRuleAdmin(RuleSetPartAdmin):
    form = FollowUpRuleForm
    list_display = ["code", "title", "anchor", "offset_value", "offset_parameter", "offset_unit"]
    search_fields = ["code", "title"]


@admin.register(UlnBand)
class UlnBandAdmin(RuleSetPartAdmin):
    form = UlnBandForm
    list_display = [
        "test",
        "sex",
        "menopause",
        "age_from",
        "age_from_unit",
        "age_to",
        "age_to_unit",
        "gestational_week_from",
        "gestational_week_to",
        "lln",
        "uln",
        "label",
    ]
    list_filter = [RuleSetFilter, "test", "sex"]


@admin.register(DoseBand)
class DoseBandAdmin(RuleSetPartAdmin):
    form = DoseBandForm
    list_display = ["crcl_from", "crcl_to", "dose_mg", "source"]


@admin.register(Citation)
class CitationAdmin(RuleSetPartAdmin):
    form = CitationForm
    list_display = ["key", "kind", "text", "grade", "url"]
    list_filter = [RuleSetFilter, "kind"]
    search_fields = ["key", "text"]


# ---------------------------------------------------------------------------------------------
# Rule sets: start a draft, check, preview, publish (four-eyes), roll back, diff, changes.


class NoteForm(forms.Form):
    note = forms.CharField(
        label="Approval note",
        widget=forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"}),
        help_text="Why you put this version in force; kept with the publication, beside the "
        "editor's rationale.",
    )
    # The version in force when the page was shown: the one the publisher agreed to replace.
    replaces = forms.IntegerField(widget=forms.HiddenInput, required=False)
    # The draft's submission for review the page showed: the content the publisher approves.
    reviewed = forms.IntegerField(widget=forms.HiddenInput, required=False)
    # Offered only when the draft's impact preview found stored patients it cannot assess.
    despite_faults = forms.BooleanField(
        required=False,
        label="Publish all the same",
        help_text="The impact preview found stored patients this draft cannot assess (listed "
        "above): they would get no advice until a version that can is published.",
    )


class ReviewForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"}))


class DiffForm(forms.Form):
    old = forms.ModelChoiceField(queryset=RuleSet.objects.order_by("-pk"), label="From")
    new = forms.ModelChoiceField(queryset=RuleSet.objects.order_by("-pk"), label="To")


@admin.register(RuleSet)
class RuleSetAdmin(ScopedHistoryAdmin):
    list_display = [
        "label",
        "status",
        "is_current",
        "based_on",
        "last_edited_by",
        "last_edited_at",
        "put_in_force_by",
        "note",
    ]
    list_display_links = ["label"]
    list_filter = ["status", "is_current"]
    ordering = ["-pk"]  # newest first: open drafts and the latest versions on top
    fields = [
        "version",
        "status",
        "is_current",
        "based_on",
        "note",
        "created_by",
        "created_at",
        "last_edited_by",
        "last_edited_at",
        "published_by",
        "published_at",
    ]
    change_form_template = "admin/pathways/ruleset/change_form.html"
    change_list_template = "admin/pathways/ruleset/change_list.html"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        notify_revision_2_draft(request)
        return super().changelist_view(request, extra_context)

    @admin.display(description="version", ordering="version")
    def label(self, rule_set: RuleSet) -> str:
        return rule_set.label

    @admin.display(description="put in force by (latest)")
    def put_in_force_by(self, rule_set: RuleSet) -> str:
        # A rollback is a publication too: name who re-published it, not the first publisher.
        latest = rule_set.publications.select_related("by").first()
        if latest is None:
            return "—" if rule_set.is_draft else "installed with the catalogue"
        return f"{latest.by or 'unknown'}, {latest.at:%Y-%m-%d %H:%M} ({latest.get_kind_display()})"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [name for name in self.fields if name != "note"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # drafts are started from a published version (a copy), not empty

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or obj.is_editable)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.is_editable)

    def save_model(self, request: HttpRequest, obj: RuleSet, form: Any, change: bool) -> None:
        if not obj.is_editable:
            raise PublishedRuleSetError(f"Rule set {obj.label} is published or in review.")
        if form.has_changed():  # a Save that changes nothing makes nobody an editor
            obj.last_edited_by = cast(User, request.user)
            obj.last_edited_at = timezone.now()
        super().save_model(request, obj, form, change)
        if form.has_changed():
            obj.editors.add(cast(User, request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[RuleSet]) -> None:
        if queryset.exclude(status=RuleSet.Status.DRAFT).exists():
            raise PermissionDenied("Published rule sets are kept.")
        for rule_set in queryset:
            rule_set.delete()

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        urls: list[URLPattern] = [
            path("start-draft/", view(self.start_draft_view), name="pathways_ruleset_start"),
            path("diff/", view(self.diff_view), name="pathways_ruleset_diff"),
            path("<int:pk>/preview/", view(self.preview_view), name="pathways_ruleset_preview"),
            path(
                "<int:pk>/preview/<int:preview_pk>/",
                view(self.preview_result_view),
                name="pathways_ruleset_preview_result",
            ),
            path(
                "reassessment/<int:run_pk>/retry/",
                view(self.retry_view),
                name="pathways_ruleset_reassessment_retry",
            ),
            path("<int:pk>/publish/", view(self.publish_view), name="pathways_ruleset_publish"),
            path("<int:pk>/submit/", view(self.submit_view), name="pathways_ruleset_submit"),
            path("<int:pk>/return/", view(self.return_view), name="pathways_ruleset_return"),
            path("<int:pk>/rollback/", view(self.rollback_view), name="pathways_ruleset_rollback"),
            path("<int:pk>/changes/", view(self.changes_view), name="pathways_ruleset_changes"),
        ]
        return urls + super().get_urls()

    # -- helpers -------------------------------------------------------------------------------

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "can_publish": request.user.has_perm(publishing.PUBLISH_PERMISSION),
            **extra,
        }

    def _viewable(self, request: HttpRequest, pk: int) -> RuleSet:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(RuleSet.objects.select_related("based_on"), pk=pk)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        rule_set = RuleSet.objects.filter(pk=object_id).first() if is_id(object_id) else None
        if rule_set is not None and self.has_view_permission(request, rule_set):
            context["rule_set"] = rule_set
            context["can_publish"] = request.user.has_perm(publishing.PUBLISH_PERMISSION)
            context["can_start_draft"] = request.user.has_perm("pathways.add_ruleset")
            if rule_set.is_draft:
                check = publishing.ruleset_check(rule_set=rule_set)
                context["check"] = check
                context["failing"] = [
                    (o, publishing.example_why(o)) for o in check.failing_examples
                ]
            context["publications"] = rule_set.publications.select_related("by", "replaced")
            context["reviews"] = rule_set.reviews.select_related("by")
            context["returned"] = publishing.ruleset_latest_return(rule_set)
            context["editors"] = User.objects.filter(pk__in=publishing.ruleset_editor_ids(rule_set))
            runs = ReassessmentRun.objects.filter(rule_set=rule_set).select_related("publication")
            progress = [tasks.run_progress(run) for run in runs[:RUNS_SHOWN]]
            context["reassessments"] = progress
            full = len(progress) == RUNS_SHOWN  # the caption says when more runs are not shown
            context["reassessments_total"] = runs.count() if full else len(progress)
            # A published version's page (nothing to edit) follows a running re-assessment.
            context["refresh_runs"] = not rule_set.is_editable and any(
                p.run.finished_at is None and not p.lost_chunks for p in progress
            )
            context["run_failures"] = [
                (p.run, failure) for p in progress for failure in p.failures[:20]
            ]
            context["queue"] = tasks.queue_health()
        return super().change_view(request, object_id, form_url, context)

    # -- views ---------------------------------------------------------------------------------

    def start_draft_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:pathways_ruleset_changelist"))
        if not request.user.has_perm("pathways.add_ruleset"):
            raise PermissionDenied
        base_pk = request.POST.get("base")
        if base_pk and not is_id(base_pk):
            raise Http404("No such rule set")
        base = get_object_or_404(RuleSet, pk=base_pk) if base_pk else None
        try:
            draft = publishing.ruleset_start_draft(user=request.user, base=base)
        except publishing.TuningError as error:
            self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:pathways_ruleset_changelist"))
        self.message_user(
            request,
            f"Draft {draft.label} started from {draft.based_on}. Edit its rules and parameters, "
            "check the impact preview, then ask a publisher to publish it.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:pathways_ruleset_change", args=[draft.pk]))

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """GET: the page that starts a preview (and links this user's latest); POST: start one.

        The preview runs as a background task (seconds at thousands of patients); its page
        shows progress until the result is stored."""
        draft = self._viewable(request, pk)
        may_run = _may_run_previews(request.user)
        if request.method == "POST":
            if not may_run:  # a background assessment of every patient: not for view-only staff
                raise PermissionDenied
            preview = tasks.impact_preview_start(draft=draft, user=request.user)
            return HttpResponseRedirect(
                reverse("admin:pathways_ruleset_preview_result", args=[draft.pk, preview.pk])
            )
        latest = (
            ImpactPreview.objects.select_related("published")
            .filter(draft=draft, requested_by_id=request.user.pk)
            .first()
        )
        context = self._context(
            request,
            f"Impact preview: {draft.label}",
            rule_set=draft,
            latest=latest,
            latest_out_of_date=latest is not None and _preview_out_of_date(latest, draft),
            may_run=may_run,
        )
        return TemplateResponse(request, "admin/pathways/ruleset/preview_start.html", context)

    def preview_result_view(self, request: HttpRequest, pk: int, preview_pk: int) -> HttpResponse:
        draft = self._viewable(request, pk)
        # It names the patients of the requester's clinics: nobody else sees it.
        stored = get_object_or_404(
            ImpactPreview.objects.select_related("published"),
            pk=preview_pk,
            draft=draft,
            requested_by_id=request.user.pk,
        )
        context = self._context(
            request,
            f"Impact preview: {draft.label} against {stored.published.label}",
            rule_set=draft,
            stored=stored,
            out_of_date=_preview_out_of_date(stored, draft),
        )
        if stored.result is None:
            context["task_failed"] = bool(stored.error) or tasks.task_failed(stored.task_id)
            return TemplateResponse(request, "admin/pathways/ruleset/preview_pending.html", context)
        preview = impact.preview_from_json(stored.result)
        if not preview.names_only_clinics_of(impact.member_clinics(request.user)):
            # It names patients of a clinic the requester has left since: never shown again.
            messages.warning(
                request,
                "That preview names patients of a clinic you are no longer in: run it again.",
            )
            return HttpResponseRedirect(reverse("admin:pathways_ruleset_preview", args=[draft.pk]))
        rule_rows = [row for row in preview.rules if row.appear or row.disappear or row.changed]
        context.update(
            preview=preview,
            parameter_rows=[(p, impact.histogram(p)) for p in preview.parameters],
            priority_rows=impact.priority_totals(
                rule_rows, preview.priorities, preview.priority_counts
            ),
            rule_rows=[(row, preview.priorities.get(row.code, "")) for row in rule_rows],
            follow_up_rows=[
                row for row in preview.follow_ups if row.appear or row.disappear or row.changed
            ],
        )
        return TemplateResponse(request, "admin/pathways/ruleset/preview.html", context)

    def retry_view(self, request: HttpRequest, run_pk: int) -> HttpResponse:
        run = get_object_or_404(ReassessmentRun, pk=run_pk)
        back = reverse("admin:pathways_ruleset_change", args=[run.rule_set_id])
        if request.method != "POST":
            return HttpResponseRedirect(back)
        if not request.user.has_perm(publishing.PUBLISH_PERMISSION):
            raise PermissionDenied
        try:
            retry = tasks.reassessment_retry(run=run, user=request.user)
        except tasks.NothingToRetry as refused:
            self.message_user(request, str(refused), messages.WARNING)
            return HttpResponseRedirect(back)
        self.message_user(
            request,
            f"Retry queued (run {retry.pk}): {tasks.run_progress(retry).total} patient(s).",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:pathways_ruleset_change", args=[retry.rule_set_id])
        )

    def _note_view(self, request: HttpRequest, pk: int, *, rollback: bool) -> HttpResponse:
        rule_set = self._viewable(request, pk)
        current = RuleSet.objects.filter(is_current=True).first()
        initial: dict[str, Any] = {"replaces": current.pk if current else None}
        if not rollback:
            initial["note"] = rule_set.note
            initial["reviewed"] = publishing.ruleset_latest_submission(rule_set)
        faults = None if rollback else publishing.ruleset_preview_faults(rule_set=rule_set)
        form = NoteForm(request.POST or None, initial=initial)
        if faults is None or not faults.patients:
            del form.fields["despite_faults"]
        if request.method == "POST":
            if not request.user.has_perm(publishing.PUBLISH_PERMISSION):
                raise PermissionDenied
            if form.is_valid():
                shown = {"shown_in_force": form.cleaned_data["replaces"]}
                if not rollback:
                    shown["shown_submission"] = form.cleaned_data["reviewed"]
                    shown["despite_faults"] = form.cleaned_data.get("despite_faults", False)
                action = publishing.ruleset_rollback if rollback else publishing.ruleset_publish
                try:
                    published = action(
                        rule_set=rule_set,
                        user=request.user,
                        note=form.cleaned_data["note"],
                        **shown,
                    )
                except publishing.TuningError as error:
                    self.message_user(request, str(error), messages.ERROR)
                else:
                    verb = "re-published (rollback)" if rollback else "published"
                    run = ReassessmentRun.objects.filter(publication__rule_set=published).first()
                    queued = (
                        f" Re-assessment of {tasks.run_progress(run).total} stored patient(s) is "
                        f"queued as run {run.pk}: its progress is shown below. Screens that "
                        "assess live use the new version at once."
                        if run is not None
                        else ""
                    )
                    self.message_user(
                        request,
                        f"Version {published.label} {verb} and in force.{queued}",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(
                        reverse("admin:pathways_ruleset_change", args=[published.pk])
                    )
        check = None if rollback else publishing.ruleset_check(rule_set=rule_set)
        last_editor = rule_set.last_edited_by or rule_set.created_by
        editors = User.objects.filter(pk__in=publishing.ruleset_editor_ids(rule_set))
        own_draft = request.user.pk in {editor.pk for editor in editors}
        title = (
            f"Re-publish {rule_set.label} (rollback)" if rollback else f"Publish {rule_set.label}"
        )
        context = self._context(
            request,
            title,
            rule_set=rule_set,
            form=form,
            rollback=rollback,
            check=check,
            failing=[(o, publishing.example_why(o)) for o in check.failing_examples]
            if check
            else [],
            last_editor=last_editor,
            own_draft=own_draft,
            preview_faults=faults,
            editors=editors,
            blocked=not rollback
            and (own_draft or not rule_set.in_review or not (check and check.publishable)),
            current=RuleSet.objects.filter(is_current=True).first(),
        )
        if request.method == "POST":  # refused: the page now shows what is there now
            current = context["current"]
            posted = {
                "note": request.POST.get("note", ""),
                "replaces": current and current.pk,
                "reviewed": None if rollback else publishing.ruleset_latest_submission(rule_set),
            }
            context["form"] = NoteForm(posted)
            if faults is None or not faults.patients:
                del context["form"].fields["despite_faults"]
        return TemplateResponse(request, "admin/pathways/ruleset/publish.html", context)

    def _review_step(self, request: HttpRequest, pk: int, *, submit: bool) -> HttpResponse:
        rule_set = self._viewable(request, pk)
        back = reverse("admin:pathways_ruleset_change", args=[rule_set.pk])
        if request.method != "POST":
            return HttpResponseRedirect(back)
        if not request.user.has_perm("pathways.change_ruleset"):
            raise PermissionDenied
        text = request.POST.get("text", "")
        try:
            if submit:
                publishing.ruleset_submit(rule_set=rule_set, user=request.user, rationale=text)
                done = f"{rule_set.label} submitted for review: editing is locked."
            else:
                publishing.ruleset_return(rule_set=rule_set, user=request.user, comment=text)
                done = f"{rule_set.label} returned to draft with your comments."
        except publishing.TuningError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(back)

    def submit_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._review_step(request, pk, submit=True)

    def return_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._review_step(request, pk, submit=False)

    def publish_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._note_view(request, pk, rollback=False)

    def rollback_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return self._note_view(request, pk, rollback=True)

    def diff_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = DiffForm(request.GET or None)
        changes = None
        if form.is_valid():
            changes = versions.ruleset_diff(
                old=form.cleaned_data["old"], new=form.cleaned_data["new"]
            )
        context = self._context(request, "Compare rule-set versions", form=form, changes=changes)
        return TemplateResponse(request, "admin/pathways/ruleset/diff.html", context)

    def changes_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        rule_set = self._viewable(request, pk)
        context = self._context(
            request,
            f"Changes to {rule_set.label}",
            rule_set=rule_set,
            changes=versions.ruleset_changes(rule_set=rule_set),
            publications=rule_set.publications.select_related("by", "replaced"),
            reviews=rule_set.reviews.select_related("by"),
        )
        return TemplateResponse(request, "admin/pathways/ruleset/changes.html", context)


class RuleSetRecordAdmin(ReadOnlyAdmin):
    """What the publishing workflow recorded: read by whoever may view rule sets."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("pathways.view_ruleset")


@admin.register(RuleSetPublication)
class RuleSetPublicationAdmin(RuleSetRecordAdmin):
    list_display = ["at", "rule_set", "kind", "by", "replaced", "note"]
    list_filter = ["kind"]
    list_select_related = ["rule_set", "by", "replaced"]


@admin.register(ReassessmentRun)
class ReassessmentRunAdmin(RuleSetRecordAdmin):
    """Re-assessment runs with their progress and failures, and the task queue's health."""

    list_display = ["pk", "reason", "rule_set", "status", "patients", "failed", "started_at"]
    list_display_links = ["pk"]
    list_filter = ["reason", "rule_set"]
    list_select_related = ["rule_set"]
    fields = (
        "reason",
        "rule_set",
        "publication",
        "retry_of",
        "requested_by",
        "started_at",
        "finished_at",
        "status",
        "patients",
        "failed",
        "failures",
    )
    readonly_fields = fields
    change_list_template = "admin/pathways/reassessmentrun/change_list.html"
    actions = ["retry"]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(publishing.PUBLISH_PERMISSION)

    @admin.display(description="status")
    def status(self, run: ReassessmentRun) -> str:
        return tasks.run_progress(run).status

    @admin.display(description="patients done")
    def patients(self, run: ReassessmentRun) -> str:
        progress = tasks.run_progress(run)
        return f"{progress.done} of {progress.total} ({progress.percent} %)"

    @admin.display(description="failed")
    def failed(self, run: ReassessmentRun) -> int:
        return tasks.run_progress(run).failed

    @admin.display(description="failures (patient id: error)")
    def failures(self, run: ReassessmentRun) -> str:
        lines = [f"{f['patient']}: {f['error']}" for f in tasks.run_progress(run).failures]
        return "\n".join(listed(lines, 200, lambda more: f"and {more} more")) or "—"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), "queue": tasks.queue_health()}
        return super().changelist_view(request, context)

    @admin.action(description="Retry failed patients and lost chunks", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[ReassessmentRun]) -> None:
        started = []
        for run in queryset:
            try:
                started.append(tasks.reassessment_retry(run=run, user=request.user).pk)
            except tasks.NothingToRetry:
                continue  # said below when none could be
        if started:
            self.message_user(request, f"Retry runs queued: {started}.", messages.SUCCESS)
        else:
            self.message_user(request, "Nothing to retry in the selected runs.", messages.WARNING)
