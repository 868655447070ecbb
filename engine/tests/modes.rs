//! Every mode against known-answer vectors and against the one-pass
//! reference, over one shared table of edge sizes, with 1 and N threads and
//! with small and large chunks, fed in one window and in many, on every
//! kernel this CPU can run (`with_kernel`), CBC included.

use sealpipe::cipher::{available_kernels, open_to_vec, Kernel, reference, with_kernel, OpenFailure, Opener, Sealer, DEFAULT_CHUNK};
use sealpipe::keys::DataKey;
use sealpipe::format::{Iv, Mode, BLOCK};
use std::path::PathBuf;

/// The kernels to prove: every one this CPU has; or, in the build that
/// forces the RustCrypto crates onto their software backends (`--cfg
/// aes_backend="soft"`, scripts/test.sh), only `soft`, the one path that
/// build changes (the hand-written kernels compile the same either way and
/// are proven by the ordinary build).
fn kernels() -> Vec<Kernel> {
    if cfg!(aes_backend = "soft") {
        vec![Kernel::Soft]
    } else {
        available_kernels()
    }
}

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
        for kernel in kernels() {
            with_kernel(kernel, || {
                for chunk in [16, 32, DEFAULT_CHUNK] {
                    let ours = seal(mode, &key, &iv, chunk, &[1, 3], &pt);
                    let expect_prefix = if whole_blocks_only { &ours[..pt.len()] } else { &ours[..] };
                    assert_eq!(hex::encode(expect_prefix), hex::encode(&ct), "{name} chunk {chunk} kernel {kernel:?}");
                    let dk = DataKey::from_slice(&key).unwrap();
                    let back = open_to_vec(mode, &dk, &Iv::from_slice(&iv).unwrap(), chunk, &ours).unwrap();
                    assert_eq!(back, pt, "{name} decrypt chunk {chunk} kernel {kernel:?}");
                }
            })
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
    for kernel in kernels() {
        for threads in [1, 4] {
            pool(threads).install(|| {
                with_kernel(kernel, || {
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
                                                "{mode} len {len} chunk {chunk} threads {threads} key {key_len} iv {} windows {windows:?} kernel {kernel:?}",
                                                hex::encode(iv)
                                            );
                                        }
                                        let dk = DataKey::from_slice(&key).unwrap();
                                        let back = open_to_vec(mode, &dk, &Iv::from_slice(iv).unwrap(), chunk, &want).unwrap();
                                        assert!(back == plain, "{mode} decrypt len {len} chunk {chunk} threads {threads} kernel {kernel:?}");
                                    }
                                }
                            }
                        }
                    }
                })
            });
        }
    }
}

/// `a·b` in GCM's field (GHASH keyed with `a` over the one block `b`).
fn gf_mul(a: &[u8; 16], b: &[u8; 16]) -> [u8; 16] {
    use ghash::universal_hash::UniversalHash;
    let mut g = ghash::GHash::new(&(*a).into());
    g.update(&[(*b).into()]);
    g.finalize().into()
}

/// `a^-1 = a^(2^128 - 2)`, by square-and-multiply.
fn gf_inv(a: &[u8; 16]) -> [u8; 16] {
    let mut one = [0u8; 16];
    one[0] = 0x80;
    let (mut result, mut base) = (one, *a);
    for bit in 0..128 {
        if bit != 0 {
            result = gf_mul(&result, &base);
        }
        base = gf_mul(&base, &base);
    }
    result
}

