//! Plaintext digests as the pipeline computes them, a window at a time.
//!
//! BLAKE3 and CRC-64/NVME never cap one file: each window is hashed in
//! parallel pieces on the current rayon pool, beside the cipher's chunks.
//! BLAKE3 is a tree hash, so [`blake3::Hasher::update_rayon`] over any split
//! of the input gives the single-pass value exactly; CRC-64/NVME pieces are
//! computed independently and folded in order ([`crc64_combine`]: CRC(A‖B)
//! from CRC(A), CRC(B) and |B|).
//! SHA-256 is one sequential chain: it runs on one core, and the pipeline
//! keeps it off the cipher's path (see [`super::stream`]).

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::format::digest::{Digest, DigestAlg};

/// CRC-64/NVME piece hashed by one task: large enough that the fold (one
/// multiplication in GF(2)[x] mod P per piece) is noise.
const CRC_PIECE: usize = 1 << 20;
/// Below this BLAKE3 hashes on the calling thread (rayon's split costs more
/// than it saves on small inputs; BLAKE3's docs suggest ~128 KiB).
const BLAKE3_PARALLEL_MIN: usize = 128 << 10;

/// One algorithm's running state.
#[derive(Clone)]
enum State {
    Sha256(Sha256),
    Blake3(Box<blake3::Hasher>),
    /// The CRC of the bytes so far (finalized form: the CRC of nothing is 0).
    Crc64(u64),
    None,
}

/// Running digests of one stream of bytes: one algorithm, or two when
/// re-encryption must check the old record's digest and make the new one.
#[derive(Clone)]
pub struct Hasher {
    states: Vec<(DigestAlg, State)>,
}

/// The digests a [`Hasher`] made, the first one first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests(Vec<Digest>);

impl Digests {
    /// The digest of the algorithm the hasher was made with.
    pub fn first(&self) -> &Digest {
        &self.0[0]
    }

    /// The digest of `alg`, if it was computed.
    pub fn get(&self, alg: DigestAlg) -> Option<&Digest> {
        self.0.iter().find(|d| d.alg() == alg)
    }
}

impl Hasher {
    /// A hasher of `alg`.
    pub fn new(alg: DigestAlg) -> Hasher {
        Hasher { states: Vec::new() }.with(Some(alg))
    }

    /// Also compute `alg` (nothing new if it is already computed, or `None`).
    pub fn with(mut self, alg: Option<DigestAlg>) -> Hasher {
        if let Some(alg) = alg.filter(|a| !self.states.iter().any(|(b, _)| b == a)) {
            let state = match alg {
                DigestAlg::Sha256 => State::Sha256(Sha256::new()),
                DigestAlg::Blake3 => State::Blake3(Box::new(blake3::Hasher::new())),
                DigestAlg::Crc64Nvme => State::Crc64(0),
                DigestAlg::None => State::None,
            };
            self.states.push((alg, state));
        }
        self
    }

    /// Whether one of its algorithms is a single sequential chain (SHA-256),
    /// which the pipeline hashes on a thread of its own.
    pub fn sequential(&self) -> bool {
        self.states.iter().any(|(a, _)| *a == DigestAlg::Sha256)
    }

    /// Whether it computes nothing (`none` alone).
    pub fn is_none(&self) -> bool {
        self.states.iter().all(|(a, _)| *a == DigestAlg::None)
    }

    /// Hash the next bytes; BLAKE3 and CRC-64/NVME in parallel on the current rayon pool.
    pub fn update(&mut self, data: &[u8]) {
        for (_, state) in &mut self.states {
            match state {
                State::Sha256(h) => h.update(data),
                State::Blake3(h) if data.len() >= BLAKE3_PARALLEL_MIN => {
                    h.update_rayon(data);
                }
                State::Blake3(h) => {
                    h.update(data);
                }
                State::Crc64(crc) => *crc = crc64_append(*crc, data),
                State::None => {}
            }
        }
    }

