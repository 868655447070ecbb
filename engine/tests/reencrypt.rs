//! `reencrypt` through the engine API: legacy archives (old sealpipe runs,
//! Elastic Transcoder style settings) decrypted on the fly by
//! [`sealpipe::run::reencrypt::Legacy`] and sealed again by `batch::encrypt_with`,
//! with small windows so files span several of them. Every output is checked
//! against the original plaintext; tampered legacy objects must fail alone
//! and leave nothing behind.

use std::path::{Path, PathBuf};

use sealpipe::run::encrypt::{encrypt, EncryptJob};
use sealpipe::run::reencrypt::Unseal;
use sealpipe::events::Silent;
use sealpipe::run::report::Summary;
use sealpipe::run::verify::verify;
use sealpipe::cipher::{open_to_vec, seal_to_vec};
use sealpipe::store::local::LocalDir;
use sealpipe::format::{b64};
use sealpipe::keys::{DataKey, KeyProvider, LocalKeyring};
use sealpipe::format::record::{self as manifest, Record};
use sealpipe::run::manifest::ManifestWriter;
use sealpipe::format::{Iv, Mode, Service, Target};
use sealpipe::pipeline::Tuning;
use sealpipe::run::reencrypt::{Legacy, RecordProviders};
use sha2::Digest;

/// Windows of 16 KiB in chunks of 4 KiB: the larger sizes below span several.
const TUNING: Tuning = Tuning { chunk: 4096, window: 16384, depth: 2 };

/// Edge sizes, several windows (exact and with a tail), and one past the mmap threshold.
const SIZES: [usize; 8] = [0, 1, 15, 16, 17, 2 * 16384, 3 * 16384 + 5, (1 << 20) + 21];

fn data(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 131 + seed * 71) % 251) as u8).collect()
}

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    keyring: LocalKeyring,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keyring = LocalKeyring::open_or_create(&dir.path().join("keyring.json")).unwrap();
        Fixture { dir, keyring }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write `files` (name, bytes) under a new folder `name`.
    fn tree(&self, name: &str, files: &[(String, Vec<u8>)]) -> PathBuf {
        let root = self.path(name);
        for (rel, bytes) in files {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        root
    }

    /// Encrypt `inputs` into `out` (a folder) with `mode`, records to `manifest`;
    /// with `legacy`, the inputs are legacy ciphertext decrypted on the fly.
    fn run(&self, inputs: Vec<PathBuf>, out: &str, mode: Mode, target: Target, legacy: Option<&Legacy<'_>>, manifest: &str) -> Summary {
        let destination = LocalDir::new(&self.path(out), false);
        let writer = ManifestWriter::append(&self.path(manifest)).unwrap();
        let job = EncryptJob {
            mode,
            target,
            tuning: TUNING,
            unseal: legacy.map(|l| l as &dyn Unseal),
            ..EncryptJob::new(inputs, &destination, &self.keyring)
        };
        pool().install(|| encrypt(&job, &writer, &Silent)).unwrap()
    }

    fn records(&self, manifest: &str) -> Vec<Record> {
        manifest::read(&self.path(manifest)).unwrap()
    }
}

