#!/usr/bin/env bash
# Demo: start the fingerprint inspector on loopback, fetch from it with two profiles,
# and print the two fingerprints side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mummer-target}"
cargo build --quiet --bin mummer
bin="$CARGO_TARGET_DIR/debug/mummer"
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" inspect --listen "127.0.0.1:$port" --name demo.test --write-cert "$dir/ca.pem" --count 2 >"$dir/reports.jsonl" 2>/dev/null &
inspector=$!
trap 'kill $inspector 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do [ -s "$dir/ca.pem" ] && break; sleep 0.1; done
for profile in chrome-156-windows firefox-153-linux; do
  "$bin" fetch --profile "$profile" --cacert "$dir/ca.pem" --resolve "demo.test:$port:127.0.0.1" \
    "https://demo.test:$port/" -o /dev/null
done
wait $inspector || true
python3 - "$dir/reports.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def line(label, f):
    print(f"{label:<14}" + "".join(f"{str(f(r))[:60]:<62}" for r in rows))
line("profile", lambda r: "chrome-156-windows" if r["client_hello"]["grease_extensions"] else "firefox-153-linux")
line("JA4", lambda r: r["ja4"])
line("JA3N hash", lambda r: r["ja3n_hash"])
line("Akamai h2", lambda r: r["http2"]["akamai"])
line("priority", lambda r: r["http2"]["requests"][0]["priority"])
line("user-agent", lambda r: dict(r["http2"]["requests"][0]["headers"]).get("user-agent"))
line("header order", lambda r: ",".join(h[0] for h in r["http2"]["requests"][0]["headers"] if not h[0].startswith(":"))[:58])
PY
