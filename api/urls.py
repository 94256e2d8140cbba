from django.contrib.auth.decorators import login_not_required
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.routers import SimpleRouter

from . import pages, views
from .authentication import TokenAuthentication

app_name = "api"

router = SimpleRouter()
router.register("servers", views.ServerViewSet, basename="server")
router.register("apps", views.AppViewSet, basename="app")
router.register("domains", views.DomainViewSet, basename="domain")
router.register("containers", views.ContainerViewSet, basename="container")
router.register("ssh-keys", views.SshKeyViewSet, basename="ssh-key")
router.register("activity", views.ActivityViewSet, basename="activity")
router.register("admin/users", views.AdminUserViewSet, basename="admin-user")
router.register("admin/servers", views.AdminServerViewSet, basename="admin-server")
router.register("admin/nodes", views.AdminNodeViewSet, basename="admin-node")
router.register("admin/tokens", views.AdminTokenViewSet, basename="admin-token")
router.register("admin/registration-code", views.AdminRegistrationCodeViewSet, basename="admin-registration-code")

# Signed in, or with a token (login_not_required: the API's login is its token).
schema = SpectacularAPIView.as_view(authentication_classes=[SessionAuthentication, TokenAuthentication],
                                    permission_classes=[IsAuthenticated])

urlpatterns = [
    path("api/v1/", include(router.urls)),
    path("api/schema/", login_not_required(schema), name="schema"),
    path("api/docs/", pages.docs, name="docs"),
    re_path(r"^api/", views.no_route, name="no_route"),
    path("account/tokens/", pages.token_list, name="token_list"),
    path("account/tokens/new/", pages.token_create, name="token_create"),
    path("account/tokens/<int:token_id>/revoke/", pages.token_revoke, name="token_revoke"),
    path("users/tokens/<int:token_id>/revoke/", pages.admin_token_revoke, name="admin_token_revoke"),
]
