//! Helpers shared by the tests that run against a local moto server (S3 + KMS).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

pub mod mediaconvert;

pub const BIN: &str = env!("CARGO_BIN_EXE_sealpipe");

/// The binary under test: `$SEALPIPE_BIN` when set (a copy taken right
/// after the build, where several checkouts share one target folder and
/// overwrite each other's `target/debug/sealpipe`), else the one cargo built.
pub fn bin() -> PathBuf {
    std::env::var_os("SEALPIPE_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(BIN))
}
pub const MC_CONTEXT: &str = r#"{"service": "mediaconvert.amazonaws.com"}"#;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed (and reaped) when the guard drops.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn wait_ready(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{what} exited early ({status}); is `moto[server]` installed? (python3 -m pip install 'moto[server]')");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what} did not answer on port {} within 60 s", self.port);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_moto() -> Server {
    start_moto_with(&[])
}

/// A moto server with extra environment (e.g. `INITIAL_NO_AUTH_ACTION_COUNT`, which turns on its IAM enforcement).
pub fn start_moto_with(env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 must be on PATH");
    let mut server = Server { child, port };
    server.wait_ready("moto server");
    server
}

/// A proxy in front of moto, forwarding everything unchanged except
/// `UploadPart`s: with `mode` "fail:N" it rejects part N with a
/// non-retryable 400; with "delay:S" it holds every part S seconds. With
/// "count:LOG" it changes nothing and appends one line per request to the
/// file LOG: the request's `X-Amz-Target` header (`TrentService.GenerateDataKey`
/// for KMS), or for requests without one `S3 METHOD?QUERY-NAMES` (e.g.
/// `S3 GET?prefix&uploads` for ListMultipartUploads). See [`request_log`].
/// With "initiated:real" it notes when each multipart upload it forwards is
/// created and puts that time in `ListMultipartUploads` answers, where
/// moto (5.x) reports a fixed `Initiated` of 2010-11-10 for every upload;
/// uploads it has not seen created keep moto's date.
pub fn start_proxy(upstream: u16, mode: &str) -> Server {
    const PROXY: &str = r#"
import http.client, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import re, threading, time, urllib.parse
port, upstream = int(sys.argv[1]), int(sys.argv[2])
mode, arg = sys.argv[3].split(":", 1)
log_lock = threading.Lock()
created = {}  # UploadId -> Initiated, for "initiated:real"
def with_real_initiated(xml):
    def fix(m):
        block = m.group(0)
        uid = re.search(rb"<UploadId>([^<]*)</UploadId>", block)
        when = created.get(uid.group(1)) if uid else None
        return re.sub(rb"<Initiated>[^<]*</Initiated>", b"<Initiated>" + when + b"</Initiated>", block) if when else block
    return re.sub(rb"<Upload>.*?</Upload>", fix, xml, flags=re.S)
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def handle_one(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        is_part = self.command == "PUT" and "uploadId=" in self.path and "partNumber=" in self.path
        if mode == "count":
            with log_lock, open(arg, "a") as log:
                query = sorted(k for k in urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True) if k != "x-id")
                s3_op = "S3 " + self.command + ("?" + "&".join(query) if query else "")
                log.write((self.headers.get("X-Amz-Target") or s3_op) + "\n")
        if is_part and mode == "delay":
            time.sleep(float(arg))
        if is_part and mode == "fail" and ("partNumber=%s&" % arg in self.path + "&"):
            msg = b"<?xml version='1.0'?><Error><Code>InvalidArgument</Code><Message>part rejected by the test proxy</Message></Error>"
            self.send_response(400); self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(msg))); self.end_headers(); self.wfile.write(msg); return
        c = http.client.HTTPConnection("127.0.0.1", upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items()}
        c.request(self.command, self.path, body=body, headers=headers)
        r = c.getresponse(); data = r.read()
        if mode == "initiated" and "uploads" in urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True):
            if self.command == "POST":
                uid = re.search(rb"<UploadId>([^<]*)</UploadId>", data)
                if uid: created[uid.group(1)] = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()).encode()
            elif self.command == "GET":
                data = with_real_initiated(data)
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data))); self.end_headers()
        if self.command != "HEAD": self.wfile.write(data)
    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;
    let port = free_port();
    let child = Command::new("python3")
        .args(["-c", PROXY, &port.to_string(), &upstream.to_string(), mode])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server { child, port };
    server.wait_ready("test proxy");
    server
}

