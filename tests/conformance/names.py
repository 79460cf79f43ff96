"""Names are not identities: a Hetzner server and two DigitalOcean droplets
all named `twin` (DigitalOcean allows two droplets with one name) are three
different lab hosts, each calling itself `twin`; deleting one never takes
away the host of another that the API still lists. Driven with the official
clients (hcloud-python, pydo); hosts reached over ssh with the lab's key,
their host keys checked against the lab's known_hosts."""

import os
import subprocess
import time

from hcloud import Client as HClient
from hcloud.images import Image
from hcloud.server_types import ServerType
from pydo import Client as DoClient
from azure.core.pipeline.policies import HeadersPolicy

hc = HClient(token=os.environ["HCLOUD_TOKEN"], api_endpoint=os.environ["HCLOUD_ENDPOINT"], poll_interval=0.5, poll_max_retries=400)

NAME = "twin"
TAG = "conf-names"


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
    return DoClient(token=token, endpoint=os.environ["DIGITALOCEAN_API_URL"], headers_policy=PlainHttpAllowed())


def ok(what):
    print(f"ok {what}", flush=True)


def ssh(ip, cmd):
    out = subprocess.run(
        ["ssh", "-i", os.environ["CAIRN_LAB_SSH_KEY"], "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={os.environ['CAIRN_LAB_KNOWN_HOSTS']}",
         "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", f"root@{ip}", cmd],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, f"ssh {ip} {cmd}: {out.returncode} {out.stderr}"
    return out.stdout.strip()


def droplet_ip(d):
    return next(n["ip_address"] for n in d["networks"]["v4"] if n["type"] == "public")


do = do_client(os.environ["DIGITALOCEAN_ACCESS_TOKEN"])
server = hc.servers.create(name=NAME, server_type=ServerType(name="cx22"), image=Image(name="debian-12"))
droplets = []
for _ in range(2):
    res = do.droplets.create(body={"name": NAME, "region": "fra1", "size": "s-1vcpu-1gb", "image": "debian-12-x64", "tags": [TAG]})
    droplets.append((res["droplet"]["id"], res["links"]["actions"][0]["id"]))
server.action.wait_until_finished()
for n in server.next_actions:
    n.wait_until_finished()
for _, action_id in droplets:
    # poll the action the reference says to poll, at most 300 s
    for _ in range(600):
        status = do.actions.get(action_id)["action"]["status"]
        if status != "in-progress":
            break
        time.sleep(0.5)
    assert status == "completed", f"droplet create action {action_id}: {status}"
server_ip = hc.servers.get_by_id(server.server.id).public_net.ipv4.ip
ips = [server_ip] + [droplet_ip(do.droplets.get(d)["droplet"]) for d, _ in droplets]
assert len(set(ips)) == 3, f"three objects named {NAME} share hosts: {ips}"
ids = set()
for ip in ips:
    assert ssh(ip, "hostname") == NAME, ip
    ids.add(ssh(ip, "cat /etc/machine-id"))
assert len(ids) == 3, f"machine ids: {ids}"
ok(f"a server and two droplets named {NAME}: three hosts, each calling itself {NAME}")

do.droplets.destroy(droplets[0][0])
assert [d["id"] for d in do.droplets.list(tag_name=TAG)["droplets"]] == [droplets[1][0]]
assert hc.servers.get_by_name(NAME) is not None
for ip in (ips[0], ips[2]):
    assert ssh(ip, "hostname") == NAME, ip
ok("deleting one droplet left the other droplet's and the server's hosts")

hc.servers.delete(hc.servers.get_by_id(server.server.id)).wait_until_finished()
assert ssh(ips[2], "hostname") == NAME
do.droplets.destroy_by_tag(tag_name=TAG)
assert do.droplets.list(tag_name=TAG)["droplets"] == []
ok("deleting the server left the droplet's host; all deleted")
