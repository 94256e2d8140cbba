"""What drf-spectacular needs to describe the API (imported by ApiConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.TokenAuthentication"
    name = "token"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "A personal access token (cpat_...) from the panel's API tokens page."}


ERRORS = {
    "400": "The request is not valid, or the panel refused it (error.code says why; error.fields, which field).",
    "401": "No token, or one that is unknown, expired or revoked, or whose user is disabled.",
    "403": "The token's scope, its servers, or its user's role does not allow this.",
    "404": "No such object, or not one this token may see.",
    "405": "This route does not take that method.",
    "409": "The object is busy (or going): try again when it is done.",
    "429": "Too many requests: wait Retry-After seconds.",
}


def error_responses(result, generator, request, public):
    """drf-spectacular's last step: every operation may answer with an error, as
    {"error": {"code", "message", "fields"}} (api.errors), and says so."""
    result["components"]["schemas"]["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "What went wrong, for programs: e.g. quota, busy, not_found, throttled."},
                "message": {"type": "string", "description": "What went wrong, for people."},
                "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
                           "description": "Per field, what is wrong with it."},
            },
        }},
    }
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for path in result["paths"].values():
        for operation in path.values():
            for status, description in ERRORS.items():
                operation["responses"].setdefault(status, {**error, "description": description})
    return result
