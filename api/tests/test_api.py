from datetime import timedelta
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ActivityLog
from api import services
from api.models import ApiToken
from hosting import services as hosting
from hosting.models import VirtualServer

from .conftest import SCHEMA

pytestmark = pytest.mark.django_db



def token_for(user, scope=ApiToken.Scope.WRITE, servers=(), days=30):
    return services.token_create(user=user, name=f"{scope} token", scope=scope, days=days, servers=servers)[1]


def api(secret=None):
    return Client(headers={"Authorization": f"Bearer {secret}"} if secret else {})


@pytest.fixture
def servers(alice, bob, fake_docker, committed):
    alice.server_quota = bob.server_quota = 2
    alice.save(), bob.save()
    made = {}
    for owner, name in [(alice, "web"), (alice, "db"), (bob, "bobs")]:
        with committed():
            made[name] = hosting.server_create(owner=owner, name=name)
    return made


def action(server, verb="start"):
    return reverse(f"api:server-{verb}", args=[server.pk])


def detail(server):
    return reverse("api:server-detail", args=[server.pk])


# Tokens -------------------------------------------------------------------------

def test_a_token_is_kept_only_as_a_keyed_hash_and_its_making_is_logged(alice):
    token, secret = services.token_create(user=alice, name="CI", scope="read", days=30)
    assert secret.startswith("cpat_") and len(secret) > 40
    stored = ApiToken.objects.filter(pk=token.pk).values().get()
    assert secret not in str(stored) and stored["digest"] == services.digest(secret) and stored["hint"] == secret[:11]
    assert services.token_find(secret) == token and services.token_find(secret + "x") is None
    assert ActivityLog.objects.filter(user=alice, action="token_created", message__contains="“CI” (read, 30 days)").exists()


@pytest.mark.parametrize("spoil", ["expired", "revoked", "disabled"])
def test_an_expired_or_revoked_token_or_a_disabled_users_stops_at_once(alice, servers, spoil):
    secret = token_for(alice)
    assert api(secret).get(reverse("api:server-list")).status_code == 200
    token = ApiToken.objects.get()
    if spoil == "expired":
        ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    elif spoil == "revoked":
        services.token_revoke(actor=alice, token=token)
    else:
        type(alice).objects.filter(pk=alice.pk).update(is_active=False)
    response = api(secret).get(reverse("api:server-list"))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json() == {"error": {"code": "authentication_failed", "message": "This token is unknown, expired or revoked."}}


def test_no_token_or_a_session_is_not_the_apis_login(as_alice, servers):
    for client in (api(), api("cpat_not-a-token"), as_alice):
        response = client.get(reverse("api:server-list"))
        assert response.status_code == 401 and response.json()["error"]["code"] in ("not_authenticated", "authentication_failed")
    assert api().post(action(servers["web"])).status_code == 401


def test_last_use_and_address_are_recorded(alice, servers):
    secret = token_for(alice)
    api(secret).get(reverse("api:server-list"), REMOTE_ADDR="192.0.2.7")
    token = ApiToken.objects.get()
    assert token.last_used_ip == "192.0.2.7" and timezone.now() - token.last_used_at < timedelta(seconds=5)


# Servers ------------------------------------------------------------------------

def test_the_owner_lists_and_reads_their_servers(alice, servers):
    client = api(token_for(alice, "read"))
    listed = client.get(reverse("api:server-list")).json()
    assert listed["count"] == 2 and {s["name"] for s in listed["results"]} == {"web", "db"}
    one = client.get(detail(servers["web"])).json()
    assert one["name"] == "web" and one["state"] == VirtualServer.State.RUNNING and one["node"]


def test_start_stop_and_restart_answer_202_and_the_log_names_the_token(alice, servers, committed):
    client = api(token_for(alice))
    with committed():
        response = client.post(action(servers["web"], "stop"))
    assert response.status_code == 202 and response.json()["server"]["id"] == servers["web"].pk
    assert VirtualServer.objects.get(pk=servers["web"].pk).desired_state == "stopped"
    assert ActivityLog.objects.filter(action="server_stopped", message__endswith="(API token “write token”)").exists()
    for verb in ("start", "restart"):
        with committed():
            assert client.post(action(servers["web"], verb)).status_code == 202


