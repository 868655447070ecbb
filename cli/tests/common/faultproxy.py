#!/usr/bin/env python3
"""sealpipe's fault-injection proxy: a threaded HTTP/1.1 proxy on 127.0.0.1 in
front of moto (S3 and KMS on one port), driven by a deterministic schedule.

    python3 faultproxy.py --upstream PORT [--port 0] [--schedule FILE | --schedule-json JSON]
                          [--log FILE.jsonl] [--seed N] [--tls-cert PEM --tls-key PEM]

With --tls-cert/--tls-key it speaks HTTPS to its clients (a certificate from
a local CA; rustls refuses a self-signed leaf) and plain HTTP to moto.

It prints `LISTENING <port>` on stdout once it accepts connections.

Every request is classified into an operation name (S3: CreateMultipartUpload,
UploadPart, CompleteMultipartUpload, AbortMultipartUpload, ListMultipartUploads,
ListParts, PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects,
ListObjectsV2, ListObjects, ListObjectVersions, CreateBucket, HeadBucket, ...;
KMS: the `X-Amz-Target` operation, e.g. GenerateDataKey, Encrypt, Decrypt,
DescribeKey) and logged; the first rule of the schedule that fires decides
what happens to it.

Schedule (JSON):

    {"rules": [
       {"op": "CompleteMultipartUpload", "key": "enc/big.ts", "first": 3, "action": "lose_reply_500"},
       {"op": "UploadPart", "nth": 3, "action": "reset"},
       {"op": "GetObject", "key_regex": "big", "nth": 1, "action": "truncate", "bytes": 1000},
       {"op": "*", "every": 5, "action": "status", "status": 503},
       {"op": ["GenerateDataKey", "Encrypt"], "first": 2, "action": "status", "status": 400, "code": "ThrottlingException"},
       {"op": "UploadPart", "all": true, "action": "delay", "ms": 200},
       {"op": "UploadPart", "part": 2, "nth": 1, "action": "pause_until_released"}
     ],
     "initiated_offset_s": 0,
     "seed": null}

Rule filters (all optional, all must hold): `op` (a name, a list of names, or
"*"), `service` ("s3" or "kms"), `method`, `bucket`, `key` (exact, decoded),
`key_regex` (re.search on the decoded key; the KMS `KeyId` for KMS), `part`
(UploadPart's number). Each rule counts the requests that pass its filters
(1, 2, 3, ...), whether or not it fires; the count condition decides whether
it fires on this one: `nth: N` (only the Nth), `first: N` (1..N), `after: N`
(N+1 onwards), `every: K` (K, 2K, ...), `all: true` (the default when none is
given), `probability: P` (with the schedule's `seed`; random only then).
Rules are tried in order; the first that fires acts, the others only count.

Actions:
  forward                 forward unchanged (to shield a request from later rules)
  status                  answer `status` (default 503) without forwarding, with an
                          S3 XML error (`code`: default InternalError for 500,
                          SlowDown for 503) or a KMS JSON error (`code`: default
                          ThrottlingException for 400, KMSInternalException for 500)
  lose_reply_reset        forward (the write IS applied), then reset the connection
  lose_reply_500          forward (the write IS applied), then answer 500 InternalError
  lose_reply              forward, then close the connection without a reply (FIN)
  reset                   reset the connection (RST: SO_LINGER 0) without forwarding
  truncate                forward, send the real headers (Content-Length of the
                          whole body) and only the first `bytes` bytes, then close
  delay                   sleep `ms` then forward
  pause_until_released    hold the request until POST /__fault/release, then
                          forward (or, with `then`, apply that action instead)

Always: `ListMultipartUploads` answers get the real creation time of each
upload the proxy saw created (moto reports 2010-11-10 for every upload),
shifted by the schedule's `initiated_offset_s` (e.g. -120 = as if the client's
clock were 120 s ahead of S3's).

Control path (on the proxy itself, not logged, not forwarded):
  POST /__fault/schedule   body: a schedule; replaces the current one, counts reset
  GET  /__fault/schedule   the current schedule
  GET  /__fault/log        JSON list of log entries (see `entry` below)
  (action "region": see `act`: a bucket in another region, as S3 answers)
  POST /__fault/reset      clears the log, the counts and the schedule; releases held requests
  POST /__fault/release    releases every held request (`?n=K`: the K oldest)
  GET  /__fault/health     "ok"

A log entry: seq, t (seconds since start), service, op, method, path, bucket,
key, upload_id, part, range, key_id (KMS), payer and owner (the
x-amz-request-payer and x-amz-expected-bucket-owner headers), payload (the
x-amz-content-sha256 header: a hex SHA-256 or UNSIGNED-PAYLOAD), length (request
body bytes), rule (index of the rule that acted,
or null), action ("forward" when none), state ("pending", "held", "done"),
status (what the client got; null when it got no status line), upstream
(moto's status when forwarded, else null), sent (body bytes sent).
No randomness unless a rule has `probability` (seeded by `seed`, default 0).
"""
import argparse
import http.client
import json
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KMS_CODES = {400: "ThrottlingException", 500: "KMSInternalException", 503: "KMSInternalException"}
S3_CODES = {500: "InternalError", 503: "SlowDown", 400: "InvalidArgument", 403: "AccessDenied", 404: "NoSuchKey"}
ACTIONS = {"forward", "region", "status", "lose_reply_reset", "lose_reply_500", "lose_reply", "reset", "truncate", "delay",
           "pause_until_released"}
