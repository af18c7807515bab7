"""Query-string filters: one django-filter FilterSet per filtering list, one behaviour for all.

Every filter reads its raw text with one of the shared checkers of `common.fields`
(an id, a choice, a time, a limit), so a parameter means the same thing on every
list. An empty value is the same as an absent one. A bad value is 422
FIELD_INVALID naming the parameter (`field`), message "<name> <problem>"; every
bad parameter is itemised, sorted like every other error list. `limit` is not a
filter of the rows but the page size: `FilterSet.page()` applies it after the
list's order.

Each filter carries its OpenAPI schema, so the document's query parameters are
derived from the FilterSet (`parameters()`), not written a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import (
    ID_SCHEMA_PATTERN,
    MAX_LIST_LIMIT,
    FieldProblem,
    check_choice,
    check_id,
    check_list_limit,
    check_query_time,
)


class _CheckedField(forms.Field):
    """A form field that is exactly one `common.fields` checker (no Django validators: a NUL
    or an odd character is the checker's refusal, with the checker's message)."""

    def __init__(
        self, *, check: Callable[[str], Any], blank_is_absent: bool = True, **kwargs
    ) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self.check = check
        self.blank_is_absent = blank_is_absent

    def clean(self, value):
        if value is None or (value == "" and self.blank_is_absent):
            return None
        try:
            return self.check(value)
        except FieldProblem as exc:
            raise forms.ValidationError(str(exc)) from None


class CheckedFilter(django_filters.Filter):
    """A filter whose value is read by `check`; `schema` documents it in the OpenAPI document."""

    field_class = _CheckedField

    def __init__(
        self,
        *args,
        check: Callable[[str], Any],
        schema: dict[str, Any],
        description: str = "",
        **kwargs,
    ) -> None:
        # A label of its own: django-filter would otherwise look it up on the model.
        kwargs.setdefault("label", description or "filter")
        super().__init__(*args, **kwargs)
        self.extra["check"] = check
        self.schema = schema
        self.description = description


def IdFilter(field_name: str | None = None, description: str = "", **kwargs) -> CheckedFilter:
    """An id of the spec's pattern."""
    return CheckedFilter(
        field_name=field_name,
        check=_id_check,
        schema={"type": "string", "pattern": ID_SCHEMA_PATTERN},
        description=description,
        **kwargs,
    )


def _id_check(value: str) -> str:
    try:
        return check_id(value)
    except FieldProblem:
        raise FieldProblem("must be an id of the spec's pattern") from None


def ChoiceFilter(
    field_name: str | None, choices: Iterable[str], description: str = "", **kwargs
) -> CheckedFilter:
    """One value of a closed list."""
    values = [str(c) for c in choices]
    return CheckedFilter(
        field_name=field_name,
        check=lambda raw: check_choice(raw, values),
        schema={"type": "string", "enum": values},
        description=description,
        **kwargs,
    )


def TimeFilter(
    field_name: str | None, lookup_expr: str = "exact", description: str = "", **kwargs
) -> CheckedFilter:
    """A time (`since`, `at`, `until`): `common.fields.check_query_time`, the one time parser.
    Given, it must be a time: an empty value is refused like any other non-time."""
    return CheckedFilter(
        field_name=field_name,
        blank_is_absent=False,
        lookup_expr=lookup_expr,
        check=check_query_time,
        schema=TIME_QUERY_SCHEMA,
        description=description,
        **kwargs,
    )


TIME_QUERY_SCHEMA = {"type": "string", "format": "date-time"}
TIME_QUERY_TEXT = (
    "ISO 8601 with a UTC offset (a time without one is refused; an unencoded '+' that "
    "arrives as a space is read as '+')"
)


def keep(queryset, name, value):
    """A filter method for parameters that are read, not applied to the rows."""
    return queryset


def LimitFilter(default: int) -> CheckedFilter:
    """The page size (not a filter of the rows): see `FilterSet.page`."""
    return CheckedFilter(
        method=keep,
        check=check_list_limit,
        schema={"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT},
        description=f"rows (default {default})",
    )


class FilterSet(django_filters.FilterSet):
    """Base of every list's filters: validated as a whole, refused with the spec's error body.

    `strict` refuses parameters that are not filters (the legacy usage report does, by its
    frozen contract); canonical lists ignore them. `default_limit` is the page size when the
    list has a `limit` filter and the client sent none.
    """

    strict = False
    unknown_text = "is not a filter of this list"
    default_limit: int | None = None

    def __init__(self, data=None, queryset=None, **kwargs) -> None:
        # Always bound (no parameters is a valid request); a FilterSet that only reads its
        # parameters (`at`, a page size) needs no queryset.
        super().__init__(
            data if data is not None else {},
            queryset if queryset is not None else _NO_ROWS,
            **kwargs,
        )

    def clean_or_raise(self) -> dict[str, Any]:
        """The cleaned parameters (None where absent or empty), or DomainError FIELD_INVALID."""
        errors: list[ErrorItem] = []
        if self.strict:
            for name in sorted(set(self.data) - set(self.filters), key=str):
                errors.append(ErrorItem("FIELD_INVALID", f"{name} {self.unknown_text}", field=name))
        if not self.form.is_valid():
            for name, messages in self.form.errors.items():
                errors.extend(
                    ErrorItem("FIELD_INVALID", f"{name} {message}", field=name)
                    for message in messages
                )
        if errors:
            raise DomainError.from_errors(errors)
        return self.form.cleaned_data

    def filtered(self):
        """The filtered queryset (not yet paged), or DomainError FIELD_INVALID."""
        self.clean_or_raise()
        return self.qs

    def value(self, name: str, default: Any = None) -> Any:
        cleaned = self.clean_or_raise()
        value = cleaned.get(name)
        return default if value is None else value

    def limit(self) -> int:
        return self.value("limit", self.default_limit)

    def page(self, queryset):
        """`queryset` (already ordered) cut to the `limit` parameter or the default."""
        return queryset[: self.limit()]

    @classmethod
    def parameters(cls) -> list[OpenApiParameter]:
        """The OpenAPI query parameters of this FilterSet, each with its filter's schema."""
        return [
            OpenApiParameter(
                name,
                f.schema,
                OpenApiParameter.QUERY,
                required=False,
                description=f.description,
            )
            for name, f in cls.base_filters.items()
        ]


class _NoRows:
    model = None


_NO_ROWS = _NoRows()


class AtQuery(FilterSet):
    """The `at` of a read "as of" a time (default now): the one time parser, the one error."""

    at = TimeFilter(None, method=keep, description=f"{TIME_QUERY_TEXT}; default now")


def query_at(params) -> datetime:
    """The `at` query parameter (default now), or FIELD_INVALID naming `at`."""
    return AtQuery(params).value("at") or timezone.now()
