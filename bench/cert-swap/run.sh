#!/usr/bin/env bash
# How often does replacing a member's certificate under load fail a TLS
# handshake? etcd reads its cert file and then its key file on every new
# handshake (transport.TLSInfo's GetCertificate calls tlsutil.NewCert), so a
# handshake that reads the old cert and the new key fails. This bench measures
# it on a real etcd on 127.0.0.1, two ways, with the exact swap
# etcd-cert-rotate uses:
#   rekey: a new key and a new cert: two rename(2) calls in one perl process
#          (key first, then cert), as runbooks/etcd-cert-rotate does with new_keys=true;
#   renew: a new cert for the same key: one rename(2) (new_keys=false).
# Each mode: a hammer of THREADS threads doing full TLS handshakes (a new
# connection each, as tests/common/load.rs) while SWAPS swaps alternate between
# two pairs. Prints handshakes, failed handshakes and failures per swap.
#
# usage: bash bench/cert-swap/run.sh [--swaps N] [--threads T] [--gap SECONDS] [--etcd PATH]
# --gap: pause between swaps (pacing, so failures per swap are not limited by swap rate)
# etcd: the lab mirror's v3.5.30 release (after .ci/lab-prereqs.sh) by default.
set -euo pipefail
swaps=2000 threads=8 gap=0
etcd_bin=
while (($#)); do
  case $1 in
    --swaps) swaps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --etcd) etcd_bin=$2; shift 2 ;;
    --gap) gap=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/cert-swap.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"' EXIT
if [ -z "$etcd_bin" ]; then
  tgz=/var/cache/cairn/image/mirror/etcd-io/etcd/releases/download/v3.5.30/etcd-v3.5.30-linux-amd64.tar.gz
  [ -f "$tgz" ] || { echo "no $tgz: run .ci/lab-prereqs.sh or give --etcd" >&2; exit 2; }
  tar -xzf "$tgz" -C "$work"
  etcd_bin=$work/etcd-v3.5.30-linux-amd64/etcd
fi
cd "$work"
q() { openssl "$@" >/dev/null 2>&1; }
q req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=bench-ca
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > ext
leaf() { # leaf NAME KEYFILE: a cert for KEYFILE signed by the CA
  q req -new -key "$2" -out "$1.csr" -subj /CN=bench-member
  q x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 2 -extfile ext
}
for p in a b; do q genrsa -out "$p.key" 2048; leaf "$p" "$p.key"; done
leaf a2 a.key                     # a second cert for key a: the renew pair
q genrsa -out client.key 2048; leaf client client.key
cp a.crt server.crt; cp a.key server.key

"$etcd_bin" --name bench --data-dir "$work/data" \
  --listen-client-urls https://127.0.0.1:23790 --advertise-client-urls https://127.0.0.1:23790 \
  --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
  --initial-cluster bench=http://127.0.0.1:23800 \
  --cert-file "$work/server.crt" --key-file "$work/server.key" \
  --client-cert-auth --trusted-ca-file "$work/ca.crt" >etcd.log 2>&1 &
for _ in $(seq 100); do
  curl -s --cacert ca.crt --cert client.crt --key client.key https://127.0.0.1:23790/health | grep -q true && break
  sleep 0.1 # bounded poll: etcd's start, at most 10 s
done

swap_script='rename($ARGV[0], $ARGV[1]) or die "$ARGV[1]: $!\n"; rename($ARGV[2], $ARGV[3]) or die "$ARGV[3]: $!\n";'
run_mode() { # run_mode rekey|renew
  local mode=$1 start end
  local stop=$work/stop-$mode
  rm -f "$stop"
  python3 "$here/hammer.py" 127.0.0.1 23790 ca.crt client.crt client.key "$threads" "$stop" > "hammer-$mode.json" &
  local hammer=$!
  start=$(date +%s.%N)
  for i in $(seq "$swaps"); do
    if [ "$mode" = rekey ]; then
      p=$([ $((i % 2)) = 1 ] && echo b || echo a)
      cp "$p.key" server.key.new; cp "$p.crt" server.crt.new
      perl -e "$swap_script" server.key.new server.key server.crt.new server.crt
    else
      p=$([ $((i % 2)) = 1 ] && echo a2 || echo a)
      cp "$p.crt" server.crt.new
      perl -e 'rename($ARGV[0], $ARGV[1]) or die "$ARGV[1]: $!\n";' server.crt.new server.crt
    fi
    [ "$gap" = 0 ] || sleep "$gap" # pacing between swaps, not synchronisation
  done
  end=$(date +%s.%N)
  touch "$stop"; wait "$hammer"
  cp a.crt server.crt; cp a.key server.key
  python3 - "$mode" "$swaps" "$start" "$end" "hammer-$mode.json" <<'EOF'
import json, sys
mode, swaps, start, end, path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
r = json.load(open(path))
secs = end - start
print(f"{mode}: {swaps} swaps in {secs:.1f} s; {r['handshakes']} handshakes "
      f"({r['handshakes']/secs:.0f}/s); {r['failed']} failed "
      f"({r['failed']/swaps:.4f} per swap; {r['failed']/max(1, r['handshakes']):.2e} of handshakes)")
for e, n in r["errors"].items():
    print(f"  {n} x {e}")
EOF
}
run_mode rekey
run_mode renew
