//! End-to-end tests of the `sealpipe` binary.
//!
//! Every run uses a keyring inside its own temporary folder (`SEALPIPE_KEYRING`,
//! and `HOME` pointed there too), never the user's. Data is generated,
//! deterministic and small. Interoperability is checked against tools nobody
//! here wrote: OpenSSL's `openssl enc` for CTR and CBC, Python's
//! `cryptography` (`AESGCM`) for GCM. Both must be installed: a missing tool
//! fails the test with a message saying so, it does not skip it.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sealpipe");

/// Build an argument vector from strings and paths.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        vec![$(OsString::from(AsRef::<OsStr>::as_ref(&$a))),*]
    };
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (splitmix64).
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xd1b5_4a32_d192_ed03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap_or_else(|| panic!("expected a base64 string, got {v}"));
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("not standard base64: {s:?}: {e}"))
}

/// The result of one `sealpipe` run.
struct Run {
    args: Vec<OsString>,
    code: i32,
    stdout: String,
    stderr: String,
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\n  sealpipe {:?}\n  exit code {}\n  --- stdout ---\n{}\n  --- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// Assert exit code 0 and return self.
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success:{self:?}");
        self
    }

    /// The `--json` summary: the last line on stdout; every line before it is a JSON event.
    #[track_caller]
    fn json(&self) -> Value {
        let lines: Vec<Value> = self
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}:{self:?}")))
            .collect();
        let (summary, events) = lines.split_last().unwrap_or_else(|| panic!("no JSON on stdout:{self:?}"));
        assert!(events.iter().all(|e| e["event"].is_string() && e["event"] != "summary"), "events before the summary:{self:?}");
        summary.clone()
    }

    /// stderr lines that report an error.
    fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.starts_with("sealpipe: error: ")).collect()
    }

    /// Assert the exit code, and that stderr is exactly one
    /// `sealpipe: error: ...` line containing every needle.
    #[track_caller]
    fn fails_with(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code:{self:?}");
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected exactly one stderr line:{self:?}");
        assert!(lines[0].starts_with("sealpipe: error: "), "not an error line:{self:?}");
        for n in needles {
            assert!(lines[0].contains(n), "error line lacks {n:?}:{self:?}");
        }
        self
    }
}

