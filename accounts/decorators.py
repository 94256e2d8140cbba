from functools import wraps

from django.core.exceptions import PermissionDenied


def admin_required(view):
    """Admin pages: anonymous users are sent to log in by the middleware; others get 403."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_admin:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper
