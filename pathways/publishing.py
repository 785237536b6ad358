"""Rule sets: drafts, the publish gate, four-eyes publishing and rollback.

Services are keyword-only ``<entity>_<action>`` functions; the admin (rules_admin.py) only calls
them. A published rule set is never changed: a draft is a copy, published as a new version.
Putting a version in force enqueues the re-assessment of every patient in the same transaction
(tasks.py), so it runs exactly when the publication commits.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.contrib.auth.models import Permission
from django.db import transaction
from django.utils import timezone

from pathways import engine, tasks
from pathways.impact import DRAFT_FAULT, preview_from_json
from pathways.listing import listed
from pathways.models import (
    Citation,
    DoseBand,
    FollowUpRule,
    ImpactPreview,
    Parameter,
    ReassessmentRun,
    Rule,
    RuleExample,
    RuleSet,
    RuleSetPublication,
    RuleSetReview,
    UlnBand,
)
from pathways.rules import current_rule_set_row, install_rule_set, load_rule_set, rule_set_for

PUBLISH_PERMISSION = "pathways.publish_ruleset"
# The models a rule editor edits; publishers also hold PUBLISH_PERMISSION.
RULE_SET_MODELS = (
    "ruleset",
    "rule",
    "ruleexample",
    "parameter",
    "followuprule",
    "ulnband",
    "doseband",
    "citation",
)
DRAFT_COPY_REASON = "copied into the draft"
PART_MODELS: tuple[Any, ...] = (
    Rule,
    RuleExample,
    Parameter,
    FollowUpRule,
    UlnBand,
    DoseBand,
    Citation,
)


class TuningError(Exception):
    """A tuning step that is refused; the message is shown to the editor as it is."""


# ---------------------------------------------------------------------------------------------
# Drafts.


@transaction.atomic
def ruleset_start_draft(*, user: Any, base: RuleSet | None = None) -> RuleSet:
    """A new draft: a full copy of ``base`` (default: the version in force)."""
    base = base or current_rule_set_row()
    if base.is_draft:
        raise TuningError("A draft is started from a published version.")
    now = timezone.now()
    draft = RuleSet.objects.create(
        status=RuleSet.Status.DRAFT,
        based_on=base,
        created_by=user,
        created_at=now,
        # Starting a draft is an edit: its author is not the second pair of eyes.
        last_edited_by=user,
        last_edited_at=now,
        note="",
    )
    draft.editors.add(user)
    install_rule_set(load_rule_set(base), into=draft)
    # bulk_create leaves no history: record the copy as each part's first version, so that the
    # first edit of a part shows what it changed (these baseline rows are not listed as edits).
    for model in PART_MODELS:
        model.history.bulk_history_create(
            list(model.objects.filter(rule_set=draft)),
            default_user=user,
            default_change_reason=DRAFT_COPY_REASON,
            default_date=now,
        )
    return draft


def ruleset_touch(*, rule_set: RuleSet, user: Any) -> None:
    """Record that ``user`` changed the draft's content (four-eyes: they may not publish it).

    Call it only for a real change: a save that changes nothing makes nobody an editor."""
    rule_set = RuleSet.objects.select_for_update().get(pk=rule_set.pk)  # as it is now
    if rule_set.in_review:
        raise TuningError(f"{rule_set.label} is in review and locked.")
    if not rule_set.is_draft:
        raise TuningError(f"Rule set {rule_set.label} is published and cannot be modified.")
    rule_set.last_edited_by = user
    rule_set.last_edited_at = timezone.now()
    rule_set.save(update_fields=["last_edited_by", "last_edited_at"])
    rule_set.editors.add(user)


def ruleset_editor_ids(rule_set: RuleSet) -> set[int]:
    """Everyone who changed the draft (its starter included)."""
    ids = set(rule_set.editors.values_list("pk", flat=True))
    if rule_set.created_by_id is not None:
        ids.add(rule_set.created_by_id)
    return ids


# ---------------------------------------------------------------------------------------------
# Review: draft -> in review -> published, or back to draft with the reviewer's comments.


def _locked_unpublished(rule_set: RuleSet) -> RuleSet:
    rule_set = RuleSet.objects.select_for_update().get(pk=rule_set.pk)
    if not rule_set.is_draft:
        raise TuningError(f"{rule_set.label} is already published.")
    return rule_set


def ruleset_submit(*, rule_set: RuleSet, user: Any, rationale: str = "") -> RuleSet:
    """The editor asks for review: editing is locked until a publisher returns it."""
    with transaction.atomic():
        rule_set = _locked_unpublished(rule_set)
        if rule_set.in_review:
            raise TuningError(f"{rule_set.label} is already in review.")
        rationale = rationale.strip() or rule_set.note.strip()
        if not rationale:
            raise TuningError("Rationale: say why this change is needed before asking for review.")
        rule_set.note = rationale
        rule_set.status = RuleSet.Status.IN_REVIEW
        rule_set.save(update_fields=["note", "status"])
        # Asking for review vouches for the change (and may write its rationale): four-eyes
        # counts the submitter as an editor, who cannot then publish it.
        rule_set.editors.add(user)
        RuleSetReview.objects.create(
            rule_set=rule_set, action=RuleSetReview.Action.SUBMITTED, by=user, note=rationale
        )
    return rule_set


def ruleset_return(*, rule_set: RuleSet, user: Any, comment: str) -> RuleSet:
    """A publisher sends the draft back to its editors with comments (editing unlocked)."""
    if not user.has_perm(PUBLISH_PERMISSION):
        raise TuningError("Returning a draft needs the publisher permission.")
    comment = comment.strip()
    if not comment:
        raise TuningError("Comment: say what should change before returning the draft.")
    with transaction.atomic():
        rule_set = _locked_unpublished(rule_set)
        if not rule_set.in_review:
            raise TuningError(f"{rule_set.label} is not in review.")
        rule_set.status = RuleSet.Status.DRAFT
        rule_set.save(update_fields=["status"])
        RuleSetReview.objects.create(
            rule_set=rule_set, action=RuleSetReview.Action.RETURNED, by=user, note=comment
        )
    return rule_set


def ruleset_latest_submission(rule_set: RuleSet) -> int | None:
    """The step that put the draft in review as it now stands (editing is locked in review, so
    its content is the content submitted then): what a publisher's page approves."""
    return (
        rule_set.reviews.filter(action=RuleSetReview.Action.SUBMITTED)
        .order_by("-at", "-pk")
        .values_list("pk", flat=True)
        .first()
    )