def test_make_rename_and_delete_a_server_through_the_api(alice, servers, committed):
    client = api(token_for(alice))
    alice.server_quota = 3
    alice.save()
    with committed():
        response = client.post(reverse("api:server-list"), {"name": "ci"}, content_type="application/json")
    assert response.status_code == 202
    made = VirtualServer.objects.get(pk=response.json()["server"]["id"])
    assert made.owner == alice and made.name == "ci"
    renamed = client.patch(detail(made), {"name": "ci 2"}, content_type="application/json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "ci 2"
    with committed():
        assert client.delete(detail(made)).status_code == 202
    assert VirtualServer.objects.get(pk=made.pk).deleted_at is not None
    assert client.get(detail(made)).status_code == 404


def test_bad_input_and_refusals_are_400s_in_words(alice, servers):
    client = api(token_for(alice))
    bad = client.post(reverse("api:server-list"), {"name": "no/slashes"}, content_type="application/json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid" and "name" in bad.json()["error"]["fields"]
    garbage = client.post(reverse("api:server-list"), "{not json", content_type="application/json")
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "parse_error"
    over = client.post(reverse("api:server-list"), {"name": "third"}, content_type="application/json")  # quota 2, both used
    assert over.status_code == 400 and over.json()["error"]["code"] == "quota"
    assert VirtualServer.objects.filter(owner=alice).count() == 2


def test_a_busy_server_is_a_409_in_words(alice, servers):
    client = api(token_for(alice))
    client.post(action(servers["web"], "stop"))  # not committed: the stop stays under way
    response = client.post(action(servers["web"], "start"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "busy" and "busy" in response.json()["error"]["message"]


@pytest.mark.parametrize("verb", ["start", "stop", "restart"])
def test_authorization_matrix(alice, bob, admin, servers, verb, committed):
    web, bobs = servers["web"], servers["bobs"]
    read, deploy, write = (token_for(alice, scope) for scope in ("read", "deploy", "write"))
    only_db = token_for(alice, servers=[servers["db"]])
    cases = [
        (api(), web, 401),
        (api(read), web, 403),
        (api(deploy), web, 403),
        (api(write), bobs, 404),  # another user's server
        (api(only_db), web, 404),  # a token for another server
        (api(token_for(bob)), web, 404),
        (api(token_for(admin)), bobs, 202),  # admins act on every server, as on the pages
        (api(write), web, 202),
    ]
    for client, server, status in cases:
        with committed():
            response = client.post(action(server, verb))
        assert response.status_code == status, (server.name, response.json())
        assert set(response.json()) == ({"error"} if status >= 400 else {"server", "operation"})
        if status == 202:  # let the next case find it idle
            VirtualServer.objects.filter(pk=server.pk).update(operation="")
    for client, server in [(api(read), web), (api(deploy), web)]:
        assert client.patch(detail(server), {"name": "x"}, content_type="application/json").status_code == 403
        assert client.delete(detail(server)).status_code == 403
        assert client.post(reverse("api:server-list"), {"name": "x"}, content_type="application/json").status_code == 403
    assert api(token_for(bob)).delete(detail(web)).status_code == 404
    assert api(only_db).patch(detail(web), {"name": "x"}, content_type="application/json").status_code == 404
    for client, server, status in [(api(read), web, 200), (api(only_db), web, 404), (api(only_db), servers["db"], 200),
                                   (api(token_for(bob, "read")), web, 404), (api(token_for(admin, "read")), web, 200)]:
        assert client.get(detail(server)).status_code == status


def test_a_limited_token_lists_only_its_servers_and_admins_list_their_own(alice, admin, servers):
    listed = api(token_for(alice, "read", servers=[servers["db"]])).get(reverse("api:server-list")).json()
    assert [s["name"] for s in listed["results"]] == ["db"]
    assert api(token_for(admin, "read")).get(reverse("api:server-list")).json()["count"] == 0


def test_unknown_methods_and_routes_are_json_errors(alice, servers):
    client = api(token_for(alice))
    response = client.put(detail(servers["web"]), {"name": "x"}, content_type="application/json")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert client.get(reverse("api:server-detail", args=[999999])).json() == {"error": {"code": "not_found", "message": "Not found."}}
    for path in ("/api/v1/servers/web/", "/api/v2/", "/api/v1/servers/1/nothing/"):
        response = api().post(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", path


# Apps ---------------------------------------------------------------------------

COMPOSE = "services:\n  web:\n    image: busybox\n    command: httpd -f -p 8080\n"


def test_a_deploy_token_deploys_starts_and_stops_apps_but_removes_nothing(alice, servers):
    client = api(token_for(alice, "deploy"))
    made = client.post(reverse("api:app-list"), {"server": servers["web"].pk, "name": "blog", "compose_file": COMPOSE},
                       content_type="application/json")
    assert made.status_code == 202 and made.json()["status"] == "deploying"
    app = servers["web"].apps.get()
    assert app.deployments.get().compose_file == COMPOSE
    busy = client.post(reverse("api:app-deploy", args=[app.pk]), {"compose_file": COMPOSE}, content_type="application/json")
    assert busy.status_code == 400 and busy.json()["error"]["code"] == "app_busy"
    type(app).objects.filter(pk=app.pk).update(status="running", compose_file=COMPOSE)
    for verb in ("stop", "start"):
        response = client.post(reverse(f"api:app-{verb}", args=[app.pk]))
        assert response.status_code == 202 and response.json()["deployment"]["action"] == verb, response.json()
        type(app).objects.filter(pk=app.pk).update(status="running")
    assert client.delete(reverse("api:app-detail", args=[app.pk])).status_code == 403
    assert api(token_for(alice, "read")).post(reverse("api:app-stop", args=[app.pk])).status_code == 403
    listed = client.get(reverse("api:app-list"), {"server": servers["web"].pk}).json()
    assert [a["name"] for a in listed["results"]] == ["blog"] and len(listed["results"][0]["deployments"]) == 3


def test_apps_of_others_are_404s_and_bad_compose_files_say_why(alice, bob, servers):
    app = servers["bobs"].apps.create(name="theirs")
    client = api(token_for(alice))
    assert client.get(reverse("api:app-detail", args=[app.pk])).status_code == 404
    assert client.delete(reverse("api:app-detail", args=[app.pk])).status_code == 404
    assert client.post(reverse("api:app-list"), {"server": servers["bobs"].pk, "name": "x", "compose_file": COMPOSE},
                       content_type="application/json").status_code == 404
    bad = client.post(reverse("api:app-list"), {"server": servers["web"].pk, "name": "x", "compose_file": "services: [1"},
                      content_type="application/json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "not_yaml" and "line" in bad.json()["error"]["message"]
    assert not servers["web"].apps.exists()
    assert client.get(reverse("api:app-list")).json()["count"] == 0


# Domains ------------------------------------------------------------------------

def test_domains_are_added_listed_and_removed_with_the_pages_rules(alice, servers, caddy_answers):
    client = api(token_for(alice))
    added = client.post(reverse("api:domain-list"), {"server": servers["web"].pk, "name": "Blog.Example.org", "port": 8080},
                        content_type="application/json")
    assert added.status_code == 201, added.json()
    domain = added.json()
    assert domain["name"] == "blog.example.org" and domain["port"] == 8080 and domain["ssl"] is True
    assert [d["name"] for d in client.get(reverse("api:domain-list"), {"server": servers["web"].pk}).json()["results"]] == ["blog.example.org"]
    assert client.get(reverse("api:domain-list"), {"server": servers["db"].pk}).json()["count"] == 0
    taken = client.post(reverse("api:domain-list"), {"server": servers["web"].pk, "name": "blog.example.org"}, content_type="application/json")
    assert taken.status_code == 400 and "name" in taken.json()["error"]["fields"]
    bad = client.post(reverse("api:domain-list"), {"server": servers["db"].pk, "name": "x..org", "port": 0}, content_type="application/json")
    assert bad.status_code == 400 and set(bad.json()["error"]["fields"]) == {"port"}
    assert api(token_for(alice, "read")).delete(reverse("api:domain-detail", args=[domain["id"]])).status_code == 403
    assert api(token_for(alice, servers=[servers["db"]])).get(reverse("api:domain-detail", args=[domain["id"]])).status_code == 404
    assert client.delete(reverse("api:domain-detail", args=[domain["id"]])).status_code == 204
    assert not servers["web"].domains.exists()


def test_a_domain_on_anothers_server_is_a_404_and_nothing_is_made(alice, servers, caddy_answers):
    response = api(token_for(alice)).post(reverse("api:domain-list"), {"server": servers["bobs"].pk, "name": "a.example.org"},
                                          content_type="application/json")
    assert response.status_code == 404 and not servers["bobs"].domains.exists()


# Containers ---------------------------------------------------------------------

def test_containers_are_listed_and_acted_on_in_ones_own_servers_only(alice, servers):
    mine = servers["web"].containers.create(docker_id="a" * 64, name="web-1", image="nginx", state="running", digest="x",
                                            labels={"com.docker.compose.project": "blog"})
    theirs = servers["bobs"].containers.create(docker_id="b" * 64, name="theirs", state="running", digest="x")
    client = api(token_for(alice))
    listed = client.get(reverse("api:container-list")).json()
    assert [(c["name"], c["project"]) for c in listed["results"]] == [("web-1", "blog")]
    response = client.post(reverse("api:container-restart", args=[mine.pk]))
    assert response.status_code == 202 and response.json()["action"] == "restart"
    busy = client.delete(reverse("api:container-detail", args=[mine.pk]))
    assert busy.status_code == 400 and busy.json()["error"]["code"] == "container_busy"
    assert client.post(reverse("api:container-stop", args=[theirs.pk])).status_code == 404
    assert api(token_for(alice, "read")).post(reverse("api:container-stop", args=[mine.pk])).status_code == 403
    assert ActivityLog.objects.filter(action="container_action", message__contains="“web-1”").count() == 1


# The account ----------------------------------------------------------------------

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def test_ssh_keys_and_activity_are_for_tokens_over_the_whole_account(alice, servers):
    client = api(token_for(alice))
    added = client.post(reverse("api:ssh-key-list"), {"name": "laptop", "public_key": KEY}, content_type="application/json")
    assert added.status_code == 201 and added.json()["fingerprint"].startswith("SHA256:")
    again = client.post(reverse("api:ssh-key-list"), {"name": "again", "public_key": KEY}, content_type="application/json")
    assert again.status_code == 400 and again.json()["error"]["code"] == "key_taken"
    actions = [row["action"] for row in client.get(reverse("api:activity-list")).json()["results"]]
    assert actions[0] == "ssh_key_added" and "token_created" in actions
    limited = api(token_for(alice, servers=[servers["web"]]))
    for response in (limited.get(reverse("api:ssh-key-list")), limited.get(reverse("api:activity-list")),
                     limited.post(reverse("api:ssh-key-list"), {"name": "x", "public_key": KEY}, content_type="application/json")):
        assert response.status_code == 403 and "limited to some servers" in response.json()["error"]["message"]
    assert api(token_for(alice, "read")).delete(reverse("api:ssh-key-detail", args=[added.json()["id"]])).status_code == 403
    assert client.delete(reverse("api:ssh-key-detail", args=[added.json()["id"]])).status_code == 204
    assert not alice.ssh_keys.exists()


def test_others_keys_and_activity_are_not_seen(alice, bob, servers):
    key = bob.ssh_keys.create(name="bobs", public_key="ssh-ed25519 AAAA", kind="ssh-ed25519", bits=256, fingerprint="SHA256:b")
    client = api(token_for(alice))
    assert client.get(reverse("api:ssh-key-detail", args=[key.pk])).status_code == 404
    assert client.delete(reverse("api:ssh-key-detail", args=[key.pk])).status_code == 404
    token_for(bob)  # a row of bob's
    assert client.get(reverse("api:activity-list")).json()["count"] == ActivityLog.objects.filter(user=alice).count()


# Limits -------------------------------------------------------------------------

def test_a_retried_create_with_its_idempotency_key_makes_one_server(alice, servers, committed):
    alice.server_quota = 4
    alice.save()
    client = api(token_for(alice))

    def make(key, name="ci"):
        return client.post(reverse("api:server-list"), {"name": name}, content_type="application/json", headers={"Idempotency-Key": key})

    with committed():
        first = make("class-3b")
    again = make("class-3b", name="something else")
    assert first.status_code == again.status_code == 202 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert VirtualServer.objects.filter(owner=alice, deleted_at__isnull=True).count() == 3
    assert make("another").status_code == 202  # another key, another server
    refused = make("over quota")  # a first that failed may be tried again: nothing was kept
    assert refused.status_code == 400 and make("over quota").json()["error"]["code"] == "quota"


def test_too_many_requests_are_a_429_with_retry_after(alice, servers, monkeypatch):
    from api.authentication import TokenRate

    monkeypatch.setattr(TokenRate, "THROTTLE_RATES", {"token": "3/min"})
    client = api(token_for(alice, "read"))
    statuses = [client.get(reverse("api:server-list")).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get(reverse("api:server-list"))
    assert response.json()["error"]["code"] == "throttled" and 0 < int(response.headers["Retry-After"]) <= 60
    assert api(token_for(alice, "read")).get(reverse("api:server-list")).status_code == 200  # per token


# Administrators -----------------------------------------------------------------

ADMIN_ROUTES = [("get", "api:admin-user-list", None), ("get", "api:admin-server-list", None), ("get", "api:admin-node-list", None),
                ("get", "api:admin-token-list", None), ("post", "api:admin-registration-code-list", {})]


def test_admin_routes_are_for_admins_unlimited_tokens(alice, admin, servers):
    for method, name, body in ADMIN_ROUTES:
        call = lambda client: getattr(client, method)(reverse(name), body, content_type="application/json")  # noqa: E731
        assert call(api()).status_code == 401, name
        assert call(api(token_for(alice))).status_code == 403, name
        assert call(api(token_for(admin, servers=[servers["web"]]))).status_code == 403, name
        assert call(api(token_for(admin, "read" if method == "get" else "write"))).status_code in (200, 201), name
    assert api(token_for(admin, "read")).post(reverse("api:admin-registration-code-list"), {}, content_type="application/json").status_code == 403


def test_admins_list_users_and_servers_set_limits_and_hand_out_codes(alice, admin, servers):
    client = api(token_for(admin))
    users = {u["email"]: u["server_count"] for u in client.get(reverse("api:admin-user-list")).json()["results"]}
    assert users == {"admin@example.com": 0, "alice@example.com": 2, "bob@example.com": 1}
    listed = client.get(reverse("api:admin-server-list"), {"owner": alice.pk}).json()
    assert {(s["name"], s["owner"]) for s in listed["results"]} == {("web", "alice@example.com"), ("db", "alice@example.com")}
    web = servers["web"]
    changed = client.post(reverse("api:admin-server-limits", args=[web.pk]), {"memory_mb": 2048, "cpus": "1.5", "pids_limit": 2000},
                          content_type="application/json")
    assert changed.status_code == 200 and changed.json()["memory_mb"] == 2048 and changed.json()["cpus"] == "1.50"
    bad = client.post(reverse("api:admin-server-limits", args=[web.pk]), {"memory_mb": 1, "cpus": "1", "pids_limit": 2000},
                      content_type="application/json")
    assert bad.status_code == 400 and "memory_mb" in bad.json()["error"]["fields"]
    code = client.post(reverse("api:admin-registration-code-list"), {"max_uses": 3}, content_type="application/json").json()
    assert len(code["code"]) == 8 and code["max_uses"] == 3
    assert client.post(reverse("api:admin-registration-code-revoke")).status_code == 204
    assert [n["name"] for n in client.get(reverse("api:admin-node-list")).json()["results"]] == ["local"]


def test_admins_see_and_revoke_anyones_tokens(alice, admin, servers):
    secret = token_for(alice, "read")
    client = api(token_for(admin))
    listed = client.get(reverse("api:admin-token-list"), {"user": alice.pk}).json()["results"]
    assert [(t["user"], t["scope"]) for t in listed] == [("alice@example.com", "read")] and secret not in str(listed)
    revoked = client.post(reverse("api:admin-token-revoke", args=[listed[0]["id"]]))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert api(secret).get(reverse("api:server-list")).status_code == 401
    assert ActivityLog.objects.filter(user=admin, action="token_revoked", message__contains="of alice@example.com").exists()


# Schema -------------------------------------------------------------------------

def test_the_checked_in_schema_is_what_the_code_describes(tmp_path):
    """Regenerate with: manage.py spectacular --file api/openapi.yaml --validate"""
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(generated), "--validate", "--fail-on-warn")
    assert generated.read_text() == SCHEMA.read_text()


def test_the_schema_is_for_signed_in_people_and_tokens(as_alice, alice, client):
    assert as_alice.get(reverse("api:schema")).status_code == 200
    assert api(token_for(alice, "read")).get(reverse("api:schema")).status_code == 200
    assert client.get(reverse("api:schema")).status_code in (401, 403)


# The tokens page ----------------------------------------------------------------

def test_the_tokens_page_makes_a_token_shown_once_and_revokes_it(as_alice, alice, servers):
    page = reverse("api:token_list")
    response = as_alice.post(reverse("api:token_create"), {"name": "CI", "scope": "deploy", "days": 90, "servers": [servers["db"].pk]})
    assert response.status_code == 302 and response.url == page
    shown = as_alice.get(page).content.decode()
    secret = shown.split('id="new-token">')[1].split("<")[0]
    assert services.token_find(secret).scope == "deploy" and "Copy it now" in shown
    assert secret not in as_alice.get(page).content.decode()  # once
    token = ApiToken.objects.get()
    assert list(token.servers.all()) == [servers["db"]]
    as_alice.post(reverse("api:token_revoke", args=[token.pk]))
    assert services.token_find(secret) is None


def test_the_tokens_page_refuses_in_words_and_keeps_others_tokens_out(as_alice, as_bob, alice, servers):
    response = as_alice.post(reverse("api:token_create"), {"name": "", "scope": "write", "days": 3, "servers": [servers["bobs"].pk]})
    assert response.status_code == 302
    page = as_alice.get(reverse("api:token_list")).content.decode()
    assert "This field is required." in page and "Select a valid choice." in page
    token, _ = services.token_create(user=alice, name="mine", scope="read", days=7)
    assert as_bob.post(reverse("api:token_revoke", args=[token.pk])).status_code == 404
    assert "mine" not in as_bob.get(reverse("api:token_list")).content.decode()


def test_a_user_has_a_limited_number_of_tokens(alice, settings):
    settings.API_TOKENS_PER_USER = 1
    services.token_create(user=alice, name="one", scope="read", days=7)
    with pytest.raises(Exception, match="at most 1 API tokens"):
        services.token_create(user=alice, name="two", scope="read", days=7)


def test_an_admin_sees_a_users_tokens_on_their_page_and_revokes_one(as_admin, alice):
    token, secret = services.token_create(user=alice, name="laptop script", scope="read", days=7)
    page = as_admin.get(reverse("accounts:user_detail", args=[alice.pk])).content.decode()
    assert "laptop script" in page and token.hint in page and secret not in page
    response = as_admin.post(reverse("api:admin_token_revoke", args=[token.pk]))
    assert response.url == reverse("accounts:user_detail", args=[alice.pk])
    assert services.token_find(secret) is None