/// Environment of the binary and of boto3: fake credentials, the local endpoint,
/// and no shared config, profile or instance metadata from this machine.
pub fn aws_env(cmd: &mut Command, endpoint: &str) {
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/sealpipe-test-config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/sealpipe-test-credentials")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        // State (an s3:// manifest's working copy, default manifests) in this test binary's own folder, never the user's home.
        .env("XDG_STATE_HOME", std::env::temp_dir().join(format!("sealpipe-test-state-{}", std::process::id())));
}

/// Run a boto3 snippet; `s3` and `kms` clients are ready in it. Returns stdout.
pub fn py(moto: &Server, code: &str, args: &[&str]) -> String {
    let prelude = "import boto3, json, sys, base64, os\n\
        s3 = boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL'])\n\
        kms = boto3.client('kms', endpoint_url=os.environ['AWS_ENDPOINT_URL'])\n";
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(format!("{prelude}{code}")).args(args);
    aws_env(&mut cmd, &moto.url());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A KMS key with alias `alias` and a bucket `bucket`; returns the key ARN.
pub fn setup(moto: &Server, bucket: &str, alias: &str) -> String {
    py(
        moto,
        "k = kms.create_key(Description='sealpipe test')['KeyMetadata']\n\
         kms.create_alias(AliasName=sys.argv[2], TargetKeyId=k['KeyId'])\n\
         s3.create_bucket(Bucket=sys.argv[1])\n\
         print(k['Arn'])",
        &[bucket, alias],
    )
}

pub fn open_uploads(moto: &Server, bucket: &str) -> usize {
    py(moto, "print(len(s3.list_multipart_uploads(Bucket=sys.argv[1]).get('Uploads', [])))", &[bucket])
        .parse()
        .unwrap()
}

pub fn sealpipe(moto_url: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("--force-path-style");
    aws_env(&mut cmd, moto_url);
    cmd.env("SEALPIPE_KEYRING", "/nonexistent/sealpipe-test-keyring");
    cmd.output().unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn records(manifest: &Path) -> Vec<serde_json::Value> {
    let file = std::fs::File::open(manifest).unwrap();
    BufReader::new(file).lines().map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect()
}

pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn b64d(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// `openssl enc -aes-256-ctr -K key -iv iv` of `plain`.
pub fn openssl_ctr(plain: &Path, key_hex: &str, iv: &[u8]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["enc", "-aes-256-ctr", "-nosalt", "-K", key_hex, "-iv", &hex::encode(iv), "-in"])
        .arg(plain)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

pub struct Tree {
    pub _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub media: PathBuf,
}

/// A folder with a multipart-sized file (12 MiB + 123 B: 3 parts of 5 MiB)
/// and small ones (PutObject), one in a subfolder.
pub fn media_tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let media = root.join("media");
    std::fs::create_dir_all(media.join("sub")).unwrap();
    std::fs::write(media.join("big.ts"), pattern((12 << 20) + 123, 1)).unwrap();
    std::fs::write(media.join("small.mp4"), pattern(100_000, 2)).unwrap();
    std::fs::write(media.join("sub/tiny.aac"), pattern(17, 3)).unwrap();
    std::fs::write(media.join("sub/empty.bin"), b"").unwrap();
    Tree { _dir: dir, root, media }
}


/// The requests a "count:LOG" proxy saw, as (operation, count), sorted.
pub fn request_log(log: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

// ---------------------------------------------------------------------------
// The fault-injection harness (issue 10): `faultproxy.py` in front of moto,
// driven by deterministic schedules, and audits of the bucket against the
// manifest. See the docstring of `faultproxy.py` for the schedule format.

/// The fault proxy's script, beside this file.
pub const FAULTPROXY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/faultproxy.py");

/// `faultproxy.py` in front of `upstream` (moto): S3 and KMS requests are
/// classified, logged and faulted as its schedule says. Killed on drop.
/// A local CA and a server certificate for 127.0.0.1 and localhost that it
/// signed, made with `openssl` in `dir` (rustls refuses a self-signed leaf):
/// (the CA's certificate, the server's certificate, the server's key).
pub fn local_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let [ca, ca_key, cert, key, csr, ext] = ["ca.pem", "ca.key", "server.pem", "server.key", "server.csr", "ext.cnf"].map(|f| dir.join(f));
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    let openssl = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("openssl").args(args).output().expect("openssl must be on PATH");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    openssl(&[os("req"), os("-x509"), os("-newkey"), os("rsa:2048"), os("-nodes"), os("-days"), os("2"), os("-subj"), os("/CN=sealpipe test CA"), os("-keyout"), ca_key.as_os_str(), os("-out"), ca.as_os_str()]);
    openssl(&[os("req"), os("-newkey"), os("rsa:2048"), os("-nodes"), os("-subj"), os("/CN=localhost"), os("-keyout"), key.as_os_str(), os("-out"), csr.as_os_str()]);
    openssl(&[
        os("x509"), os("-req"), os("-days"), os("2"), os("-in"), csr.as_os_str(), os("-CA"), ca.as_os_str(), os("-CAkey"), ca_key.as_os_str(),
        os("-CAcreateserial"), os("-extfile"), ext.as_os_str(), os("-out"), cert.as_os_str(),
    ]);
    (ca, cert, key)
}

pub struct FaultProxy {
    pub server: Server,
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (Connection: close): status and body.
pub fn http_request(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP answer");
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, all[split + 4..].to_vec())
}

impl FaultProxy {
    /// Start in front of moto's `upstream` port with `schedule_json` (`"{}"`: no faults).
    pub fn start(upstream_port: u16, schedule_json: &str) -> FaultProxy {
        Self::start_with(upstream_port, schedule_json, None)
    }

    /// As [`FaultProxy::start`], also appending each finished request to `log` (JSONL).
    pub fn start_with(upstream_port: u16, schedule_json: &str, log: Option<&Path>) -> FaultProxy {
        Self::spawn(upstream_port, schedule_json, log, None)
    }

    /// As [`FaultProxy::start_with`], speaking HTTPS to its clients with
    /// `tls` (certificate, key: see [`local_ca`]) and plain HTTP to moto.
    /// Its control path is HTTPS too: read what it saw from `log`.
    pub fn start_tls(upstream_port: u16, schedule_json: &str, log: &Path, tls: (&Path, &Path)) -> FaultProxy {
        Self::spawn(upstream_port, schedule_json, Some(log), Some(tls))
    }

    fn spawn(upstream_port: u16, schedule_json: &str, log: Option<&Path>, tls: Option<(&Path, &Path)>) -> FaultProxy {
        let mut cmd = Command::new("python3");
        cmd.arg(FAULTPROXY).args(["--upstream", &upstream_port.to_string(), "--schedule-json", schedule_json]);
        if let Some(log) = log {
            cmd.arg("--log").arg(log);
        }
        if let Some((cert, key)) = tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("python3 must be on PATH");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = match line.strip_prefix("LISTENING ").and_then(|p| p.trim().parse().ok()) {
            Some(port) => port,
            None => {
                let _ = child.kill();
                panic!("faultproxy.py did not start (bad schedule?): {line:?} {:?}", child.wait());
            }
        };
        FaultProxy { server: Server { child, port } }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    fn control(&self, method: &str, what: &str, body: &str) -> serde_json::Value {
        let (status, answer) = http_request(self.port(), method, &format!("/__fault/{what}"), body.as_bytes());
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert_eq!(status, 200, "fault proxy {what}: {answer}");
        serde_json::from_str(&answer).unwrap()
    }

    /// Replace the schedule (the rules' counts start again from zero).
    pub fn set_schedule(&self, schedule_json: &str) {
        self.control("POST", "schedule", schedule_json);
    }

    /// Clear the log, the counts and the schedule; release held requests.
    pub fn reset(&self) {
        self.control("POST", "reset", "");
    }

    /// Release every held (`pause_until_released`) request; how many were held.
    pub fn release(&self) -> usize {
        self.control("POST", "release", "")["released"].as_u64().unwrap() as usize
    }

    /// Release the `n` oldest held requests; how many were released.
    pub fn release_oldest(&self, n: usize) -> usize {
        self.control("POST", &format!("release?n={n}"), "")["released"].as_u64().unwrap() as usize
    }

    /// Every request seen since the start (or the last reset), in arrival order.
    pub fn log(&self) -> Vec<serde_json::Value> {
        match self.control("GET", "log", "") {
            serde_json::Value::Array(v) => v,
            other => panic!("fault proxy log: {other}"),
        }
    }

    /// Requests of operation `op` seen so far (any state, any action).
    pub fn count(&self, op: &str) -> usize {
        self.log().iter().filter(|e| e["op"] == op).count()
    }

    /// Requests to `service` ("s3" or "kms") seen so far, any operation.
    pub fn count_service(&self, service: &str) -> usize {
        self.log().iter().filter(|e| e["service"] == service).count()
    }

    /// Requests of `op` to which `action` was applied.
    pub fn count_action(&self, op: &str, action: &str) -> usize {
        self.log().iter().filter(|e| e["op"] == op && e["action"] == action).count()
    }

    /// Wait (polling the log) until `n` requests of `op` arrived; panics after `timeout`.
    pub fn wait_for(&self, op: &str, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        self.wait_until(&format!("{n} x {op}"), timeout, |log| log.iter().filter(|e| e["op"] == op).count() >= n)
    }

    /// Wait until `n` requests are held by `pause_until_released`.
    pub fn wait_held(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        self.wait_until(&format!("{n} held"), timeout, |log| log.iter().filter(|e| e["state"] == "held").count() >= n)
    }

    /// Wait until `done` holds for the log; the log then. Panics after `timeout`.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if done(&log) {
                return log;
            }
            if Instant::now() > deadline {
                panic!("fault proxy: waited {timeout:?} for {what}; log: {}", summarize_log(&log));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The requests to which a rule applied an action: (op, key, action, status).
    pub fn faults(&self) -> Vec<(String, String, String, String)> {
        self.log()
            .iter()
            .filter(|e| e["action"] != "forward")
            .map(|e| {
                let s = |v: &serde_json::Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                (s(&e["op"]), s(&e["key"]), s(&e["action"]), s(&e["status"]))
            })
            .collect()
    }
}

/// One line per request: `op key action status`.
pub fn summarize_log(log: &[serde_json::Value]) -> String {
    log.iter()
        .map(|e| format!("{} {} {} {}", e["op"], e["key"], e["action"], e["status"]))
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// `sealpipe ARGS --force-path-style` against `endpoint`, with fake
/// credentials, no instance metadata, no keyring and no shard index or
/// test hook inherited from this process.
pub fn sealpipe_command(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("--force-path-style");
    aws_env(&mut cmd, endpoint);
    cmd.env("SEALPIPE_KEYRING", "/nonexistent/sealpipe-test-keyring")
        .env_remove("AWS_MAX_ATTEMPTS")
        .env_remove("AWS_RETRY_MODE")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env_remove("SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS")
        .env_remove("SEALPIPE_TEST_PAUSE_SKIP_COMMITS")
        .env_remove("SEALPIPE_TEST_PAUSE_AFTER_LIST_MS");
    cmd
}

/// A child's output, and whether it had to be killed at the deadline.
pub struct Bounded {
    pub out: Output,
    pub timed_out: bool,
}

impl Bounded {
    pub fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
    pub fn stderr(&self) -> String {
        stderr(&self.out)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    /// Exited by itself (not killed at the deadline, not by a signal).
    pub fn exited(&self) -> bool {
        !self.timed_out && self.out.status.code().is_some()
    }
}

/// Wait for `child` (stdout and stderr piped) at most `timeout`, then SIGKILL it.
pub fn wait_bounded(mut child: Child, timeout: Duration) -> Bounded {
    use std::io::Read;
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Bounded { out: Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }, timed_out }
}

/// Run `cmd` to the end, or SIGKILL it after `timeout` (a hang fails, never blocks).
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Bounded {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_bounded(child, timeout)
}

/// Open multipart uploads of `bucket` (key, upload id), read from moto directly.
pub fn open_upload_list(moto: &Server, bucket: &str) -> Vec<(String, String)> {
    let listed = py(
        moto,
        "p = s3.get_paginator('list_multipart_uploads')\n\
         print(json.dumps([[u['Key'], u['UploadId']] for page in p.paginate(Bucket=sys.argv[1]) for u in page.get('Uploads', [])]))",
        &[bucket],
    );
    serde_json::from_str(&listed).unwrap()
}

/// Keys of every object under `prefix` in `bucket`, sorted, read from moto directly.
pub fn objects_under(moto: &Server, bucket: &str, prefix: &str) -> Vec<String> {
    let listed = py(
        moto,
        "p = s3.get_paginator('list_objects_v2')\n\
         print(json.dumps(sorted(o['Key'] for page in p.paginate(Bucket=sys.argv[1], Prefix=sys.argv[2]) for o in page.get('Contents', []))))",
        &[bucket, prefix],
    );
    serde_json::from_str(&listed).unwrap()
}

/// What the convergence audit found (issue 10's table: lost, duplicated,
/// open uploads, unrecorded objects must all be empty, verify must pass).
#[derive(Debug, Default)]
pub struct Convergence {
    /// Sources with no record.
    pub lost: Vec<String>,
    /// Sources with more than one record.
    pub duplicated: Vec<String>,
    /// Records whose source is not one of the expected sources.
    pub strangers: Vec<String>,
    /// Manifest lines that are not a JSON record (torn or garbled).
    pub torn_lines: usize,
    /// Open multipart uploads in the bucket: (key, upload id).
    pub open_uploads: Vec<(String, String)>,
    /// Objects under the destination prefix that no record names.
    pub unrecorded_objects: Vec<String>,
    /// Records naming an object that is not there.
    pub missing_objects: Vec<String>,
    /// `sealpipe verify` exit code (None: killed by a signal or at the deadline) and its stderr.
    pub verify: (Option<i32>, String),
}

impl Convergence {
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.strangers.is_empty()
            && self.torn_lines == 0
            && self.open_uploads.is_empty()
            && self.unrecorded_objects.is_empty()
            && self.missing_objects.is_empty()
            && self.verify.0 == Some(0)
    }
}

/// The convergence audit of issue 10 for a run whose outputs go to
/// `s3://bucket/prefix`: every one of `sources` (as the records name them:
/// canonical local paths or s3:// URLs) has exactly one record in the local
/// `manifest`, every object under the prefix has a record, every record's
/// object exists, no multipart upload is open in the bucket, and
/// `sealpipe verify` (straight to moto) exits 0.
pub fn convergence(moto: &Server, manifest: &Path, bucket: &str, prefix: &str, sources: &[String]) -> Convergence {
    let mut c = Convergence::default();
    let text = std::fs::read_to_string(manifest).unwrap_or_default();
    let mut by_source: std::collections::BTreeMap<String, usize> = Default::default();
    let mut outputs = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(r) if r["source"].is_string() && r["output"].is_string() => {
                *by_source.entry(r["source"].as_str().unwrap().to_string()).or_default() += 1;
                outputs.insert(r["output"].as_str().unwrap().to_string());
            }
            _ => c.torn_lines += 1,
        }
    }
    for s in sources {
        match by_source.get(s) {
            None => c.lost.push(s.clone()),
            Some(&n) if n > 1 => c.duplicated.push(s.clone()),
            _ => {}
        }
    }
    c.strangers = by_source.keys().filter(|s| !sources.contains(*s)).cloned().collect();
    let objects: std::collections::BTreeSet<String> =
        objects_under(moto, bucket, prefix).into_iter().map(|k| format!("s3://{bucket}/{k}")).collect();
    c.unrecorded_objects = objects.difference(&outputs).cloned().collect();
    c.missing_objects = outputs.iter().filter(|o| o.starts_with(&format!("s3://{bucket}/")) && !objects.contains(*o)).cloned().collect();
    c.open_uploads = open_upload_list(moto, bucket);
    let v = run_bounded(
        &mut sealpipe_command(&moto.url(), &["verify", "--manifest", manifest.to_str().unwrap()]),
        Duration::from_secs(60),
    );
    c.verify = (if v.timed_out { None } else { v.code() }, v.stderr());
    c
}

/// Panics with the whole audit unless the run converged.
pub fn assert_converged(moto: &Server, manifest: &Path, bucket: &str, prefix: &str, sources: &[String]) {
    let c = convergence(moto, manifest, bucket, prefix, sources);
    assert!(c.ok(), "not converged: {c:#?}");
}

/// Canonical local path, as records name local sources.
pub fn canonical_path(path: &Path) -> String {
    path.canonicalize().unwrap().display().to_string()
}

/// Every regular file under `root` (recursively), canonical, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                walk(&p, out);
            } else if meta.is_file() {
                out.push(canonical_path(&p));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

/// A folder of `sizes.len()` files of pseudo-random bytes named `f00.ts`, `f01.ts`, ...
/// (sizes over the part size go up in several parts); the folder and the tempdir guard.
pub fn media_files(sizes: &[usize]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    for (i, &len) in sizes.iter().enumerate() {
        std::fs::write(media.join(format!("f{i:02}.ts")), pattern(len, 100 + i as u64)).unwrap();
    }
    (dir, media)
}

/// Lines of a child's pipe, read on a thread as they come (a test waits on
/// a line the child writes, never on a sleep).
pub fn lines_of(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// SIGKILL (no handler runs: nothing is aborted, cleaned or given back) and reap.
pub fn sigkill(child: &mut Child) {
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status}");
}
