//! Every mode against known-answer vectors and against the one-pass
//! reference, over one shared table of edge sizes, with 1 and N threads and
//! with small and large chunks, fed in one window and in many.

use sealpipe::cipher::{open_to_vec, reference, OpenFailure, Opener, Sealer, DEFAULT_CHUNK};
use sealpipe::keys::DataKey;
use sealpipe::format::{Iv, Mode, BLOCK};
use std::path::PathBuf;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/vectors")
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn seal(mode: Mode, key: &[u8], iv: &[u8], chunk: usize, windows: &[usize], data: &[u8]) -> Vec<u8> {
    let key = DataKey::from_slice(key).unwrap();
    let mut sealer = Sealer::new(mode, &key, Iv::from_slice(iv).unwrap(), chunk);
    let whole = data.len() - data.len() % BLOCK;
    let mut out = vec![0u8; whole];
    // Feed whole blocks in windows of the given sizes, cycling.
    let (mut at, mut w) = (0, 0);
    while at < whole {
        let len = (windows[w % windows.len()] * BLOCK).min(whole - at);
        sealer.update(&data[at..at + len], &mut out[at..at + len]);
        at += len;
        w += 1;
    }
    sealer.finish(&data[whole..], &mut out);
    out
}

fn reference_seal(mode: Mode, key: &[u8], iv: &[u8], data: &[u8]) -> Vec<u8> {
    match mode {
        Mode::Ctr => reference::ctr(key, iv, data),
        Mode::Cbc => reference::cbc_encrypt(key, iv, data),
        Mode::Gcm => reference::gcm_encrypt(key, iv, data),
    }
}

#[test]
fn known_answer_vectors() {
    let mut count = 0;
    for entry in std::fs::read_dir(vectors_dir()).unwrap() {
        let path = entry.unwrap().path();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let field = |k: &str| unhex(v[k].as_str().unwrap());
        let (key, iv, pt, ct) = (field("key"), field("iv"), field("plaintext"), field("ciphertext"));
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let (mode, whole_blocks_only) = match v["mode"].as_str().unwrap() {
            "ctr" => (Mode::Ctr, false),
            "cbc" => (Mode::Cbc, false),
            "cbc-nopad" => (Mode::Cbc, true),
            "gcm" => (Mode::Gcm, false),
            other => panic!("{name}: unknown mode {other}"),
        };
        for chunk in [16, 32, DEFAULT_CHUNK] {
            let ours = seal(mode, &key, &iv, chunk, &[1, 3], &pt);
            let expect_prefix = if whole_blocks_only { &ours[..pt.len()] } else { &ours[..] };
            assert_eq!(hex::encode(expect_prefix), hex::encode(&ct), "{name} chunk {chunk}");
            let dk = DataKey::from_slice(&key).unwrap();
            let back = open_to_vec(mode, &dk, &Iv::from_slice(&iv).unwrap(), chunk, &ours).unwrap();
            assert_eq!(back, pt, "{name} decrypt chunk {chunk}");
        }
        count += 1;
    }
    assert!(count >= 20, "expected the vector files, found {count}");
}

/// The shared edge-size table, in bytes, for a chunk of `chunk` bytes.
fn edge_sizes(chunk: usize) -> Vec<usize> {
    let mut sizes = vec![0, 1, 15, 16, 17, 31, 33, 255, chunk - 1, chunk, chunk + 1, 2 * chunk - 16, 3 * chunk + 5, 7 * chunk + 13];
    sizes.sort();
    sizes.dedup();
    sizes
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2654435761).rotate_left(seed as u32 % 31) as u8 ^ seed).collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap()
}

#[test]
fn parallel_equals_sequential_reference_for_every_mode_size_and_thread_count() {
    let ivs: [&[u8]; 3] = [
        &unhex("0011223344556677fffffffffffffff0"), // carry out of the low 64 bits
        &unhex("ffffffffffffffffffffffffffffffff"), // 128-bit wrap
        &unhex("cafebabefacedbaddecaf888"),          // 12-byte IV (CTR: IV ‖ 0^32)
    ];
    for threads in [1, 4] {
        pool(threads).install(|| {
            for chunk in [64, 64 * 1024] {
                for len in edge_sizes(chunk) {
                    let plain = data(len, len as u8);
                    for mode in Mode::ALL {
                        for key_len in [16, 24, 32] {
                            let key = data(key_len, 7);
                            for iv in ivs {
                                if mode == Mode::Cbc && iv.len() != 16 {
                                    continue;
                                }
                                let want = reference_seal(mode, &key, iv, &plain);
                                for windows in [&[usize::MAX / 32][..], &[1, 5, 2]] {
                                    let got = seal(mode, &key, iv, chunk, windows, &plain);
                                    assert!(
                                        got == want,
                                        "{mode} len {len} chunk {chunk} threads {threads} key {key_len} iv {} windows {windows:?}",
                                        hex::encode(iv)
                                    );
                                }
                                let dk = DataKey::from_slice(&key).unwrap();
                                let back = open_to_vec(mode, &dk, &Iv::from_slice(iv).unwrap(), chunk, &want).unwrap();
                                assert!(back == plain, "{mode} decrypt len {len} chunk {chunk} threads {threads}");
                            }
                        }
                    }
                }
            }
        });
    }
}

