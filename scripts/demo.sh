#!/usr/bin/env bash
# Demo, part 1: start the fingerprint inspector on loopback, fetch from it with two
# profiles, and print the two fingerprints side by side.
# Part 2: start the bundled demo site on loopback (logins, cookies, ETags, robots.txt,
# a 429 with Retry-After, a flaky endpoint, a host that always fails) and crawl it with
# examples/crawl through the engine, ending with the engine's stats.
set -euo pipefail
cd "$(dirname "$0")/.."
# Where rustup puts cargo on a machine that scripts/setup.sh just set up.
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mummer-target}"
cargo build --quiet --features full --bin mummer --example demo_site --example crawl
bin="$CARGO_TARGET_DIR/debug/mummer"
examples="$CARGO_TARGET_DIR/debug/examples"
dir=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

echo "== fingerprints: chrome-156-windows and firefox-153-linux, as a server sees them"
port=$(free_port)
"$bin" inspect --listen "127.0.0.1:$port" --name demo.test --write-cert "$dir/ca.pem" --count 2 >"$dir/reports.jsonl" 2>/dev/null &
inspector=$!
pids+=("$inspector")
for _ in $(seq 50); do [ -s "$dir/ca.pem" ] && break; sleep 0.1; done
for profile in chrome-156-windows firefox-153-linux; do
  "$bin" fetch --profile "$profile" --cacert "$dir/ca.pem" --resolve "demo.test:$port:127.0.0.1" \
    "https://demo.test:$port/" -o /dev/null
done
wait "$inspector" || true
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

echo
echo "== crawl of the local demo site through the engine (4 sessions)"
down=$(free_port)
"$examples/demo_site" --write-cert "$dir/site.pem" --port-file "$dir/port" --down-port "$down" --for 120 2>/dev/null &
pids+=("$!")
for _ in $(seq 50); do [ -s "$dir/port" ] && break; sleep 0.1; done
site=$(cat "$dir/port")
"$examples/crawl" --start "https://shop.test:$site/" --sessions 4 --max-pages 60 \
  --resolve "shop.test:$site:127.0.0.1" --resolve "down.test:$down:127.0.0.1" \
  --cacert "$dir/site.pem" --out "$dir/pages.jsonl" --summary "$dir/summary.json" 2>"$dir/crawl.err" &&
  crawl_rc=0 || crawl_rc=$?
# The demo site links to a host that is always down: its pages cannot be fetched, so the
# crawl reports them and exits 2 (any other status is a real failure of the demo).
if [ "$crawl_rc" -ne 0 ] && [ "$crawl_rc" -ne 2 ]; then
  cat "$dir/crawl.err" >&2
  exit "$crawl_rc"
fi
echo "crawl exit status $crawl_rc: $(tail -n 1 "$dir/crawl.err" | cut -c1-150)"
python3 - "$dir/pages.jsonl" "$dir/summary.json" <<'PY'
import json, sys
pages = [json.loads(l) for l in open(sys.argv[1])]
for p in pages:
    if p.get("attempts", 1) > 1 or p.get("status") != 200:
        what = p.get("error") or f"status {p['status']} after {p['attempts']} attempt(s)"
        print(f"  {p['url']:<48} {what[:70]}")
s = json.load(open(sys.argv[2]))
print(f"pages {s['pages']}, requests {s['requests']}, cookies {s['cookies']}, "
      f"connections {s['connections_opened']}, {s['elapsed_ms']} ms")
print(f"fetched {s['fetched']}, failed {len(s['failed'])}, unfetched {len(s['unfetched'])}, disallowed by robots.txt {len(s['disallowed'])}")
for reason, n in s["not_fetched_by_reason"].items():
    print(f"  {n} x {reason[:100]}")
print("dead letters:", ", ".join(f"{d['target']} ({d['reason']})" for d in s["dead_letters"]) or "none")
for x in s["sessions"]:
    print(f"  session {x['id'][:8]}  {x['request_count']:>3} requests  {x['cookie_count']} cookies  "
          f"{x['transport']['bytes_in']} bytes in")
PY
