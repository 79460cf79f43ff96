"""DigitalOcean emulation against pydo, the provider's official Python
client, written from the API reference
(https://docs.digitalocean.com/reference/api/): ssh keys, droplets (two with
one name, which DigitalOcean allows), actions read globally and per droplet,
listing with pagination (`links.pages`, `meta.total`), errors (404 body,
401 for a wrong token, 422 for a duplicate key), rate-limit headers, and
deletion by id and by tag (204, and then gone from listings).

pydo takes the base URL without `/v2` (it adds `/v2` to every path): the
lab's env gives it as DIGITALOCEAN_API_URL (DIGITALOCEAN_ENDPOINT, with
`/v2`, is what cairn and curl use). Prints one `ok ...` line per check and
exits non-zero at the first failure."""

import os
import time

import requests
from azure.core.exceptions import HttpResponseError
from pydo import Client
from azure.core.pipeline.policies import HeadersPolicy

API_URL = os.environ["DIGITALOCEAN_API_URL"]
TOKEN = os.environ["DIGITALOCEAN_ACCESS_TOKEN"]
PUBKEY = open(os.environ["CAIRN_LAB_SSH_PUBKEY"]).read().strip()
TAG = os.environ.get("CONFORMANCE_TAG", "conf-do")


class PlainHttpAllowed(HeadersPolicy):
    """pydo authenticates through azure-core, which refuses to send a bearer
    token to a URL that is not https (`ServiceRequestError: Bearer token
    authentication is not permitted for non-TLS protected (non-https)
    URLs`). The lab serves plain http on its own bridge, so requests carry
    azure-core's documented per-request option `enforce_https=False`; this
    policy (run before the authentication policy) sets it for every
    request of the client."""

    def on_request(self, request):
        super().on_request(request)
        request.context["enforce_https"] = False


def do_client(token):
    return Client(token=token, endpoint=API_URL, headers_policy=PlainHttpAllowed())


def ok(what):
    print(f"ok {what}", flush=True)


def call(fn, *args, **kwargs):
    """(status, body) of a pydo call. pydo returns the error answers the
    reference documents for an operation (a droplet's 404, ...) as the
    result instead of raising, and raises HttpResponseError for others."""
    try:
        return fn(*args, cls=lambda resp, body, headers: (resp.http_response.status_code, body), **kwargs)
    except HttpResponseError as e:
        return e.status_code, e.response.json()


def raw(method, path, token=TOKEN):
    return requests.request(
        method, f"{API_URL}/v2{path}", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def check_rate_headers(r, what):
    for h in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
        assert r.headers.get(h, "").isdigit(), f"{what}: no numeric {h} header: {dict(r.headers)}"


def wait_action(client, action_id, droplet_id):
    for _ in range(600):
        a = client.actions.get(action_id)["action"]
        if a["status"] != "in-progress":
            break
        time.sleep(0.5)
    assert a["status"] == "completed", a
    same = client.droplet_actions.get(droplet_id, action_id)["action"]
    assert same["id"] == action_id and same["resource_id"] == droplet_id, same
    return a


client = do_client(TOKEN)

# ---- errors -------------------------------------------------------------
status, body = call(client.droplets.get, 987654321)
assert status == 404 and body["id"] == "not_found" and body["message"], (status, body)
r = raw("GET", "/droplets/987654321")
assert r.status_code == 404 and r.json()["id"] == "not_found" and r.json()["message"], r.text
check_rate_headers(r, "404")
for method, path in [("GET", "/volumes"), ("GET", "/no/such/route"), ("PUT", "/droplets"), ("PATCH", "/account/keys")]:
    r = raw(method, path)
    assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text}"
    body = r.json()
    assert body["id"] == "not_found" and body["message"], body
    check_rate_headers(r, f"{method} {path}")
status, body = call(do_client("wrong-token").droplets.list)
assert status == 401 and body["id"].lower() == "unauthorized" and body["message"], (status, body)
r = raw("GET", "/droplets", token="wrong-token")
assert r.status_code == 401, r.text
check_rate_headers(r, "401")
ok("errors: 404 not_found bodies (unknown id, unimplemented routes and methods), 401, rate-limit headers")

# ---- ssh key --------------------------------------------------------------
key = client.ssh_keys.create(body={"name": f"{TAG}-key", "public_key": PUBKEY})["ssh_key"]
assert key["fingerprint"] and key["id"], key
status, body = call(client.ssh_keys.create, body={"name": f"{TAG}-key2", "public_key": PUBKEY})
assert status == 422 and body["id"] == "unprocessable_entity", (status, body)
assert key["id"] in [k["id"] for k in client.ssh_keys.list()["ssh_keys"]]
ok("ssh key created; a duplicate is 422 unprocessable_entity")

# ---- two droplets with one name ------------------------------------------
made = []
for _ in range(2):
    res = client.droplets.create(
        body={
            "name": f"{TAG}-twin",
            "region": "nyc3",
            "size": "s-1vcpu-1gb",
            "image": "debian-12-x64",
            "ssh_keys": [key["id"]],
            "tags": [TAG],
        }
    )
    made.append((res["droplet"]["id"], res["links"]["actions"][0]["id"]))
assert made[0][0] != made[1][0]
for droplet_id, action_id in made:
    a = wait_action(client, action_id, droplet_id)
    assert a["type"] == "create", a
    assert action_id in [x["id"] for x in client.droplet_actions.list(droplet_id)["actions"]]
droplets = [client.droplets.get(d)["droplet"] for d, _ in made]
assert all(d["status"] == "active" for d in droplets), droplets
ok("two droplets with one name; actions read by id and per droplet")

# ---- listing ----------------------------------------------------------------
page1 = client.droplets.list(tag_name=TAG, per_page=1, page=1)
assert page1["meta"]["total"] == 2 and len(page1["droplets"]) == 1, page1["meta"]
assert "page=2" in page1["links"]["pages"]["next"], page1["links"]
page2 = client.droplets.list(tag_name=TAG, per_page=1, page=2)
assert page1["droplets"][0]["id"] != page2["droplets"][0]["id"]
assert len(client.droplets.list(name=f"{TAG}-twin")["droplets"]) == 2
r = raw("GET", f"/droplets?tag_name={TAG}")
check_rate_headers(r, "list")
ok("listing: tag_name and name filters, pagination links and meta.total")

# ---- delete one by id, the rest by tag -------------------------------------
status, _ = call(client.droplets.destroy, made[0][0])
assert status == 204, status
status, body = call(client.droplets.get, made[0][0])
assert status == 404 and body["id"] == "not_found", ("a deleted droplet is still there", status, body)
left = [d["id"] for d in client.droplets.list(tag_name=TAG)["droplets"]]
assert left == [made[1][0]], left
r = raw("DELETE", f"/droplets?tag_name={TAG}")
assert r.status_code == 204, r.text
check_rate_headers(r, "delete by tag")
assert client.droplets.list(tag_name=TAG)["droplets"] == [], "droplets still listed after DELETE by tag"
assert client.droplets.list(tag_name=TAG)["meta"]["total"] == 0
client.droplets.destroy_by_tag(tag_name=TAG)  # nothing left: still 204
client.ssh_keys.delete(key["id"])
ok("delete by id, then by tag (204): gone from listings at once")
