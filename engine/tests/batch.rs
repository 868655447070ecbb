//! Whole runs through the engine API: a folder of files sharing one data key
//! goes through the multi-buffer CBC runner; each output must equal the
//! one-pass CBC of its file under the IV its record names.

use sealpipe::run::encrypt::{encrypt, EncryptJob};
use sealpipe::events::Silent;
use sealpipe::run::verify::verify;
use sealpipe::cipher::reference;
use sealpipe::store::local::LocalDir;
use sealpipe::format::{unb64};
use sealpipe::keys::{DataKey, LocalKeyring};
use sealpipe::format::record::{self as manifest};
use sealpipe::run::manifest::ManifestWriter;
use sealpipe::format::Mode;
use sealpipe::format::digest::DigestAlg;
use sealpipe::pipeline::Tuning;
use sha2::Digest;

#[test]
fn cbc_folder_under_one_key_matches_one_pass_cbc_for_every_file() {
    cbc_folder(DigestAlg::Sha256);
}

#[test]
fn the_multi_buffer_runner_records_each_digest() {
    cbc_folder(DigestAlg::Blake3);
    cbc_folder(DigestAlg::Crc64Nvme);
    cbc_folder(DigestAlg::None);
}

fn cbc_folder(digest: DigestAlg) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("media");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    // Sizes straddle the lane step (1 MiB) and the mmap threshold; 13 files
    // make lanes finish and refill at different times.
    let sizes = [0usize, 1, 15, 16, 17, 1000, 4096, 65_537, 1 << 20, (1 << 20) + 33, 2_500_000, 300, 77];
    for (i, &n) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..n).map(|j| (j * 131 + i * 7) as u8).collect();
        let name = if i % 3 == 0 { format!("sub/f{i}.ts") } else { format!("f{i}.ts") };
        std::fs::write(src.join(name), data).unwrap();
    }
    let key_bytes: Vec<u8> = (0..32u8).collect();
    let keyring = LocalKeyring::open_or_create(&dir.path().join("keyring.json")).unwrap();
    let out = dir.path().join("out");
    let destination = LocalDir::new(&out, false);
    let manifest_path = dir.path().join("m.jsonl");
    let manifest_writer = ManifestWriter::append(&manifest_path).unwrap();
    let job = EncryptJob {
        mode: Mode::Cbc,
        digest,
        supplied_key: Some(DataKey::from_slice(&key_bytes).unwrap()),
        tuning: Tuning::for_threads(2, 1 << 20),
        ..EncryptJob::new(vec![src.clone()], &destination, &keyring)
    };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let summary = pool.install(|| encrypt(&job, &manifest_writer, &Silent)).unwrap();
    assert!(summary.failures.is_empty(), "{:?}", summary.failures);
    assert_eq!(summary.files, sizes.len() as u64);
    let records = manifest::read(&manifest_path).unwrap();
    assert_eq!(records.len(), sizes.len());
    let mut ivs = std::collections::HashSet::new();
    for r in &records {
        let plain = std::fs::read(&r.source).unwrap();
        let iv = unb64(&r.iv, "iv").unwrap();
        assert!(ivs.insert(iv.clone()), "IV reused under one key");
        let want = reference::cbc_encrypt(&key_bytes, &iv, &plain);
        assert!(std::fs::read(&r.output).unwrap() == want, "{}", r.source);
        let digest_want = match digest {
            DigestAlg::Sha256 => sha2::Sha256::digest(&plain).to_vec(),
            DigestAlg::Blake3 => blake3::hash(&plain).as_bytes().to_vec(),
            DigestAlg::Crc64Nvme => crc_fast::crc64_nvme(&plain).to_be_bytes().to_vec(),
            DigestAlg::None => Vec::new(),
        };
        assert_eq!(r.plaintext_sha256.is_some(), digest == DigestAlg::Sha256);
        assert_eq!(r.digest().unwrap().bytes(), &digest_want[..], "{digest} {}", r.source);
        assert_eq!(r.ciphertext_size, want.len() as u64);
    }
    let verified = verify(&records, &keyring, &job.tuning, &Silent);
    assert!(verified.failures.is_empty(), "{:?}", verified.failures);
    assert_eq!(verified.unchecked_content, if digest == DigestAlg::None { sizes.len() as u64 } else { 0 });
}