def ruleset_latest_return(rule_set: RuleSet) -> RuleSetReview | None:
    """The reviewer's comments the editors are working on (None once resubmitted)."""
    latest = rule_set.reviews.order_by("-at", "-pk").first()
    return latest if latest and latest.action == RuleSetReview.Action.RETURNED else None


# ---------------------------------------------------------------------------------------------
# The publish gate: conditions compile, parameters within range, every example passes.


@dataclass(frozen=True)
class RuleSetCheck:
    errors: tuple[engine.RuleSetError, ...]
    examples: tuple[engine.ExampleOutcome, ...]

    @property
    def failing_examples(self) -> tuple[engine.ExampleOutcome, ...]:
        return tuple(outcome for outcome in self.examples if not outcome.passed)

    @property
    def publishable(self) -> bool:
        return not self.errors and not self.failing_examples

    def problems(self) -> list[str]:
        """Every reason the set cannot be published, one line each."""
        lines = [str(error) for error in self.errors]
        for outcome in self.failing_examples:
            lines.append(
                f"rule {outcome.rule}: example {outcome.example!r}: {example_why(outcome)}"
            )
        return lines


def example_why(outcome: engine.ExampleOutcome) -> str:
    if outcome.error:
        return outcome.error
    if outcome.passed:
        return "passes"
    expected = "fire" if outcome.expected else "not fire"
    actual = "fired" if outcome.actual else "did not fire"
    return f"must {expected}, {actual}"


def ruleset_check(*, rule_set: RuleSet) -> RuleSetCheck:
    data = rule_set_for(rule_set)
    errors = engine.validate_rule_set(data) + _missing_examples(data)
    return RuleSetCheck(errors=tuple(errors), examples=tuple(_run_examples_safely(data)))


def parameter_problems(
    *, name: str, value: float, unit: str, minimum: float, maximum: float
) -> list[str]:
    """The engine's checks of one parameter (its name, its value within its declared range):
    the admin form shows the same words the publish gate would."""
    parameter = engine.Parameter(
        name=name,
        value=value,
        unit=unit,
        minimum=minimum,
        maximum=maximum,
        description="",
        rule=None,
    )
    alone = engine.RuleSet(
        version="parameter check",
        rules=(),
        parameters=(parameter,),
        follow_ups=(),
        uln_bands=(),
        za_dose_bands=(),
    )
    where = f"parameter {name}"
    return [error.message for error in engine.validate_rule_set(alone) if error.where == where]


