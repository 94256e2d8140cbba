"""Every API error as JSON: {"error": {"code": ..., "message": ..., "fields": {...}}}."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


# Refusals that are about the object's state, not the request: try again later.
CONFLICTS = {"busy", "server_deleting", "node_offline"}


def _codes(codes):
    """The first code DRF's get_codes() holds, however nested."""
    while isinstance(codes, (list, dict)):
        codes = next(iter(codes.values() if isinstance(codes, dict) else codes), "invalid")
    return codes


def exception_handler(exc, context):
    if isinstance(exc, ValidationError):  # a service's refusal (controlpanel.errors.refusal): its code and words
        fields = exc.message_dict if hasattr(exc, "error_dict") else None
        errors = [error for errors in exc.error_dict.values() for error in errors] if fields else exc.error_list
        code = errors[0].code or "refused"
        body = {"code": code, "message": " ".join(exc.messages)}
        answer = status.HTTP_409_CONFLICT if code in CONFLICTS else status.HTTP_400_BAD_REQUEST
        return Response({"error": {**body, **({"fields": fields} if fields else {})}}, status=answer)
    if isinstance(exc, Http404):  # another user's object too: not ours to say it exists
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not ours to word: Django's 500 handling
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        fields = {field: [str(m) for m in messages] for field, messages in exc.detail.items()}
        body = {"code": "invalid", "message": "Some fields are not valid.", "fields": fields}
    else:
        message = " ".join(map(str, exc.detail)) if isinstance(exc.detail, list) else str(exc.detail)
        body = {"code": _codes(exc.get_codes()), "message": message}
    response.data = {"error": body}
    return response
