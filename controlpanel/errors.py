"""Refusals the panel says to people. Each module keeps its messages in one ERRORS
dict under codes (what forms, the API and the tests match on) and raises them
with refusal()."""

from django.core.exceptions import ValidationError


def refusal(errors, code, field=None, **params):
    """A ValidationError saying errors[code] with its {params} filled in; on `field` if named."""
    error = ValidationError(errors[code].format(**params), code=code)
    return ValidationError({field: error}) if field else error
