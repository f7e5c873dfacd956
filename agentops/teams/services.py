from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from .models import AuditEvent, Membership, Role, Team


def audit_record(*, team, actor, verb, obj, before=None, after=None, actor_label=""):
    """Write the audit row for one change. Services call this inside their transaction."""
    return AuditEvent.objects.create(
        team=team,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_label=actor_label,
        verb=verb,
        object_type=obj._meta.label if hasattr(obj, "_meta") else type(obj).__name__,
        object_id=str(getattr(obj, "pk", "") or ""),
        object_repr=str(obj)[:200],
        before=before or {},
        after=after or {},
    )


@transaction.atomic
def team_create(*, name, slug, owner):
    team = Team.objects.create(name=name, slug=slug)
    Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    audit_record(team=team, actor=owner, verb="team.create", obj=team, after={"name": name})
    return team


@transaction.atomic
def team_rename(*, team, actor, name):
    before = {"name": team.name}
    team.name = name
    team.save(update_fields=["name"])
    audit_record(
        team=team, actor=actor, verb="team.rename", obj=team, before=before, after={"name": name}
    )
    return team


def _ensure_may_assign(actor_membership, role):
    # Only an owner hands out or takes away the owner role.
    if role == Role.OWNER and not actor_membership.is_owner:
        raise ValidationError("Only an owner can make someone an owner.")


@transaction.atomic
def membership_add(*, team, actor_membership, user, role):
    _ensure_may_assign(actor_membership, role)
    if Membership.objects.filter(team=team, user=user).exists():
        raise ValidationError(f"{user.get_username()} is already a member of {team}.")
    membership = Membership.objects.create(team=team, user=user, role=role)
    audit_record(
        team=team,
        actor=actor_membership.user,
        verb="membership.add",
        obj=membership,
        after={"user": user.get_username(), "role": role},
    )
    return membership


def _lock_owners(team):
    # Serialise changes to a team's owners so two concurrent demotions cannot both pass
    # the last-owner check.
    return list(Membership.objects.select_for_update().filter(team=team, role=Role.OWNER))


@transaction.atomic
def membership_change_role(*, membership, actor_membership, role):
    owners = _lock_owners(membership.team)
    membership.refresh_from_db()
    _ensure_may_assign(actor_membership, role)
    if membership.is_owner and not actor_membership.is_owner:
        raise ValidationError("Only an owner can change another owner's role.")
    if membership.is_owner and role != Role.OWNER and len(owners) <= 1:
        raise ValidationError("The last owner cannot be demoted; make someone else owner first.")
    before = {"role": membership.role}
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        team=membership.team,
        actor=actor_membership.user,
        verb="membership.role",
        obj=membership,
        before=before,
        after={"role": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership, actor_membership):
    owners = _lock_owners(membership.team)
    membership.refresh_from_db()
    if membership.is_owner and not actor_membership.is_owner:
        raise ValidationError("Only an owner can remove an owner.")
    if membership.is_owner and len(owners) <= 1:
        raise ValidationError("The last owner cannot be removed.")
    audit_record(
        team=membership.team,
        actor=actor_membership.user,
        verb="membership.remove",
        obj=membership,
        before={"user": membership.user.get_username(), "role": membership.role},
    )
    membership.delete()


# --- names and slugs of a team's objects (agents, rubrics, workflows, memory stores) ----------


def ensure_unique_name(model, team, name, *, noun, exclude_pk=None):
    """A field error on `name` when another of the team's `model` rows has it (any case);
    `noun` with its article, e.g. "an agent"."""
    clash = model.objects.filter(team=team, name__iexact=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError({"name": f"This team already has {noun} named {name!r}."})


def unique_slug(model, team, name, *, fallback):
    """A slug from `name` that no other of the team's `model` rows has: name, name-2, ..."""
    base = slugify(name)[:70] or fallback
    slug, n = base, 1
    while model.objects.filter(team=team, slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def team_chosen(*, membership):
    """The user switched to this team: their next session starts in it."""
    Membership.objects.filter(pk=membership.pk).update(last_chosen_at=timezone.now())
