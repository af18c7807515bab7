"""The API's error handling and the small base every canonical view shares.

Every 4xx leaves the API with the spec's error body, whatever raised it: a
service's `DomainError`, DRF's own parse, auth, permission, method and
not-found errors, or Django's Http404.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exc
from rest_framework.response import Response
from rest_framework.views import APIView

from microgrid.common.errors import DomainError, ErrorItem
from microgrid.common.fields import contains_nul
from microgrid.common.roles import RolePermission

log = logging.getLogger(__name__)


def _drf_to_domain(exc: Exception) -> DomainError | None:
    if isinstance(exc, DomainError):
        return exc
    if isinstance(exc, Http404 | drf_exc.NotFound):
        return DomainError("NOT_FOUND", "Not found", status=404)
    if isinstance(exc, drf_exc.NotAuthenticated | drf_exc.AuthenticationFailed):
        return DomainError("NOT_AUTHENTICATED", str(getattr(exc, "detail", exc)), status=401)
    if isinstance(exc, drf_exc.PermissionDenied | DjangoPermissionDenied):
        detail = str(getattr(exc, "detail", ""))
        if detail.startswith("CSRF Failed"):
            # A session caller without the CSRF token: say so, or it looks like a role problem.
            return DomainError("PERMISSION_DENIED", detail, {"reason": "CSRF"}, status=403)
        return DomainError("PERMISSION_DENIED", "You do not have permission to do this", status=403)
    if isinstance(exc, drf_exc.MethodNotAllowed):
        return DomainError("METHOD_NOT_ALLOWED", str(exc.detail), status=405)
    if isinstance(exc, drf_exc.UnsupportedMediaType):
        # A form-encoded (or any non-JSON) body: what HTTP clients expect is 415, not 400.
        return DomainError(
            "UNSUPPORTED_MEDIA_TYPE",
            f"{exc.detail} The API takes JSON bodies: Content-Type: application/json.",
            {"supported": ["application/json"]},
            status=415,
        )
    if isinstance(exc, drf_exc.ParseError):
        return DomainError("MALFORMED_REQUEST", str(exc.detail), status=400)
    if isinstance(exc, drf_exc.NotAcceptable):
        return DomainError("NOT_ACCEPTABLE", str(exc.detail), status=406)
    if isinstance(exc, drf_exc.Throttled):
        return DomainError("THROTTLED", str(exc.detail), status=429)
    if isinstance(exc, drf_exc.ValidationError):
        return DomainError.from_errors(_flatten_validation(exc.detail))
    if isinstance(exc, drf_exc.APIException):
        return DomainError("MALFORMED_REQUEST", str(exc.detail), status=exc.status_code)
    return None


def _flatten_validation(detail: Any, prefix: str = "") -> list[ErrorItem]:
    items: list[ErrorItem] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            items.extend(_flatten_validation(value, name))
    elif isinstance(detail, list):
        for value in detail:
            items.extend(_flatten_validation(value, prefix))
    else:
        items.append(ErrorItem("FIELD_INVALID", str(detail), field=prefix or None))
    return items


def exception_handler(exc: Exception, context: dict) -> Response | None:
    domain = _drf_to_domain(exc)
    if domain is None:
        return None  # a real bug: let Django's 500 handling log it
    response = Response(domain.body(), status=domain.status)
    if domain.status == 401:
        response["WWW-Authenticate"] = 'Token realm="api"'
    return response


def error_response(error: DomainError) -> JsonResponse:
    return JsonResponse(error.body(), status=error.status)


@csrf_exempt  # a JSON 404 for every method: never Django's HTML CSRF 403 for an unknown path
def api_404(request, exception=None) -> JsonResponse:
    return error_response(DomainError("NOT_FOUND", "Not found", status=404))


def api_500(request) -> JsonResponse:
    return JsonResponse(
        {"code": "INTERNAL_ERROR", "message": "Internal error", "details": {}}, status=500
    )


def json_object(request) -> dict[str, Any]:
    """The request body as a JSON object, or MALFORMED_REQUEST."""
    try:
        data = request.data
    except drf_exc.ParseError as exc:
        raise DomainError("MALFORMED_REQUEST", f"Body is not valid JSON: {exc.detail}") from exc
    if not isinstance(data, dict):
        raise DomainError("MALFORMED_REQUEST", "Body must be a JSON object", status=400)
    return data


def parse_json_bytes(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null", parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DomainError(
            "MALFORMED_REQUEST", f"Body is not valid JSON: {exc}", status=400
        ) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _Replay(Exception):
    def __init__(self, record):
        self.record = record


class ApiView(APIView):
    """Base for canonical endpoints: JSON only, the shared error handling, roles, and
    `Idempotency-Key` on POST: a repeat with the same key and body answers as the first
    did and changes nothing; the same key with another body is 422 IDEMPOTENCY_KEY_REUSED.
    """

    permission_classes = [RolePermission]

    def get_exception_handler(self):
        return exception_handler

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self._idempotency = None
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return
        from microgrid.common.models import IdempotencyRecord

        if len(key) > 200:
            raise DomainError.from_errors(
                [
                    ErrorItem(
                        "FIELD_INVALID",
                        "Idempotency-Key is at most 200 characters",
                        field="Idempotency-Key",
                    )
                ]
            )
        body_hash = hashlib.sha256(request._request.body).hexdigest()
        found = IdempotencyRecord.objects.filter(
            user=request.user, key=key, method=request.method, path=request.path
        ).first()
        if found is not None:
            if found.body_hash != body_hash:
                raise DomainError(
                    "IDEMPOTENCY_KEY_REUSED",
                    "This Idempotency-Key was used with a different body",
                    {"idempotency_key": key},
                )
            raise _Replay(found)
        self._idempotency = (key, body_hash)

    def handle_exception(self, exc):
        if isinstance(exc, _Replay):
            response = Response(exc.record.response_body, status=exc.record.status_code)
            response["Idempotent-Replayed"] = "true"
            return response
        return super().handle_exception(exc)

    def finalize_response(self, request, response, *args, **kwargs):
        pending = getattr(self, "_idempotency", None)
        body = getattr(response, "data", None)
        # A refusal may echo a NUL the client sent, which PostgreSQL's jsonb cannot hold: such
        # an answer is not stored (the request changed nothing; a repeat is judged again).
        # Only answers that are kept are searched (a 2,000-charger cycle is 1.6 MB of JSON).
        if pending and response.status_code < 500 and not contains_nul(body):
            from django.db import IntegrityError, transaction

            from microgrid.common.models import IdempotencyRecord

            try:
                with transaction.atomic():
                    IdempotencyRecord.objects.create(
                        user=request.user,
                        key=pending[0],
                        method=request.method,
                        path=request.path,
                        body_hash=pending[1],
                        status_code=response.status_code,
                        response_body=body,
                    )
            except IntegrityError:
                pass  # a concurrent twin stored the answer first
        return super().finalize_response(request, response, *args, **kwargs)