/// Copy the folder `from` to `to`, as `cp -r` does.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A temporary workspace with its own keyring.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempfile::Builder::new().prefix("sealpipe-cli-test-").tempdir().expect("tempdir") }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn keyring(&self) -> PathBuf {
        self.p("keyring/keyring.json")
    }

    /// Write `bytes` to `rel` (parents created) and return its path.
    fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.p(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        path
    }

    fn sealpipe(&self, args: Vec<OsString>) -> Run {
        self.sealpipe_with(args, &[])
    }

    /// `sealpipe` with these extra environment variables.
    fn sealpipe_with(&self, args: Vec<OsString>, vars: &[(&str, &OsStr)]) -> Run {
        self.run(Command::new(BIN), args, vars)
    }

    /// `sealpipe`, killed after 30 s: a run that would hang (a FIFO opened,
    /// a link loop walked forever) fails the test instead of blocking it.
    #[track_caller]
    fn sealpipe_bounded(&self, args: Vec<OsString>) -> Run {
        let mut timeout = Command::new("timeout");
        timeout.args(["--signal=KILL", "30", BIN]);
        let run = self.run(timeout, args, &[]);
        assert_ne!(run.code, 137, "still running after 30 s (a hang):{run:?}");
        run
    }

    fn run(&self, mut command: Command, args: Vec<OsString>, vars: &[(&str, &OsStr)]) -> Run {
        let home = self.p("home");
        fs::create_dir_all(&home).unwrap();
        let out = command
            .args(&args)
            .current_dir(self.root())
            .env("SEALPIPE_KEYRING", self.keyring())
            .env("HOME", &home)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .envs(vars.iter().map(|(k, v)| (*k, *v)))
            .output()
            .expect("run the sealpipe binary");
        Run {
            args,
            code: out.status.code().expect("sealpipe was killed by a signal"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

const TOOLS_HINT: &str = "these tests need OpenSSL's `openssl` command and `python3` with the `cryptography` \
     package (pip install cryptography); CI installs them";

/// Run an external tool, failing (not skipping) if it is missing or fails.
#[track_caller]
fn tool(program: &str, args: &[OsString]) -> std::process::Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program}`: {e}; {TOOLS_HINT}"));
    assert!(
        out.status.success(),
        "`{program} {args:?}` failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    out
}

#[track_caller]
fn openssl(args: Vec<OsString>) {
    tool("openssl", &args);
}

/// Run a Python script (written into the workspace) with `args`.
#[track_caller]
fn python(env: &Env, name: &str, script: &str, args: Vec<OsString>) -> String {
    let path = env.write(&format!("py/{name}.py"), script.as_bytes());
    let out = Command::new("python3")
        .arg(&path)
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `python3`: {e}; {TOOLS_HINT}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'cryptography'") {
        panic!("python3 has no `cryptography` package; {TOOLS_HINT}");
    }
    assert!(out.status.success(), "python3 {name}.py {args:?} failed:\n{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// AES-GCM with Python's `cryptography`: `enc|dec KEYFILE IVHEX IN OUT`.
const GCM_PY: &str = r#"
import sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
op, key_file, iv_hex, src, dst = sys.argv[1:]
key = open(key_file, "rb").read()
iv = bytes.fromhex(iv_hex)
data = open(src, "rb").read()
gcm = AESGCM(key)
out = gcm.encrypt(iv, data, None) if op == "enc" else gcm.decrypt(iv, data, None)
open(dst, "wb").write(out)
"#;

/// Unwrap every record's data keys with the local keyring, following the
/// documented blob format (`"SPK1" ‖ fingerprint(8) ‖ nonce(12) ‖ AES-256-GCM
/// ciphertext ‖ tag`, AAD = sorted compact JSON of the encryption context).
/// `KEYRING MANIFEST OUT`: writes one JSON object {output: key_hex} to OUT.
const UNWRAP_PY: &str = r#"
import sys, json, base64
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
keyring, manifest, dst = sys.argv[1:]
kek = base64.b64decode(json.load(open(keyring))["kek"])
def unwrap(blob_b64, service):
    blob = base64.b64decode(blob_b64)
    assert blob[:4] == b"SPK1", blob[:4]
    aad = json.dumps({"service": service}, separators=(",", ":"), sort_keys=True).encode()
    return AESGCM(kek).decrypt(blob[12:24], blob[24:], aad)
keys = {}
for line in open(manifest):
    if not line.strip():
        continue
    r = json.loads(line)
    key = unwrap(r["encrypted_data_key"], r["encryption_context"]["service"])
    if "mediaconvert" in r:
        k = unwrap(r["mediaconvert"]["DecryptionSettings"]["EncryptedDecryptionKey"], "mediaconvert.amazonaws.com")
        assert k == key, "MediaConvert copy differs"
    if "elastictranscoder" in r:
        k = unwrap(r["elastictranscoder"]["Encryption"]["Key"], "elastictranscoder.amazonaws.com")
        assert k == key, "Elastic Transcoder copy differs"
    keys[r["output"]] = key.hex()
json.dump(keys, open(dst, "w"))
"#;

/// `FILE`: prints base64(MD5(file bytes)).
const MD5_PY: &str = r#"
import sys, hashlib, base64
print(base64.b64encode(hashlib.md5(open(sys.argv[1], "rb").read()).digest()).decode())
"#;

/// SHA-256 (hex) of a file, computed by coreutils `sha256sum`.
fn sha256sum(path: &Path) -> String {
    let out = tool("sha256sum", &[OsString::from(path)]);
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().expect("sha256sum output").to_string()
}

/// The records of a JSON Lines manifest.
fn records(manifest: &Path) -> Vec<Value> {
    fs::read_to_string(manifest)
        .unwrap_or_else(|e| panic!("read {}: {e}", manifest.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("manifest line is JSON"))
        .collect()
}

/// The record whose `output` ends with `name`.
fn record_for<'a>(records: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = records.iter().filter(|r| r["output"].as_str().unwrap().ends_with(name)).collect();
    assert_eq!(found.len(), 1, "expected one record for {name} in {records:#?}");
    found[0]
}

/// Every file under `dir` (recursively); empty if `dir` does not exist.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Assert no `.sealpipe-tmp-` file is left anywhere under `dir`.
#[track_caller]
fn assert_no_temp_files(dir: &Path) {
    let tmp: Vec<PathBuf> =
        files_under(dir).into_iter().filter(|p| p.to_string_lossy().contains(".sealpipe-tmp-")).collect();
    assert!(tmp.is_empty(), "temporary files left behind: {tmp:?}");
}

/// Assert nothing at all was written under `dir`.
#[track_caller]
fn assert_nothing_under(dir: &Path) {
    let files = files_under(dir);
    assert!(files.is_empty(), "a refused run left files behind: {files:?}");
}

/// A file's bytes, to check later that it did not change.
struct Snapshot(PathBuf, Vec<u8>);

impl Snapshot {
    fn of(path: &Path) -> Snapshot {
        Snapshot(path.to_path_buf(), fs::read(path).unwrap())
    }
    #[track_caller]
    fn unchanged(&self) {
        let now = fs::read(&self.0).unwrap_or_else(|e| panic!("{} vanished: {e}", self.0.display()));
        assert!(now == self.1, "{} was modified", self.0.display());
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Assert two byte strings are equal without dumping megabytes on failure.
#[track_caller]
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!("{what}: {} bytes vs {} expected, first difference at {first:?}", got.len(), want.len());
    }
}

/// Encrypt one file with a known key (written to a key file) and IV.
/// Returns (plaintext path, ciphertext path, the run).
fn seal_known(env: &Env, name: &str, plain: &[u8], key: &[u8], mode: &str, iv_hex: &str, extra: &[&str]) -> (PathBuf, PathBuf, Run) {
    let src = env.write(&format!("plain/{name}"), plain);
    let key_file = env.write(&format!("keys/{name}.key"), key);
    let out = env.p(&format!("enc-{name}"));
    let mut a = args!["encrypt", src, "--out", out, "--mode", mode, "--data-key-file", key_file, "--iv-hex", iv_hex];
    a.extend(extra.iter().map(OsString::from));
    let run = env.sealpipe(a).ok();
    let ct = out.join(name);
    assert!(ct.is_file(), "no ciphertext at {}:{run:?}", ct.display());
    (src, ct, run)
}

fn openssl_cipher(mode: &str, key_len: usize) -> String {
    format!("-aes-{}-{mode}", key_len * 8)
}

// ---------------------------------------------------------------------------
// Interoperability with OpenSSL and Python `cryptography`
// ---------------------------------------------------------------------------

mod interop {
    use super::*;

    /// OpenSSL decrypts `ct` (CTR or CBC) with `key`/`iv_hex`; returns the plaintext.
    fn openssl_decrypt(env: &Env, mode: &str, key: &[u8], iv_hex: &str, ct: &Path) -> Vec<u8> {
        let out = env.p(&format!("openssl-{}.plain", ct.file_name().unwrap().to_string_lossy()));
        openssl(args!["enc", "-d", openssl_cipher(mode, key.len()), "-K", hex::encode(key), "-iv", iv_hex, "-in", ct, "-out", out]);
        fs::read(out).unwrap()
    }

    #[test]
    fn openssl_decrypts_our_ctr_across_counter_carries() {
        let env = Env::new();
        let key = data(1, 32);
        // (IV, size, chunk size): the 64-bit carry (the required case, several
        // hundred KB), a 32-bit carry, a carry in the middle of the 4th
        // 4 KiB parallel chunk, and the full 128-bit wrap.
        let cases = [
            ("0011223344556677fffffffffffffff0", 600_007usize, None),
            ("00112233445566778899aabbfffffff0", 70_001, None),
            ("0011223344556677fffffffffffffc18", 100_003, Some("4096")),
            ("fffffffffffffffffffffffffffffff0", 20_000, Some("4096")),
        ];
        for (i, (iv, len, chunk)) in cases.into_iter().enumerate() {
            let plain = data(100 + i as u64, len);
            let extra: Vec<&str> = chunk.map(|c| vec!["--chunk-size", c]).unwrap_or_default();
            let (_, ct, _) = seal_known(&env, &format!("ctr{i}.bin"), &plain, &key, "ctr", iv, &extra);
            let cipher = fs::read(&ct).unwrap();
            assert_eq!(cipher.len(), plain.len(), "CTR output has the input's length");
            assert!(cipher[..64] != plain[..64], "output is not encrypted");
            assert_same(&openssl_decrypt(&env, "ctr", &key, iv, &ct), &plain, &format!("openssl CTR, IV {iv}"));
        }
    }

    #[test]
    fn openssl_decrypts_our_ctr_with_aes128_and_aes192_keys() {
        let env = Env::new();
        let iv = "0011223344556677fffffffffffffff0";
        for key_len in [16usize, 24] {
            let key = data(key_len as u64, key_len);
            let plain = data(7, 300_001);
            let (_, ct, _) = seal_known(&env, &format!("k{key_len}.bin"), &plain, &key, "ctr", iv, &[]);
            assert_same(&openssl_decrypt(&env, "ctr", &key, iv, &ct), &plain, &format!("AES-{} CTR", key_len * 8));
        }
    }

    #[test]
    fn openssl_decrypts_our_ctr_with_12_byte_mediaconvert_iv() {
        // Our choice for a 12-byte CTR IV: IV ‖ 00000000, what OpenSSL does with a short -iv.
        let env = Env::new();
        let key = data(2, 32);
        let iv = "cafebabefacedbaddecaf888";
        let plain = data(8, 100_000);
        let (_, ct, run) = seal_known(&env, "mc.bin", &plain, &key, "ctr", iv, &["--target", "mediaconvert"]);
        let recs = records(&env.p("enc-mc.bin/manifest.jsonl"));
        assert_eq!(unb64(&recs[0]["iv"]), hex::decode(iv).unwrap(), "{run:?}");
        assert_same(&openssl_decrypt(&env, "ctr", &key, iv, &ct), &plain, "12-byte IV CTR");
        // Only on explicit request, and never silently (FORMAT.md: MediaConvert's counter start is undocumented).
        assert!(run.stderr.contains("warning: --iv-hex: a 12-byte CTR IV"), "{run:?}");
    }

    #[test]
    fn mediaconvert_ctr_ivs_are_16_bytes_by_default() {
        let env = Env::new();
        let src = env.write("plain/a.bin", &data(3, 5000));
        let out = env.p("enc");
        let run = env.sealpipe(args!["encrypt", src, "--out", out, "--target", "mediaconvert"]).ok();
        let recs = records(&out.join("manifest.jsonl"));
        assert_eq!(unb64(&recs[0]["iv"]).len(), 16, "{run:?}");
        assert_eq!(unb64(&recs[0]["mediaconvert"]["DecryptionSettings"]["InitializationVector"]).len(), 16);
        assert!(!run.stderr.contains("warning"), "{run:?}");
    }

    #[test]
    fn openssl_decrypts_our_cbc_with_pkcs7_padding() {
        let env = Env::new();
        let iv = "000102030405060708090a0b0c0d0e0f";
        // Sizes: empty (one whole padding block), one block, a multiple of
        // 16 (a whole padding block is added), and an odd size.
        let cases = [(32usize, 0usize), (32, 16), (32, 100_000), (32, 300_007), (24, 5_003), (16, 70_000)];
        for (i, (key_len, len)) in cases.into_iter().enumerate() {
            let key = data(50 + i as u64, key_len);
            let plain = data(60 + i as u64, len);
            let (_, ct, _) = seal_known(&env, &format!("cbc{i}.bin"), &plain, &key, "cbc", iv, &["--chunk-size", "4096"]);
            let cipher_len = fs::metadata(&ct).unwrap().len() as usize;
            assert_eq!(cipher_len, (len / 16 + 1) * 16, "CBC output = input + 1..16 bytes of padding ({len} bytes)");
            assert_same(&openssl_decrypt(&env, "cbc", &key, iv, &ct), &plain, &format!("openssl CBC, {key_len}-byte key, {len} bytes"));
        }
    }

    #[test]
    fn we_decrypt_openssl_ctr_and_cbc_output() {
        let env = Env::new();
        let big = 3 * 1024 * 1024 + 5; // above the 1 MiB mmap threshold
        let cases = [
            ("ctr", 32usize, "0011223344556677fffffffffffffff0", big),
            ("cbc", 32, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", big),
            ("ctr", 16, "00112233445566778899aabbfffffff0", 50_001),
            ("ctr", 32, "cafebabefacedbaddecaf888", 40_000), // 12-byte IV, zero-padded by OpenSSL
            ("cbc", 24, "00112233445566778899aabbccddeeff", 4_096),
            ("cbc", 16, "00112233445566778899aabbccddeeff", 0),
        ];
        for (i, (mode, key_len, iv, len)) in cases.into_iter().enumerate() {
            let key = data(200 + i as u64, key_len);
            let plain = data(300 + i as u64, len);
            let src = env.write(&format!("os/{i}.plain"), &plain);
            let ct = env.p(&format!("os/{i}.enc"));
            openssl(args!["enc", "-e", openssl_cipher(mode, key_len), "-K", hex::encode(&key), "-iv", iv, "-in", src, "-out", ct]);
            let out = env.p(&format!("os/{i}.ours"));
            // Half the cases pass the key as hex, half as a key file.
            let key_args = if i % 2 == 0 {
                args!["--key-hex", hex::encode(&key)]
            } else {
                args!["--data-key-file", env.write(&format!("os/{i}.key"), &key)]
            };
            let mut a = args!["decrypt", ct, "--mode", mode, "--iv-hex", iv, "--out", out];
            a.extend(key_args);
            env.sealpipe(a).ok();
            assert_same(&fs::read(&out).unwrap(), &plain, &format!("our {mode} decrypt of openssl output, {len} bytes"));
        }
    }

    #[test]
    fn python_cryptography_decrypts_our_gcm_with_12_and_16_byte_ivs() {
        let env = Env::new();
        let cases = [
            ("cafebabefacedbaddecaf888", &["--target", "mediaconvert"][..], 70_001usize),
            ("cafebabefacedbaddecaf888", &["--target", "mediaconvert"][..], 0),
            ("000102030405060708090a0b0c0d0e0f", &[][..], 70_001),
            ("000102030405060708090a0b0c0d0e0f", &[][..], 15),
        ];
        for (i, (iv, target, len)) in cases.into_iter().enumerate() {
            let key = data(400 + i as u64, 32);
            let plain = data(500 + i as u64, len);
            // Small chunks: the tag is folded from many parallel segments.
            let mut extra = vec!["--chunk-size", "4096"];
            extra.extend_from_slice(target);
            let name = format!("gcm{i}.bin");
            let (_, ct, _) = seal_known(&env, &name, &plain, &key, "gcm", iv, &extra);
            assert_eq!(fs::metadata(&ct).unwrap().len() as usize, len + 16, "GCM output = ciphertext ‖ 16-byte tag");
            let out = env.p(&format!("py-{name}.plain"));
            python(&env, "gcm", GCM_PY, args!["dec", env.p(&format!("keys/{name}.key")), iv, ct, out]);
            assert_same(&fs::read(&out).unwrap(), &plain, &format!("AESGCM.decrypt of our GCM, IV {iv}, {len} bytes"));
        }
    }

    #[test]
    fn we_decrypt_python_cryptography_gcm_with_12_and_16_byte_ivs() {
        let env = Env::new();
        let cases = [
            ("cafebabefacedbaddecaf888", 50_003usize),
            ("000102030405060708090a0b0c0d0e0f", 50_003),
            ("cafebabefacedbaddecaf888", 1_100_003), // mmap path
            ("ffffffffffffffffffffffffffffffff", 33),
        ];
        for (i, (iv, len)) in cases.into_iter().enumerate() {
            let key = data(600 + i as u64, 32);
            let key_file = env.write(&format!("py/{i}.key"), &key);
            let plain = data(700 + i as u64, len);
            let src = env.write(&format!("py/{i}.plain"), &plain);
            let ct = env.p(&format!("py/{i}.gcm"));
            python(&env, "gcm", GCM_PY, args!["enc", key_file, iv, src, ct]);
            let out = env.p(&format!("py/{i}.ours"));
            env.sealpipe(args!["decrypt", ct, "--mode", "gcm", "--key-hex", hex::encode(&key), "--iv-hex", iv, "--out", out, "--chunk-size", "4096"])
                .ok();
            assert_same(&fs::read(&out).unwrap(), &plain, &format!("our GCM decrypt of AESGCM.encrypt, IV {iv}, {len} bytes"));
        }
    }

    #[test]
    fn manifest_round_trip_with_default_settings() {
        let env = Env::new();
        let files = [("a.mp4", 150_001usize), ("sub/b.ts", 40_000), ("sub/deeper/c.bin", 1)];
        for (i, (rel, len)) in files.iter().enumerate() {
            env.write(&format!("media/{rel}"), &data(800 + i as u64, *len));
        }
        let enc = env.p("enc");
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", enc, "--json"]).ok();
        assert_eq!(run.json()["files"], 3, "{run:?}");
        let manifest = enc.join("manifest.jsonl");
        let recs = records(&manifest);
        assert_eq!(recs.len(), 3, "one record per file");

        let mut ivs = Vec::new();
        for (rel, len) in files {
            let r = record_for(&recs, rel);
            let source = env.p(&format!("media/{rel}"));
            let output = enc.join(rel);
            assert_eq!(fs::canonicalize(r["source"].as_str().unwrap()).unwrap(), fs::canonicalize(&source).unwrap());
            assert_eq!(fs::canonicalize(r["output"].as_str().unwrap()).unwrap(), fs::canonicalize(&output).unwrap());
            assert_eq!(r["mode"], "ctr");
            assert_eq!(r["target"], "any");
            assert_eq!(r["key_bits"], 256);
            assert_eq!(r["key_source"], "generated");
            assert_eq!(r["plaintext_size"], len);
            assert_eq!(r["ciphertext_size"], len, "CTR keeps the length");
            assert_eq!(fs::metadata(&output).unwrap().len() as usize, len);
            assert_eq!(r["plaintext_sha256"].as_str().unwrap(), sha256sum(&source), "plaintext_sha256 of {rel}");
            let iv = unb64(&r["iv"]);
            assert_eq!(iv.len(), 16, "default target: 16-byte IV");
            assert_eq!(unb64(&r["key_md5"]).len(), 16);

            let mc = &r["mediaconvert"];
            assert_eq!(mc["FileInput"], r["output"], "FileInput defaults to the local output path");
            let ds = &mc["DecryptionSettings"];
            assert_eq!(ds["DecryptionMode"], "AES_CTR");
            assert_eq!(ds["EncryptedDecryptionKey"], r["encrypted_data_key"], "MediaConvert is the primary service");
            assert!(unb64(&ds["EncryptedDecryptionKey"]).len() > 32);
            assert_eq!(unb64(&ds["InitializationVector"]), iv);
            assert!(ds.get("KmsKeyRegion").is_none(), "no KmsKeyRegion for the local keyring (the model wants 9-19 characters): {ds}");
            assert_eq!(r["encryption_context"]["service"], "mediaconvert.amazonaws.com");

            let et = &r["elastictranscoder"]["Encryption"];
            assert!(et.is_object(), "default target has Elastic Transcoder settings: {r:#}");
            assert_eq!(et["Mode"], "aes-ctr");
            assert!(unb64(&et["Key"]).len() > 32);
            assert_ne!(et["Key"], ds["EncryptedDecryptionKey"], "each service gets its own wrapped copy");
            assert_eq!(et["KeyMd5"], r["key_md5"]);
            assert_eq!(unb64(&et["InitializationVector"]), iv);
            ivs.push(iv);
        }
        ivs.sort();
        ivs.dedup();
        assert_eq!(ivs.len(), 3, "every file has its own IV");

        let verify = env.sealpipe(args!["verify", "--manifest", manifest, "--json"]).ok();
        let v = verify.json();
        assert_eq!(v["files"], 3, "{verify:?}");
        assert_eq!(v["failures"], Value::Array(vec![]));

        let out = env.p("back/b.ts");
        env.sealpipe(args!["decrypt", enc.join("sub/b.ts"), "--manifest", manifest, "--out", out]).ok();
        assert_same(&fs::read(&out).unwrap(), &fs::read(env.p("media/sub/b.ts")).unwrap(), "decrypt --manifest");
    }

    /// Issue 19: an error is typed where it is made. `verify` with another
    /// keyring fails each file at the key stage (not the plan), not
    /// retryable, and its line names the file once.
    #[test]
    fn verify_with_another_keyring_fails_each_file_at_the_key_stage() {
        let env = Env::new();
        env.write("media/a.mp4", &data(901, 70_000));
        env.write("media/b.ts", &data(902, 5));
        let enc = env.p("enc");
        env.sealpipe(args!["encrypt", env.p("media"), "--out", enc, "--json"]).ok();
        let manifest = enc.join("manifest.jsonl");
        // Another keyring, made by a run of its own.
        let other = env.p("other/keyring.json");
        env.sealpipe_with(args!["encrypt", env.p("media/b.ts"), "--out", env.p("enc2")], &[("SEALPIPE_KEYRING", other.as_os_str())]).ok();
        let verify = env.sealpipe_with(args!["verify", "--manifest", manifest, "--json"], &[("SEALPIPE_KEYRING", other.as_os_str())]);
        assert_eq!(verify.code, 1, "{verify:?}");
        let failures = verify.json()["failures"].as_array().cloned().unwrap_or_default();
        assert_eq!(failures.len(), 2, "{verify:?}");
        for f in &failures {
            assert_eq!(f["stage"], "key", "{f}");
            assert_eq!(f["retry"], "no", "{f}");
            let path = f["path"].as_str().unwrap();
            let message = f["error"].as_str().unwrap();
            assert_eq!(message.matches(path).count(), 1, "the path once: {message}");
            assert!(message.contains("was wrapped by local"), "{message}");
            // The line on stderr is that message, once.
            assert_eq!(verify.stderr.lines().filter(|l| l.contains(path)).collect::<Vec<_>>(), [format!("sealpipe: error: {message}")], "{verify:?}");
        }
    }

    #[test]
    fn manifest_settings_follow_target_and_mode() {
        let env = Env::new();
        // (target, mode, IV bytes, MediaConvert mode, Elastic Transcoder mode, primary context)
        let cases = [
            ("mediaconvert", "gcm", 12, Some("AES_GCM"), None, "mediaconvert"),
            ("mediaconvert", "ctr", 16, Some("AES_CTR"), None, "mediaconvert"), // 16 for every target (FORMAT.md)
            ("mediaconvert", "cbc", 16, Some("AES_CBC"), None, "mediaconvert"),
            ("any", "gcm", 16, Some("AES_GCM"), Some("aes-gcm"), "mediaconvert"),
            ("any", "cbc", 16, Some("AES_CBC"), Some("aes-cbc-pkcs7"), "mediaconvert"),
            ("elastictranscoder", "ctr", 16, None, Some("aes-ctr"), "elastictranscoder"),
        ];
        for (i, (target, mode, iv_len, mc_mode, et_mode, primary)) in cases.into_iter().enumerate() {
            let name = format!("{target}-{mode}.bin");
            let plain = data(900 + i as u64, 5_000);
            let src = env.write(&format!("in/{i}/{name}"), &plain);
            let out = env.p(&format!("out{i}"));
            env.sealpipe(args![
                "encrypt", src, "--out", out, "--target", target, "--mode", mode,
                "--file-input-prefix", "s3://media-in/archive/"
            ])
            .ok();
            let manifest = out.join("manifest.jsonl");
            let recs = records(&manifest);
            assert_eq!(recs.len(), 1);
            let r = &recs[0];
            let ctx = format!("{target}/{mode}: {r:#}");
            assert_eq!(r["target"], target, "{ctx}");
            assert_eq!(r["mode"], mode, "{ctx}");
            let iv = unb64(&r["iv"]);
            assert_eq!(iv.len(), iv_len, "{ctx}");
            assert_eq!(r["encryption_context"]["service"], format!("{primary}.amazonaws.com"), "{ctx}");
            let want_len = match mode {
                "ctr" => 5_000,
                "cbc" => 5_008,
                _ => 5_016,
            };
            assert_eq!(r["ciphertext_size"], want_len, "{ctx}");
            assert_eq!(fs::metadata(out.join(&name)).unwrap().len(), want_len, "{ctx}");
            match mc_mode {
                Some(m) => {
                    let mc = &r["mediaconvert"];
                    assert_eq!(mc["FileInput"], format!("s3://media-in/archive/{name}"), "{ctx}");
                    let ds = &mc["DecryptionSettings"];
                    assert_eq!(ds["DecryptionMode"], m, "{ctx}");
                    assert_eq!(unb64(&ds["InitializationVector"]), iv, "{ctx}");
                    assert!(ds.get("KmsKeyRegion").is_none(), "no KmsKeyRegion for the local keyring: {ctx}");
                    assert!(!unb64(&ds["EncryptedDecryptionKey"]).is_empty(), "{ctx}");
                }
                None => assert!(r.get("mediaconvert").is_none(), "no MediaConvert settings expected: {ctx}"),
            }
            match et_mode {
                Some(m) => {
                    let et = &r["elastictranscoder"]["Encryption"];
                    assert_eq!(et["Mode"], m, "{ctx}");
                    assert_eq!(et["KeyMd5"], r["key_md5"], "{ctx}");
                    assert_eq!(unb64(&et["InitializationVector"]).len(), 16, "{ctx}");
                    assert!(!unb64(&et["Key"]).is_empty(), "{ctx}");
                }
                None => assert!(r.get("elastictranscoder").is_none(), "no Elastic Transcoder settings expected: {ctx}"),
            }
            env.sealpipe(args!["verify", "--manifest", manifest]).ok();
            let back = env.p(&format!("back{i}"));
            env.sealpipe(args!["decrypt", out.join(&name), "--manifest", manifest, "--out", back]).ok();
            assert_same(&fs::read(&back).unwrap(), &plain, &ctx);
        }
    }

    #[test]
    fn key_md5_of_supplied_key_matches_python_md5() {
        let env = Env::new();
        let key_file = env.write("key.bin", &data(77, 32));
        env.write("media/one.bin", &data(78, 3_000));
        env.write("media/two.bin", &data(79, 4_000));
        let out = env.p("enc");
        env.sealpipe(args!["encrypt", env.p("media"), "--out", out, "--data-key-file", key_file]).ok();
        let want = python(&env, "md5", MD5_PY, args![key_file]).trim().to_string();
        assert_eq!(want.len(), 24, "base64 of 16 bytes");
        let recs = records(&out.join("manifest.jsonl"));
        assert_eq!(recs.len(), 2);
        for r in &recs {
            assert_eq!(r["key_source"], "supplied");
            assert_eq!(r["key_md5"], want.as_str(), "key_md5 = base64(md5(key))");
            assert_eq!(r["elastictranscoder"]["Encryption"]["KeyMd5"], want.as_str());
        }
        assert_ne!(recs[0]["iv"], recs[1]["iv"], "one key, two files: the IVs must differ");
    }
}

// ---------------------------------------------------------------------------
// Bad input: exit code, one error line, nothing left behind
// ---------------------------------------------------------------------------

mod bad_input {
    use super::*;

    const KEY_HEX: &str = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
    const IV16: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

    #[test]
    fn missing_input() {
        let env = Env::new();
        let out = env.p("out");
        let run = env.sealpipe(args!["encrypt", env.p("nope.mp4"), "--out", out, "--json"]);
        run.fails_with(1, &["nope.mp4", "cannot open: no such file or directory"]);
        let failures = run.json()["failures"].clone();
        assert_eq!(failures.as_array().unwrap().len(), 1, "{run:?}");
        assert!(failures[0]["path"].as_str().unwrap().ends_with("nope.mp4"));
        assert_nothing_under(&out);

        let plain = env.p("plain.out");
        let run = env.sealpipe(args!["decrypt", env.p("nope.enc"), "--mode", "ctr", "--key-hex", KEY_HEX, "--iv-hex", IV16, "--out", plain]);
        run.fails_with(1, &["nope.enc", "no such file or directory"]);
        assert!(!plain.exists());
        assert_no_temp_files(env.root());
    }

    #[test]
    fn unreadable_input() {
        use std::os::unix::fs::PermissionsExt;
        let env = Env::new();
        let src = env.write("in/secret.mov", &data(1, 10_000));
        fs::set_permissions(&src, fs::Permissions::from_mode(0o000)).unwrap();
        let out = env.p("out");
        let run = env.sealpipe(args!["encrypt", src, "--out", out, "--json"]);
        if is_root() {
            // chmod 000 does not stop root from reading: nothing to refuse.
            assert_eq!(run.code, 0, "root reads a mode-000 file:{run:?}");
        } else {
            run.fails_with(1, &["secret.mov", "cannot open: permission denied"]);
            assert!(!out.join("secret.mov").exists());
            assert_no_temp_files(&out);
        }
        fs::set_permissions(&src, fs::Permissions::from_mode(0o600)).unwrap();
        assert_same(&fs::read(&src).unwrap(), &data(1, 10_000), "source unchanged");
    }

    #[test]
    fn output_folder_inside_the_input_tree() {
        let env = Env::new();
        env.write("media/a.bin", &data(2, 1_000));
        env.write("media/sub/b.bin", &data(3, 1_000));
        let before = files_under(&env.p("media"));
        for out in [env.p("media/enc"), env.p("media/sub"), env.p("media")] {
            let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", out]);
            run.fails_with(2, &["media", "inside the input tree"]);
            assert_eq!(files_under(&env.p("media")), before, "the input tree was modified:{run:?}");
        }
        assert!(!env.p("media/enc").exists(), "the refused --out folder was created inside the input tree");
        assert_same(&fs::read(env.p("media/a.bin")).unwrap(), &data(2, 1_000), "source unchanged");
    }

    /// Issue 24, finding 1: a source inside the output folder (the folder
    /// itself, through `..` or a symlink, or a source file in it) is refused
    /// before any work, `--force` included; no source is written.
    #[test]
    fn finding_1_source_inside_the_output_folder_is_refused() {
        let env = Env::new();
        env.write("media/a.bin", &data(2, 1_000));
        env.write("media/sub/b.bin", &data(3, 1_000));
        std::os::unix::fs::symlink(env.p("media"), env.p("link")).unwrap();
        let before = files_under(&env.p("media"));
        let outs = [env.p("media"), env.p("media/sub/.."), env.p("link"), env.p(".")];
        for (source, out) in [env.p("media/sub"), env.p("media/a.bin")].iter().flat_map(|s| outs.iter().map(move |o| (s.clone(), o.clone()))) {
            for force in [false, true] {
                let run = if force {
                    env.sealpipe(args!["encrypt", &source, "--out", &out, "--force"])
                } else {
                    env.sealpipe(args!["encrypt", &source, "--out", &out])
                };
                run.fails_with(2, &["the source lies inside the output folder"]);
                assert_eq!(files_under(&env.p("media")), before, "a source folder was modified:{run:?}");
            }
        }
        assert_same(&fs::read(env.p("media/a.bin")).unwrap(), &data(2, 1_000), "source unchanged");
        assert_same(&fs::read(env.p("media/sub/b.bin")).unwrap(), &data(3, 1_000), "source unchanged");
    }

    /// Issue 24, finding 4: a manifest's outputs are found relative to it. A
    /// copied output folder verifies as itself: one corrupted file there fails
    /// by its new path, though the original is intact; its files decrypt
    /// from the moved manifest; the original folder still verifies; a merged
    /// manifest elsewhere still finds them.
    #[test]
    fn finding_4_outputs_are_found_beside_the_manifest() {
        let env = Env::new();
        for (i, name) in ["a.mp4", "clip.mp4", "sub/c.ts"].iter().enumerate() {
            env.write(&format!("media/{name}"), &data(i as u64 + 1, 3_000));
        }
        let enc = env.p("enc");
        env.sealpipe(args!["encrypt", env.p("media"), "--out", &enc]).ok();
        let moved = env.p("enc-moved");
        copy_tree(&enc, &moved);
        let mut bytes = fs::read(moved.join("clip.mp4")).unwrap();
        bytes[100] ^= 1;
        fs::write(moved.join("clip.mp4"), bytes).unwrap();
        let run = env.sealpipe(args!["verify", "--manifest", moved.join("manifest.jsonl")]);
        assert_eq!(run.code, 1, "the corrupted copy fails:{run:?}");
        let moved_clip = moved.join("clip.mp4").display().to_string();
        assert!(run.stderr.contains(&moved_clip), "names the file it read:{run:?}");
        assert!(!run.stderr.contains(&format!("{}/", enc.display())), "never reads the original:{run:?}");
        env.sealpipe(args!["verify", "--manifest", enc.join("manifest.jsonl")]).ok();
        // The moved folder's intact files decrypt from its manifest; the corrupted one does not.
        let plain = env.p("a.out");
        env.sealpipe(args!["decrypt", moved.join("a.mp4"), "--manifest", moved.join("manifest.jsonl"), "--out", &plain]).ok();
        assert_same(&fs::read(&plain).unwrap(), &data(1, 3_000), "decrypted from the moved folder");
        let run = env.sealpipe(args!["decrypt", &moved_clip, "--manifest", moved.join("manifest.jsonl"), "--out", env.p("clip.out")]);
        assert_ne!(run.code, 0, "a corrupted file never decrypts:{run:?}");
        assert!(!run.stderr.contains("no record"), "its record is found:{run:?}");
        // An output missing where its record says fails by name, never found elsewhere.
        fs::remove_file(moved.join("sub/c.ts")).unwrap();
        let run = env.sealpipe(args!["verify", "--manifest", moved.join("manifest.jsonl")]);
        assert!(run.stderr.contains(&moved.join("sub/c.ts").display().to_string()), "{run:?}");
        // Merged into a manifest in another folder: the outputs are said from there.
        let merged = env.p("elsewhere/all.jsonl");
        fs::create_dir_all(env.p("elsewhere")).unwrap();
        env.sealpipe(args!["merge-manifests", enc.join("manifest.jsonl"), "--out", &merged]).ok();
        env.sealpipe(args!["verify", "--manifest", &merged]).ok();
    }

    /// Issue 24, finding 5: a re-run with another mode, target, key size or
    /// digest is not "already done": the file is refused naming what changed
    /// and its output is left as recorded; `--force` re-encrypts it with the
    /// new settings; the same settings again skip it.
    #[test]
    fn finding_5_a_changed_setting_is_not_done() {
        let env = Env::new();
        let src = env.write("clip.mp4", &data(7, 5_000));
        let out = env.p("enc");
        let manifest = out.join("manifest.jsonl");
        env.sealpipe(args!["encrypt", &src, "--out", &out]).ok();
        let ctr = fs::read(out.join("clip.mp4")).unwrap();
        for (flags, needle) in [
            (args!["--mode", "gcm", "--target", "mediaconvert"], "mode ctr -> gcm, target any -> mediaconvert"),
            (args!["--key-bits", "128"], "key size 256 -> 128"),
            (args!["--digest", "blake3"], "digest sha256 -> blake3"),
        ] {
            let mut a = args!["encrypt", &src, "--out", &out];
            a.extend(flags.clone());
            let run = env.sealpipe(a);
            assert_eq!(run.code, 1, "refused, not done:{run:?}");
            assert!(run.stderr.contains(needle) && run.stderr.contains("clip.mp4") && run.stderr.contains("--force"), "names the file and what changed:{run:?}");
            assert!(!run.stderr.contains("already done"), "{run:?}");
            assert_eq!(fs::read(out.join("clip.mp4")).unwrap(), ctr, "the output stays as recorded");
            assert_eq!(records(&manifest).len(), 1, "nothing recorded");
        }
        let run = env.sealpipe(args!["encrypt", &src, "--out", &out, "--mode", "gcm", "--target", "mediaconvert", "--force"]).ok();
        assert!(run.stderr.contains("with other settings (mode ctr -> gcm"), "says why it redoes it:{run:?}");
        let last = records(&manifest).pop().unwrap();
        assert_eq!((last["mode"].as_str(), last["target"].as_str()), (Some("gcm"), Some("mediaconvert")));
        assert_eq!(fs::metadata(out.join("clip.mp4")).unwrap().len(), 5_000 + 16, "now GCM (tag appended)");
        let run = env.sealpipe(args!["encrypt", &src, "--out", &out, "--mode", "gcm", "--target", "mediaconvert"]).ok();
        assert!(run.stderr.contains("already done"), "the same settings again: done:{run:?}");
        env.sealpipe(args!["verify", "--manifest", &manifest]).ok();
    }

    #[test]
    fn data_key_file_of_the_wrong_size() {
        let env = Env::new();
        let src = env.write("in/a.bin", &data(4, 1_000));
        let key = env.write("k20.bin", &[7u8; 20]);
        let out = env.p("out");
        let run = env.sealpipe(args!["encrypt", src, "--out", out, "--data-key-file", key]);
        run.fails_with(2, &["k20.bin", "16, 24 or 32", "holds 20"]);
        assert_nothing_under(&out);

        let ct = env.write("x.enc", &data(5, 64));
        let plain = env.p("x.plain");
        let run = env.sealpipe(args!["decrypt", ct, "--mode", "ctr", "--data-key-file", key, "--iv-hex", IV16, "--out", plain]);
        run.fails_with(2, &["k20.bin", "holds 20"]);
        let run = env.sealpipe(args!["decrypt", ct, "--mode", "ctr", "--key-hex", "00".repeat(20), "--iv-hex", IV16, "--out", plain]);
        run.fails_with(2, &["16, 24 or 32 bytes", "got 20 bytes"]);
        assert!(!plain.exists());
        assert_no_temp_files(env.root());
    }

    #[test]
    fn iv_of_the_wrong_length_for_mode_or_target() {
        let env = Env::new();
        let src = env.write("in/a.bin", &data(6, 1_000));
        let snap = Snapshot::of(&src);
        let iv12 = "cafebabefacedbaddecaf888";
        let out = env.p("out");
        let cases: [(&[&str], &[&str]); 4] = [
            (&["--mode", "cbc", "--iv-hex", iv12], &["IV of 12 bytes", "cbc", "16 bytes"]),
            (&["--mode", "ctr", "--target", "elastictranscoder", "--iv-hex", iv12], &["IV of 12 bytes", "elastictranscoder", "16 bytes"]),
            (&["--mode", "gcm", "--target", "elastictranscoder", "--iv-hex", iv12], &["IV of 12 bytes", "gcm", "16 bytes"]),
            (&["--mode", "gcm", "--iv-hex", "0011223344556677"], &["IV of 8 bytes", "12 or 16 bytes"]),
        ];
        for (extra, needles) in cases {
            let mut a = args!["encrypt", src, "--out", out];
            a.extend(extra.iter().map(OsString::from));
            env.sealpipe(a).fails_with(2, needles);
            assert_nothing_under(&out);
        }
        snap.unchanged();

        let ct = env.write("x.enc", &data(7, 64));
        let plain = env.p("x.plain");
        let run = env.sealpipe(args!["decrypt", ct, "--mode", "cbc", "--key-hex", KEY_HEX, "--iv-hex", iv12, "--out", plain]);
        run.fails_with(2, &["IV of 12 bytes", "cbc", "16 bytes"]);
        assert!(!plain.exists());
        assert_no_temp_files(env.root());
    }

    #[test]
    fn malformed_hex() {
        let env = Env::new();
        let src = env.write("in/a.bin", &data(8, 1_000));
        let out = env.p("out");
        let run = env.sealpipe(args!["encrypt", src, "--out", out, "--iv-hex", "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeXY"]);
        run.fails_with(2, &["malformed hex in --iv-hex"]);
        assert_nothing_under(&out);

        let ct = env.write("x.enc", &data(9, 64));
        let plain = env.p("x.plain");
        let bad_key = format!("{}zz", &KEY_HEX[..62]);
        let run = env.sealpipe(args!["decrypt", ct, "--mode", "ctr", "--key-hex", bad_key, "--iv-hex", IV16, "--out", plain]);
        run.fails_with(2, &["malformed hex in --key-hex"]);
        let run = env.sealpipe(args!["decrypt", ct, "--mode", "ctr", "--key-hex", KEY_HEX, "--iv-hex", &IV16[..31], "--out", plain]);
        run.fails_with(2, &["malformed hex in --iv-hex"]);
        assert!(!plain.exists());
        assert_no_temp_files(env.root());
    }

    #[test]
    fn fixed_iv_with_one_key_over_several_files_is_refused() {
        let env = Env::new();
        let a = env.write("media/a.bin", &data(10, 1_000));
        env.write("media/b.bin", &data(11, 1_000));
        let key = env.write("key.bin", &data(12, 32));
        let out = env.p("out");
        for mode in ["ctr", "gcm", "cbc"] {
            let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", out, "--mode", mode, "--data-key-file", key, "--iv-hex", IV16]);
            run.fails_with(2, &["--iv-hex", "2 files", "same (key, IV)"]);
            assert_nothing_under(&out);
        }
        // Two single files named on the command line count too.
        let run = env.sealpipe(args!["encrypt", a, env.p("media/b.bin"), "--out", out, "--data-key-file", key, "--iv-hex", IV16]);
        run.fails_with(2, &["same (key, IV)"]);
        assert_nothing_under(&out);
        Snapshot(a, data(10, 1_000)).unchanged();
    }

    /// A sparse file of 2^36 bytes: 32 bytes over the GCM limit of 2^36 - 32.
    fn sparse_over_gcm_limit(env: &Env, rel: &str) -> PathBuf {
        let path = env.write(rel, b"");
        fs::File::options().write(true).open(&path).unwrap().set_len(1 << 36).unwrap();
        path
    }

    #[test]
    fn gcm_input_over_the_limit_is_refused_before_any_work() {
        let env = Env::new();
        let huge = sparse_over_gcm_limit(&env, "in/huge.mxf");
        let out = env.p("out");
        let started = std::time::Instant::now();
        let run = env.sealpipe(args!["encrypt", huge, "--out", out, "--mode", "gcm", "--json"]);
        let took = started.elapsed();
        run.fails_with(1, &["huge.mxf", "68719476736 bytes", "AES-GCM limit of 2^36 - 32 bytes"]);
        assert!(took.as_secs() < 10, "refusal took {took:?}: work was started");
        assert_eq!(run.json()["files"], 0);
        assert!(!out.join("huge.mxf").exists());
        assert_nothing_under(&out);
        assert_eq!(fs::metadata(&huge).unwrap().len(), 1 << 36);
    }

    #[test]
    fn one_bad_file_among_good_ones() {
        let env = Env::new();
        sparse_over_gcm_limit(&env, "media/huge.mxf");
        let a = env.write("media/a.mp4", &data(13, 20_000));
        let b = env.write("media/z/b.mp4", &data(14, 30_001));
        let out = env.p("out");
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", out, "--mode", "gcm"]);
        assert_eq!(run.code, 1, "{run:?}");
        let errors = run.error_lines();
        assert_eq!(errors.len(), 1, "one error line for the one bad file:{run:?}");
        assert!(errors[0].contains("huge.mxf") && errors[0].contains("AES-GCM limit"), "{run:?}");
        assert!(run.stderr.contains("encrypted 2 files"), "{run:?}");
        assert!(run.stderr.contains("1 file failed:"), "{run:?}");
        let listed = run.stderr.split("1 file failed:").nth(1).unwrap();
        assert!(listed.contains("huge.mxf"), "the summary lists the failed file:{run:?}");
        assert!(!listed.contains("a.mp4") && !listed.contains("b.mp4"), "{run:?}");

        assert!(!out.join("huge.mxf").exists());
        assert_no_temp_files(&out);
        let manifest = out.join("manifest.jsonl");
        assert_eq!(records(&manifest).len(), 2, "records for the two good files only");
        for (src, rel) in [(a, "a.mp4"), (b, "z/b.mp4")] {
            let back = env.p(&format!("back/{rel}"));
            env.sealpipe(args!["decrypt", out.join(rel), "--manifest", manifest, "--out", back]).ok();
            assert_same(&fs::read(&back).unwrap(), &fs::read(&src).unwrap(), rel);
        }
    }

    #[test]
    fn gcm_ciphertext_shorter_than_the_tag() {
        let env = Env::new();
        for len in [0usize, 10, 15] {
            let ct = env.write(&format!("short{len}.enc"), &data(15, len));
            let plain = env.p(&format!("short{len}.plain"));
            let run = env.sealpipe(args!["decrypt", ct, "--mode", "gcm", "--key-hex", KEY_HEX, "--iv-hex", IV16, "--out", plain]);
            run.fails_with(1, &[&format!("short{len}.enc"), &format!("GCM ciphertext of {len} bytes is shorter than its 16-byte tag")]);
            assert!(!plain.exists());
        }
        assert_no_temp_files(env.root());
    }

    #[test]
    fn truncated_ciphertext_fails_verify_and_decrypt() {
        let env = Env::new();
        for mode in ["gcm", "ctr"] {
            let media = env.p(&format!("media-{mode}"));
            env.write(&format!("media-{mode}/good.bin"), &data(16, 10_000));
            env.write(&format!("media-{mode}/cut.bin"), &data(17, 20_000));
            let out = env.p(&format!("out-{mode}"));
            env.sealpipe(args!["encrypt", media, "--out", out, "--mode", mode]).ok();
            let cut = out.join("cut.bin");
            let len = fs::metadata(&cut).unwrap().len();
            fs::File::options().write(true).open(&cut).unwrap().set_len(len - 3).unwrap();
            let manifest = out.join("manifest.jsonl");

            let run = env.sealpipe(args!["verify", "--manifest", manifest, "--json"]);
            run.fails_with(1, &["cut.bin", &format!("ciphertext is {} bytes, the manifest recorded {len}", len - 3), "truncated"]);
            let v = run.json();
            assert_eq!(v["files"], 1, "the intact file verifies:{run:?}");
            assert_eq!(v["failures"].as_array().unwrap().len(), 1);

            let plain = env.p(&format!("cut-{mode}.plain"));
            let run = env.sealpipe(args!["decrypt", cut, "--manifest", manifest, "--out", plain]);
            let cause = if mode == "gcm" { "GCM authentication tag does not verify" } else { "plaintext SHA-256 mismatch" };
            run.fails_with(1, &["cut.bin", cause]);
            assert!(!plain.exists(), "nothing under the final name");
            assert_no_temp_files(env.root());
        }
    }

    #[test]
    fn cbc_ciphertext_not_a_multiple_of_16() {
        let env = Env::new();
        for len in [33usize, 8, 0] {
            let ct = env.write(&format!("c{len}.enc"), &data(18, len));
            let plain = env.p(&format!("c{len}.plain"));
            let run = env.sealpipe(args!["decrypt", ct, "--mode", "cbc", "--key-hex", KEY_HEX, "--iv-hex", IV16, "--out", plain]);
            run.fails_with(1, &[&format!("c{len}.enc"), "non-zero multiple of 16 bytes", &format!("this is {len} bytes")]);
            assert!(!plain.exists());
        }
        assert_no_temp_files(env.root());
    }

    #[test]
    fn cbc_bad_padding_with_the_wrong_key() {
        let env = Env::new();
        let key = data(19, 32);
        let plain = data(20, 10_000);
        let (_, ct, _) = seal_known(&env, "p.bin", &plain, &key, "cbc", IV16, &[]);
        let snap = Snapshot::of(&ct);
        let out = env.p("dec/p.bin");
        // The right key works...
        env.sealpipe(args!["decrypt", ct, "--mode", "cbc", "--key-hex", hex::encode(&key), "--iv-hex", IV16, "--out", out]).ok();
        assert_same(&fs::read(&out).unwrap(), &plain, "CBC with the right key");
        fs::remove_file(&out).unwrap();
        // ...a wrong one is caught by the padding check.
        let run = env.sealpipe(args!["decrypt", ct, "--mode", "cbc", "--key-hex", KEY_HEX, "--iv-hex", IV16, "--out", out]);
        run.fails_with(1, &["p.bin", "bad CBC padding"]);
        assert!(!out.exists(), "nothing under the final name");
        assert_no_temp_files(env.root());
        snap.unchanged();
    }

    #[test]
    fn gcm_tag_that_does_not_verify() {
        let env = Env::new();
        let key = data(21, 32);
        let plain = data(22, 1_200_000); // above the mmap threshold
        let (_, ct, _) = seal_known(&env, "t.bin", &plain, &key, "gcm", IV16, &[]);
        let good = fs::read(&ct).unwrap();
        let out = env.p("dec/t.bin");
        env.sealpipe(args!["decrypt", ct, "--mode", "gcm", "--key-hex", hex::encode(&key), "--iv-hex", IV16, "--out", out]).ok();
        assert_same(&fs::read(&out).unwrap(), &plain, "intact GCM decrypts");
        fs::remove_file(&out).unwrap();

        for (what, at) in [("tag", good.len() - 1), ("ciphertext", 600_000)] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            fs::write(&ct, &bad).unwrap();
            let run = env.sealpipe(args!["decrypt", ct, "--mode", "gcm", "--key-hex", hex::encode(&key), "--iv-hex", IV16, "--out", out]);
            run.fails_with(1, &["t.bin", "GCM authentication tag does not verify", "nothing written"]);
            assert!(!out.exists(), "flipped {what} byte: nothing may appear under the final name");
            assert_no_temp_files(env.root());

            let run = env.sealpipe(args!["verify", "--manifest", env.p("enc-t.bin/manifest.jsonl")]);
            assert_eq!(run.code, 1, "verify catches the flipped {what} byte:{run:?}");
            assert_eq!(run.error_lines().len(), 1, "{run:?}");
            assert!(run.error_lines()[0].contains("GCM authentication tag does not verify"), "{run:?}");
        }
    }

    #[test]
    fn existing_output_is_refused_without_force_and_replaced_with_force() {
        let env = Env::new();
        let plain = data(23, 8_000);
        let src = env.write("in/clip.ts", &plain);
        let out = env.p("out");
        let existing = env.write("out/clip.ts", b"precious, not to be clobbered");
        let snap = Snapshot::of(&existing);

        let run = env.sealpipe(args!["encrypt", src, "--out", out, "--json"]);
        run.fails_with(1, &["clip.ts", "output already exists (use --force to overwrite)"]);
        snap.unchanged();
        assert_no_temp_files(&out);
        let manifest = out.join("manifest.jsonl");
        assert!(!manifest.exists() || records(&manifest).is_empty(), "no record for a refused file");

        env.sealpipe(args!["encrypt", src, "--out", out, "--force"]).ok();
        assert_eq!(fs::metadata(&existing).unwrap().len(), 8_000, "replaced by the ciphertext");
        assert_no_temp_files(&out);
        let back = env.p("back.ts");
        env.sealpipe(args!["decrypt", existing, "--manifest", manifest, "--out", back]).ok();
        assert_same(&fs::read(&back).unwrap(), &plain, "the replacement decrypts");

        // decrypt: the same rule for its --out.
        fs::write(&back, b"keep me").unwrap();
        let keep = Snapshot::of(&back);
        let run = env.sealpipe(args!["decrypt", existing, "--manifest", manifest, "--out", back]);
        run.fails_with(1, &["back.ts", "output already exists (use --force to overwrite)"]);
        keep.unchanged();
        env.sealpipe(args!["decrypt", existing, "--manifest", manifest, "--out", back, "--force"]).ok();
        assert_same(&fs::read(&back).unwrap(), &plain, "decrypt --force replaces");
        assert_no_temp_files(env.root());
    }
}

/// Ctrl-C / SIGTERM mid-run: exit 130, no temporary file, nothing under a final name.
mod interrupted {
    use super::*;

    #[test]
    fn sigterm_mid_encrypt_leaves_nothing_behind() {
        let env = Env::new();
        // Large and sparse: quick to make, slow enough to interrupt.
        let src = env.p("src/big.mp4");
        fs::create_dir_all(src.parent().unwrap()).unwrap();
        fs::File::create(&src).unwrap().set_len(4 << 30).unwrap();
        let out = env.p("out");
        let home = env.p("home");
        fs::create_dir_all(&home).unwrap();
        let mut child = Command::new(BIN)
            // --grace-seconds 0: a signal aborts at once (no waiting for the file in flight).
            .args(args!["encrypt", src, "--out", out, "--threads", "1", "--json", "--grace-seconds", "0"])
            .current_dir(env.root())
            .env("SEALPIPE_KEYRING", env.keyring())
            .env("HOME", &home)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the sealpipe binary");
        // Wait until the output is being written, then interrupt.
        let started = std::time::Instant::now();
        while !files_under(&out).iter().any(|p| p.to_string_lossy().contains(".sealpipe-tmp-")) {
            assert!(started.elapsed().as_secs() < 60, "the run never started writing");
            assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(130), "stderr: {stderr}");
        assert!(stderr.contains("interrupted"), "stderr: {stderr}");
        assert_no_temp_files(&out);
        assert!(!out.join("big.mp4").exists(), "an interrupted output appeared under its final name");
    }
}

// ---------------------------------------------------------------------------
// Secrets: plaintext data keys never leave the process
// ---------------------------------------------------------------------------

mod secrets {
    use super::*;

    /// Assert `key` appears in none of `haystacks`, as hex (either case),
    /// base64 (with or without padding) or raw bytes.
    #[track_caller]
    fn assert_key_absent(key: &[u8], haystacks: &[(&str, &[u8])]) {
        let hex_lower = hex::encode(key);
        let forms: Vec<(&str, Vec<u8>)> = vec![
            ("hex", hex_lower.clone().into_bytes()),
            ("HEX", hex_lower.to_uppercase().into_bytes()),
            ("base64", b64(key).trim_end_matches('=').as_bytes().to_vec()),
            ("raw", key.to_vec()),
        ];
        for (name, hay) in haystacks {
            for (form, needle) in &forms {
                assert!(!hay.windows(needle.len()).any(|w| w == needle.as_slice()), "the plaintext key ({form}) appears in {name}");
            }
        }
    }

    #[track_caller]
    fn assert_keyring_private(env: &Env) {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(env.keyring()).expect("keyring created at $SEALPIPE_KEYRING").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "keyring mode is {:o}", mode & 0o777);
        assert!(!env.p("home/.config").exists(), "a keyring was made under $HOME despite SEALPIPE_KEYRING");
    }

    #[test]
    fn supplied_key_never_printed() {
        let env = Env::new();
        let key = data(30, 32);
        let key_file = env.write("key.bin", &key);
        env.write("media/a.bin", &data(31, 5_000));
        env.write("media/b.bin", &data(32, 7_000));
        let out = env.p("enc");
        let manifest = out.join("manifest.jsonl");
        let mut runs = vec![
            env.sealpipe(args!["encrypt", env.p("media"), "--out", out, "--data-key-file", key_file, "--json"]).ok(),
            env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("enc-text"), "--data-key-file", key_file]).ok(),
            env.sealpipe(args!["verify", "--manifest", manifest, "--json"]).ok(),
            env.sealpipe(args!["decrypt", out.join("a.bin"), "--manifest", manifest, "--out", env.p("a.plain"), "--json"]).ok(),
        ];
        // A failing decrypt given the key on the command line must not echo it either.
        let wrong = env.sealpipe(args![
            "decrypt", out.join("b.bin"), "--mode", "gcm", "--key-hex", hex::encode(&key),
            "--iv-hex", "000102030405060708090a0b0c0d0e0f", "--out", env.p("b.plain")
        ]);
        assert_eq!(wrong.code, 1, "{wrong:?}");
        runs.push(wrong);
        // Sanity: the manifest really is for this key.
        let md5 = python(&env, "md5", MD5_PY, args![key_file]);
        assert_eq!(records(&manifest)[0]["key_md5"], md5.trim());

        let manifest_bytes = fs::read(&manifest).unwrap();
        let text_manifest = fs::read(env.p("enc-text/manifest.jsonl")).unwrap();
        let mut hay: Vec<(&str, &[u8])> = vec![("manifest", &manifest_bytes), ("second manifest", &text_manifest)];
        for r in &runs {
            hay.push(("stdout", r.stdout.as_bytes()));
            hay.push(("stderr", r.stderr.as_bytes()));
        }
        assert_key_absent(&key, &hay);
        assert_keyring_private(&env);
    }

    #[test]
    fn generated_keys_never_printed() {
        let env = Env::new();
        let sources = [("a.bin", data(33, 6_000)), ("b.bin", data(34, 9_000))];
        for (name, bytes) in &sources {
            env.write(&format!("media/{name}"), bytes);
        }
        let out = env.p("enc");
        let manifest = out.join("manifest.jsonl");
        let runs = [
            env.sealpipe(args!["encrypt", env.p("media"), "--out", out, "--json"]).ok(),
            env.sealpipe(args!["verify", "--manifest", manifest, "--json"]).ok(),
            env.sealpipe(args!["verify", "--manifest", manifest]).ok(),
            env.sealpipe(args!["decrypt", out.join("a.bin"), "--manifest", manifest, "--out", env.p("a.plain"), "--json"]).ok(),
        ];
        assert_keyring_private(&env);

        // Recover the data keys independently from the keyring (Python), and
        // prove they are the real ones by decrypting with OpenSSL.
        let keys_json = env.p("keys.json");
        python(&env, "unwrap", UNWRAP_PY, args![env.keyring(), manifest, keys_json]);
        let keys: serde_json::Map<String, Value> = serde_json::from_slice(&fs::read(&keys_json).unwrap()).unwrap();
        assert_eq!(keys.len(), 2);
        let recs = records(&manifest);
        let manifest_bytes = fs::read(&manifest).unwrap();
        let keyring_bytes = fs::read(env.keyring()).unwrap();
        let mut all_keys = Vec::new();
        for (name, bytes) in &sources {
            let r = record_for(&recs, name);
            let key = hex::decode(keys[r["output"].as_str().unwrap()].as_str().unwrap()).unwrap();
            assert_eq!(key.len(), 32);
            let iv_hex = hex::encode(unb64(&r["iv"]));
            let dec = env.p(&format!("{name}.openssl"));
            openssl(args!["enc", "-d", "-aes-256-ctr", "-K", hex::encode(&key), "-iv", iv_hex, "-in", out.join(name), "-out", dec]);
            assert_same(&fs::read(&dec).unwrap(), bytes, "the unwrapped key decrypts the file");

            let mut hay: Vec<(&str, &[u8])> = vec![("manifest", &manifest_bytes), ("keyring", &keyring_bytes)];
            for r in &runs {
                hay.push(("stdout", r.stdout.as_bytes()));
                hay.push(("stderr", r.stderr.as_bytes()));
            }
            assert_key_absent(&key, &hay);
            all_keys.push(key);
        }
        assert_ne!(all_keys[0], all_keys[1], "a fresh data key per file");
    }
}

