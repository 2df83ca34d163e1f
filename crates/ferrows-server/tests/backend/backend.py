#!/usr/bin/env python3
"""The application's backend of the proxy tests: a real HTTP server whose
answers the test chooses through what clients send.

- connect: the client's connect `data.mode` says what to answer: `ok`
  (the default; the user is `data.user`, grants `data.grants`, and the
  answer's data shows the headers seen), `refuse`, `temporary`,
  `disconnect`, `slow`, `malformed`, `huge`, `status500`, `binary`.
- subscribe: the channel's name says it: `...refuse...`, `...slow...`,
  `...disconnect...`, anything else is allowed.
- publish: data `{"text": ...}` with `badword` is refused, with `slow` it
  sleeps; in channels with `keep` the data stays, elsewhere the backend
  adds `"by"` (the user) and `"moderated": true`.
- refresh: the user says it: `drop` (disconnect 4502), `refuse` (an
  error), `forever` (no expiry any more), others an hour more.
- rpc: the method says it: `echo`, `whoami`, `fail` (temporary error),
  `slow`, `binary`, `hang` (no answer until the client gives up).

`GET /log` gives every request received (path, headers, body);
`GET /stats` the most requests it held at once. With `--secret`, requests
whose signature does not check are answered 401.
Prints `listening PORT` once it listens.
"""

import argparse
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
LOG = []
STATE = {"now": 0, "max": 0}
SLOW = 5.0


def signed(secret, headers, body):
    timestamp = headers.get("x-ferrows-timestamp", "")
    given = headers.get("x-ferrows-signature", "")
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
    return fresh and hmac.compare_digest(given, "sha256=" + mac)


def connect(request):
    data = request.get("data") or {}
    mode = data.get("mode", "ok") if isinstance(data, dict) else "ok"
    if mode == "refuse":
        return {"error": {"code": 1401, "message": "go away"}}
    if mode == "temporary":
        return {"error": {"code": 1503, "message": "try later", "temporary": True}}
    if mode == "disconnect":
        return {"disconnect": {"code": 4501, "reason": "banned"}}
    if mode == "slow":
        time.sleep(SLOW)
    if mode == "malformed":
        return {"result": {"usr": "nobody"}}
    if mode == "huge":
        return {"result": {"user": "big", "data": "x" * 200_000}}
    if mode == "status500":
        return 500
    user = data.get("user", "u1")
    result = {
        "user": user,
        "channels": data.get("grants", []),
        "meta": {"plan": "pro", "user": user},
        "data": {"welcome": user, "headers": request["headers"], "address": request["address"]},
    }
    if "expire_at" in data:
        result["expire_at"] = data["expire_at"]
    if "subs" in data:
        result["subs"] = data["subs"]
    if mode == "binary":
        del result["data"]
        result["data_base64"] = "AP8="
    return {"result": result}


def subscribe(request):
    channel = request["channel"]
    if "refuse" in channel:
        return {"error": {"code": 1403, "message": "not in this room"}}
    if "disconnect" in channel:
        return {"disconnect": {"code": 4503, "reason": "kicked"}}
    if "slow" in channel:
        time.sleep(SLOW)
    return {"result": {}}


def publish(request):
    data = request.get("data")
    text = data.get("text", "") if isinstance(data, dict) else ""
    if "badword" in text:
        return {"error": {"code": 1400, "message": "moderated: mind your language"}}
    if "slow" in text:
        time.sleep(SLOW)
    if "keep" in request["channel"]:
        return {"result": {}}
    changed = dict(data) if isinstance(data, dict) else {"value": data}
    changed["by"] = request["user"]
    changed["moderated"] = True
    return {"result": {"data": changed}}


def rpc(request):
    method = request["method"]
    if method == "echo":
        if "data_base64" in request:
            return {"result": {"data_base64": request["data_base64"]}}
        return {"result": {"data": request["data"]}}
    if method == "whoami":
        who = {key: request.get(key) for key in ("client", "user", "meta")}
        return {"result": {"data": who}}
    if method == "fail":
        return {"error": {"code": 1500, "message": "the game is paused", "temporary": True}}
    if method == "slow":
        time.sleep(SLOW)
        return {"result": {}}
    if method == "binary":
        return {"result": {"data_base64": "AP8="}}
    if method == "hang":
        time.sleep(30)
        return {"result": {}}
    return {"error": {"code": 1404, "message": "no such method"}}


def refresh(request):
    user = request["user"]
    if user == "drop":
        return {"disconnect": {"code": 4502, "reason": "session ended"}}
    if user == "refuse":
        return {"error": {"code": 1401, "message": "no more"}}
    if user == "forever":
        return {"result": {}}
    return {"result": {"expire_at": int(time.time()) + 3600}}


ROUTES = {"/connect": connect, "/subscribe": subscribe, "/publish": publish, "/rpc": rpc, "/refresh": refresh}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    secret = None

    def log_message(self, *args):
        pass

    def answer(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        with LOCK:
            value = list(LOG) if self.path == "/log" else {"max_in_flight": STATE["max"]}
        self.answer(200, value)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        with LOCK:
            STATE["now"] += 1
            STATE["max"] = max(STATE["max"], STATE["now"])
            LOG.append({"path": self.path, "headers": headers, "body": json.loads(body or b"null")})
        try:
            if self.secret is not None and not signed(self.secret, headers, body):
                return self.answer(401, {"error": "bad signature"})
            route = ROUTES.get(self.path)
            if route is None:
                return self.answer(404, {})
            outcome = route(json.loads(body))
            if isinstance(outcome, int):
                return self.answer(outcome, {})
            self.answer(200, outcome)
        finally:
            with LOCK:
                STATE["now"] -= 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--secret")
    args = parser.parse_args()
    Handler.secret = args.secret
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
