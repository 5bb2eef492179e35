#!/usr/bin/env python3
"""Writes the checked-in seed corpus, fuzz/corpus/<target>/<name>: a handful of valid
and nasty inputs per target of src/fuzzing.rs. Rerun after changing a seed here:

    python3 fuzz/make_corpus.py

It rewrites only the files it names (a seed a person or the fuzzer added stays). The
snapshot seed fuzz/seeds/session.json is a real `mummer fetch --session` file (cookies
and a cache entry from a loopback server, a TLS ticket from `mummer inspect`); the
ClientHello seeds are the captures in tests/data/fingerprints/clienthello/.
"""
import gzip
import json
import pathlib
import struct
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# ===== HTTP/1.1 =====
R = "h1_response"
put(R, "content-length", "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello")
put(R, "chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
put(R, "continue-then-200", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
put(R, "keep-alive-pipelined", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n")
put(R, "http10-until-close", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nbody until close")
put(R, "conflicting-lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
put(R, "signed-length", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello")
put(R, "te-gzip-chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
put(R, "huge-chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nx")
put(R, "not-modified-with-body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\n\r\n")
put(R, "bare-lf", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
put(R, "obs-fold", "HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n")
put(R, "too-many-headers", "HTTP/1.1 200 OK\r\n" + "".join(f"X-{i}: {i}\r\n" for i in range(130)) + "\r\n")
put(R, "bad-status", "HTTP/1.1 999 Nope\r\nContent-Length: 0\r\n\r\nHTTP/1.1 000 Zero\r\n\r\n")
put(R, "connection-close-length", "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 100000\r\n\r\nshort")
put(R, "truncated-head", "HTTP/1.1 200 OK\r\nContent-Le")
put(R, "switching-protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")

C = "h1_chunked"
put(C, "simple", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
put(C, "extensions-and-trailers", "5;name=value;x\r\nhello\r\n0;last\r\nExpires: never\r\nX-Trailer: 1\r\n\r\n")
put(C, "overflowing-size", "10000000000000000\r\nx\r\n0\r\n\r\n")
put(C, "max-u64-size", "FFFFFFFFFFFFFFFF\r\nx\r\n")
put(C, "zero-padded-size", "00000000000000000000005\r\nhello\r\n0\r\n\r\n")
put(C, "signed-size", "+5\r\nhello\r\n0\r\n\r\n")
put(C, "data-longer-than-size", "3\r\nhello\r\n0\r\n\r\n")
put(C, "bare-lf", "5\nhello\n0\n\n")
put(C, "truncated-in-chunk", "a\r\nabc")
put(C, "over-limit", "ffff\r\n" + "a" * 64 + "\r\n")
put(C, "then-next-response", "1\r\na\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")
put(C, "non-ascii-size", b"\xc3\xa9\r\nhello\r\n")

# First byte: the Content-Encoding, an index into src/fuzzing.rs's ENCODINGS
# (0 gzip, 1 deflate, 2 br, 3 zstd, 4 "gzip, br", 5 identity, 6 "zstd, x-gzip",
# 7 "deflate, deflate").
B = "body_decode"
hello = b"hello, hello, hello"
put(B, "gzip", b"\x00" + gzip.compress(hello, mtime=0))
put(B, "gzip-members", b"\x00" + gzip.compress(b"a", mtime=0) + gzip.compress(b"b", mtime=0))
put(B, "deflate-zlib", b"\x01" + zlib.compress(hello))
raw = zlib.compressobj(wbits=-15)
put(B, "deflate-raw", b"\x01" + raw.compress(hello) + raw.flush())
put(B, "gzip-bomb", b"\x00" + gzip.compress(bytes(2 << 20), mtime=0))
put(B, "deflate-twice", b"\x07" + zlib.compress(zlib.compress(hello)))
put(B, "identity", b"\x05" + hello)
put(B, "truncated-gzip", b"\x00" + gzip.compress(hello, mtime=0)[:12])
put(B, "brotli-empty", b"\x02\x06")
# A zstd frame: magic, a single-segment header for 5 bytes, one raw last block "hello".
put(B, "zstd-raw-block", b"\x03" + bytes.fromhex("28b52ffd2005") + bytes([0x29, 0x00, 0x00]) + b"hello")

# ===== proxies =====
S = "socks5_reply"
# First byte: bit 0 credentials, bits 1-2 target (0 IPv4, 1 IPv6, 2 name).
put(S, "no-auth-ipv4", bytes([0, 5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]))
put(S, "auth-name", bytes([5, 5, 2, 1, 0, 5, 0, 0, 3, 4]) + b"abcd" + bytes([1, 187]))
put(S, "ipv6-bound", bytes([2, 5, 0, 5, 0, 0, 4]) + bytes(16) + bytes([0, 80]))
put(S, "refused", bytes([4, 5, 0, 5, 5, 0, 1]))
put(S, "no-acceptable-method", bytes([0, 5, 0xFF]))
put(S, "auth-demanded-no-creds", bytes([0, 5, 2]))
put(S, "auth-refused", bytes([1, 5, 2, 1, 1]))
put(S, "unknown-atyp", bytes([0, 5, 0, 5, 0, 0, 9, 1, 2, 3]))
put(S, "name-truncated", bytes([4, 5, 0, 5, 0, 0, 3, 255, 97, 98]))
put(S, "not-socks", b"\x00HTTP/1.1 400 Bad Request\r\n\r\n")

P = "proxy_connect_reply"
put(P, "established", "HTTP/1.1 200 Connection established\r\n\r\n")
put(P, "auth-required", "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n")
put(P, "forbidden", "HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
put(P, "garbage", "\x16\x03\x01\x00\x05hello\r\n\r\n")
put(P, "no-blank-line", "HTTP/1.1 200 OK\r\nX: " + "y" * 200)
put(P, "bare-lf", "HTTP/1.1 200 OK\n\n")

# ===== snapshots =====
session = json.loads((ROOT / "fuzz" / "seeds" / "session.json").read_text())
compact = json.dumps(session, separators=(",", ":"))
for t in ("snapshot_decode", "session_from_snapshot"):
    put(t, "real-session", compact)
    s = dict(session, cookies=[], tickets=[], cache=[])
    put(t, "minimal", json.dumps(s, separators=(",", ":")))
    put(t, "newer-version", json.dumps(dict(s, version=2)))
    put(t, "no-version", '{"id":"0ca9db3c-9756-4cec-9793-64b2e5eb28fe"}')
    put(t, "truncated", compact[: len(compact) // 2])
    put(t, "encrypted-garbage", b"MUMMER-SNAPSHOT-ENC1\n" + bytes(range(40)))
    put(t, "encrypted-truncated", b"MUMMER-SNAPSHOT-ENC1\n" + bytes(12))
    put(t, "huge-cache", json.dumps(dict(s, cache_config={"max_entries": 1 << 63, "store_bodies": True, "max_body_bytes": 2**64 - 1})))
    put(t, "bad-ticket", json.dumps(dict(s, tickets=[{"key": "k", "der": "MIIB"}])))
    put(t, "bad-tenant", json.dumps(dict(s, tenant="../../etc")))
    put(t, "unknown-profile", json.dumps(dict(s, profile={"name": "netscape-4"})))
    put(t, "far-created-at", json.dumps(dict(s, created_at=2**64 - 1, request_count=2**64 - 1)))

# ===== profiles =====
F = "profile_json"
for name in ("chromium-156-linux", "firefox-153-linux"):
    p = json.loads((ROOT / "src" / "profile" / "builtin" / f"{name}.json").read_text())
    put(F, name, json.dumps(p, separators=(",", ":")))
p = json.loads((ROOT / "src" / "profile" / "builtin" / "chromium-156-linux.json").read_text())
bad = json.loads(json.dumps(p))
bad["http2"]["settings"] = [["INITIAL_WINDOW_SIZE", 4294967295], ["MAX_FRAME_SIZE", 1]]
put(F, "settings-out-of-range", json.dumps(bad, separators=(",", ":")))
bad = json.loads(json.dumps(p))
bad["tls"]["cipher_suites"] = ["0x0000", "0xffff", "0x1301"]
bad["tls"]["trust_anchors"] = "zz"
put(F, "unknown-ciphers", json.dumps(bad, separators=(",", ":")))
bad = json.loads(json.dumps(p))
bad["user_agent"] = "bad\r\nInjected: yes"
put(F, "header-injection", json.dumps(bad, separators=(",", ":")))
put(F, "code-point-not-hex", '{"name":"x","tls":{"cipher_suites":["0x1g01"]}}')
put(F, "empty-object", "{}")

# ===== cookies =====
N = "cookies_netscape"
put(N, "curl", "# Netscape HTTP Cookie File\n.example.com\tTRUE\t/\tTRUE\t2147483647\tsid\tabc\n#HttpOnly_www.example.com\tFALSE\t/a\tFALSE\t0\tsession\tv a l\n")
put(N, "crlf-and-blank", "\r\nexample.com\tFALSE\t/\tFALSE\t0\tn\tv\r\n\r\n")
put(N, "public-suffix", ".com\tTRUE\t/\tFALSE\t0\tx\ty\n")
put(N, "bad-fields", "example.com\tMAYBE\t/\tFALSE\tsoon\tn\tv\nexample.com\tTRUE\n")
put(N, "tab-in-value", "example.com\tFALSE\t/\tFALSE\t0\tn\tv\tw\n")
put(N, "negative-and-huge-expiry", "example.com\tFALSE\t/\tFALSE\t-9223372036854775808\ta\tb\nexample.com\tFALSE\t/\tFALSE\t9223372036854775807\tc\td\n")
put(N, "ip-and-ipv6", "127.0.0.1\tFALSE\t/\tFALSE\t0\ta\tb\n[::1]\tFALSE\t/\tFALSE\t0\tc\td\n")

W = "cookies_playwright"
put(W, "storage-state", json.dumps({"cookies": [
    {"name": "sid", "value": "abc", "domain": ".example.com", "path": "/", "expires": -1, "httpOnly": True, "secure": True, "sameSite": "Lax"},
    {"name": "n", "value": "v", "domain": "www.example.com", "path": "/x", "expires": 4102444800.5, "httpOnly": False, "secure": False, "sameSite": "Strict"},
], "origins": [{"origin": "https://example.com", "localStorage": []}]}))
put(W, "samesite-none-insecure", '{"cookies":[{"name":"a","value":"b","domain":"example.com","path":"/","expires":-1,"httpOnly":false,"secure":false,"sameSite":"None"}],"origins":[]}')
put(W, "huge-expiry", '{"cookies":[{"name":"a","value":"b","domain":"example.com","path":"/","expires":1e300,"httpOnly":false,"secure":false,"sameSite":"Lax"}],"origins":[]}')
put(W, "wrong-type", '{"cookies":[{"name":1}]}')

D = "cookies_cdp"
put(D, "set-cookies", json.dumps({"cookies": [
    {"name": "a", "value": "b", "url": "https://www.example.com/path/x"},
    {"name": "c", "value": "d", "domain": ".example.com", "path": "/", "secure": True, "httpOnly": True, "sameSite": "None", "expires": 4102444800},
]}))
put(D, "bare-array", '[{"name":"a","value":"b","domain":"example.com","expires":-1,"size":2,"session":true}]')
put(D, "no-url-or-domain", '{"cookies":[{"name":"a","value":"b"}]}')
put(D, "url-without-host", '[{"name":"a","value":"b","url":"data:text/plain,x"}]')
put(D, "nan-expiry", '[{"name":"a","value":"b","domain":"example.com","expires":-0.0}]')

J = "cookies_json"
put(J, "records", json.dumps(session["cookies"]))
put(J, "domain-cookie", '[{"name":"a","value":"b","domain":"example.com","host_only":false,"path":"/","secure":true,"http_only":false,"same_site":"None","expires":null}]')
put(J, "public-suffix-domain", '[{"name":"a","value":"b","domain":"co.uk","host_only":false,"path":"/","secure":false,"http_only":false,"same_site":null,"expires":null}]')
put(J, "control-chars", '[{"name":"a\\u0000","value":"b\\u007f","domain":"example.com","host_only":true,"path":"/","secure":false,"http_only":false,"same_site":null,"expires":null}]')
put(J, "relative-path", '[{"name":"a","value":"b","domain":"example.com","host_only":true,"path":"x","secure":false,"http_only":false,"same_site":null,"expires":null}]')

K = "set_cookie"
# First byte: bits 0-2 the URL of src/fuzzing.rs's COOKIE_URLS, bits 4-6 the context.
put(K, "plain", b"\x00sid=abc; Path=/; HttpOnly; Secure; SameSite=Lax\npref=dark mode; Max-Age=86400")
put(K, "domain-attribute", b"\x00a=b; Domain=.example.com; Path=/a\nc=d; Domain=com\ne=f; Domain=www.example.com.")
put(K, "prefixes", b"\x00__Host-a=b; Secure; Path=/\n__Host-c=d; Secure; Path=/x\n__Secure-e=f")
put(K, "cross-site-subresource", b"\x10a=b; SameSite=None; Secure\nc=d; SameSite=Strict")
put(K, "insecure-url", b"\x02a=b; Secure\nc=d; Expires=Thu, 01 Jan 1970 00:00:00 GMT\ne=f; Max-Age=-1")
put(K, "huge-max-age", b"\x00a=b; Max-Age=9223372036854775807\nc=d; Expires=Fri, 31 Dec 9999 23:59:59 GMT")
put(K, "ip-host", b"\x03a=b; Domain=127.0.0.1\nc=d")
put(K, "ipv6-host", b"\x04a=b; Path=/x\nc=d; Path=/")
# `Domain=[::1]` from https://[::1]/ is in fuzz/artifacts-found/set_cookie/: it crashes.
put(K, "garbage", b"\x00=\n;\n\x7f=\xff\n a = b ;; Path\n")

# ===== robots.txt =====
T = "robots_txt"
put(T, "groups", "User-agent: mummer\nDisallow: /private\nAllow: /private/ok\nCrawl-delay: 2.5\n\nUser-agent: *\nDisallow: /\n")
put(T, "wildcards", "User-agent: *\nDisallow: /*.php$\nDisallow: /a*b*c\nAllow: /$\nSitemap: https://example.com/s.xml\n")
put(T, "huge-delay", "User-agent: *\nCrawl-delay: 1e300\nDisallow:\n")
put(T, "negative-delay", "User-agent: mummer\nCrawl-delay: -5\nCrawl-delay: NaN\n")
put(T, "bom-and-crlf", "\ufeffUser-Agent: MUMMER\r\nDisallow: /%E2%82%AC\r\n")
put(T, "binary", bytes(range(256)))

# ===== page loads =====
T = "page_subresources"
put(T, "page", '<!doctype html><base href="/b/"><link rel=stylesheet href=s.css media=print>'
    '<link rel=preload as=font href=/f.woff2><script type=module src=m.js></script>'
    '<script src=a.js async></script><img src=i.png srcset="i1.png 1x, i2.png 2x" width=10 height=10>'
    '<picture><source type=image/avif srcset="p.avif 100w" sizes="50vw"><img src=p.jpg></picture>'
    '<link rel=icon href=/icon.png><img src=lazy.png loading=lazy>')
put(T, "raw-text", "<script><img src=/no.png></script><noscript><img src=/no2.png></noscript>"
    "<template><img src=/t.png></template><textarea><link rel=stylesheet href=/x.css></textarea>"
    "<img src=/yes.png#frag><img src='javascript:x'><img src=data:,x>")
put(T, "css", "@import url(/a.css) screen; @import '/b.css';\n"
    "@font-face { font-family: 'F'; src: local(F), url(/f.woff2) format('woff2'), url(/f.ttf); }\n"
    "@media (min-width: 1px) { @supports (x: y) { .a { font: italic 12px/1.5 F, serif } } }\n")
put(T, "broken", "<img src=/a.png<img src=\"/b.png\" <link rel=\"stylesheet\" href=/c.css"
    "<picture><source srcset=><source srcset=\", , ,\"></picture></picture><base href=javascript:>")
put(T, "binary", bytes(range(256)))

# ===== command-line strings =====
put("resolve_override", "v4", "example.test:443:127.0.0.1")
put("resolve_override", "v6", "example.test:443:[::1]")
put("resolve_override", "bad-port", "example.test:99999:127.0.0.1")
put("resolve_override", "too-few", "example.test")
put("connect_to", "full", "shop.test:443:127.0.0.1:8443")
put("connect_to", "empties", "::[::1]:")
put("connect_to", "unbalanced-brackets", "]]:[:a:b")
put("connect_to", "bad-port", "a:-1:b:65536")
put("proxy_url", "socks5-auth", "socks5://user:p%40ss@127.0.0.1:1080")
put("proxy_url", "https-v6", "https://[::1]:3128")
put("proxy_url", "bad-percent", "http://u%ff:p%zz@host")
put("proxy_url", "unknown-scheme", "ftp://user:secret@host/")
put("proxy_url", "unparsable", "http://user:secret@[bad")

# ===== inspector =====
H = "inspect_clienthello"
for f in sorted((ROOT / "tests" / "data" / "fingerprints" / "clienthello").glob("*.hex")):
    raw = bytes.fromhex(f.read_text().strip())
    put(H, f.stem, raw)
first = bytes.fromhex(sorted((ROOT / "tests" / "data" / "fingerprints" / "clienthello").glob("*.hex"))[0].read_text().strip())
put(H, "truncated", first[:120])
put(H, "bare-handshake", first[5:])
put(H, "not-hello", b"\x16\x03\x01\x00\x04\x02\x00\x00\x00")


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


settings = b"".join(struct.pack(">HI", k, v) for k, v in [(1, 65536), (2, 0), (4, 6291456), (6, 262144)])
window = frame(8, 0, 0, struct.pack(">I", 15663105))
# RFC 7541 C.3.1 (plain) and C.4.1 (Huffman) request header blocks.
plain_block = bytes.fromhex("828684410f7777772e6578616d706c652e636f6d")
huff_block = bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")
prio = struct.pack(">I", 0x80000000) + bytes([255])
X = "inspect_h2_frames"
put(X, "chromium-like", frame(4, 0, 0, settings) + window + frame(1, 0x25, 1, prio + huff_block))
put(X, "continuation", frame(4, 0, 0, settings) + frame(1, 0x1, 1, plain_block[:5]) + frame(9, 0x4, 1, plain_block[5:]) + frame(7, 0, 0, bytes(8)))
put(X, "padded", frame(1, 0x2D, 3, bytes([4]) + prio + plain_block + bytes(4)))
put(X, "priority-ping", frame(2, 0, 3, struct.pack(">I", 0) + bytes([200])) + frame(6, 0, 0, bytes(8)) + frame(1, 0x5, 5, huff_block))
put(X, "resume-path", frame(1, 0x5, 1, bytes.fromhex("8287") + b"\x44\x07/resume"))
put(X, "bad-hpack", frame(1, 0x5, 1, b"\xff\xff\xff\xff\xff\xff\xff\x7f"))
put(X, "pad-too-long", frame(1, 0x0C, 1, bytes([200]) + plain_block))
put(X, "huge-length", b"\xff\xff\xff\x00\x00\x00\x00\x00\x00")
put(X, "table-size-update", frame(1, 0x5, 1, b"\x3f\xe1\x1f" + plain_block))
# A literal header with a new name (the shape a mutation turns into `:` or `:é`).
put(X, "literal-new-name", frame(4, 0, 0, settings) + frame(1, 0x5, 1, bytes.fromhex("828487") + b"\x00\x04x-ab\x01v"))
