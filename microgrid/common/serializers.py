"""The base of every request serializer: the spec's checks, the spec's messages, the spec's errors.

Each app's `api/serializers.py` declares its request bodies with these fields;
a field is exactly one checker of `common.fields` (so a value means the same thing
in a body, a profile, an admin form or a query string) and carries its OpenAPI
schema, from which drf-spectacular writes the document (`CheckedFieldExtension`).

Messages are the spec's: "<field path> <problem>" ("depot.depot_id is required",
"limit_kw must be greater than 0"), and `validated()` turns DRF's error tree into
FIELD_INVALID items (`field` = the dotted path), sorted the spec's way. A key a
body may not have is refused ("x is not a field of ..."); read-only keys a client
may send back unchanged are ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from drf_spectacular.extensions import (
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
)
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import (
    ID_SCHEMA_PATTERN,
    MAX_KW,
    TEXT_MAX_LENGTH,
    TEXT_SCHEMA_PATTERN,
    FieldProblem,
    check_bool,
    check_choice,
    check_datetime,
    check_id_value,
    check_int,
    check_kw,
    check_text,
)


def field_path(field: serializers.Field) -> str:
    """The dotted path of a bound field from the root serializer ("depot.depot_id")."""
    names: list[str] = []
    node: Any = field
    while node is not None and getattr(node, "field_name", None):
        names.append(node.field_name)
        node = node.parent
    return ".".join(reversed(names))


class _SpecMessages:
    """Required, null and not-an-object refusals worded the spec's way, with the field path."""

    required_text = "is required"

    def fail(self, key: str, **kwargs):
        texts = {"required": self.required_text, "null": "must not be null"}
        if key in texts:
            raise serializers.ValidationError(f"{field_path(self)} {texts[key]}", code=key)
        return super().fail(key, **kwargs)


class CheckedField(_SpecMessages, serializers.Field):
    """A body field read by one `common.fields` checker; `schema` is its OpenAPI schema.

    None is handed to the checker (whose "must be ..." says what is expected) unless the
    field allows null.
    """

    def __init__(
        self,
        check: Callable[[Any], Any],
        schema: dict[str, Any],
        *,
        required_text: str = "is required",
        null_is_missing: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.check = check
        self.schema = schema
        self.required_text = required_text
        self.null_is_missing = null_is_missing

    def validate_empty_values(self, data):
        if data is None and self.null_is_missing:
            self.fail("required")
        if data is None and not self.allow_null:
            return (False, None)
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        try:
            return self.check(data)
        except FieldProblem as exc:
            raise serializers.ValidationError(f"{field_path(self)} {exc}", code="invalid") from None

    def to_representation(self, value):
        return value


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


ID_SCHEMA = {"type": "string", "pattern": ID_SCHEMA_PATTERN}
TEXT_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": TEXT_MAX_LENGTH,
    "pattern": TEXT_SCHEMA_PATTERN,
}
TIMESTAMP_SCHEMA = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601 with a UTC offset (a time without one is refused)",
}


def IdField(**kwargs) -> CheckedField:
    """An id of the spec's pattern (`common.fields.ID_PATTERN`)."""
    return CheckedField(check_id_value, ID_SCHEMA, **kwargs)


def TextField(*, max_length: int = TEXT_MAX_LENGTH, **kwargs) -> CheckedField:
    """Trimmed text, not blank, without control characters."""
    return CheckedField(
        lambda v: check_text(v, max_length=max_length),
        {**TEXT_SCHEMA, "maxLength": max_length},
        **kwargs,
    )


def KwField(
    *,
    minimum: float | None = None,
    exclusive_minimum: float | None = None,
    maximum: float = MAX_KW,
    **kwargs,
) -> CheckedField:
    """A power in kW: a finite JSON number, rounded to 3 decimals, within +-MAX_KW."""
    schema: dict[str, Any] = {"type": "number", "maximum": maximum}
    if exclusive_minimum is not None:
        schema.update(minimum=exclusive_minimum, exclusiveMinimum=True)
    elif minimum is not None:
        schema["minimum"] = minimum
    else:
        schema["minimum"] = -maximum
    if kwargs.get("allow_null"):
        schema = nullable(schema)
    return CheckedField(
        lambda v: check_kw(
            v, minimum=minimum, exclusive_minimum=exclusive_minimum, maximum=maximum
        ),
        schema,
        **kwargs,
    )


def IntField(*, minimum: int, maximum: int, **kwargs) -> CheckedField:
    schema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    return CheckedField(lambda v: check_int(v, minimum=minimum, maximum=maximum), schema, **kwargs)


def ChoiceField(choices: Iterable[str], **kwargs) -> CheckedField:
    values = [str(c) for c in choices]
    return CheckedField(
        lambda v: check_choice(v, values), {"type": "string", "enum": values}, **kwargs
    )


def BoolField(**kwargs) -> CheckedField:
    return CheckedField(check_bool, {"type": "boolean"}, **kwargs)


def TimestampField(**kwargs) -> CheckedField:
    return CheckedField(check_datetime, TIMESTAMP_SCHEMA, **kwargs)


class CheckedFieldExtension(OpenApiSerializerFieldExtension):
    """The OpenAPI schema of a checked field is the one it carries."""

    target_class = CheckedField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        return self.target.schema