#[test]
fn gcm_rejects_any_modified_byte_or_tag() {
    let key = DataKey::from_slice(&[9u8; 32]).unwrap();
    let iv = unhex("000102030405060708090a0b0c0d0e0f");
    let plain = data(1000, 3);
    let sealed = seal(Mode::Gcm, &[9u8; 32], &iv, 64, &[2], &plain);
    for flip in [0, 500, 999, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[flip] ^= 1;
        let r = open_to_vec(Mode::Gcm, &key, &Iv::from_slice(&iv).unwrap(), 64, &bad);
        assert_eq!(r, Err(OpenFailure::Authentication), "flip at {flip}");
    }
    let r = open_to_vec(Mode::Gcm, &key, &Iv::from_slice(&iv).unwrap(), 64, &sealed[..10]);
    assert_eq!(r, Err(OpenFailure::Truncated));
}

#[test]
fn cbc_rejects_bad_padding_and_partial_blocks() {
    let key = DataKey::from_slice(&[5u8; 16]).unwrap();
    let iv = [1u8; 16];
    let sealed = seal(Mode::Cbc, &[5u8; 16], &iv, 64, &[1], &data(100, 1));
    assert_eq!(Opener::split(Mode::Cbc, 100).unwrap_err().contains("multiple of 16"), true);
    // Wrong key: the last block decrypts to garbage, which is bad padding with
    // overwhelming probability for this fixed input.
    let wrong = DataKey::from_slice(&[6u8; 16]).unwrap();
    let r = open_to_vec(Mode::Cbc, &wrong, &Iv::from_slice(&iv).unwrap(), 64, &sealed);
    assert_eq!(r, Err(OpenFailure::Padding));
    let r = open_to_vec(Mode::Cbc, &key, &Iv::from_slice(&iv).unwrap(), 64, &sealed[..sealed.len() - 1]);
    assert_eq!(r, Err(OpenFailure::Truncated));
}

#[test]
fn cbc_batch_lanes_equal_one_pass_cbc() {
    use sealpipe::cipher::{CbcBatch, CBC_LANES};
    for key_len in [16, 24, 32] {
        let key = data(key_len, 11);
        let dk = DataKey::from_slice(&key).unwrap();
        // Messages of different lengths; lanes advance together while all
        // have blocks left, then finish one by one and take new messages.
        let messages: Vec<Vec<u8>> = (0..CBC_LANES + 3).map(|i| data(i * 97 + 5, i as u8)).collect();
        let ivs: Vec<Vec<u8>> = (0..messages.len()).map(|i| data(16, 100 + i as u8)).collect();
        let mut batch = CbcBatch::new(&dk);
        let mut out: Vec<Vec<u8>> = messages.iter().map(|_| Vec::new()).collect();
        let mut queue: Vec<usize> = (0..messages.len()).rev().collect();
        let mut lane_msg: Vec<Option<(usize, usize)>> = vec![None; CBC_LANES]; // (message, position)
        loop {
            for lane in 0..CBC_LANES {
                if lane_msg[lane].is_none() {
                    if let Some(m) = queue.pop() {
                        batch.start(lane, Iv::from_slice(&ivs[m]).unwrap());
                        lane_msg[lane] = Some((m, 0));
                    }
                }
            }
            let active: Vec<usize> = (0..CBC_LANES).filter(|&l| lane_msg[l].is_some()).collect();
            if active.is_empty() {
                break;
            }
            let step = active
                .iter()
                .map(|&l| {
                    let (m, at) = lane_msg[l].unwrap();
                    (messages[m].len() - at) / 16 * 16
                })
                .min()
                .unwrap()
                .min(64);
            let inputs: Vec<&[u8]> = active.iter().map(|&l| { let (m, at) = lane_msg[l].unwrap(); &messages[m][at..at + step] }).collect();
            let mut bufs: Vec<Vec<u8>> = active.iter().map(|_| vec![0u8; step]).collect();
            let mut outs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
            batch.update(&active, &inputs, &mut outs);
            for (i, &l) in active.iter().enumerate() {
                let (m, at) = lane_msg[l].unwrap();
                out[m].extend_from_slice(&bufs[i]);
                let at = at + step;
                if messages[m].len() - at < 16 {
                    out[m].extend_from_slice(&batch.finish(l, &messages[m][at..]));
                    lane_msg[l] = None;
                } else {
                    lane_msg[l] = Some((m, at));
                }
            }
        }
        for (m, msg) in messages.iter().enumerate() {
            assert_eq!(out[m], reference::cbc_encrypt(&key, &ivs[m], msg), "key {key_len} message {m}");
        }
    }
}