/// A 16-byte GCM IV whose J0 under `key` is `j0`. For a 16-byte IV,
/// J0 = GHASH_H(IV ‖ L) = (IV·H ⊕ L)·H with L = [0]^64 ‖ [128]^64, so
/// IV = (J0·H^-1 ⊕ L)·H^-1.
fn gcm_iv_for_j0(key: &[u8], j0: [u8; 16]) -> Vec<u8> {
    use aes::cipher::{BlockCipherEncrypt, KeyInit};
    let mut h = aes::Block::default();
    match key.len() {
        16 => aes::Aes128::new_from_slice(key).unwrap().encrypt_block(&mut h),
        24 => aes::Aes192::new_from_slice(key).unwrap().encrypt_block(&mut h),
        _ => aes::Aes256::new_from_slice(key).unwrap().encrypt_block(&mut h),
    }
    let h: [u8; 16] = h.into();
    let hinv = gf_inv(&h);
    let mut lengths = [0u8; 16];
    lengths[8..].copy_from_slice(&128u64.to_be_bytes());
    let t = gf_mul(&j0, &hinv);
    let iv = gf_mul(&std::array::from_fn(|i| t[i] ^ lengths[i]), &hinv);
    // Check: GHASH(IV ‖ L) is the J0 we asked for.
    let y = gf_mul(&gf_mul(&iv, &h).iter().zip(&lengths).map(|(a, b)| a ^ b).collect::<Vec<u8>>().try_into().unwrap(), &h);
    assert_eq!(y, j0, "IV search");
    iv.to_vec()
}

/// Counter edge cases on every kernel: CTR IVs a few blocks before the low
/// 64 bits wrap (`…ff f0` and friends), with and without all-ones high
/// halves, and the all-ones IV (2^128 wrap); GCM IVs whose J0 low word is
/// 0xffffffff − k, so inc32 wraps (without carry) inside the message.
#[test]
fn counters_wrap_exactly_on_every_kernel() {
    let mut ctr_ivs: Vec<Vec<u8>> = vec![unhex("ffffffffffffffffffffffffffffffff")];
    for k in [0u64, 1, 5, 15, 16, 17, 63, 64] {
        let mut iv = unhex("0123456789abcdef0000000000000000");
        iv[8..].copy_from_slice(&(u64::MAX - k).to_be_bytes());
        ctr_ivs.push(iv.clone());
        iv[..8].copy_from_slice(&[0xff; 8]);
        ctr_ivs.push(iv);
    }
    let plain = data(16 * 40 + 7, 5);
    for key_len in [16, 24, 32] {
        let key = data(key_len, 3);
        let mut gcm_ivs: Vec<Vec<u8>> = vec![unhex("cafebabefacedbaddecaf888")];
        for k in [0u32, 1, 2, 3, 15, 16, 17] {
            let mut j0 = [0xabu8; 16];
            j0[12..].copy_from_slice(&(u32::MAX - k).to_be_bytes());
            gcm_ivs.push(gcm_iv_for_j0(&key, j0));
        }
        for kernel in kernels() {
            with_kernel(kernel, || {
                for (mode, ivs) in [(Mode::Ctr, &ctr_ivs), (Mode::Gcm, &gcm_ivs)] {
                    for iv in ivs {
                        let want = reference_seal(mode, &key, iv, &plain);
                        for chunk in [16, 48, 4096] {
                            for windows in [&[1][..], &[3, 1, 7], &[1000]] {
                                let got = seal(mode, &key, iv, chunk, windows, &plain);
                                assert!(got == want, "{mode} iv {} chunk {chunk} {windows:?} kernel {kernel:?}", hex::encode(iv));
                            }
                        }
                        let dk = DataKey::from_slice(&key).unwrap();
                        let back = open_to_vec(mode, &dk, &Iv::from_slice(iv).unwrap(), 48, &want).unwrap();
                        assert!(back == plain, "{mode} decrypt iv {} kernel {kernel:?}", hex::encode(iv));
                    }
                }
            })
        }
    }
}

/// GCM specification test cases 3 and 15 (McGrew & Viega; NIST SP 800-38D
/// examples: AES-128 and AES-256, 96-bit IV, no AAD, 64 bytes), on every kernel.
#[test]
fn gcm_spec_vectors_on_every_kernel() {
    let pt = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
    let cases = [
        (
            "feffe9928665731c6d6a8f9467308308",
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
            "4d5c2af327cd64a62cf35abd2ba6fab4",
        ),
        (
            "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
            "b094dac5d93471bdec1a502270e3cc6c",
        ),
    ];
    let iv = unhex("cafebabefacedbaddecaf888");
    for kernel in kernels() {
        with_kernel(kernel, || {
            for (key, ct, tag) in cases {
                let got = seal(Mode::Gcm, &unhex(key), &iv, 32, &[1, 2], &unhex(pt));
                assert_eq!(hex::encode(&got), format!("{ct}{tag}"), "key {key} kernel {kernel:?}");
            }
        })
    }
}

