//! Helpers shared by the tests that run against a local moto server (S3 + KMS).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

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
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
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
        .env("AWS_DEFAULT_REGION", "us-east-1");
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
