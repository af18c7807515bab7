"""Helpers shared by the Manage pages: role checks and the not-found page."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render

from microgrid.common.errors import DomainError
from microgrid.common.roles import READERS, has_any_role


def manage_view(roles=READERS):
    """Login required; operators and support staff; a DomainError 404 renders the not-found page."""

    def decorator(func):
        @wraps(func)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_any_role(request.user, roles):
                return render(request, "403.html", status=403)
            try:
                return func(request, *args, **kwargs)
            except DomainError as exc:
                if exc.status == 404:
                    return render(
                        request,
                        "manage/not_found.html",
                        {"error": exc, "what": exc.message},
                        status=404,
                    )
                raise

        return wrapper

    return decorator