// ---------------------------------------------------------------------------
// Round trips and the --json summary
// ---------------------------------------------------------------------------

mod roundtrip {
    use super::*;

    #[track_caller]
    fn assert_summary_shape(v: &Value, files: u64, bytes: u64) {
        assert_eq!(v["files"].as_u64(), Some(files), "{v:#}");
        assert_eq!(v["bytes"].as_u64(), Some(bytes), "{v:#}");
        let seconds = v["seconds"].as_f64().unwrap_or_else(|| panic!("seconds is a number: {v:#}"));
        assert!((0.0..60.0).contains(&seconds), "{v:#}");
        let rate = v["gb_per_s"].as_f64().unwrap_or_else(|| panic!("gb_per_s is a number: {v:#}"));
        assert!(rate >= 0.0 && rate.is_finite(), "{v:#}");
        if seconds > 0.0 {
            let want = bytes as f64 / seconds / 1e9;
            assert!((rate - want).abs() <= want * 1e-6 + 1e-12, "gb_per_s = bytes / seconds / 1e9: {v:#}");
        }
        assert_eq!(v["failures"], Value::Array(vec![]), "{v:#}");
    }

    #[test]
    fn json_summary_has_files_bytes_seconds_rate_and_failures() {
        let env = Env::new();
        env.write("media/a.bin", &data(40, 12_345));
        env.write("media/b/c.bin", &data(41, 54_321));
        let out = env.p("enc");
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", out, "--json", "--mode", "cbc"]).ok();
        assert_summary_shape(&run.json(), 2, 12_345 + 54_321);
        assert!(run.stderr.trim().is_empty(), "--json keeps stderr quiet on success:{run:?}");

        let manifest = out.join("manifest.jsonl");
        let run = env.sealpipe(args!["verify", "--manifest", manifest, "--json"]).ok();
        // verify counts ciphertext bytes (CBC padding included).
        assert_summary_shape(&run.json(), 2, 12_352 + 54_336);

        let run = env.sealpipe(args!["decrypt", out.join("b/c.bin"), "--manifest", manifest, "--out", env.p("c.plain"), "--json"]).ok();
        assert_summary_shape(&run.json(), 1, 54_336);
        assert_same(&fs::read(env.p("c.plain")).unwrap(), &data(41, 54_321), "decrypt");
    }