    /// The digests, in the order the algorithms were added.
    pub fn finalize(self) -> Digests {
        Digests(
            self.states
                .into_iter()
                .map(|(alg, state)| {
                    let value = match state {
                        State::Sha256(h) => h.finalize().to_vec(),
                        State::Blake3(h) => h.finalize().as_bytes().to_vec(),
                        State::Crc64(crc) => crc.to_be_bytes().to_vec(),
                        State::None => Vec::new(),
                    };
                    Digest::new(alg, value)
                })
                .collect(),
        )
    }
}

/// The CRC-64/NVME of (the bytes whose CRC is `crc`) ‖ `data`: pieces of
/// `data` in parallel, folded in order.
fn crc64_append(crc: u64, data: &[u8]) -> u64 {
    if data.len() <= CRC_PIECE {
        return crc64_combine(crc, crc_fast::crc64_nvme(data), x8n(data.len() as u64));
    }
    let pieces: Vec<u64> = data.par_chunks(CRC_PIECE).map(crc_fast::crc64_nvme).collect();
    let whole = x8n(CRC_PIECE as u64);
    data.chunks(CRC_PIECE).zip(pieces).fold(crc, |acc, (piece, c)| {
        let shift = if piece.len() == CRC_PIECE { whole } else { x8n(piece.len() as u64) };
        crc64_combine(acc, c, shift)
    })
}

// Combining CRCs by hand, not with `crc_fast::checksum_combine`: that one
// (Mark Adler's generic crccomb) rebuilds its operator by squaring 64x64
// GF(2) matrices on every call, and was 8% of the CPU of an HTTPS upload
// with --digest crc64nvme (issue 21's profile: one call per 1 MiB piece).
// zlib's way for CRC-32 (crc32_combine: multmodp, x2nmodp) works for any
// reflected CRC whose init and xorout are both all ones, as CRC-64/NVME's
// are: CRC(A‖B) = CRC(A)·x^(8|B|) mod P ⊕ CRC(B), a few dozen shifts per
// multiplication, and x^(8|B|) is computed once per piece length.

/// CRC-64/NVME's polynomial, bit-reflected (its bit 63 is x^0).
const CRC64_NVME_POLY: u64 = 0xad93_d235_94c9_3659_u64.reverse_bits();

/// a·b mod P, with a and b reflected (bit 63 is x^0), as zlib's multmodp.
fn gf2_mul(a: u64, mut b: u64) -> u64 {
    let mut product = 0;
    let mut m = 1u64 << 63;
    while m != 0 && a & (m | (m - 1)) != 0 {
        if a & m != 0 {
            product ^= b;
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ CRC64_NVME_POLY } else { b >> 1 };
    }
    product
}

/// x^(8·n) mod P (reflected): the operator that shifts a CRC past n bytes.
fn x8n(mut n: u64) -> u64 {
    let mut p = 1u64 << 63; // x^0
    let mut square = 1u64 << (63 - 8); // x^8, then x^16, x^32, ...
    while n != 0 {
        if n & 1 != 0 {
            p = gf2_mul(square, p);
        }
        n >>= 1;
        square = gf2_mul(square, square);
    }
    p
}

/// CRC-64/NVME of A‖B from `crc_a`, `crc_b` and `shift` = [`x8n`] of |B|.
fn crc64_combine(crc_a: u64, crc_b: u64, shift: u64) -> u64 {
    gf2_mul(shift, crc_a) ^ crc_b
}

#[cfg(test)]
pub(crate) mod reference {
    //! Slow, independent digests the fast ones are checked against.
    use super::*;

