"""Hetzner Cloud emulation against hcloud-python, the provider's official
Python client, written from the API reference (https://docs.hetzner.cloud):
catalog reads (locations, datacenters, server types, images) by name and by
ID, networks with a subnet (waiting on the action), ssh keys, servers created
by names and by IDs, with and without `start_after_create`, listing with a
label selector, `sort` and pagination (`meta.pagination` and the `Link`
header), actions (global, per resource), errors (404 body, 401 for a wrong
token, 409 `uniqueness_error` for a duplicate name, 400 for an unknown
server type), rate-limit headers, and deletion.

Run by tests/cloud_conformance.rs with the lab's env (HCLOUD_ENDPOINT,
HCLOUD_TOKEN, CAIRN_LAB_SSH_PUBKEY). Prints one `ok ...` line per check and
exits non-zero at the first failure."""

import os
import sys

import requests
from hcloud import APIException, Client
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.networks import NetworkSubnet
from hcloud.server_types import ServerType

ENDPOINT = os.environ["HCLOUD_ENDPOINT"]
TOKEN = os.environ["HCLOUD_TOKEN"]
PUBKEY = open(os.environ["CAIRN_LAB_SSH_PUBKEY"]).read().strip()
PREFIX = os.environ.get("CONFORMANCE_PREFIX", "py")


def ok(what):
    print(f"ok {what}", flush=True)


def expect_api_error(code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except APIException as e:
        assert e.code == code, f"expected error code {code}, got {e.code}: {e.message}"
        assert e.message, "an error without a message"
        return e
    raise AssertionError(f"expected APIException {code}, got success")


def raw(method, path, token=TOKEN, **kwargs):
    return requests.request(
        method, ENDPOINT + path, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kwargs
    )


def check_rate_headers(r, what):
    for h in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert r.headers.get(h, "").isdigit(), f"{what}: no numeric {h} header: {dict(r.headers)}"


client = Client(token=TOKEN, api_endpoint=ENDPOINT, poll_interval=0.5, poll_max_retries=400)

# ---- catalog ------------------------------------------------------------
ash = client.locations.get_by_name("ash")
assert ash is not None and ash.network_zone == "us-east", ash
assert client.locations.get_by_id(ash.id).name == "ash"
assert "fsn1" in [l.name for l in client.locations.get_all()]
dc = client.datacenters.get_by_name("ash-dc1")
assert dc is not None and dc.location.name == "ash", dc
assert client.datacenters.get_by_id(dc.id).name == "ash-dc1"
cpx11 = client.server_types.get_by_name("cpx11")
assert cpx11 is not None and cpx11.cores == 2 and cpx11.architecture == "x86", cpx11
assert client.server_types.get_by_id(cpx11.id).name == "cpx11"
assert cpx11.id in [t.id for t in dc.server_types.available], dc.server_types
image = client.images.get_by_name_and_architecture("debian-12", "x86")
assert image is not None and image.os_flavor == "debian", image
assert client.images.get_by_id(image.id).name == "debian-12"
assert [i.name for i in client.images.get_all(type="system", sort=["name:desc"])][:1] == ["ubuntu-24.04"]
ok("catalog: locations, datacenters, server types, images by name and by id")

# ---- errors -------------------------------------------------------------
e = expect_api_error("not_found", client.servers.get_by_id, 987654321)
r = raw("GET", "/servers/987654321")
assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
check_rate_headers(r, "404")
for method, path in [("GET", "/volumes"), ("GET", "/no/such/route"), ("PUT", "/servers"), ("PATCH", "/ssh_keys")]:
    r = raw(method, path)
    assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text}"
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["error"]["code"] == "not_found" and body["error"]["message"], body
    check_rate_headers(r, f"{method} {path}")
r = raw("GET", "/servers/not-a-number")
assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", r.text
bad = Client(token="wrong-token", api_endpoint=ENDPOINT)
expect_api_error("unauthorized", bad.servers.get_all)
r = raw("GET", "/servers", token="wrong-token")
assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", r.text
check_rate_headers(r, "401")
expect_api_error(
    "invalid_input",
    client.servers.create,
    name=f"{PREFIX}-bad",
    server_type=ServerType(name="cpx99"),
    image=Image(name="debian-12"),
)
ok("errors: 404 not_found bodies (unknown id, unimplemented routes and methods), 400, 401, rate-limit headers")

# ---- network and ssh key -----------------------------------------------
net = client.networks.create(name=f"{PREFIX}-net", ip_range="10.1.0.0/16")
expect_api_error("uniqueness_error", client.networks.create, name=f"{PREFIX}-net", ip_range="10.2.0.0/16")
action = client.networks.add_subnet(
    net, NetworkSubnet(type="cloud", ip_range="10.1.1.0/24", network_zone="us-east")
)
action.wait_until_finished()
assert action.status == "success" and action.command == "add_subnet", action
net = client.networks.get_by_id(net.id)
assert [s.ip_range for s in net.subnets] == ["10.1.1.0/24"], net.subnets
key = client.ssh_keys.create(name=f"{PREFIX}-key", public_key=PUBKEY, labels={"conf": PREFIX})
assert client.ssh_keys.get_by_name(f"{PREFIX}-key").fingerprint == key.fingerprint
expect_api_error("uniqueness_error", client.ssh_keys.create, name=f"{PREFIX}-key2", public_key=PUBKEY)
ok("network with a subnet (action waited for), ssh key, 409 uniqueness_error for duplicates")