    #[test]
    fn every_mode_round_trips_edge_sizes_through_the_manifest() {
        let env = Env::new();
        let sizes = [0usize, 1, 15, 16, 17, 4_095, 4_096, 65_537];
        for mode in ["ctr", "cbc", "gcm"] {
            let media = env.p(&format!("media-{mode}"));
            for (i, len) in sizes.iter().enumerate() {
                env.write(&format!("media-{mode}/f{len}.bin"), &data(1_000 + i as u64, *len));
            }
            let out = env.p(&format!("enc-{mode}"));
            let run = env.sealpipe(args!["encrypt", media, "--out", out, "--mode", mode, "--chunk-size", "4096", "--json"]).ok();
            assert_eq!(run.json()["files"], sizes.len());
            let manifest = out.join("manifest.jsonl");
            let recs = records(&manifest);
            for len in sizes {
                let name = format!("f{len}.bin");
                let want = match mode {
                    "ctr" => len,
                    "cbc" => (len / 16 + 1) * 16,
                    _ => len + 16,
                };
                assert_eq!(fs::metadata(out.join(&name)).unwrap().len() as usize, want, "{mode} {len}");
                assert_eq!(record_for(&recs, &name)["ciphertext_size"], want);
            }
            let v = env.sealpipe(args!["verify", "--manifest", manifest, "--json", "--chunk-size", "4096"]).ok().json();
            assert_eq!(v["files"], sizes.len());
            for len in [0usize, 17, 65_537] {
                let name = format!("f{len}.bin");
                let back = env.p(&format!("back-{mode}/{name}"));
                env.sealpipe(args!["decrypt", out.join(&name), "--manifest", manifest, "--out", back]).ok();
                assert_same(&fs::read(&back).unwrap(), &fs::read(media.join(&name)).unwrap(), &format!("{mode} {len}"));
            }
        }
    }
}