    /// CRC-64/NVME, bit by bit (reflected polynomial 0x9A6C9329AC4BC9B5,
    /// init and xorout all ones): the reference the fast one must equal.
    pub(crate) fn crc64_nvme_reference(data: &[u8]) -> u64 {
        let mut crc = !0u64;
        for &b in data {
            crc ^= u64::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x9A6C_9329_AC4B_C9B5 } else { crc >> 1 };
            }
        }
        !crc
    }

    /// The digest of `data` hashed whole by each algorithm's own one-shot
    /// function (no pieces, no pool): what every split must reproduce.
    pub(crate) fn reference(alg: DigestAlg, data: &[u8]) -> Vec<u8> {
        match alg {
            DigestAlg::Sha256 => Sha256::digest(data).to_vec(),
            DigestAlg::Blake3 => blake3::hash(data).as_bytes().to_vec(),
            DigestAlg::Crc64Nvme => crc64_nvme_reference(data).to_be_bytes().to_vec(),
            DigestAlg::None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reference::*;
    use super::*;

    #[test]
    fn known_vectors() {
        let digest = |alg, data: &[u8]| {
            let mut h = Hasher::new(alg);
            h.update(data);
            h.finalize().first().hex()
        };
        // The check value of the CRC catalogue, and what S3 reports for "123456789".
        assert_eq!(digest(DigestAlg::Crc64Nvme, b"123456789"), "ae8b14860a799888");
        assert_eq!(crc64_nvme_reference(b"123456789"), 0xAE8B_1486_0A79_9888);
        assert_eq!(digest(DigestAlg::Crc64Nvme, b""), "0000000000000000");
        // b3sum of the empty input and of "abc" (the BLAKE3 paper's test vectors).
        assert_eq!(digest(DigestAlg::Blake3, b""), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
        assert_eq!(digest(DigestAlg::Blake3, b"abc"), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
        // sha256sum of "abc" (FIPS 180-2).
        assert_eq!(digest(DigestAlg::Sha256, b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(digest(DigestAlg::None, b"abc"), "");
    }

    #[test]
    fn any_split_of_the_input_gives_the_one_shot_digest() {
        // Edge sizes around BLAKE3's 1 KiB chunk, the parallel threshold and CRC pieces.
        let sizes = [0usize, 1, 63, 64, 1023, 1024, 1025, BLAKE3_PARALLEL_MIN - 1, BLAKE3_PARALLEL_MIN + 1, CRC_PIECE - 1, CRC_PIECE, CRC_PIECE + 1, 3 * CRC_PIECE + 4097];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        for len in sizes {
            let data: Vec<u8> = (0..len).map(|i| (i * 131 % 253) as u8).collect();
            let want: Vec<Vec<u8>> = DigestAlg::ALL.iter().map(|&alg| reference(alg, &data)).collect();
            // Whole, odd windows, and windows straddling every piece boundary.
            for window in [len.max(1), 7, 16 << 10, CRC_PIECE - 3, CRC_PIECE + 5] {
                let mut h = Hasher::new(DigestAlg::Blake3).with(Some(DigestAlg::Crc64Nvme)).with(Some(DigestAlg::Sha256)).with(Some(DigestAlg::None));
                pool.install(|| data.chunks(window).for_each(|w| h.update(w)));
                let got = h.finalize();
                for (alg, want) in DigestAlg::ALL.iter().zip(&want) {
                    assert_eq!(got.get(*alg).unwrap().bytes(), &want[..], "{alg} len {len} window {window}");
                }
            }
        }
    }

    #[test]
    fn crc64_combine_equals_the_crc_of_the_concatenation_and_crc_fasts_combine() {
        let data: Vec<u8> = (0..(3 << 20) + 77).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for (a, b) in [(0, 0), (0, 5), (5, 0), (1, 1), (9, 7), (1000, 4096), (CRC_PIECE, CRC_PIECE + 3), (77, 3 << 20)] {
            let (x, y) = (&data[..a], &data[a..a + b]);
            let (ca, cb) = (crc_fast::crc64_nvme(x), crc_fast::crc64_nvme(y));
            let got = crc64_combine(ca, cb, x8n(b as u64));
            assert_eq!(got, crc_fast::crc64_nvme(&data[..a + b]), "{a} + {b}");
            assert_eq!(got, crc_fast::checksum_combine(crc_fast::CrcAlgorithm::Crc64Nvme, ca, cb, b as u64), "{a} + {b}");
        }
    }

    #[test]
    fn a_second_algorithm_is_added_once() {
        let h = Hasher::new(DigestAlg::Sha256).with(Some(DigestAlg::Sha256)).with(None);
        assert_eq!(h.states.len(), 1);
        assert!(h.sequential() && !h.is_none());
        assert!(Hasher::new(DigestAlg::None).is_none());
        assert!(!Hasher::new(DigestAlg::Blake3).with(Some(DigestAlg::Crc64Nvme)).sequential());
    }
}