START = time.monotonic()


class State:
    def __init__(self, schedule, seed, log_path):
        self.lock = threading.Condition()
        self.log = []
        self.log_path = log_path
        self.created = {}  # UploadId -> epoch seconds the proxy saw it created
        self.held = []  # [threading.Event] in arrival order
        self.set_schedule(schedule, seed)

    def set_schedule(self, schedule, seed=None):
        schedule = schedule or {}
        rules = schedule.get("rules", [])
        for r in rules:
            a = r.get("action", "forward")
            if a not in ACTIONS:
                raise ValueError("unknown action %r" % a)
            if r.get("then") and r["then"] not in ACTIONS:
                raise ValueError("unknown action %r" % r["then"])
        with self.lock:
            self.schedule = schedule
            self.counts = [0] * len(rules)
            s = schedule.get("seed", seed)
            self.rng = random.Random(s if s is not None else 0)

    def decide(self, info):
        """The rule that fires for this request (index, rule) or (None, None); counts every rule that matches."""
        with self.lock:
            fired = (None, None)
            for i, r in enumerate(self.schedule.get("rules", [])):
                if not matches(r, info):
                    continue
                self.counts[i] += 1
                if fired[0] is None and fires(r, self.counts[i], self.rng):
                    fired = (i, r)
            return fired

    def add(self, entry):
        with self.lock:
            entry["seq"] = len(self.log) + 1
            self.log.append(entry)
            self.lock.notify_all()
        return entry

    def finish(self, entry):
        with self.lock:
            entry["state"] = "done"
            self.lock.notify_all()
            if self.log_path:
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(entry) + "\n")


def matches(rule, info):
    op = rule.get("op", "*")
    if op != "*" and (info["op"] not in op if isinstance(op, list) else info["op"] != op):
        return False
    for field in ("service", "method", "bucket", "key", "part"):
        if field in rule and rule[field] != info.get(field):
            return False
    if "key_regex" in rule:
        subject = info.get("key") if info["service"] == "s3" else info.get("key_id")
        if subject is None or not re.search(rule["key_regex"], subject):
            return False
    return True


def fires(rule, n, rng):
    if "nth" in rule and n != rule["nth"]:
        return False
    if "first" in rule and n > rule["first"]:
        return False
    if "after" in rule and n <= rule["after"]:
        return False
    if "every" in rule and n % rule["every"] != 0:
        return False
    if "probability" in rule and rng.random() >= rule["probability"]:
        return False
    return True