/// Issue 12: a CLI that fits the habits of AWS CLI, s5cmd and rclone users.
mod usability {
    use super::*;

    const COMMANDS: [&str; 10] = ["encrypt", "reencrypt", "decrypt", "verify", "bench", "merge-manifests", "jobs", "policy", "completions", "man"];

    /// The `--help` of `command`: (flag, its help text) in order, and the whole text.
    fn help(env: &Env, command: &str) -> (Vec<(String, String)>, String) {
        let run = env.sealpipe(args![command, "--help"]).ok();
        let mut flags: Vec<(String, String)> = Vec::new();
        for line in run.stdout.lines().take_while(|l| !l.starts_with("Example")) {
            let t = line.trim_start();
            let indented = line.len() > t.len();
            // Flags are indented 2 ("  -q, --quiet") or 6 ("      --json"); their help, 10.
            if indented && line.len() - t.len() <= 6 && t.starts_with('-') {
                let long = t.split([' ', ',', '=']).find(|w| w.starts_with("--")).unwrap_or(t).to_string();
                flags.push((long, t.to_string()));
            } else if !indented && !t.is_empty() {
                // A heading ("Keys:") or the after-help: ends the flag before it.
                flags.push((String::new(), String::new()));
            } else if let Some((_, text)) = flags.last_mut() {
                text.push(' ');
                text.push_str(t);
            }
        }
        flags.retain(|(f, _)| !f.is_empty());
        (flags, run.stdout)
    }