class RequestSerializer(_SpecMessages, serializers.Serializer):
    """A request body (or a nested object of one): unknown keys refused, read-only ignored.

    `unknown_text` ends the message of a key that is not a field ("x is not a known field");
    `read_only_keys` a client may send back with what it read and are ignored.
    """

    unknown_text = "is not a known field"
    read_only_keys: frozenset[str] = frozenset()

    def validate_empty_values(self, data):
        # A nested object sent as null is "must be an object", like any other non-object.
        if data is None and not self.allow_null:
            return (False, None)
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        path = field_path(self)
        if not isinstance(data, Mapping):
            what = path or "the body"
            raise serializers.ValidationError(f"{what} must be an object", code="invalid")
        prefix = f"{path}." if path else ""
        unknown = {
            str(key): [ErrorDetail(f"{prefix}{key} {self.unknown_text}", code="unknown")]
            for key in set(data) - set(self.fields) - set(self.read_only_keys)
        }
        try:
            value = super().to_internal_value({k: v for k, v in data.items() if k in self.fields})
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({**unknown, **exc.detail}) from None
        if unknown:
            raise serializers.ValidationError(unknown)
        return value

    def to_representation(self, instance):  # request serializers only read
        raise NotImplementedError


class RequestSerializerExtension(OpenApiSerializerExtension):
    """A request body in the document: its fields' schemas, closed (a key that is not a field
    is refused), with the read-only keys a client may send back."""

    target_class = RequestSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        for key in sorted(self.target.read_only_keys):
            schema.setdefault("properties", {})[key] = {"description": "read-only: ignored"}
        schema["additionalProperties"] = False
        return schema


def error_items(detail: Any, prefix: str = "", path: str | None = None) -> list[ErrorItem]:
    """DRF's error tree as FIELD_INVALID items: `field` is `prefix` + the dotted path, the
    message is `prefix` + the field's own message (which already names its path)."""
    items: list[ErrorItem] = []
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            items.extend(error_items(value, prefix, f"{path}.{key}" if path else str(key)))
    elif isinstance(detail, list | tuple):
        for value in detail:
            items.extend(error_items(value, prefix, path))
    else:
        name = prefix + path if path is not None else (prefix.rstrip(".") or None)
        items.append(ErrorItem("FIELD_INVALID", f"{prefix}{detail}", field=name))
    return items


def validated(
    serializer_class: type[serializers.Serializer],
    data: Any,
    *,
    prefix: str = "",
    context: dict[str, Any] | None = None,
    raise_with: Callable[[list[ErrorItem]], None] | None = None,
) -> dict[str, Any]:
    """`data` validated by `serializer_class`, or DomainError FIELD_INVALID with every problem.

    `raise_with` raises from the items where an app words its validation error its own way
    (limits: `raise_problems`); the default is `DomainError.from_errors`.
    """
    serializer = serializer_class(data=data, context=context or {})
    if serializer.is_valid():
        return serializer.validated_data
    items = error_items(serializer.errors, prefix)
    if raise_with is not None:
        raise_with(items)
    raise DomainError.from_errors(items)


def problems(
    serializer_class: type[serializers.Serializer],
    data: Any,
    *,
    prefix: str = "",
    context: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, list[ErrorItem]]:
    """(validated data, []) or (None, every FIELD_INVALID item): for callers that collect the
    problems of many objects before refusing them together (profiles, batches)."""
    serializer = serializer_class(data=data, context=context or {})
    if serializer.is_valid():
        return serializer.validated_data, []
    return None, error_items(serializer.errors, prefix)


def SchemaField(schema: dict[str, Any], **kwargs) -> CheckedField:
    """A response field documented by its own schema (a pattern, a free-form object)."""
    return CheckedField(lambda value: value, schema, **kwargs)


class ShapeField(CheckedField):
    """A field documented as the component of `shape` (a serializer, or a drf-spectacular
    `PolymorphicProxySerializer` for a `oneOf`), its value taken as sent.

    For what one serializer field cannot say: a `oneOf` (a scope, an asset of each kind) in an
    answer, or a request part that a domain validator reads as a whole (a topology's nodes and
    assets, spec 3.1: every finding names its node or asset).
    """

    def __init__(self, shape: Any, *, many: bool = False, **kwargs):
        super().__init__(lambda value: value, {}, **kwargs)
        self.shape = shape
        self.many = many


class ShapeFieldExtension(OpenApiSerializerFieldExtension):
    target_class = ShapeField
    priority = 1  # before CheckedFieldExtension, which matches its subclasses

    def map_serializer_field(self, auto_schema, direction):
        component = auto_schema.resolve_serializer(self.target.shape, direction)
        schema: dict[str, Any] = component.ref
        if self.target.many:
            return {"type": "array", "items": schema}
        return schema


def ref(name: str) -> dict[str, str]:
    """A shared component of the document that no serializer states (common.openapi: the
    error body)."""
    return {"$ref": f"#/components/schemas/{name}"}


# The shape of an answer, for the document: views answer the selectors' documents, and
# schemathesis (tests/reliability/test_schemathesis.py) holds them to these shapes.
# `additional_properties` False closes the object (a scope), True says it carries more (a
# trigger's particulars). (A comment, not a docstring: drf-spectacular would give every
# answer this text as its description.)
class ResponseSerializer(serializers.Serializer):
    additional_properties: bool | None = None


class ResponseSerializerExtension(OpenApiSerializerExtension):
    target_class = ResponseSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        if self.target.additional_properties is not None:
            schema["additionalProperties"] = self.target.additional_properties
        return schema