/// Fuzz-style: random modes, key sizes, IVs (many near a counter wrap),
/// lengths, misaligned buffer offsets, chunk sizes and window splits, on a
/// random kernel each time, against the one-pass reference. Fixed seed.
#[test]
fn random_lengths_offsets_and_windows_equal_the_reference() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n.max(1)
    };
    let kernels = kernels();
    let pool = pool(2);
    for round in 0..400 {
        let kernel = kernels[next(kernels.len() as u64) as usize];
        let mode = Mode::ALL[next(3) as usize];
        let key = data([16, 24, 32][next(3) as usize], next(256) as u8);
        let iv_len = if mode == Mode::Cbc || next(2) == 0 { 16 } else { 12 };
        let mut iv = data(iv_len, next(256) as u8);
        if iv_len == 16 && next(2) == 0 {
            // A counter a few blocks before the 64- or 128-bit wrap.
            let ones = if next(2) == 0 { 8 } else { 16 };
            iv[16 - ones..].fill(0xff);
            iv[15] = iv[15].wrapping_sub(next(40) as u8);
        }
        let len = match next(4) {
            0 => next(64) as usize,
            1 => next(1024) as usize,
            _ => next(20_000) as usize,
        };
        let (in_off, out_off) = (next(64) as usize, next(64) as usize);
        let buf = data(len + in_off, round as u8);
        let plain = &buf[in_off..];
        let chunk = 16 * (1 + next(300) as usize);
        let windows: Vec<usize> = (0..1 + next(4)).map(|_| 1 + next(200) as usize).collect();
        let want = reference_seal(mode, &key, &iv, plain);
        let got = pool.install(|| {
            with_kernel(kernel, || {
                let dk = DataKey::from_slice(&key).unwrap();
                let mut sealer = Sealer::new(mode, &dk, Iv::from_slice(&iv).unwrap(), chunk);
                let whole = plain.len() - plain.len() % BLOCK;
                let mut out = vec![0u8; whole + out_off];
                let (mut at, mut w) = (0, 0);
                while at < whole {
                    let n = (windows[w % windows.len()] * BLOCK).min(whole - at);
                    sealer.update(&plain[at..at + n], &mut out[out_off + at..out_off + at + n]);
                    at += n;
                    w += 1;
                }
                sealer.finish(&plain[whole..], &mut out);
                out.split_off(out_off)
            })
        });
        let what = format!("round {round} {mode} kernel {kernel:?} len {len} iv {} chunk {chunk} windows {windows:?}", hex::encode(&iv));
        assert!(got == want, "{what}");
        let back = with_kernel(kernel, || {
            open_to_vec(mode, &DataKey::from_slice(&key).unwrap(), &Iv::from_slice(&iv).unwrap(), chunk, &want)
        });
        assert!(back.as_deref() == Ok(plain), "decrypt {what}");
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

/// Multi-buffer CBC on every kernel (the hardware ones share the AES-NI
/// lanes kernel; `soft` is the RustCrypto path).
#[test]
fn cbc_batch_lanes_equal_one_pass_cbc() {
    for kernel in kernels() {
        with_kernel(kernel, || cbc_batch_lanes_equal_one_pass_cbc_on_this_kernel(&format!("{kernel:?}")));
    }
}

fn cbc_batch_lanes_equal_one_pass_cbc_on_this_kernel(kernel: &str) {
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
            assert_eq!(out[m], reference::cbc_encrypt(&key, &ivs[m], msg), "key {key_len} message {m} kernel {kernel}");
        }
    }
}