# ---- servers -------------------------------------------------------------
a = client.servers.create(
    name=f"{PREFIX}-a",
    server_type=ServerType(name="cpx11"),
    image=Image(name="debian-12"),
    location=Location(name="ash"),
    ssh_keys=[key],
    networks=[net],
    labels={"conf": PREFIX, "role": "a"},
)
assert a.root_password is None, "root_password although an ssh key was given"
assert [n.command for n in a.next_actions] == ["start_server"], a.next_actions
b = client.servers.create(
    name=f"{PREFIX}-b",
    server_type=ServerType(id=cpx11.id),
    image=Image(id=image.id),
    location=Location(id=ash.id),
    start_after_create=False,
    labels={"conf": PREFIX, "role": "b"},
)
assert b.root_password, "no root_password for a server made without ssh keys"
assert b.next_actions == [], f"start_after_create false, yet next actions {b.next_actions}"
expect_api_error(
    "uniqueness_error",
    client.servers.create,
    name=f"{PREFIX}-a",
    server_type=ServerType(name="cpx11"),
    image=Image(name="debian-12"),
)
for created in (a, b):
    created.action.wait_until_finished()
    for n in created.next_actions:
        n.wait_until_finished()
sa = client.servers.get_by_id(a.server.id)
sb = client.servers.get_by_id(b.server.id)
assert sa.status == "running", sa.status
assert sb.status == "off", f"start_after_create false: status {sb.status}"
assert sa.server_type.name == "cpx11" and sa.location.name == "ash", sa
assert sb.location.id == ash.id and sb.image.name == "debian-12", sb
assert raw("GET", f"/servers/{sb.id}").json()["server"]["datacenter"]["name"] == "ash-dc1"
assert sb.server_type.name == "cpx11", sb
assert sa.public_net.ipv4.ip, sa.public_net
assert [p.ip for p in sa.private_net] == ["10.1.1.2"], sa.private_net
ok("servers created by names and by ids; start_after_create false stays off; root_password only without keys")

# ---- listing, sort, pagination ------------------------------------------
names = [s.name for s in client.servers.get_all(label_selector=f"conf={PREFIX}")]
assert names == [f"{PREFIX}-a", f"{PREFIX}-b"], names
r = raw("GET", f"/servers?label_selector=conf%3D{PREFIX}&sort=name:desc")
assert [x["name"] for x in r.json()["servers"]] == [f"{PREFIX}-b", f"{PREFIX}-a"], r.text
names = [s.name for s in client.servers.get_all(label_selector=f"conf={PREFIX},role=a")]
assert names == [f"{PREFIX}-a"], names
page = client.servers.get_list(label_selector=f"conf={PREFIX}", page=1, per_page=1)
p = page.meta.pagination
assert (p.page, p.per_page, p.next_page, p.last_page, p.total_entries) == (1, 1, 2, 2, 2), vars(p)
assert [s.name for s in page.servers] == [f"{PREFIX}-a"], page.servers
r = raw("GET", f"/servers?label_selector=conf%3D{PREFIX}&per_page=1&page=1")
link = r.headers.get("Link", "")
assert 'rel="next"' in link and 'rel="last"' in link and "page=2" in link, link
nxt = link.split(">;")[0].lstrip("<")
r2 = requests.get(nxt, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
assert [s["name"] for s in r2.json()["servers"]] == [f"{PREFIX}-b"], r2.text
check_rate_headers(r, "list")
r = raw("GET", "/servers?sort=color")
assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input", r.text
ok("listing: label selectors, sort, meta.pagination, Link header")

# ---- actions ------------------------------------------------------------
got = client.actions.get_by_id(a.action.id)
assert got.status == "success" and got.command == "create_server", got
commands = sorted(x.command for x in client.servers.get_actions(sa))
assert commands == ["create_server", "start_server"], commands
assert client.servers.actions.get_by_id(a.action.id).id == a.action.id
r = raw("GET", f"/actions?id={a.action.id}&id={b.action.id}")
assert sorted(x["id"] for x in r.json()["actions"]) == sorted([a.action.id, b.action.id]), r.text
ok("actions: by id, of a server, listed by ids")

# ---- power on, delete ----------------------------------------------------
client.servers.power_on(sb).wait_until_finished()
assert client.servers.get_by_id(sb.id).status == "running"
for s in (sa, sb):
    client.servers.delete(s).wait_until_finished()
expect_api_error("not_found", client.servers.get_by_id, sa.id)
assert client.servers.get_all(label_selector=f"conf={PREFIX}") == []
assert client.networks.delete(net) is True
client.ssh_keys.delete(key)
assert client.ssh_keys.get_by_name(f"{PREFIX}-key") is None
ok("power on, delete: servers (actions waited for), network, ssh key")
