"""/api/v1/: the same services the pages use, for tokens."""

import functools
import hashlib

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts import services as accounts
from accounts.models import ActivityLog, SshKey, User
from hosting import services as hosting
from hosting.models import App, ContainerSnapshot, Domain, Node, VirtualServer, visible_to

from . import services as tokens
from .authentication import AccountWideToken, Administrator, TokenScope
from .models import ApiToken
from .serializers import (ActivitySerializer, AdminServerSerializer, AppChangeSerializer, AppCreateSerializer, AppSerializer,
                          ComposeFileSerializer, ContainerSerializer, DomainSerializer, LimitsSerializer, NodeSerializer,
                          OperationSerializer, RegistrationCodeSerializer, ServerNameSerializer, ServerSerializer, SshKeySerializer,
                          TokenSerializer, UserSerializer)


@csrf_exempt
@login_not_required
def no_route(request):
    """Anything else under /api/: a 404 in the API's own words, not the pages' HTML one."""
    return JsonResponse({"error": {"code": "not_found", "message": "There is no such route in the API."}}, status=404)


def reachable_servers(request):
    """The live servers the token's user may see (every one for admins, as on the pages), and
    of those only the token's own if it names some: the rest are 404s, not 403s."""
    servers = VirtualServer.objects.filter(visible_to(request.user)).select_related("node")
    token = request.auth
    if token.is_limited:
        servers = servers.filter(pk__in=token.servers.values("pk"))
    return servers


class ApiViewSet(viewsets.GenericViewSet):
    """What every route of the API shares: numeric ids, and no login page."""

    lookup_value_regex = "[0-9]+"  # ids: anything else is no route (no_route's 404), never a failed int()

    def get_queryset(self):
        """`rows()`: what the request's token reaches. drf-spectacular reads the code with no
        request and no token: it gets the class's `queryset` (none of the model's rows)."""
        if getattr(self, "swagger_fake_view", False) or not hasattr(self, "rows"):
            return super().get_queryset()
        return self.rows()

    @classmethod
    def as_view(cls, actions=None, **initkwargs):
        # A token is the API's login (TokenAuthentication): the pages' redirect to the login form is no answer for it.
        return login_not_required(super().as_view(actions, **initkwargs))


def valid(serializer_class, request):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


IDEMPOTENCY_KEY = OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER,
                                   description="Any unique string: a retry with it answers as the first did, for 24 hours, making nothing more.")