    #[test]
    fn help_shows_only_each_commands_flags_under_headings_with_examples() {
        let env = Env::new();
        let aws_and_keys = ["--kms-key", "--keyring", "--region", "--profile", "--endpoint-url", "--force-path-style"];
        for command in COMMANDS {
            let (flags, text) = help(&env, command);
            let names: Vec<&str> = flags.iter().map(|(f, _)| f.as_str()).collect();
            // Every flag has an example (--help and --version aside).
            for (flag, help) in &flags {
                if flag != "--help" && flag != "--version" {
                    assert!(help.contains("Example"), "{command} {flag} has no example: {help}\n{text}");
                }
            }
            // Examples are whole commands: a line that does not start one continues the one before (a trailing \).
            if let Some(at) = text.find("\nExamples:\n").or_else(|| text.find("\nExample:\n")).map(|at| at + 1) {
                let mut previous = "";
                for line in text[at..].lines().skip(1).take_while(|l| !l.trim().is_empty()) {
                    let starts = line.trim_start().starts_with("sealpipe ");
                    assert!(starts || previous.ends_with('\\'), "{command}: example wrapped mid-command: {line:?}\n{text}");
                    previous = line;
                }
            }
            match command {
                "merge-manifests" | "completions" | "man" => {
                    for f in aws_and_keys.iter().chain(&["--threads", "--memory", "--part-size"]) {
                        assert!(!names.contains(f), "{command} --help lists {f}:\n{text}");
                    }
                }
                // The AWS flags (for --to s3://, an s3:// manifest, or submitting), no keys or run tuning.
                "bench" | "jobs" | "policy" => {
                    for f in ["--keyring", "--threads", "--memory", "--part-size"] {
                        assert!(!names.contains(&f), "{command} --help lists {f}:\n{text}");
                    }
                    // policy prints one JSON document always, and draws no progress (issue 23).
                    let output: &[&str] = if command == "policy" { &[] } else { &["--json"] };
                    for f in ["--region", "--endpoint-url"].iter().chain(output) {
                        assert!(names.contains(f), "{command} --help lacks {f}:\n{text}");
                    }
                }
                _ => {
                    for f in ["--kms-key", "--keyring", "--region", "--endpoint-url", "--threads", "--chunk-size", "--json", "--quiet", "--log-level"] {
                        assert!(names.contains(&f), "{command} --help lacks {f}:\n{text}");
                    }
                    for heading in ["Keys:", "AWS:", "Performance:", "Output:"] {
                        assert!(text.lines().any(|l| l == heading), "{command} --help has no {heading} heading:\n{text}");
                    }
                }
            }
            if ["decrypt", "verify"].contains(&command) {
                let kms = &flags.iter().find(|(f, _)| f == "--kms-key").unwrap().1;
                assert!(!kms.contains("Wrap data keys"), "{command} --kms-key: {kms}");
                assert!(!names.contains(&"--part-size") && !names.contains(&"--include"), "{command}:\n{text}");
            }
        }
        let (flags, text) = help(&env, "encrypt");
        for heading in ["Input:", "Output:", "Keys:", "AWS:", "Performance:", "Run control:"] {
            assert!(text.lines().any(|l| l == heading), "encrypt --help has no {heading} heading:\n{text}");
        }
        let json = &flags.iter().find(|(f, _)| f == "--json").unwrap().1;
        assert!(json.contains("event") && json.contains("summary"), "--json help: {json}");
        let (bench, _) = help(&env, "bench");
        let bench: Vec<&str> = bench.iter().map(|(f, _)| f.as_str()).collect();
        for f in ["--modes", "--key-bits", "--max-threads", "--memory-size", "--file-size", "--json"] {
            assert!(bench.contains(&f), "bench lacks {f}: {bench:?}");
        }
    }