@dataclass(frozen=True)
class PreviewFaults:
    """What the latest impact preview of a draft as it stands found the draft cannot assess."""

    requested_at: datetime
    patients: int  # stored patients whose assessment under the draft fails
    faults: tuple[tuple[str, int], ...] = ()  # (why, patients), the most frequent first


def ruleset_preview_faults(*, rule_set: RuleSet) -> PreviewFaults | None:
    """The latest finished impact preview computed on the draft as it now stands (None: none).

    The gate runs the examples only; a condition can compile and pass them yet fail on some
    stored case ("No such overload" on a fact that is null for it): that patient then gets no
    advice at all. The preview runs the draft over every stored patient and finds it."""
    preview = (
        ImpactPreview.objects.filter(
            draft=rule_set,
            draft_edited_at=rule_set.last_edited_at,
            finished_at__isnull=False,
            result__isnull=False,
        )
        .order_by("-finished_at", "-pk")
        .first()
    )
    if preview is None or preview.result is None:
        return None
    faults = Counter(
        impact.error.split(DRAFT_FAULT, 1)[1]
        for impact in preview_from_json(preview.result).errors
        if impact.error and DRAFT_FAULT in impact.error
    )
    return PreviewFaults(preview.requested_at, sum(faults.values()), tuple(faults.most_common()))


def _missing_examples(data: engine.RuleSet) -> list[engine.RuleSetError]:
    """Every rule documents both sides of its boundary, as the shipped catalogue does."""
    errors = []
    for rule in data.rules:
        if not any(example.fires for example in rule.examples):
            errors.append(engine.RuleSetError(f"rule {rule.code}", "no example where it fires"))
        if all(example.fires for example in rule.examples):
            errors.append(
                engine.RuleSetError(f"rule {rule.code}", "no example where it does not fire")
            )
    return errors


def rule_example_outcomes(*, rule_set: RuleSet, code: str) -> list[engine.ExampleOutcome]:
    """One rule's examples with pass/fail (the rule's page in the admin)."""
    return [o for o in _run_examples_safely(rule_set_for(rule_set)) if o.rule == code]


def _run_examples_safely(data: engine.RuleSet) -> list[engine.ExampleOutcome]:
    # A set whose conditions do not compile cannot run its examples; validation reports why.
    try:
        return engine.run_examples(data)
    except engine.RuleSetInvalid:
        return []


# ---------------------------------------------------------------------------------------------
# Publishing and rollback.


def _next_version_label(today: date) -> str:
    prefix = today.isoformat()
    number = RuleSet.objects.filter(version__startswith=f"{prefix}.").count() + 1
    while RuleSet.objects.filter(version=f"{prefix}.{number}").exists():
        number += 1
    return f"{prefix}.{number}"


class _Unchecked:
    """The caller did not show a publisher which version is in force (the demo, a migration)."""


UNCHECKED = _Unchecked()


def _put_in_force(rule_set: RuleSet, shown_in_force: int | _Unchecked | None) -> RuleSet | None:
    """Take the version in force out of force, locked. A publication that committed while this
    one waited for the lock has replaced it: PostgreSQL then skips the row, which no longer
    matches, so read again (the newer version) rather than put a second one in force.

    ``shown_in_force`` is the version the publisher's page said would be replaced: another one
    in force now was published since, and replacing it unseen would drop its change."""
    in_force = RuleSet.objects.select_for_update().filter(is_current=True)
    replaced = in_force.first()
    while replaced is None and RuleSet.objects.filter(is_current=True).exists():
        replaced = in_force.first()
    checked = not isinstance(shown_in_force, _Unchecked)
    if checked and replaced is not None and replaced.pk != shown_in_force:
        raise TuningError(
            f"{replaced.label} was put in force while this page was open, so "
            f"{rule_set.label} would replace it unseen. Nothing was published: read the "
            f"page again, now against {replaced.label}, and publish if you still mean to."
        )
    if replaced is not None and replaced.pk != rule_set.pk:
        replaced.is_current = False
        replaced.save(update_fields=["is_current"])
    return replaced


def _require_publisher(user: Any, note: str) -> str:
    if not user.has_perm(PUBLISH_PERMISSION):
        raise TuningError("Publishing needs the publisher permission.")
    note = note.strip()
    if not note:
        raise TuningError("A change note is required.")
    return note


