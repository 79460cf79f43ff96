#!/usr/bin/env python3
"""Run the test binaries `cargo test` would run, in N lanes at once.

`cargo test` runs its test binaries one after another. Most of cairn's are lab
tests that spend their time waiting on real hosts (apt, systemd, etcd
elections), so the machine's cores idle; each binary starts its own lab on its
own subnet, so two binaries never share hosts. This script builds the binaries
with cargo, then runs them in `CAIRN_TEST_LANES` lanes (default 2), the longest
first, each binary's output printed whole when it ends (never interleaved), and
the doc tests last. It exits non-zero when any binary failed, listing them.

Usage: python3 .ci/lanes.py [cargo test options, e.g. --no-fail-fast is implied]
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

# Seconds each binary took in a sequential run (`cargo test`, 2 cores, the
# last measured suite). Only the order matters: the longest start first so a
# long one does not start last. Binaries not listed count as 5 s.
WEIGHTS = {
    "secrets_and_purity": 145,
    "cert_rotate": 140,
    "plan_soundness": 125,
    "host_faults": 120,
    "upgrade": 116,
    "kill_resume": 94,
    "backup": 93,
    "restore": 67,
    "adversarial": 58,
    "etcd_member": 51,
    "runbook_do_discovery": 46,
    "members": 41,
    "resume_verification": 36,
    "runbook_hetzner_apt": 27,
    "runbook_debian_binary": 25,
    "remote": 25,
    "lab": 23,
    "output": 22,
    "runbook_static_pods": 22,
    "bad_input": 19,
    "cert_audit": 18,
    "saved_plan": 15,
    "runbook_binary_yaml": 14,
    "cloud_lab_faults": 14,
    "maintain": 12,
    "cloud_conformance": 11,
}


def build(extra):
    """Build every test binary; return [(label, name, path)]."""
    cmd = ["cargo", "test", "--no-run", "--message-format=json-render-diagnostics"] + extra
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        sys.exit(f"lanes: `{' '.join(cmd)}` failed with {proc.returncode}")
    found = []
    for line in proc.stdout.decode().splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        target = msg["target"]
        kinds = ",".join(target["kind"])
        label = f"tests/{target['name']}.rs" if kinds == "test" else f"{kinds} {target['name']}"
        found.append((label, target["name"], msg["executable"]))
    return found


def main():
    lanes = int(os.environ.get("CAIRN_TEST_LANES", "2"))
    if lanes < 1:
        sys.exit(f"lanes: CAIRN_TEST_LANES={lanes}: expected a number of at least 1")
    extra = [a for a in sys.argv[1:] if a != "--no-fail-fast"]
    binaries = build(extra)
    binaries.sort(key=lambda b: -WEIGHTS.get(b[1], 5))
    pending = list(binaries)
    lock = threading.Lock()
    failed = []
    started = time.monotonic()

    def lane():
        while True:
            with lock:
                if not pending:
                    return
                label, _name, path = pending.pop(0)
            with tempfile.TemporaryFile() as out:
                t0 = time.monotonic()
                # cargo runs test binaries from the package root; so do we.
                rc = subprocess.call([path], stdout=out, stderr=subprocess.STDOUT)
                took = time.monotonic() - t0
                out.seek(0)
                text = out.read().decode(errors="replace")
            with lock:
                verdict = "ok" if rc == 0 else f"FAILED (exit {rc})"
                print(f"\n== {label}: {verdict} in {took:.1f} s "
                      f"(at {time.monotonic() - started:.0f} s)", flush=True)
                sys.stdout.write(text)
                sys.stdout.flush()
                if rc != 0:
                    failed.append(label)

    threads = [threading.Thread(target=lane) for _ in range(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    print(f"\n== doc tests", flush=True)
    if subprocess.call(["cargo", "test", "--doc"] + extra) != 0:
        failed.append("doc tests")

    total = time.monotonic() - started
    print(f"\n== {len(binaries)} test binaries in {lanes} lanes: {total:.0f} s", flush=True)
    if failed:
        print("== failed: " + ", ".join(failed), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
