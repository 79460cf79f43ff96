#!/usr/bin/env python3
"""TLS handshakes against one etcd client port, as fast as THREADS threads can.

Each handshake is a new TCP connection and a full TLS handshake with the
client certificate (what tests/common/load.rs does per request), then one
HTTP request to /health so the server finishes its side. Runs until the file
STOP exists, then prints one line of JSON: handshakes, failures and the first
few distinct errors.

usage: hammer.py HOST PORT CA CERT KEY THREADS STOP
"""

import json
import os
import socket
import ssl
import sys
import threading

host, port, ca, cert, key, threads, stop = sys.argv[1:8]
port, threads = int(port), int(threads)

ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
ctx.check_hostname = False

lock = threading.Lock()
counts = {"handshakes": 0, "failed": 0}
errors = {}


def worker():
    ok = bad = 0
    seen = {}
    while not os.path.exists(stop):
        try:
            with socket.create_connection((host, port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=host) as s:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    s.recv(64)
            ok += 1
        except (OSError, ssl.SSLError) as e:
            bad += 1
            text = f"{type(e).__name__}: {e}"
            seen[text] = seen.get(text, 0) + 1
    with lock:
        counts["handshakes"] += ok + bad
        counts["failed"] += bad
        for k, v in seen.items():
            errors[k] = errors.get(k, 0) + v


ts = [threading.Thread(target=worker) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
counts["errors"] = dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5])
print(json.dumps(counts))