/// Every file under `root`, relative, sorted (temporary files included).
fn listing(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = walkdir(root).iter().map(|p| p.strip_prefix(root).unwrap().display().to_string()).collect();
    names.sort();
    names
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else { return out };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Decrypt a record's output independently (in memory) with its key and IV.
fn open_record(r: &Record, provider: &dyn KeyProvider) -> Vec<u8> {
    let key = sealpipe::keys::unwrap_record(r, provider).unwrap();
    let cipher = std::fs::read(&r.output).unwrap();
    open_to_vec(r.mode, &key, &r.iv().unwrap(), 16, &cipher).unwrap_or_else(|f| panic!("{}: {f:?}", r.output))
}

#[test]
fn old_manifest_round_trips_cbc_to_gcm_gcm_to_ctr_ctr_to_cbc() {
    let fx = Fixture::new();
    let files: Vec<(String, Vec<u8>)> =
        SIZES.iter().enumerate().map(|(i, &n)| (if i % 2 == 0 { format!("sub/f{n}.ts") } else { format!("f{n}.ts") }, data(n, i))).collect();
    let plain = fx.tree("plain", &files);
    for (from, to) in [(Mode::Cbc, Mode::Gcm), (Mode::Gcm, Mode::Ctr), (Mode::Ctr, Mode::Cbc)] {
        let (old_out, old_manifest) = (format!("old-{from}"), format!("old-{from}.jsonl"));
        let s = fx.run(vec![plain.clone()], &old_out, from, Target::ElasticTranscoder, None, &old_manifest);
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        let old = fx.records(&old_manifest);

        let legacy = Legacy::from_manifest(&fx.path(&old_manifest), RecordProviders::One(&fx.keyring)).unwrap().with_chunk(TUNING.chunk);
        let (new_out, new_manifest) = (format!("new-{from}-{to}"), format!("new-{from}-{to}.jsonl"));
        let s = fx.run(vec![fx.path(&old_out)], &new_out, to, Target::MediaConvert, Some(&legacy), &new_manifest);
        assert!(s.failures.is_empty(), "{from}->{to}: {:?}", s.failures);
        assert_eq!(s.files, SIZES.len() as u64);

        let new = fx.records(&new_manifest);
        assert_eq!(new.len(), SIZES.len());
        for r in &new {
            // The new record's source is the legacy object; its plaintext is the original file's.
            let o = old.iter().find(|o| o.output == r.source).unwrap_or_else(|| panic!("{} not a legacy output", r.source));
            let original = std::fs::read(&o.source).unwrap();
            assert_eq!(r.mode, to);
            assert_eq!(r.plaintext_size, original.len() as u64);
            assert_eq!(r.ciphertext_size, to.sealed_len(original.len() as u64));
            assert_eq!(r.plaintext_sha256, o.plaintext_sha256, "{}", r.output);
            assert!(open_record(r, &fx.keyring) == original, "{from}->{to}: {} differs", r.output);
        }
        let verified = pool().install(|| verify(&new, &fx.keyring, &TUNING, &Silent));
        assert!(verified.failures.is_empty(), "{:?}", verified.failures);
    }
}

/// An Elastic Transcoder `Encryption` object for `key` (wrapped under the ET context) and `iv`.
fn et_encryption(fx: &Fixture, mode: Mode, key: &DataKey, iv: &[u8]) -> serde_json::Value {
    let blob = fx.keyring.wrap(key, &Service::ElasticTranscoder.encryption_context()).unwrap();
    serde_json::json!({
        "Mode": mode.elastictranscoder_name(),
        "Key": b64(&blob),
        "KeyMd5": key.md5_base64(),
        "InitializationVector": b64(iv),
    })
}

#[test]
fn et_json_settings_decrypt_listed_and_shared_inputs() {
    let fx = Fixture::new();
    let k1 = DataKey::from_slice(&[7u8; 32]).unwrap();
    let k2 = DataKey::from_slice(&[9u8; 16]).unwrap();
    let (iv1, iv2) = ([0x11u8; 16], [0xffu8; 16]);
    let (a, b, c) = (data(3 * 16384 + 9, 1), data(16, 2), data(5, 3));
    let seal = |mode, key: &DataKey, iv: &[u8], plain: &[u8]| seal_to_vec(mode, key, Iv::from_slice(iv).unwrap(), 16, plain);
    let legacy_dir = fx.tree(
        "legacy",
        &[
            ("a.ts".into(), seal(Mode::Cbc, &k1, &iv1, &a)),
            ("b.ts".into(), seal(Mode::Ctr, &k2, &iv2, &b)),
            ("c.ts".into(), seal(Mode::Cbc, &k1, &iv1, &c)),
        ],
    );

    // A list: a and b have their own settings, c has none and fails alone.
    let list = serde_json::json!([
        {"Input": legacy_dir.join("a.ts"), "Encryption": et_encryption(&fx, Mode::Cbc, &k1, &iv1)},
        {"Input": legacy_dir.join("b.ts"), "Encryption": et_encryption(&fx, Mode::Ctr, &k2, &iv2)},
    ]);
    let legacy = Legacy::from_et_json(list.to_string().as_bytes(), Path::new("et.json"), &fx.keyring).unwrap().with_chunk(TUNING.chunk);
    let s = fx.run(vec![legacy_dir.clone()], "out-list", Mode::Gcm, Target::Any, Some(&legacy), "list.jsonl");
    assert_eq!(s.files, 2, "{:?}", s.failures);
    assert_eq!(s.failures.len(), 1);
    let (path, err) = (&s.failures[0].path, &s.failures[0].message);
    assert_eq!(path, &legacy_dir.join("c.ts"));
    assert_eq!(err, &format!("{}: no legacy settings for this object (not in the manifest / Encryption JSON)", path.display()));
    assert_eq!(listing(&fx.path("out-list")), ["a.ts", "b.ts"]);
    for r in fx.records("list.jsonl") {
        let want = if r.source.ends_with("a.ts") { &a } else { &b };
        assert!(&open_record(&r, &fx.keyring) == want, "{}", r.output);
        assert_eq!(r.plaintext_sha256.as_deref(), Some(&hex::encode(sha2::Sha256::digest(want))[..]));
    }

    // One Encryption object for every input (wrapped form and bare form).
    let one = serde_json::json!({"Encryption": et_encryption(&fx, Mode::Cbc, &k1, &iv1)});
    let bare = et_encryption(&fx, Mode::Cbc, &k1, &iv1);
    for (n, json) in [one, bare].iter().enumerate() {
        let legacy = Legacy::from_et_json(json.to_string().as_bytes(), Path::new("et.json"), &fx.keyring).unwrap();
        let out = format!("out-one-{n}");
        let s = fx.run(vec![legacy_dir.join("a.ts"), legacy_dir.join("c.ts")], &out, Mode::Ctr, Target::Any, Some(&legacy), &format!("{out}.jsonl"));
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        for r in fx.records(&format!("{out}.jsonl")) {
            let want = if r.source.ends_with("a.ts") { &a } else { &c };
            assert!(&open_record(&r, &fx.keyring) == want, "{}", r.output);
        }
    }

    // A KeyMd5 that is not the key's: every object fails, nothing is written.
    let mut wrong = et_encryption(&fx, Mode::Cbc, &k1, &iv1);
    wrong["KeyMd5"] = serde_json::Value::String(k2.md5_base64());
    let legacy = Legacy::from_et_json(wrong.to_string().as_bytes(), Path::new("et.json"), &fx.keyring).unwrap();
    let s = fx.run(vec![legacy_dir.join("a.ts")], "out-md5", Mode::Gcm, Target::Any, Some(&legacy), "md5.jsonl");
    assert_eq!(s.files, 0);
    assert!(s.failures[0].message.contains("a.ts") && s.failures[0].message.contains("KeyMd5"), "{:?}", s.failures);
    assert!(listing(&fx.path("out-md5")).is_empty());

    // Refused when loaded: server-side modes, IVs the mode cannot take, unknown shapes.
    let mut sse = et_encryption(&fx, Mode::Cbc, &k1, &iv1);
    sse["Mode"] = "s3-aws-kms".into();
    let mut short_iv = et_encryption(&fx, Mode::Cbc, &k1, &iv1);
    short_iv["InitializationVector"] = b64(&[0u8; 12]).into();
    let mut no_md5 = et_encryption(&fx, Mode::Cbc, &k1, &iv1);
    no_md5.as_object_mut().unwrap().remove("KeyMd5");
    for (json, want) in [
        (sse.to_string(), "s3-aws-kms"),
        (short_iv.to_string(), "IV of 12 bytes"),
        (no_md5.to_string(), "KeyMd5"),
        ("[]".to_string(), "empty"),
        (r#"{"Foo": 1}"#.to_string(), "expected"),
        (r#"[{"Encryption": {}}]"#.to_string(), "entry 1: no \"Input\""),
        ("not json".to_string(), "not JSON"),
    ] {
        let err = Legacy::from_et_json(json.as_bytes(), Path::new("et.json"), &fx.keyring).err().unwrap().to_string();
        assert!(err.starts_with("et.json: ") && err.contains(want), "{json}: {err}");
    }
}

#[test]
fn tampered_tag_bad_padding_and_wrong_digest_fail_alone_and_leave_nothing() {
    let fx = Fixture::new();
    let big = 3 * 16384 + 7;
    let plain = fx.tree("plain", &[("big.ts".into(), data(big, 1)), ("small.ts".into(), data(33, 2)), ("ok.ts".into(), data(100, 3))]);
    let legacy_of = |mode: Mode| {
        let name = format!("old-{mode}");
        let s = fx.run(vec![plain.clone()], &name, mode, Target::Any, None, &format!("{name}.jsonl"));
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        fx.path(&name)
    };
    let flip = |path: &Path, at: usize, mask: u8| {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= mask;
        std::fs::write(path, bytes).unwrap();
    };
    let reencrypt = |old: &str, manifest_path: &Path, out: &str| -> Summary {
        let legacy = Legacy::from_manifest(manifest_path, RecordProviders::One(&fx.keyring)).unwrap().with_chunk(TUNING.chunk);
        fx.run(vec![fx.path(old)], out, Mode::Ctr, Target::Any, Some(&legacy), &format!("{out}.jsonl"))
    };

    // GCM: a byte in the middle of a multi-window object (found only at its
    // end, after windows were written), and the tag of a small one.
    let old = legacy_of(Mode::Gcm);
    flip(&old.join("big.ts"), big / 2, 0x01);
    flip(&old.join("small.ts"), 33 + 15, 0x80);
    let s = reencrypt("old-gcm", &fx.path("old-gcm.jsonl"), "new-gcm");
    assert_eq!(s.files, 1, "{:?}", s.failures);
    for (name, f) in ["big.ts", "small.ts"].iter().zip(&s.failures) {
        let (path, err) = (&f.path, &f.message);
        assert_eq!(path, &old.join(name));
        assert!(err.starts_with(&format!("{}: GCM authentication tag does not verify", path.display())), "{err}");
    }
    assert_eq!(listing(&fx.path("new-gcm")), ["ok.ts"], "no output (or temporary file) for the failed objects");

    // CBC: the last byte of the second-to-last block XORed with the pad
    // length turns the padding byte into 0, always invalid.
    let old = legacy_of(Mode::Cbc);
    let (len, pad) = (big / 16 * 16 + 16, 16 - big % 16);
    flip(&old.join("big.ts"), len - 17, pad as u8);
    let s = reencrypt("old-cbc", &fx.path("old-cbc.jsonl"), "new-cbc");
    assert_eq!(s.files, 2, "{:?}", s.failures);
    assert_eq!(s.failures[0].message, format!("{}: bad CBC padding after decryption (wrong key or IV, or corrupted ciphertext)", old.join("big.ts").display()));
    assert_eq!(listing(&fx.path("new-cbc")), ["ok.ts", "small.ts"]);

    // CTR has no tag: a wrong recorded digest (or size) is what catches a bad object.
    legacy_of(Mode::Ctr);
    let mut records = fx.records("old-ctr.jsonl");
    for r in records.iter_mut() {
        if r.source.ends_with("big.ts") {
            r.plaintext_sha256 = Some(hex::encode(sha2::Sha256::digest(b"something else")));
        }
        if r.source.ends_with("small.ts") {
            r.plaintext_size += 1;
        }
    }
    let edited = fx.path("edited.jsonl");
    std::fs::write(&edited, records.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect::<String>()).unwrap();
    let s = reencrypt("old-ctr", &edited, "new-ctr");
    assert_eq!(s.files, 1, "{:?}", s.failures);
    let big_err = &s.failures[0].message;
    assert!(big_err.contains("big.ts: plaintext SHA-256 mismatch") && big_err.contains(&hex::encode(sha2::Sha256::digest(data(big, 1)))), "{big_err}");
    let small_err = &s.failures[1].message;
    assert!(small_err.contains("small.ts: the legacy ciphertext decrypts to 33 bytes, the manifest recorded 34"), "{small_err}");
    assert_eq!(listing(&fx.path("new-ctr")), ["ok.ts"]);

    // A legacy object missing from the manifest fails alone, naming it.
    std::fs::copy(old.join("ok.ts"), fx.path("old-ctr").join("stray.ts")).unwrap();
    let s = reencrypt("old-ctr", &fx.path("old-ctr.jsonl"), "new-stray");
    assert_eq!(s.files, 3);
    assert_eq!(s.failures.len(), 1);
    assert!(s.failures[0].message.ends_with("stray.ts: no legacy settings for this object (not in the manifest / Encryption JSON)"), "{:?}", s.failures);
    assert_eq!(listing(&fx.path("new-stray")), ["big.ts", "ok.ts", "small.ts"]);
}