    #[test]
    fn every_size_flag_takes_every_spelling() {
        let env = Env::new();
        env.write("media/a.bin", &data(1, 5_000));
        for size in ["8M", "8MB", "8MiB", "8mb", "8388608"] {
            let out = env.p(&format!("out-{size}"));
            let reuse = format!("max-bytes={size}");
            let run = env.sealpipe(args![
                "encrypt", env.p("media"), "--out", out, "--dry-run", "--json", "--chunk-size", size, "--memory", "1GiB", "--part-size", size,
                "--reuse-key", reuse
            ]);
            assert_eq!(run.ok().json()["files"], 1);
            let small = size.replace('8', "1");
            env.sealpipe(args!["bench", "--modes", "ctr", "--max-threads", "1", "--seconds", "0", "--memory-size", small, "--file-size", "0", "--json"]).ok();
        }
        for (flag, bad) in [("--chunk-size", "8X"), ("--memory", "1.5G"), ("--part-size", "8 M B"), ("--memory-size", "M"), ("--file-size", "2GiBs")] {
            let run = match flag {
                "--memory-size" | "--file-size" => env.sealpipe(args!["bench", flag, bad]),
                _ => env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("o"), flag, bad]),
            };
            assert_eq!(run.code, 2, "{run:?}");
            assert!(run.stderr.contains(flag) && run.stderr.contains("not a size"), "{run:?}");
        }
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("o"), "--reuse-key", "max-bytes=8X"]);
        assert_eq!(run.code, 2, "{run:?}");
    }

    #[test]
    fn json_on_stdout_everything_else_on_stderr() {
        let env = Env::new();
        env.write("media/a.ts", &data(2, 300_000));
        env.write("media/b/c.ts", &data(3, 100_000));
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("enc"), "--json", "--progress", "-v"]).ok();
        let events: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}:{run:?}"))).collect();
        assert!(events.iter().any(|e| e["event"] == "done"), "{run:?}");
        assert_eq!(run.json()["files"], 2);
        assert!(!run.stderr.is_empty(), "forced progress is drawn on stderr:{run:?}");
        // Without --json stdout stays empty; -q leaves stderr empty on success.
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("enc2"), "--progress"]).ok();
        assert_eq!(run.stdout, "", "{run:?}");
        assert!(run.stderr.contains("encrypted 2 files"), "{run:?}");
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("enc3"), "-q"]).ok();
        assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""), "{run:?}");
        // The log goes to --log-file, never a key.
        let log = env.p("run.log");
        env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("enc4"), "--log-level", "debug", "--log-file", log]).ok();
        assert!(log.exists());
        // decrypt --json: real seconds and throughput.
        let rec = records(&env.p("enc/manifest.jsonl"));
        let _ = rec;
        let run = env.sealpipe(args!["decrypt", env.p("enc/a.ts"), "--manifest", env.p("enc/manifest.jsonl"), "--out", env.p("a.ts"), "--json"]).ok();
        let v = run.json();
        assert!(v["seconds"].as_f64().unwrap() > 0.0 && v["gb_per_s"].as_f64().unwrap() > 0.0, "{run:?}");
    }

    #[test]
    fn completions_and_man_page() {
        let env = Env::new();
        for (shell, marker) in [("bash", "complete"), ("zsh", "#compdef sealpipe"), ("fish", "complete -c sealpipe"), ("powershell", "Register-ArgumentCompleter")] {
            let run = env.sealpipe(args!["completions", shell]).ok();
            assert!(run.stdout.contains(marker) && run.stdout.contains("encrypt") && run.stdout.contains("--kms-key"), "{shell}:{run:?}");
        }
        let run = env.sealpipe(args!["man"]).ok();
        assert!(run.stdout.starts_with(".ie") || run.stdout.contains(".TH sealpipe"), "{run:?}");
        assert!(run.stdout.contains("encrypt"), "{run:?}");
        let dir = env.p("man1");
        env.sealpipe(args!["man", "--out-dir", dir]).ok();
        for page in ["sealpipe.1", "sealpipe-encrypt.1", "sealpipe-decrypt.1"] {
            let text = fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
            assert!(text.contains(".TH"), "{page}");
        }
    }

    #[test]
    fn include_and_exclude_as_the_aws_cli() {
        let env = Env::new();
        for name in ["a.ts", "b.tmp", "sub/c.ts", "sub/d.m3u8", "cache/e.ts"] {
            env.write(&format!("media/{name}"), &data(4, 1_000));
        }
        let taken = |out: &str, filters: &[&str]| -> (Vec<String>, Run) {
            let mut a = args!["encrypt", env.p("media"), "--out", env.p(out), "--json"];
            a.extend(filters.iter().map(OsString::from));
            let run = env.sealpipe(a).ok();
            let mut names: Vec<String> = records(&env.p(out).join("manifest.jsonl")).iter().map(|r| r["output"].as_str().unwrap().rsplit(out).next().unwrap().trim_start_matches('/').to_string()).collect();
            names.sort();
            (names, run)
        };
        let (names, run) = taken("o1", &["--exclude", "*", "--include", "*.ts"]);
        assert_eq!(names, ["a.ts", "cache/e.ts", "sub/c.ts"], "{run:?}");
        assert_eq!(run.json()["filtered"], 2, "{run:?}");
        // Later filters win: the include first is undone by the exclude after it.
        let (names, run) = taken("o2", &["--include", "*.ts", "--exclude", "cache/*", "--exclude", "*.tmp"]);
        assert_eq!(names, ["a.ts", "sub/c.ts", "sub/d.m3u8"], "{run:?}");
        let by = run.json()["filtered_by"].clone();
        assert_eq!(by, serde_json::json!([{"rule": "--exclude 'cache/*'", "files": 1}, {"rule": "--exclude '*.tmp'", "files": 1}]), "{run:?}");
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("o3"), "--exclude", "sub/*"]).ok();
        assert!(run.stderr.contains("skipped 2 files left out by filters (2 by --exclude 'sub/*')"), "{run:?}");
        // A list file's entries are matched on their relative names too.
        let list = env.write("list.txt", format!("{}\n{}\n", env.p("media/a.ts").display(), env.p("media/b.tmp").display()).as_bytes());
        let run = env.sealpipe(args!["encrypt", "--from-list", list, "--out", env.p("o4"), "--exclude", "*.tmp", "--json"]).ok();
        assert_eq!((run.json()["files"].clone(), run.json()["filtered"].clone()), (1.into(), 1.into()), "{run:?}");
    }

    #[test]
    fn messages() {
        let env = Env::new();
        env.write("media/a.ts", &data(5, 2_000));
        env.write("media/b.ts", &data(6, 2_000));
        // Key requests explained.
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("enc")]).ok();
        assert!(run.stderr.contains("2 files, 4 wrapped keys (2 per file: MediaConvert and Elastic Transcoder contexts)"), "{run:?}");
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("enc-mc"), "--target", "mediaconvert"]).ok();
        assert!(run.stderr.contains("2 files, 2 wrapped keys (1 per file: MediaConvert context)"), "{run:?}");
        // A dry run prints no throughput.
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("dry"), "--dry-run"]).ok();
        assert!(!run.stderr.contains("/s"), "{run:?}");
        let v = env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("dry"), "--dry-run", "--json"]).ok().json();
        assert!(v.get("gb_per_s").is_none(), "{v}");
        // decrypt --out DIR says the output is a directory.
        let run = env.sealpipe(args!["decrypt", env.p("enc/a.ts"), "--manifest", env.p("enc/manifest.jsonl"), "--out", env.p("media")]);
        run.fails_with(2, &["--out", "is a directory"]);
        // One cause once; the flag the user gave.
        let file = env.write("plain-file", b"x");
        let run = env.sealpipe(args!["encrypt", env.p("media"), "--out", file.join("sub")]);
        run.fails_with(2, &["--out", "is not a directory"]);
        for line in run.stderr.lines() {
            let parts: Vec<&str> = line.split(": ").collect();
            for w in parts.windows(2) {
                assert_ne!(w[0], w[1], "a cause repeated: {line}");
            }
        }
        // Argument checks before any network or credential work.
        let run = env.sealpipe_with(args!["encrypt", env.p("media"), "--to", "s3://bucket/pre/", "--part-size", "1"], &[("AWS_ENDPOINT_URL", OsStr::new("http://127.0.0.1:9"))]);
        run.fails_with(2, &["--part-size", "5MiB"]);
    }

    #[test]
    fn debug_log_shows_the_sdk_but_no_credentials() {
        let env = Env::new();
        env.write("media/a.ts", &data(8, 2_000));
        let log = env.p("debug.log");
        let vars: [(&str, &OsStr); 6] = [
            ("AWS_ENDPOINT_URL", OsStr::new("http://127.0.0.1:9")),
            ("AWS_ACCESS_KEY_ID", OsStr::new("AKIASENTINEL0000")),
            ("AWS_SECRET_ACCESS_KEY", OsStr::new("SECRETsentinelXYZ")),
            ("AWS_SESSION_TOKEN", OsStr::new("TOKENsentinel")),
            ("AWS_REGION", OsStr::new("us-east-1")),
            ("AWS_MAX_ATTEMPTS", OsStr::new("1")),
        ];
        let run = env.sealpipe_with(args!["encrypt", env.p("media"), "--to", "s3://b/p/", "--manifest", env.p("r.jsonl"), "-vv", "--log-file", log], &vars);
        run.fails_with(2, &["s3://b/", "cannot reach the endpoint"]);
        let text = fs::read_to_string(&log).unwrap();
        assert!(text.contains("aws_smithy_runtime"), "the SDK's tracing at debug:\n{text}");
        for secret in ["AKIASENTINEL", "SECRETsentinel", "TOKENsentinel"] {
            assert!(!text.contains(secret), "{secret} in the log:\n{text}");
        }
    }

    #[test]
    fn default_manifest_of_to_goes_to_the_state_folder() {
        let env = Env::new();
        env.write("media/a.ts", &data(7, 2_000));
        let state = env.p("state");
        let vars: [(&str, &OsStr); 6] = [
            ("XDG_STATE_HOME", state.as_os_str()),
            ("AWS_ENDPOINT_URL", OsStr::new("http://127.0.0.1:9")),
            ("AWS_ACCESS_KEY_ID", OsStr::new("AKIDEXAMPLE")),
            ("AWS_SECRET_ACCESS_KEY", OsStr::new("secret")),
            ("AWS_REGION", OsStr::new("us-east-1")),
            ("AWS_MAX_ATTEMPTS", OsStr::new("1")),
        ];
        // No S3 here: the run is refused at the destination check, in one line, having
        // written no manifest anywhere (s3.rs `object_options_and_the_default_manifest` checks, against moto,
        // that a run that starts writes it to the state folder and says where).
        let run = env.sealpipe_with(args!["encrypt", env.p("media"), "--to", "s3://media-in/2019/"], &vars);
        let want = state.join("sealpipe/media-in_2019.jsonl");
        assert_eq!(run.stderr.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{run:?}");
        assert!(!want.exists(), "{run:?}");
        assert!(!env.p("sealpipe-manifest.jsonl").exists(), "{run:?}");
    }
}