def classify(method, raw_path, headers, body):
    """Service and operation name of a request, with its bucket, key, upload id, part."""
    split = urllib.parse.urlsplit(raw_path)
    q = urllib.parse.parse_qs(split.query, keep_blank_values=True)
    info = {"service": "s3", "method": method, "path": raw_path, "bucket": None, "key": None, "upload_id": None,
            "part": None, "range": headers.get("Range"), "key_id": None,
            "payer": headers.get("x-amz-request-payer"), "owner": headers.get("x-amz-expected-bucket-owner"),
            "payload": headers.get("x-amz-content-sha256"), "length": len(body or b""),
            "signed_region": (re.search(r"Credential=[^/]*/[^/]*/([^/]*)/", headers.get("Authorization") or "") or [None, None])[1]}
    target = headers.get("X-Amz-Target")
    if target:
        info["service"] = "kms" if target.startswith("TrentService.") else "other"
        info["op"] = target.split(".", 1)[-1]
        try:
            info["key_id"] = json.loads(body or b"{}").get("KeyId")
        except ValueError:
            pass
        return info
    path = split.path
    host = (headers.get("Host") or "").split(":")[0]
    parts = path.lstrip("/").split("/", 1)
    if host and not re.match(r"^(\d+\.\d+\.\d+\.\d+|localhost)$", host) and host.endswith(".localhost"):
        bucket, key = host[: -len(".localhost")], path.lstrip("/")  # virtual-hosted style
    else:
        bucket, key = parts[0], (parts[1] if len(parts) > 1 else "")
    bucket = urllib.parse.unquote(bucket) or None
    key = urllib.parse.unquote(key) or None
    info["bucket"], info["key"] = bucket, key
    info["upload_id"] = (q.get("uploadId") or [None])[0]
    if "partNumber" in q:
        try:
            info["part"] = int(q["partNumber"][0])
        except ValueError:
            pass
    copy = "x-amz-copy-source" in {k.lower() for k in headers.keys()}
    if bucket is None:
        op = "ListBuckets" if method == "GET" else method.title() + "Root"
    elif key is None:
        sub = next((s for s in ("uploads", "versions", "versioning", "location", "delete", "tagging", "policy", "acl",
                                "lifecycle", "cors", "encryption", "notification", "ownershipControls",
                                "publicAccessBlock") if s in q), None)
        if method == "GET":
            if sub == "uploads":
                op = "ListMultipartUploads"
            elif sub == "versions":
                op = "ListObjectVersions"
            elif sub:
                op = "GetBucket" + sub[0].upper() + sub[1:]
            elif q.get("list-type") == ["2"]:
                op = "ListObjectsV2"
            else:
                op = "ListObjects"
        elif method == "PUT":
            op = "PutBucket" + sub[0].upper() + sub[1:] if sub else "CreateBucket"
        elif method == "DELETE":
            op = "DeleteBucket" + (sub[0].upper() + sub[1:] if sub else "")
        elif method == "HEAD":
            op = "HeadBucket"
        elif method == "POST":
            op = "DeleteObjects" if sub == "delete" else "PostBucket"
        else:
            op = method.title() + "Bucket"
    else:
        if method == "POST":
            op = "CreateMultipartUpload" if "uploads" in q else "CompleteMultipartUpload" if "uploadId" in q else "PostObject"
        elif method == "PUT":
            if "partNumber" in q and "uploadId" in q:
                op = "UploadPartCopy" if copy else "UploadPart"
            elif "tagging" in q:
                op = "PutObjectTagging"
            elif "acl" in q:
                op = "PutObjectAcl"
            else:
                op = "CopyObject" if copy else "PutObject"
        elif method == "DELETE":
            op = "AbortMultipartUpload" if "uploadId" in q else "DeleteObjectTagging" if "tagging" in q else "DeleteObject"
        elif method == "GET":
            op = "ListParts" if "uploadId" in q else "GetObjectTagging" if "tagging" in q else \
                "GetObjectAttributes" if "attributes" in q else "GetObjectAcl" if "acl" in q else "GetObject"
        elif method == "HEAD":
            op = "HeadObject"
        else:
            op = method.title() + "Object"
    info["op"] = op
    return info


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + ".000Z"


