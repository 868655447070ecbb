#!/usr/bin/env python3
"""A local MediaConvert endpoint for the test suite (the real service is not
reachable from the test machines).

    python3 mediaconvert_mock.py [--port 0] [--log FILE] [--region R]
                                 [--throttle-every N] [--throttle-at 1,4]
                                 [--token-window SECONDS] [--hold-at 2,5]

Answers as the API does (REST-JSON, botocore's own service model):

* `POST /2017-08-29/jobs` (CreateJob): the body's wire names (camelCase, the
  model's `locationName`s) are mapped to the model's member names, checked
  with `scripts/mediaconvert_model.py` (botocore's ParamValidator plus max
  lengths, enums and patterns); an invalid request gets 400
  `BadRequestException`; a valid one 201 `{"job": {...}}`. A repeated
  `clientRequestToken` within `--token-window` seconds (default 60, as the
  service documents) returns the job first made with it (no new job); after
  it, or always with `--token-window 0`, a new job (what a re-run long after
  an interrupted one meets).
  Requests picked by the throttle schedule (every Nth CreateJob, and/or the
  listed CreateJob numbers, counting from 1) get 429
  `TooManyRequestsException` and make no job. CreateJob requests picked by
  `--hold-at` (counting as above) make their job, log it, and are never
  answered: the client is killed waiting, as between a job and its record.
* `GET /2017-08-29/jobs/{id}` (GetJob): 200 `{"job": {...}}` or 404.
* `GET /2017-08-29/jobs` (ListJobs): newest first (or `order=ASCENDING`),
  `maxResults` (default 20) per page, `nextToken`.
* anything else: 404 `NotFoundException`.

Errors carry the code in the `x-amzn-ErrorType` header and `__type`, the
text in `message`, as the AWS SDKs expect. Signatures are not checked.
Prints `listening on http://127.0.0.1:PORT` on stdout once ready. With
`--log`, appends one JSON line per request:
`{"n", "method", "path", "status", "error", "token", "job_id"}`.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "scripts"))
import mediaconvert_model  # noqa: E402

ACCOUNT = "123456789012"


class WireError(Exception):
    pass


def from_wire(value, shape, path=""):
    """Wire JSON (locationNames) -> member names, per the model."""
    t = shape.type_name
    if t == "structure":
        if not isinstance(value, dict):
            raise WireError(f"{path or 'body'}: expected an object")
        by_wire = {m.serialization.get("name", n): n for n, m in shape.members.items()}
        out = {}
        for k, v in value.items():
            if k not in by_wire:
                raise WireError(f"{path or 'body'}: unknown field {k!r}")
            name = by_wire[k]
            out[name] = from_wire(v, shape.members[name], f"{path}.{name}" if path else name)
        return out
    if t == "list":
        if not isinstance(value, list):
            raise WireError(f"{path}: expected a list")
        return [from_wire(v, shape.member, f"{path}[{i}]") for i, v in enumerate(value)]
    if t == "map":
        if not isinstance(value, dict):
            raise WireError(f"{path}: expected an object")
        return {k: from_wire(v, shape.value, f"{path}.{k}") for k, v in value.items()}
    return value


def to_wire(value, shape):
    """Member names -> wire JSON (locationNames), per the model."""
    t = shape.type_name
    if t == "structure" and isinstance(value, dict):
        return {
            shape.members[n].serialization.get("name", n): to_wire(v, shape.members[n])
            for n, v in value.items()
            if n in shape.members
        }
    if t == "list" and isinstance(value, list):
        return [to_wire(v, shape.member) for v in value]
    if t == "map" and isinstance(value, dict):
        return {k: to_wire(v, shape.value) for k, v in value.items()}
    return value


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.region = args.region
        self.every = args.throttle_every
        self.at = {int(x) for x in args.throttle_at.split(",") if x.strip()} if args.throttle_at else set()
        self.hold = {int(x) for x in args.hold_at.split(",") if x.strip()} if args.hold_at else set()
        self.window = args.token_window
        self.order = []
        self.log = args.log
        self.creates = 0
        self.requests = 0
        self.jobs = {}
        self.by_token = {}

    def note(self, entry):
        if self.log:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, sort_keys=True) + "\n")


def make_handler(state):
    model = mediaconvert_model.model()
    create_in = model.operation_model("CreateJob").input_shape
    job_shape = model.shape_for("Job")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # quiet
            pass

        def send(self, status, body, entry, error=None):
            data = json.dumps(body).encode()
            # Logged before answering: a client that saw the answer finds the line.
            entry.update(status=status, error=error)
            state.note(entry)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            if error:
                self.send_header("x-amzn-ErrorType", error)
            self.end_headers()
            self.wfile.write(data)

        def fail(self, status, code, message, entry):
            self.send(status, {"__type": code, "message": message}, entry, error=code)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with state.lock:
                state.requests += 1
                entry = {"n": state.requests, "method": "POST", "path": self.path}
            if self.path.split("?")[0].rstrip("/") != "/2017-08-29/jobs":
                return self.fail(404, "NotFoundException", f"no route for POST {self.path}", entry)
            with state.lock:
                state.creates += 1
                n = state.creates
            if n in state.at or (state.every and n % state.every == 0):
                return self.fail(429, "TooManyRequestsException", "Too many requests, please slow down.", entry)
            try:
                wire = json.loads(raw or b"{}")
                params = from_wire(wire, create_in)
            except (ValueError, WireError) as e:
                return self.fail(400, "BadRequestException", f"malformed request: {e}", entry)
            problems = mediaconvert_model.problems_for(params, create_in)
            if problems:
                return self.fail(400, "BadRequestException", "; ".join(problems), entry)
            token = params.get("ClientRequestToken") or str(uuid.uuid4())
            entry["token"] = token
            with state.lock:
                job = state.by_token.get(token)
                if job is not None and time.time() - job["CreatedAt"] >= state.window:
                    job = None
                if job is None:
                    now = int(time.time())
                    job_id = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:6]}"
                    job = {
                        "Id": job_id,
                        "Arn": f"arn:aws:mediaconvert:{state.region}:{ACCOUNT}:jobs/{job_id}",
                        "CreatedAt": now,
                        "Status": "SUBMITTED",
                        "AccelerationStatus": "NOT_APPLICABLE",
                        "Queue": f"arn:aws:mediaconvert:{state.region}:{ACCOUNT}:queues/Default",
                        "Priority": 0,
                        "StatusUpdateInterval": "SECONDS_60",
                        "Timing": {"SubmitTime": now},
                        "UserMetadata": {},
                        "ClientRequestToken": token,
                    }
                    for k in ("Role", "Settings", "Queue", "Priority", "UserMetadata", "JobTemplate",
                              "AccelerationSettings", "BillingTagsSource", "HopDestinations",
                              "SimulateReservedQueue", "StatusUpdateInterval"):
                        if k in params:
                            job[k] = params[k]
                    if "JobEngineVersion" in params:
                        job["JobEngineVersionRequested"] = params["JobEngineVersion"]
                    state.jobs[job_id] = job
                    state.by_token[token] = job
                    state.order.append(job_id)
                    entry["new"] = True
                else:
                    entry["new"] = False
            entry["job_id"] = job["Id"]
            if n in state.hold:
                entry.update(status=None, error=None, held=True)
                state.note(entry)
                threading.Event().wait()  # never answered
            self.send(201, {"job": to_wire(job, job_shape)}, entry)

        def do_GET(self):
            with state.lock:
                state.requests += 1
                entry = {"n": state.requests, "method": "GET", "path": self.path}
            prefix = "/2017-08-29/jobs/"
            path, _, query = self.path.partition("?")
            if path.rstrip("/") == "/2017-08-29/jobs":
                q = urllib.parse.parse_qs(query)
                with state.lock:
                    ids = list(state.order)
                if q.get("order", ["DESCENDING"])[0] != "ASCENDING":
                    ids.reverse()
                start = int(q.get("nextToken", ["0"])[0])
                size = int(q.get("maxResults", ["20"])[0])
                page = [to_wire(state.jobs[i], job_shape) for i in ids[start:start + size]]
                body = {"jobs": page}
                if start + size < len(ids):
                    body["nextToken"] = str(start + size)
                entry["listed"] = len(page)
                return self.send(200, body, entry)
            if not path.startswith(prefix):
                return self.fail(404, "NotFoundException", f"no route for GET {self.path}", entry)
            job = state.jobs.get(path[len(prefix):])
            if job is None:
                return self.fail(404, "NotFoundException", "The specified job does not exist.", entry)
            entry["job_id"] = job["Id"]
            self.send(200, {"job": to_wire(job, job_shape)}, entry)

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--throttle-every", type=int, default=0)
    ap.add_argument("--throttle-at", default="")
    ap.add_argument("--hold-at", default="")
    ap.add_argument("--token-window", type=float, default=60.0)
    args = ap.parse_args()
    state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state))
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
