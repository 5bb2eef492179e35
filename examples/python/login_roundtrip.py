#!/usr/bin/env python3
"""Drive mummer from Python with nothing but the standard library.

It starts `mummer serve` (API + forward proxy, sessions kept in a file store), creates a
session through the API, logs in to a site *through the proxy* (so the site sees the
session's browser fingerprint and the session keeps the login cookie), saves the
session, restarts `mummer serve`, checks the session out of the store again and shows
that it is still logged in.

    python3 examples/python/login_roundtrip.py --mummer target/debug/mummer \\
        --site https://shop.test:PORT --resolve shop.test:PORT:127.0.0.1 --cacert site.pem

The site needs `/login` (sets a cookie, redirects to `/account`) and `/account` (says
"Your account" only with that cookie): `cargo run --example demo_site` serves both.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


class Serve:
    """One `mummer serve` process: its API address, proxy address and log."""

    def __init__(self, args, store_dir, log):
        ready = os.path.join(store_dir, "ready.json")
        if os.path.exists(ready):
            os.remove(ready)
        cmd = [
            args.mummer, "serve",
            "--listen", "127.0.0.1:0",
            "--proxy-listen", "127.0.0.1:0",
            "--store", "file:" + os.path.join(store_dir, "sessions"),
            "--namespace", "python-example",
            "--log-format", "json",
            "--ready-file", ready,
            # The shop is on this machine: let sessions reach loopback, which the
            # server's destination policy refuses by default.
            "--allow-private",
        ]
        for r in args.resolve:
            cmd += ["--resolve", r]
        if args.cacert:
            cmd += ["--cacert", args.cacert]
        self.process = subprocess.Popen(cmd, stderr=log, stdout=subprocess.DEVNULL)
        deadline = time.time() + 30
        while not os.path.exists(ready) or os.path.getsize(ready) == 0:
            if self.process.poll() is not None:
                raise SystemExit(f"mummer serve exited with {self.process.returncode}")
            if time.time() > deadline:
                self.process.kill()
                raise SystemExit("mummer serve did not start within 30 s")
            time.sleep(0.05)
        with open(ready) as f:
            addresses = json.load(f)
        self.api = "http://" + addresses["api"]
        self.proxy = "http://" + addresses["proxy"]
        # The API and proxy are on loopback: never send them through an environment proxy.
        self.direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method, path, body=None):
        """Calls the API; returns (status, parsed JSON or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        try:
            with self.direct.open(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            problem = json.loads(e.read() or b"null")
            return e.code, problem

    def browse(self, session, url):
        """GETs `url` (an http:// URL sent out as https) through the proxy and `session`,
        following redirects; returns (status, body)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": self.proxy}))
        req = urllib.request.Request(url)
        req.add_header("X-Mummer-Session", session)
        req.add_header("X-Mummer-Scheme", "https")
        try:
            with opener.open(req, timeout=30) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")

    def stop(self):
        status, _ = self.call("POST", "/v1/shutdown")
        assert status == 202, status
        self.process.wait(timeout=60)
        assert self.process.returncode == 0, f"mummer serve exited with {self.process.returncode}"


def logged_in(page):
    """The demo site's account page says "Your account" only to a logged-in visitor."""
    return "your account" in page.lower()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mummer", default="mummer", help="the mummer binary")
    parser.add_argument("--site", required=True, help="https://HOST:PORT of a site with /login and /account")
    parser.add_argument("--resolve", action="append", default=[], help="HOST:PORT:ADDR for mummer serve")
    parser.add_argument("--cacert", help="PEM file the sessions trust (the site's certificate)")
    parser.add_argument("--log", help="append mummer serve's JSON logs here")
    args = parser.parse_args()
    # The proxy takes http:// URLs and sends them out as https (X-Mummer-Scheme).
    plain_site = "http://" + args.site.split("://", 1)[-1].rstrip("/")

    with tempfile.TemporaryDirectory() as store_dir:
        log = open(args.log, "ab") if args.log else subprocess.DEVNULL
        serve = Serve(args, store_dir, log)
        status, session = serve.call("POST", "/v1/sessions", {"profile": "chrome-latest"})
        assert status == 201, (status, session)
        sid = session["id"]
        print(f"created session {sid} wearing {session['profile']}")

        status, body = serve.browse(sid, plain_site + "/account")
        print(f"before login: /account -> {status}, logged in: {logged_in(body)}")
        status, body = serve.browse(sid, plain_site + "/login")
        assert status == 200 and logged_in(body), (status, body[:200])
        print(f"logged in through the proxy: /login -> /account -> {status}")

        status, saved = serve.call("POST", f"/v1/sessions/{sid}/save")
        assert status == 200, (status, saved)
        print(f"saved as version {saved['version']}; restarting mummer serve")
        serve.stop()

        serve = Serve(args, store_dir, log)
        status, listed = serve.call("GET", "/v1/sessions")
        assert status == 200 and listed == [], listed
        status, restored = serve.call("POST", f"/v1/store/sessions/{sid}/checkout", {})
        assert status == 201, (status, restored)
        print(f"checked out {restored['id']} with {restored['cookie_count']} cookie(s)")
        status, body = serve.browse(sid, plain_site + "/account")
        serve.stop()
        if status != 200 or not logged_in(body):
            print(f"FAILED: after the restart /account answered {status}: {body[:200]}", file=sys.stderr)
            return 1
        print("still logged in after the restart: /account -> 200")
        return 0


if __name__ == "__main__":
    sys.exit(main())