def make_handler(state, upstream):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "faultproxy"

        def log_message(self, *a):
            pass

        def read_body(self):
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def reply(self, status, headers, body, send_body=True, length=None):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            if send_body and self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()

        def rst(self):
            """Close the client's socket with a TCP RST (SO_LINGER 0)."""
            try:
                self.wfile.flush()
            except OSError:
                pass
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def fin(self):
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.connection.close()
            self.close_connection = True

        def control(self, body):
            path = urllib.parse.urlsplit(self.path)
            q = urllib.parse.parse_qs(path.query)
            what = path.path[len("/__fault/"):]
            try:
                if what == "schedule" and self.command == "POST":
                    state.set_schedule(json.loads(body or b"{}"))
                    out = {"ok": True}
                elif what == "schedule":
                    out = state.schedule
                elif what == "log":
                    with state.lock:
                        out = [dict(e) for e in state.log]
                elif what == "reset":
                    with state.lock:
                        state.log.clear()
                        state.schedule = {}
                        state.counts = []
                        held, state.held = state.held, []
                    for ev in held:
                        ev.set()
                    out = {"ok": True}
                elif what == "release":
                    with state.lock:
                        n = int(q["n"][0]) if "n" in q else len(state.held)
                        go, state.held = state.held[:n], state.held[n:]
                    for ev in go:
                        ev.set()
                    out = {"released": len(go)}
                elif what == "health":
                    out = "ok"
                else:
                    self.reply(404, [("Content-Type", "application/json")], b'{"error": "no such control path"}')
                    return
                self.reply(200, [("Content-Type", "application/json")], json.dumps(out).encode())
            except Exception as e:  # a bad schedule: say why
                self.reply(400, [("Content-Type", "application/json")], json.dumps({"error": str(e)}).encode())

        def error_body(self, info, status, code):
            if info["service"] == "kms":
                code = code or KMS_CODES.get(status, "KMSInternalException")
                body = json.dumps({"__type": code, "message": "injected by the fault proxy"}).encode()
                return [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)], body
            code = code or S3_CODES.get(status, "InternalError")
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>injected by the fault "
                    "proxy</Message><RequestId>faultproxy</RequestId></Error>" % code).encode()
            return [("Content-Type", "application/xml")], body

        def forward(self, body):
            c = http.client.HTTPConnection("127.0.0.1", upstream, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("expect", "transfer-encoding", "connection")}
            headers["Content-Length"] = str(len(body))
            c.request(self.command, self.path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            c.close()
            return r.status, r.getheaders(), data

        def fix_initiated(self, info, data):
            if info["op"] == "CreateMultipartUpload":
                uid = re.search(rb"<UploadId>([^<]*)</UploadId>", data)
                if uid:
                    with state.lock:
                        state.created[uid.group(1).decode()] = time.time()
            elif info["op"] == "ListMultipartUploads":
                offset = float(state.schedule.get("initiated_offset_s", 0))

                def fix(m):
                    block = m.group(0)
                    uid = re.search(rb"<UploadId>([^<]*)</UploadId>", block)
                    when = state.created.get(uid.group(1).decode()) if uid else None
                    if when is None:
                        return block
                    stamp = iso(when + offset).encode()
                    return re.sub(rb"<Initiated>[^<]*</Initiated>", b"<Initiated>" + stamp + b"</Initiated>", block)

                data = re.sub(rb"<Upload>.*?</Upload>", fix, data, flags=re.S)
            return data

        def handle_one(self):
            body = self.read_body()
            if self.path.startswith("/__fault/"):
                return self.control(body)
            info = classify(self.command, self.path, self.headers, body)
            index, rule = state.decide(info)
            action = rule.get("action", "forward") if rule else "forward"
            entry = state.add({"t": round(time.monotonic() - START, 3), **info, "rule": index, "action": action,
                               "state": "pending", "status": None, "upstream": None, "sent": 0})
            try:
                self.act(info, entry, rule or {}, action, body)
            finally:
                state.finish(entry)

        def act(self, info, entry, rule, action, body):
            if action == "pause_until_released":
                ev = threading.Event()
                with state.lock:
                    state.held.append(ev)
                    entry["state"] = "held"
                    state.lock.notify_all()
                ev.wait()
                with state.lock:
                    entry["state"] = "pending"
                action = rule.get("then", "forward")
                entry["action"] = "pause_until_released" + ("+" + action if action != "forward" else "")
            if action == "delay":
                time.sleep(float(rule.get("ms", 1000)) / 1000)
            if action == "reset":
                return self.rst()
            if action == "region":
                # A bucket in rule["region"], as S3 answers a request signed for another region:
                # 301 PermanentRedirect with x-amz-bucket-region (HEAD: no body), or with
                # "answer": "malformed" 400 AuthorizationHeaderMalformed naming the region
                # (HEAD still 301, as S3 does). Signed for its region: forwarded.
                if info.get("signed_region") != rule["region"]:
                    region = rule["region"]
                    if info["method"] == "HEAD" or rule.get("answer") != "malformed":
                        status, code = 301, "PermanentRedirect"
                    else:
                        status, code = 400, "AuthorizationHeaderMalformed"
                    err = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>the bucket is in %s</Message>"
                           "<Region>%s</Region><RequestId>faultproxy</RequestId></Error>" % (code, region, region)).encode()
                    entry["status"] = status
                    self.reply(status, [("Content-Type", "application/xml"), ("x-amz-bucket-region", region)], err)
                    entry["sent"] = len(err)
                    return
            if action == "status":
                status = int(rule.get("status", 503))
                headers, err = self.error_body(info, status, rule.get("code"))
                entry["status"] = status
                self.reply(status, headers, err)
                entry["sent"] = len(err)
                return
            try:
                status, headers, data = self.forward(body)
            except OSError as e:  # moto gone: answer 502, not a hang
                entry["status"] = 502
                self.reply(502, [("Content-Type", "text/plain")], ("upstream: %s" % e).encode())
                return
            entry["upstream"] = status
            data = self.fix_initiated(info, data)
            if action == "lose_reply_reset":
                return self.rst()
            if action == "lose_reply":
                return self.fin()
            if action == "lose_reply_500":
                headers, err = self.error_body(info, 500, None)
                entry["status"] = 500
                self.reply(500, headers, err)
                return
            keep = [(k, v) for k, v in headers
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date")]
            if action == "truncate":
                cut = data[: int(rule.get("bytes", 0))]
                self.send_response(status)
                for k, v in keep:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(cut)
                entry["status"], entry["sent"] = status, len(cut)
                return self.fin()
            entry["status"], entry["sent"] = status, (0 if self.command == "HEAD" else len(data))
            # A HEAD answer has no body but the Content-Length of the object: keep moto's.
            length = next((v for k, v in headers if k.lower() == "content-length"), None) if self.command == "HEAD" else None
            self.reply(status, keep, data, length=length)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # a client that went away (or a socket we reset) is not news


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upstream", type=int, required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--schedule")
    p.add_argument("--schedule-json")
    p.add_argument("--log")
    p.add_argument("--seed", type=int)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    a = p.parse_args()
    schedule = {}
    if a.schedule:
        with open(a.schedule) as f:
            schedule = json.load(f)
    if a.schedule_json:
        schedule = json.loads(a.schedule_json)
    state = State(schedule, a.seed, a.log)
    server = Server(("127.0.0.1", a.port), make_handler(state, a.upstream))
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("LISTENING %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