def idempotent(create):
    """Idempotency-Key on a create: a retry with the same key gets the first answer, not a second server (or app,
    domain, key). A retry while the first is still under way is a 409; a first that failed may be tried again."""
    @functools.wraps(create)
    def once(view, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key", "")
        if not key:
            return create(view, request, *args, **kwargs)
        slot = f"api-idempotency:{request.user.pk}:{hashlib.sha256(key.encode()).hexdigest()}"
        if cache.add(slot, "pending", settings.API_IDEMPOTENCY_SECONDS):
            try:
                response = create(view, request, *args, **kwargs)
            except Exception:
                cache.delete(slot)
                raise
            cache.set(slot, {"status": response.status_code, "data": response.data}, settings.API_IDEMPOTENCY_SECONDS)
            return response
        first = cache.get(slot)
        if not isinstance(first, dict):
            return Response({"error": {"code": "in_progress", "message": "A request with this Idempotency-Key is under way."}},
                            status=status.HTTP_409_CONFLICT)
        return Response(first["data"], status=first["status"], headers={"Idempotent-Replayed": "true"})

    return once


def accepted(server):
    """202: the change is under way; poll the server until its operation is empty."""
    return Response(OperationSerializer({"server": server, "operation": server.operation}).data, status=status.HTTP_202_ACCEPTED)


class ServerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Your virtual servers: make, rename, start, stop, restart and delete them (202: poll the server)."""

    serializer_class = ServerSerializer
    queryset = VirtualServer.objects.none()

    def rows(self):
        servers = reachable_servers(self.request)
        return servers if self.action != "list" else servers.filter(owner=self.request.user)

    def _change(self, service):
        return accepted(service(actor=self.request.user, server=self.get_object(), request=self.request))

    @extend_schema(request=ServerNameSerializer, responses={202: OperationSerializer}, parameters=[IDEMPOTENCY_KEY])
    @idempotent
    def create(self, request):
        """A new server on the node with the most room, within your quota. Send an Idempotency-Key to retry safely."""
        return accepted(hosting.server_create(owner=request.user, name=valid(ServerNameSerializer, request)["name"], request=request))

    @extend_schema(request=ServerNameSerializer, responses={200: ServerSerializer})
    def partial_update(self, request, pk):
        """A new name."""
        server = hosting.server_rename(actor=request.user, server=self.get_object(), name=valid(ServerNameSerializer, request)["name"],
                                       request=request)
        return Response(ServerSerializer(server).data)

    @extend_schema(request=None, responses={202: OperationSerializer})
    def destroy(self, request, pk):
        """The server and everything in it go: its container, its disk, its domains."""
        return self._change(hosting.server_delete)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request, pk):
        return self._change(hosting.server_start)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk):
        return self._change(hosting.server_stop)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"])
    def restart(self, request, pk):
        return self._change(hosting.server_restart)


# The account's own things, not for a token limited to some servers (AccountWideToken).
ACCOUNT_WIDE = [IsAuthenticated, TokenScope, AccountWideToken]


def of_server(queryset, request):
    """Rows in the servers the token reaches, of one (?server=<id>) if asked."""
    rows = queryset.filter(server__in=reachable_servers(request))
    if server := request.query_params.get("server", ""):
        rows = rows.filter(server_id=int(server) if server.isdigit() else 0)
    return rows


class AppViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Compose apps in your servers: deploy, start, stop and remove them (202: poll the app).
    A deploy token may do all of that but remove."""

    serializer_class = AppSerializer
    queryset = App.objects.none()
    DEPLOYING = {"create", "deploy", "start", "stop"}

    @property
    def deploys(self):  # api.authentication.TokenScope
        return self.action in self.DEPLOYING

    def rows(self):
        return of_server(App.objects.select_related("server"), self.request)

    def _change(self, service, **arguments):
        app = self.get_object()
        deployment = service(actor=self.request.user, app=app, request=self.request, **arguments)
        app.refresh_from_db()
        return Response(AppChangeSerializer({"app": app, "deployment": deployment}).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=AppCreateSerializer, responses={202: AppSerializer}, parameters=[IDEMPOTENCY_KEY])
    @idempotent
    def create(self, request):
        """A new app in one of your servers, deployed from its compose file."""
        data = valid(AppCreateSerializer, request)
        server = get_object_or_404(reachable_servers(request), pk=data["server"])
        app = hosting.app_create(actor=request.user, server=server, name=data["name"], compose_file=data["compose_file"], request=request)
        app.refresh_from_db()
        return Response(AppSerializer(app).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=ComposeFileSerializer, responses={202: AppChangeSerializer})
    @action(detail=True, methods=["post"])
    def deploy(self, request, pk):
        """Deploy this compose file (the app's containers are made again as it says)."""
        return self._change(hosting.app_deploy, compose_file=valid(ComposeFileSerializer, request)["compose_file"])

    @extend_schema(request=None, responses={202: AppChangeSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request, pk):
        return self._change(hosting.app_start)

    @extend_schema(request=None, responses={202: AppChangeSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk):
        return self._change(hosting.app_stop)

    @extend_schema(request=None, responses={202: AppChangeSerializer})
    def destroy(self, request, pk):
        """Its containers, networks and volumes go."""
        return self._change(hosting.app_remove)


class DomainViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Domains routed to your servers. A name others could claim waits for a DNS record (txt_name, txt_value) or an administrator."""

    serializer_class = DomainSerializer
    queryset = Domain.objects.none()

    def rows(self):
        return of_server(Domain.objects.select_related("server__node"), self.request)

    @extend_schema(parameters=[IDEMPOTENCY_KEY])
    @idempotent
    def create(self, request):
        data = valid(DomainSerializer, request)
        server = get_object_or_404(reachable_servers(request), pk=data.pop("server_id"))
        domain = hosting.domain_add(actor=request.user, server=server, request=request, **data)
        return Response(DomainSerializer(domain).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk):
        hosting.domain_remove(actor=request.user, domain=self.get_object(), request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: DomainSerializer})
    @action(detail=True, methods=["post"])
    def check(self, request, pk):
        """Look its TXT record up now (the panel also does every minute); a claim not waiting for DNS is a 409."""
        domain = self.get_object()
        asked, words = hosting.domain_check_request(actor=request.user, domain=domain)
        if not asked:
            return Response({"error": {"code": "not_checked", "message": words}}, status=status.HTTP_409_CONFLICT)
        return Response(DomainSerializer(domain).data, status=status.HTTP_202_ACCEPTED)


class ContainerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """The containers inside your servers, as the monitor last read them (each minute, and after every action);
    start, stop, restart or remove one (202: poll it until its action is empty)."""

    serializer_class = ContainerSerializer
    queryset = ContainerSnapshot.objects.none()

    def rows(self):
        return of_server(ContainerSnapshot.objects.select_related("server__node"), self.request)

    def _act(self, verb):
        container = self.get_object()
        container = hosting.container_act(actor=self.request.user, server=container.server, container=container, action=verb,
                                          request=self.request)
        return Response(ContainerSerializer(container).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: ContainerSerializer})
    @action(detail=True, methods=["post"])
    def start(self, request, pk):
        return self._act(ContainerSnapshot.Action.START)

    @extend_schema(request=None, responses={202: ContainerSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request, pk):
        return self._act(ContainerSnapshot.Action.STOP)

    @extend_schema(request=None, responses={202: ContainerSerializer})
    @action(detail=True, methods=["post"])
    def restart(self, request, pk):
        return self._act(ContainerSnapshot.Action.RESTART)

    @extend_schema(request=None, responses={202: ContainerSerializer})
    def destroy(self, request, pk):
        return self._act(ContainerSnapshot.Action.REMOVE)


class SshKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Your SSH keys: what lets you into your servers over SSH, SCP and SFTP (a key, never a password)."""

    serializer_class = SshKeySerializer
    permission_classes = ACCOUNT_WIDE
    queryset = SshKey.objects.none()

    def rows(self):
        return self.request.user.ssh_keys.all()

    @extend_schema(parameters=[IDEMPOTENCY_KEY])
    @idempotent
    def create(self, request):
        data = valid(SshKeySerializer, request)
        key = accounts.ssh_key_add(user=request.user, name=data["name"], public_key=data["public_key"], request=request)
        return Response(SshKeySerializer(key).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk):
        accounts.ssh_key_remove(user=request.user, key=self.get_object(), request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ActivityViewSet(mixins.ListModelMixin, ApiViewSet):
    """What you did, newest first: the same log as your account page."""

    serializer_class = ActivitySerializer
    permission_classes = ACCOUNT_WIDE
    queryset = ActivityLog.objects.none()

    def rows(self):
        return self.request.user.activity.all()


# Administrators (their tokens only, and never one limited to some servers) ---------

ADMIN = [*ACCOUNT_WIDE, Administrator]


class AdminUserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Every user, with their live servers and SSH keys counted (?q= searches emails)."""

    serializer_class = UserSerializer
    permission_classes = ADMIN

    def get_queryset(self):
        users = User.objects.all()
        if q := self.request.query_params.get("q", "").strip():
            users = users.filter(email__icontains=q)
        return accounts.users_with_counts(users).order_by("email", "pk")


class AdminServerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Every live server (?owner=<user id>, ?node=<name>); its limits."""

    serializer_class = AdminServerSerializer
    permission_classes = ADMIN

    def get_queryset(self):
        servers = VirtualServer.objects.live().select_related("node", "owner").order_by("-pk")
        if (owner := self.request.query_params.get("owner", "")).isdigit():
            servers = servers.filter(owner_id=int(owner))
        if node := self.request.query_params.get("node", ""):
            servers = servers.filter(node__name=node)
        return servers

    @extend_schema(request=LimitsSerializer, responses={200: AdminServerSerializer})
    @action(detail=True, methods=["post"])
    def limits(self, request, pk):
        """Memory, CPUs, processes and disk: the worker applies them to its container."""
        server = hosting.server_set_limits(actor=request.user, server=self.get_object(), request=request, **valid(LimitsSerializer, request))
        return Response(AdminServerSerializer(VirtualServer.objects.select_related("node", "owner").get(pk=server.pk)).data)


class AdminNodeViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """The machines servers are placed on, with their servers and the memory promised them."""

    serializer_class = NodeSerializer
    permission_classes = ADMIN
    queryset = Node.objects.with_promised().order_by("name")


class AdminTokenViewSet(mixins.ListModelMixin, ApiViewSet):
    """Everyone's API tokens (?user=<id>); revoke any."""

    serializer_class = TokenSerializer
    permission_classes = ADMIN

    def get_queryset(self):
        rows = ApiToken.objects.select_related("user").prefetch_related("servers")
        return rows.filter(user_id=int(user)) if (user := self.request.query_params.get("user", "")).isdigit() else rows

    @extend_schema(request=None, responses={200: TokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk):
        token = self.get_object()
        tokens.token_revoke(actor=request.user, token=token, request=request)
        token.refresh_from_db()
        return Response(TokenSerializer(token).data)


class AdminRegistrationCodeViewSet(ApiViewSet):
    """Your registration code: people sign up with it until it expires (REGISTRATION_CODE_TTL) or is used up."""

    serializer_class = RegistrationCodeSerializer
    permission_classes = ADMIN

    @extend_schema(responses={201: RegistrationCodeSerializer})
    def create(self, request):
        """A fresh code, replacing the one you had."""
        code = accounts.registration_code_generate(admin=request.user, request=request, **valid(RegistrationCodeSerializer, request))
        return Response(RegistrationCodeSerializer(code).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(detail=False, methods=["post"])
    def revoke(self, request):
        accounts.registration_code_revoke(admin=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)
