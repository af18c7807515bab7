"""Who may reach which microgrid: memberships (spec 6, access).

Every read or write of a microgrid goes through `microgrids_visible_to(user)`
(the lists) or `selectors.microgrid_get(microgrid_id, user=...)` (one microgrid):
support staff reach every microgrid; any other user exactly the microgrids of its
memberships, or every one with an all-microgrids membership; a user without a
membership reaches none. A microgrid outside the caller's memberships is not
found, the same answer as an unknown id, so its existence does not leak.

Trusted code without a caller (tasks, commands, the simulator) passes `SYSTEM`.
Membership is one `EXISTS` subquery in the query that reads the microgrids, so
the number of queries does not grow with the number of microgrids.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from microgrid.common.roles import SUPPORT, user_roles
from microgrid.topology.models import Microgrid, MicrogridMembership


class _System:
    """The caller of trusted code that acts for nobody (tasks, commands, the simulator).

    Not authenticated: it is no user, so nothing records it as one (history, audits)."""

    is_authenticated = False
    is_active = False

    def __repr__(self) -> str:
        return "SYSTEM"


SYSTEM = _System()


def sees_every_microgrid(user) -> bool:
    """Support staff (and superusers, who hold every role) and trusted code: no membership
    needed. An all-microgrids membership is not checked here: it is part of the subquery."""
    if user is SYSTEM:
        return True
    return SUPPORT in user_roles(user)


def membership_exists(user, microgrid_ref: str = "pk") -> Exists:
    """EXISTS (a membership of `user` for the microgrid at `microgrid_ref`, or for all)."""
    return Exists(
        MicrogridMembership.objects.filter(user_id=user.pk).filter(
            Q(microgrid_id=OuterRef(microgrid_ref)) | Q(all_microgrids=True)
        )
    )


def all_microgrids_membership(user) -> Exists:
    """EXISTS (an all-microgrids membership of `user`): for rows that belong to no microgrid
    (an unresolved legacy call, a circuit without an alias), which fleet-wide callers see."""
    return Exists(MicrogridMembership.objects.filter(user_id=user.pk, all_microgrids=True))


def microgrids_visible_to(user) -> QuerySet[Microgrid]:
    """The microgrids `user` may see and act on (what it may do there is its role's business)."""
    if sees_every_microgrid(user):
        return Microgrid.objects.all()
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Microgrid.objects.none()
    return Microgrid.objects.filter(membership_exists(user))


def visible_microgrid_q(user, field: str = "microgrid") -> Q:
    """A filter for another model's rows: those whose `field` (a Microgrid foreign key) the
    user may see. An empty Q for callers who see every microgrid."""
    if sees_every_microgrid(user):
        return Q()
    return Q(**{f"{field}__in": microgrids_visible_to(user).values("pk")})


def visible_microgrid_ids_q(user, field: str = "microgrid_id") -> Q:
    """The same for a row that names its microgrid by the spec's id string (an audit row);
    a row that names none is seen by fleet-wide callers only."""
    if sees_every_microgrid(user):
        return Q()
    if not getattr(user, "is_authenticated", False):
        return Q(pk__in=[])
    return Q(all_microgrids_membership(user)) | Q(
        **{f"{field}__in": microgrids_visible_to(user).values("microgrid_id")}
    )