// ---------------------------------------------------------------------------
// Nothing skipped silently (issue 10, finding 8): every entry under an input
// is encrypted or reported, and nothing hangs.

mod nothing_skipped_silently {
    use super::*;

    /// `in/` with a regular file and a symbolic link to a file outside it.
    fn folder_with_a_link(env: &Env) -> (PathBuf, Vec<u8>) {
        env.write("in/a.ts", &data(1, 3000));
        let target = data(2, 5000);
        let outside = env.write("outside.ts", &target);
        std::os::unix::fs::symlink(&outside, env.p("in/link.ts")).unwrap();
        (env.p("in"), target)
    }

    #[test]
    fn symlinked_file_in_a_folder_is_followed_encrypted_and_recorded() {
        let env = Env::new();
        let (input, target) = folder_with_a_link(&env);
        let out = env.p("out");
        env.sealpipe(args!["encrypt", input, "--out", out]).ok();
        let records = records(&out.join("manifest.jsonl"));
        assert_eq!(records.len(), 2, "{records:?}");
        record_for(&records, "link.ts");
        let plain = env.p("link.plain");
        env.sealpipe(args!["decrypt", out.join("link.ts"), "--manifest", out.join("manifest.jsonl"), "--out", plain]).ok();
        assert_same(&fs::read(&plain).unwrap(), &target, "the linked file's content");
    }

    #[test]
    fn no_follow_symlinks_reports_the_link_skipped_with_its_reason() {
        let env = Env::new();
        let (input, _) = folder_with_a_link(&env);
        let out = env.p("out");
        let run = env.sealpipe(args!["encrypt", input, "--out", out, "--no-follow-symlinks", "--json"]).ok();
        let skipped: Vec<Value> = run.stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|e| e["event"] == "skipped").collect();
        assert_eq!(skipped.len(), 1, "{run:?}");
        assert!(skipped[0]["file"].as_str().unwrap().ends_with("link.ts"), "{run:?}");
        assert_eq!(skipped[0]["reason"], "a symbolic link (--no-follow-symlinks)", "{run:?}");
        let summary = run.json();
        assert_eq!((summary["files"].as_u64(), summary["skipped_symlinks"].as_u64(), summary["skipped"].as_u64()), (Some(1), Some(1), Some(0)), "{run:?}");
        assert!(!out.join("link.ts").exists());
        // Without --json: one line names it and says why, and the summary does not call it done.
        let run = env.sealpipe(args!["encrypt", input, "--out", env.p("out2"), "--no-follow-symlinks"]).ok();
        let said: Vec<&str> = run.stderr.lines().filter(|l| l.contains("link.ts")).collect();
        assert_eq!(said.len(), 1, "{run:?}");
        assert!(said[0].starts_with("sealpipe: skipped: ") && said[0].ends_with("a symbolic link (--no-follow-symlinks)"), "{run:?}");
        assert!(run.stderr.contains("skipped 1 symbolic link (--no-follow-symlinks)") && !run.stderr.contains("already done"), "{run:?}");
    }

    #[test]
    fn symlink_loop_is_reported_once_and_the_rest_is_encrypted() {
        let env = Env::new();
        env.write("in/sub/a.ts", &data(3, 1000));
        std::os::unix::fs::symlink("..", env.p("in/sub/up")).unwrap();
        let out = env.p("out");
        let run = env.sealpipe_bounded(args!["encrypt", env.p("in"), "--out", out, "--json"]);
        run.fails_with(1, &["in/sub/up", "a symbolic link loop (it leads back to"]);
        assert_eq!(run.json()["files"], 1, "{run:?}");
        assert!(out.join("sub/a.ts").exists());
    }

    #[test]
    fn fifo_and_socket_in_a_folder_are_refused_before_being_opened() {
        let env = Env::new();
        env.write("in/a.ts", &data(4, 1000));
        let fifo = env.p("in/pipe.ts");
        assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success(), "mkfifo");
        // Nobody ever writes to the FIFO: opening it would block the run for good.
        let _socket = std::os::unix::net::UnixListener::bind(env.p("in/sock.ts")).unwrap();
        let out = env.p("out");
        let run = env.sealpipe_bounded(args!["encrypt", env.p("in"), "--out", out, "--json"]);
        assert_eq!(run.code, 1, "{run:?}");
        let errors = run.error_lines();
        assert_eq!(errors.len(), 2, "{run:?}");
        assert!(errors.iter().any(|l| l.contains("pipe.ts: not a regular file (a FIFO); refused")), "{run:?}");
        assert!(errors.iter().any(|l| l.contains("sock.ts: not a regular file (a socket); refused")), "{run:?}");
        assert_eq!(run.json()["files"], 1, "{run:?}");
        assert!(!out.join("pipe.ts").exists() && !out.join("sock.ts").exists());
    }

    #[test]
    fn inputs_that_match_no_file_say_so() {
        let env = Env::new();
        fs::create_dir_all(env.p("empty")).unwrap();
        let out = env.p("out");
        env.sealpipe(args!["encrypt", env.p("empty"), "--out", out, "--json"]).fails_with(1, &["empty", "no files under this folder"]);
        let list = env.write("list.txt", b"\n");
        env.sealpipe(args!["encrypt", "--from-list", list, "--out", out, "--json"]).fails_with(1, &["list.txt", "the list names no files"]);
        env.write("in/a.ts", &data(5, 100));
        env.write("in/b.mp4", &data(6, 100));
        env.sealpipe(args!["encrypt", env.p("in"), "--out", out, "--exclude", "*", "--include", "*.mov"])
            .fails_with(2, &["no file matches the --include/--exclude filters", "2 left out"]);
        assert_nothing_under(&out);
    }
}

/// Issue 24, finding 6: a reader that stops reading (`--json | head -1`,
/// `2>&1 | head -0`) used to make sealpipe panic ("failed printing to stdout:
/// Broken pipe", exit 101) after the work. Now a closed stream is dropped
/// quietly, the run finishes, the manifest is whole and a re-run skips all.
mod finding_6_closed_pipe {
    use super::*;
    use std::io::{BufRead as _, BufReader, Read as _};
    use std::process::Stdio;

    fn spawn(env: &Env, args: Vec<OsString>) -> std::process::Child {
        let home = env.p("home");
        fs::create_dir_all(&home).unwrap();
        Command::new(BIN)
            .args(&args)
            .current_dir(env.root())
            .env("SEALPIPE_KEYRING", env.keyring())
            .env("HOME", &home)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the sealpipe binary")
    }

    fn media(env: &Env) -> usize {
        for i in 0..40u64 {
            env.write(&format!("media/f{i:02}.ts"), &data(2400 + i, 3000 + i as usize));
        }
        40
    }

    fn assert_whole(env: &Env, n: usize) {
        let recs = records(&env.p("enc/manifest.jsonl"));
        let mut names: Vec<&str> = recs.iter().map(|r| r["source"].as_str().unwrap()).collect();
        names.sort();
        names.dedup();
        assert_eq!((recs.len(), names.len()), (n, n), "every file recorded once");
        let again = env.sealpipe(args!["encrypt", env.p("media"), "--out", env.p("enc"), "--json"]).ok();
        assert_eq!((again.json()["files"].as_u64(), again.json()["skipped"].as_u64()), (Some(0), Some(n as u64)), "{again:?}");
    }

    #[test]
    fn finding_6_json_stdout_closed_after_one_line() {
        let env = Env::new();
        let n = media(&env);
        let mut child = spawn(&env, args!["encrypt", env.p("media"), "--out", env.p("enc"), "--json", "--threads", "1"]);
        let mut first = String::new();
        {
            let mut out = BufReader::new(child.stdout.take().unwrap());
            out.read_line(&mut first).unwrap();
        } // the reader closes stdout here, as `head -1` does
        assert!(first.starts_with('{'), "{first}");
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
        assert_eq!(status.code(), Some(0), "the run's own status: {err}");
        assert_whole(&env, n);
    }

    #[test]
    fn finding_6_stdout_and_stderr_closed_at_once() {
        let env = Env::new();
        let n = media(&env);
        let mut child = spawn(&env, args!["encrypt", env.p("media"), "--out", env.p("enc"), "--json", "-v"]);
        drop(child.stdout.take());
        drop(child.stderr.take()); // `2>&1 | head -0`: both streams gone before a word
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "no panic (101), the run's own status");
        assert_whole(&env, n);
        let verify = spawn(&env, args!["verify", "--manifest", env.p("enc/manifest.jsonl"), "--json"]);
        let mut verify = verify;
        drop(verify.stdout.take());
        let mut err = String::new();
        verify.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(verify.wait().unwrap().code(), Some(0), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