def ruleset_publish(
    *,
    rule_set: RuleSet,
    user: Any,
    note: str,
    reassess: bool = True,
    shown_in_force: int | _Unchecked | None = UNCHECKED,
    shown_submission: int | _Unchecked | None = UNCHECKED,
    despite_faults: bool | _Unchecked = UNCHECKED,
) -> RuleSet:
    """Publish a draft in review as a new version and put it in force (four-eyes: the publisher
    changed none of it; approval note; gate). The editor's rationale stays the version's note.
    ``shown_in_force``: see ``_put_in_force``. ``shown_submission``: the submission for review
    the publisher's page showed (``ruleset_latest_submission``): a draft returned, changed and
    submitted again since is other content than the one approved. ``despite_faults``: the
    publisher ticked that the draft goes out although its impact preview found stored patients
    it cannot assess (``ruleset_preview_faults``); not ticked, such a draft is refused."""
    note = _require_publisher(user, note)
    with transaction.atomic():
        rule_set = _locked_unpublished(rule_set)
        if not rule_set.in_review:
            raise TuningError(
                f"{rule_set.label} is not in review: its editor submits it for review first."
            )
        if user.pk in ruleset_editor_ids(rule_set):
            raise TuningError(
                "Four-eyes: you edited this draft; a publisher who did not change it must "
                "publish it."
            )
        checked = not isinstance(shown_submission, _Unchecked)
        if checked and ruleset_latest_submission(rule_set) != shown_submission:
            raise TuningError(
                f"{rule_set.label} was returned and submitted again while this page was open: "
                "its content may have changed. Nothing was published: read the page again, and "
                "publish if you still mean to."
            )
        check = ruleset_check(rule_set=rule_set)
        if not check.publishable:
            problems = listed(check.problems(), 5, lambda more: f"and {more} more")
            raise TuningError("The draft cannot be published: " + "; ".join(problems))
        faults = ruleset_preview_faults(rule_set=rule_set) if despite_faults is False else None
        if faults is not None and faults.patients:
            raise TuningError(
                f"The impact preview found {faults.patients} stored patient(s) this draft "
                f"cannot assess ({faults.faults[0][0]}): they would get no advice. Nothing "
                "was published: correct the draft, or tick that it is published all the same."
            )
        replaced = _put_in_force(rule_set, shown_in_force)
        now = timezone.now()
        rule_set.version = _next_version_label(timezone.localdate())
        rule_set.status = RuleSet.Status.PUBLISHED
        rule_set.is_current = True
        rule_set.note = rule_set.note or note
        rule_set.published_by = user
        rule_set.published_at = now
        rule_set.save()
        publication = RuleSetPublication.objects.create(
            rule_set=rule_set,
            kind=RuleSetPublication.Kind.PUBLISH,
            by=user,
            at=now,
            note=note,
            replaced=replaced,
        )
        RuleSetReview.objects.create(
            rule_set=rule_set, action=RuleSetReview.Action.APPROVED, by=user, at=now, note=note
        )
        if reassess:  # in this transaction: runs exactly when the publication commits
            tasks.reassessment_start(
                reason=ReassessmentRun.Reason.PUBLISH,
                rule_set=rule_set,
                publication=publication,
                user=user,
            )
    return rule_set


def ruleset_rollback(
    *,
    rule_set: RuleSet,
    user: Any,
    note: str,
    reassess: bool = True,
    shown_in_force: int | _Unchecked | None = UNCHECKED,
) -> RuleSet:
    """Put an earlier published version back in force (a publication of kind rollback).
    ``shown_in_force``: see ``_put_in_force``."""
    note = _require_publisher(user, note)
    with transaction.atomic():
        rule_set = RuleSet.objects.select_for_update().get(pk=rule_set.pk)
        if rule_set.is_draft:
            raise TuningError("Only a published version can be re-published; publish the draft.")
        if rule_set.is_current:
            raise TuningError(f"{rule_set.label} is already in force.")
        replaced = _put_in_force(rule_set, shown_in_force)
        rule_set.is_current = True
        rule_set.save(update_fields=["is_current"])
        publication = RuleSetPublication.objects.create(
            rule_set=rule_set,
            kind=RuleSetPublication.Kind.ROLLBACK,
            by=user,
            note=note,
            replaced=replaced,
        )
        if reassess:  # in this transaction: runs exactly when the publication commits
            tasks.reassessment_start(
                reason=ReassessmentRun.Reason.ROLLBACK,
                rule_set=rule_set,
                publication=publication,
                user=user,
            )
    return rule_set


def rule_editor_grant(*, user: Any, publish: bool) -> None:
    """Make a staff user a rule editor (and a publisher when ``publish``)."""
    codenames = [f"{a}_{m}" for m in RULE_SET_MODELS for a in ("view", "add", "change", "delete")]
    if publish:
        codenames.append(PUBLISH_PERMISSION.split(".")[1])
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="pathways", codename__in=codenames)
    )
