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
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from pydo import Client

API_URL = os.environ["DIGITALOCEAN_API_URL"]
TOKEN = os.environ["DIGITALOCEAN_ACCESS_TOKEN"]
PUBKEY = open(os.environ["CAIRN_LAB_SSH_PUBKEY"]).read().strip()
TAG = os.environ.get("CONFORMANCE_TAG", "conf-do")


def ok(what):
    print(f"ok {what}", flush=True)


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


client = Client(token=TOKEN, endpoint=API_URL)

# ---- errors -------------------------------------------------------------
try:
    client.droplets.get(987654321)
    raise AssertionError("GET of an unknown droplet succeeded")
except ResourceNotFoundError as e:
    assert e.status_code == 404 and e.response.json()["id"] == "not_found", e.response.text()
r = raw("GET", "/droplets/987654321")
assert r.status_code == 404 and r.json()["id"] == "not_found" and r.json()["message"], r.text
check_rate_headers(r, "404")
for method, path in [("GET", "/volumes"), ("GET", "/no/such/route"), ("PUT", "/droplets"), ("PATCH", "/account/keys")]:
    r = raw(method, path)
    assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text}"
    body = r.json()
    assert body["id"] == "not_found" and body["message"], body
    check_rate_headers(r, f"{method} {path}")
try:
    Client(token="wrong-token", endpoint=API_URL).droplets.list()
    raise AssertionError("a wrong token was accepted")
except HttpResponseError as e:
    assert e.status_code == 401, e
    assert e.response.json()["message"], e.response.text()
r = raw("GET", "/droplets", token="wrong-token")
assert r.status_code == 401, r.text
check_rate_headers(r, "401")
ok("errors: 404 not_found bodies (unknown id, unimplemented routes and methods), 401, rate-limit headers")

# ---- ssh key --------------------------------------------------------------
key = client.ssh_keys.create(body={"name": f"{TAG}-key", "public_key": PUBKEY})["ssh_key"]
assert key["fingerprint"] and key["id"], key
try:
    client.ssh_keys.create(body={"name": f"{TAG}-key2", "public_key": PUBKEY})
    raise AssertionError("a duplicate key was accepted")
except HttpResponseError as e:
    assert e.status_code == 422 and e.response.json()["id"] == "unprocessable_entity", e.response.text()
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
client.droplets.destroy(made[0][0])
try:
    client.droplets.get(made[0][0])
    raise AssertionError("a deleted droplet is still there")
except ResourceNotFoundError:
    pass
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
