"""Form helpers every app uses."""

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import QueryDict
from django.shortcuts import redirect

REFUSED_SESSION_KEY = "refused_form"


def add_errors(form, error):
    """Put a service's ValidationError on the form, field by field where it names one."""
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error)


def refused(request, form, name, to):
    """Post/Redirect/Get for a form refused at a POST-only address: what was sent (never a
    password) and its errors wait in the session for the page at `to` (a path), which shows
    the form `name` again with them (restored). A reload shows that page, not a bare 405."""
    secret = {field for field, spec in form.fields.items() if isinstance(spec.widget, forms.PasswordInput)}
    request.session[REFUSED_SESSION_KEY] = {
        "name": name,
        "path": to,
        "data": {field: form.data.getlist(field) for field in form.fields if field in form.data and field not in secret},
        "errors": {field: [error["message"] for error in errors] for field, errors in form.errors.get_json_data().items()},
    }
    return redirect(to)


def restored(request, name, make):
    """The form `name` as it was refused (refused()), once: make(data) binds it to what was
    sent, and it carries the errors that were found then (the service's too); else None."""
    kept = request.session.get(REFUSED_SESSION_KEY)
    if not kept or (kept["name"], kept["path"]) != (name, request.path):
        return None
    del request.session[REFUSED_SESSION_KEY]
    data = QueryDict(mutable=True)
    for field, values in kept["data"].items():
        data.setlist(field, values)
    form = make(data)
    form.errors.clear()  # checked again, it would miss what the service said: the errors are those found then
    for field, messages in kept["errors"].items():
        form.add_error(field if field != NON_FIELD_ERRORS and field in form.fields else None, messages)
    return form
