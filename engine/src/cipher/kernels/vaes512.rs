//! VAES + VPCLMULQDQ kernels on 512-bit vectors (AVX-512F/BW/VL): CTR and
//! CBC decryption 32 blocks per loop in eight zmm registers, GHASH sixteen
//! blocks per loop in four. CTR tails use masked loads and stores; GHASH
//! tails go to the AES-NI kernel, CBC decryption tails to the VAES-256 one.

use core::arch::x86_64::*;

use super::{aesni, vaes256, HTable};

/// Vectors per CTR and CBC-decryption loop iteration.
const LANES: usize = 8;

#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
fn add<const INC32: bool>(a: __m512i, b: __m512i) -> __m512i {
    if INC32 {
        _mm512_add_epi32(a, b)
    } else {
        _mm512_add_epi64(a, b)
    }
}

/// XOR the four 128-bit lanes of `v` into one.
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
fn fold_lanes(v: __m512i) -> __m128i {
    let a = _mm_xor_si128(_mm512_castsi512_si128(v), _mm512_extracti32x4_epi32(v, 1));
    _mm_ternarylogic_epi32(a, _mm512_extracti32x4_epi32(v, 2), _mm512_extracti32x4_epi32(v, 3), 0x96)
}

/// CTR, as [`aesni::ctr`].
///
/// # Safety
/// The CPU must have VAES, VPCLMULQDQ, AVX-512F/BW/VL, AES-NI; equal lengths.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn ctr(rk: &[[u8; 16]; 15], rounds: usize, inc32: bool, counter: u128, input: &[u8], output: &mut [u8]) {
    debug_assert_eq!(input.len(), output.len());
    // SAFETY (all arms): same features as this function; lengths as promised.
    unsafe {
        match (rounds, inc32) {
            (10, true) => ctr_r::<10, true>(rk, counter, input, output),
            (10, false) => ctr_r::<10, false>(rk, counter, input, output),
            (12, true) => ctr_r::<12, true>(rk, counter, input, output),
            (12, false) => ctr_r::<12, false>(rk, counter, input, output),
            (_, true) => ctr_r::<14, true>(rk, counter, input, output),
            (_, false) => ctr_r::<14, false>(rk, counter, input, output),
        }
    }
}

/// Round keys broadcast to all four lanes.
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
fn load_keys<const R: usize>(rk: &[[u8; 16]; 15]) -> [__m512i; 15] {
    let mut k = [_mm512_setzero_si512(); 15];
    for (i, key) in k.iter_mut().enumerate().take(R + 1) {
        // SAFETY: reads the 16 bytes of `rk[i]`.
        *key = _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(rk[i].as_ptr().cast()) });
    }
    k
}

/// The first counter vector: lanes `counter + 0..3`.
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
fn first_counters<const INC32: bool>(counter: u128) -> __m512i {
    add::<INC32>(_mm512_broadcast_i32x4(aesni::to_m128(counter)), _mm512_set_epi64(0, 3, 0, 2, 0, 1, 0, 0))
}

#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
unsafe fn ctr_r<const R: usize, const INC32: bool>(rk: &[[u8; 16]; 15], counter: u128, input: &[u8], output: &mut [u8]) {
    let k = load_keys::<R>(rk);
    let bswap = _mm512_broadcast_i32x4(aesni::bswap_mask());
    let four = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
    let mut ctr = first_counters::<INC32>(counter);
    let n = input.len();
    let (ip, op) = (input.as_ptr(), output.as_mut_ptr());
    let mut at = 0;
    // Eight vectors (32 blocks) in flight: enough independent AES chains to
    // cover VAESENC's latency on cores that issue one or two per cycle.
    while at + 64 * LANES <= n {
        let mut b = [_mm512_setzero_si512(); LANES];
        for blk in b.iter_mut() {
            *blk = _mm512_xor_si512(_mm512_shuffle_epi8(ctr, bswap), k[0]);
            ctr = add::<INC32>(ctr, four);
        }
        for key in &k[1..R] {
            for blk in b.iter_mut() {
                *blk = _mm512_aesenc_epi128(*blk, *key);
            }
        }
        for (j, blk) in b.iter().enumerate() {
            // SAFETY: `at + 64·j + 64 <= at + 64·LANES <= n`, in bounds of both slices.
            unsafe {
                let x = _mm512_loadu_si512(ip.add(at + 64 * j).cast());
                _mm512_storeu_si512(op.add(at + 64 * j).cast(), _mm512_aesenclast_epi128(*blk, _mm512_xor_si512(k[R], x)));
            }
        }
        at += 64 * LANES;
    }
    while at < n {
        let rest = n - at;
        let mask: u64 = if rest >= 64 { !0 } else { (1u64 << rest) - 1 };
        let mut blk = _mm512_xor_si512(_mm512_shuffle_epi8(ctr, bswap), k[0]);
        ctr = add::<INC32>(ctr, four);
        for key in &k[1..R] {
            blk = _mm512_aesenc_epi128(blk, *key);
        }
        // SAFETY: the mask covers only bytes `at..n`, in bounds of both
        // slices; masked-off bytes are neither read nor written.
        unsafe {
            let x = _mm512_maskz_loadu_epi8(mask, ip.add(at).cast());
            _mm512_mask_storeu_epi8(op.add(at).cast(), mask, _mm512_aesenclast_epi128(blk, _mm512_xor_si512(k[R], x)));
        }
        at += 64;
    }
}

/// CBC decryption, as [`aesni::cbc_decrypt`]: 32 blocks per loop, the rest
/// on the VAES-256 kernel. (Shaped as `vaes256::cbc_decrypt`, as the `ctr`
/// wrappers are alike: its target features and tail kernel differ.)
///
/// # Safety
/// The CPU must have VAES, AVX-512F/BW/VL, AVX2, AES-NI; `dk` from
/// [`aesni::inverse_keys`]; equal lengths, a multiple of 16.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn cbc_decrypt(dk: &[[u8; 16]; 15], rounds: usize, iv: &[u8; 16], input: &[u8], output: &mut [u8]) {
    debug_assert!(input.len() == output.len() && input.len().is_multiple_of(16));
    // SAFETY (all arms): same features as this function; lengths as promised.
    let done = unsafe {
        by_rounds!(rounds, cbc_decrypt_r(dk, iv, input, output))
    };
    let prev = super::block_before(iv, input, done);
    // SAFETY: this CPU has every feature the VAES-256 kernel needs.
    unsafe { vaes256::cbc_decrypt(dk, rounds, prev, &input[done..], &mut output[done..]) }
}

/// The 32-block loop; returns how many bytes it did (a multiple of 512).
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
unsafe fn cbc_decrypt_r<const R: usize>(dk: &[[u8; 16]; 15], iv: &[u8; 16], input: &[u8], output: &mut [u8]) -> usize {
    let k = load_keys::<R>(dk);
    let n = input.len();
    let (ip, op) = (input.as_ptr(), output.as_mut_ptr());
    // The ciphertext block before `at`, in lane 3 (read from `input`, never `output`).
    // SAFETY: reads the 16 bytes of `iv`.
    let mut last = _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(iv.as_ptr().cast()) });
    let mut at = 0;
    while at + 64 * LANES <= n {
        let mut b = [_mm512_setzero_si512(); LANES];
        for (j, blk) in b.iter_mut().enumerate() {
            // SAFETY: `at + 64·j + 64 <= at + 64·LANES <= n`.
            *blk = _mm512_xor_si512(unsafe { _mm512_loadu_si512(ip.add(at + 64 * j).cast()) }, k[0]);
        }
        for key in &k[1..R] {
            for blk in b.iter_mut() {
                *blk = _mm512_aesdec_epi128(*blk, *key);
            }
        }
        for (j, blk) in b.iter().enumerate() {
            // SAFETY: for `j >= 1`, `at + 64·j - 16 >= at` and `+ 64 <= n`:
            // the four input blocks before vector `j`'s; for `j == 0`, `at + 64 <= n`.
            // The store is in `output`'s bounds as the loads are in `input`'s.
            unsafe {
                let prev = if j == 0 {
                    // [last, C0, C1, C2]: lane 3 of `last`, then lanes 0-2 of the first vector.
                    _mm512_alignr_epi64(_mm512_loadu_si512(ip.add(at).cast()), last, 6)
                } else {
                    _mm512_loadu_si512(ip.add(at + 64 * j - 16).cast())
                };
                _mm512_storeu_si512(op.add(at + 64 * j).cast(), _mm512_aesdeclast_epi128(*blk, _mm512_xor_si512(k[R], prev)));
            }
        }
        // SAFETY: `at + 64·LANES - 64 + 64 <= n`; its lane 3 is the last block.
        last = unsafe { _mm512_loadu_si512(ip.add(at + 64 * LANES - 64).cast()) };
        at += 64 * LANES;
    }
    at
}

/// The four key-power vectors, H^16..H^1.
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
fn load_powers(t: &HTable) -> [__m512i; 4] {
    let mut h = [_mm512_setzero_si512(); 4];
    for (j, p) in h.iter_mut().enumerate() {
        // SAFETY: reads `t.pow[4j..4j + 4]`, 64 bytes inside the table.
        *p = unsafe { _mm512_loadu_si512(t.pow[4 * j].as_ptr().cast()) };
    }
    h
}

/// GHASH sixteen byte-reflected blocks `d` (the accumulator already XORed
/// into the first) against H^16..H^1: the reduced 128-bit result.
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
fn ghash16(d: &[__m512i; 4], h: &[__m512i; 4]) -> __m128i {
    let (mut lo, mut mi, mut hi) = (_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512());
    for (x, p) in d.iter().zip(h) {
        lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(*x, *p, 0x00));
        mi = _mm512_ternarylogic_epi32(mi, _mm512_clmulepi64_epi128(*x, *p, 0x01), _mm512_clmulepi64_epi128(*x, *p, 0x10), 0x96);
        hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(*x, *p, 0x11));
    }
    aesni::reduce(fold_lanes(lo), fold_lanes(mi), fold_lanes(hi))
}

/// GHASH, as [`aesni::ghash`].
///
/// # Safety
/// The CPU must have VPCLMULQDQ, AVX-512F/BW/VL, PCLMULQDQ, SSE4.1.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn ghash(t: &HTable, acc: u128, data: &[u8]) -> u128 {
    debug_assert_eq!(data.len() % 16, 0);
    let bswap = _mm512_broadcast_i32x4(aesni::bswap_mask());
    let h = load_powers(t);
    let mut x = aesni::to_m128(acc);
    let (n, dp) = (data.len(), data.as_ptr());
    let mut at = 0;
    while at + 256 <= n {
        let mut d = [_mm512_setzero_si512(); 4];
        for (j, v) in d.iter_mut().enumerate() {
            // SAFETY: `at + 64·j + 64 <= n`.
            *v = _mm512_shuffle_epi8(unsafe { _mm512_loadu_si512(dp.add(at + 64 * j).cast()) }, bswap);
        }
        d[0] = _mm512_xor_si512(d[0], _mm512_zextsi128_si512(x));
        x = ghash16(&d, &h);
        at += 256;
    }
    let acc = aesni::from_m128(x);
    // SAFETY: this CPU has every feature the AES-NI kernel needs.
    unsafe { aesni::ghash(t, acc, &data[at..]) }
}

/// Fused GCM over whole 256-byte groups: CTR with inc32 from `counter` and
/// GHASH of the ciphertext (the output when sealing, the input when
/// opening) into `acc`, in one pass. Returns `(bytes done, acc)`; the caller
/// finishes the last < 256 bytes with [`ctr`] and [`ghash`].
///
/// Sealing is software-pipelined: the GHASH of one group's ciphertext runs
/// beside the AES rounds of the next, so the AES and carry-less multiply
/// units work at the same time.
///
/// # Safety
/// As [`ctr`] and [`ghash`]; `input.len() == output.len()`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn gcm(
    rk: &[[u8; 16]; 15],
    rounds: usize,
    t: &HTable,
    seal: bool,
    acc: u128,
    counter: u128,
    input: &[u8],
    output: &mut [u8],
) -> (usize, u128) {
    debug_assert_eq!(input.len(), output.len());
    // SAFETY (all arms): same features as this function; lengths as promised.
    unsafe {
        match (rounds, seal) {
            (10, true) => gcm_r::<10, true>(rk, t, acc, counter, input, output),
            (10, false) => gcm_r::<10, false>(rk, t, acc, counter, input, output),
            (12, true) => gcm_r::<12, true>(rk, t, acc, counter, input, output),
            (12, false) => gcm_r::<12, false>(rk, t, acc, counter, input, output),
            (_, true) => gcm_r::<14, true>(rk, t, acc, counter, input, output),
            (_, false) => gcm_r::<14, false>(rk, t, acc, counter, input, output),
        }
    }
}

#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq,avx512f,avx512bw,avx512vl")]
unsafe fn gcm_r<const R: usize, const SEAL: bool>(
    rk: &[[u8; 16]; 15],
    t: &HTable,
    acc: u128,
    counter: u128,
    input: &[u8],
    output: &mut [u8],
) -> (usize, u128) {
    let k = load_keys::<R>(rk);
    let h = load_powers(t);
    let bswap = _mm512_broadcast_i32x4(aesni::bswap_mask());
    let four = _mm512_set_epi64(0, 4, 0, 4, 0, 4, 0, 4);
    let mut ctr = first_counters::<true>(counter);
    let mut x = aesni::to_m128(acc);
    let groups = input.len() / 256;
    let (ip, op) = (input.as_ptr(), output.as_mut_ptr());
    // Byte-reflected ciphertext of the previous group, not yet hashed (sealing).
    let mut pending: Option<[__m512i; 4]> = None;
    for g in 0..groups {
        let at = 256 * g;
        let mut inp = [_mm512_setzero_si512(); 4];
        for (j, v) in inp.iter_mut().enumerate() {
            // SAFETY: `at + 64·j + 64 <= 256·groups <= input.len()`.
            *v = unsafe { _mm512_loadu_si512(ip.add(at + 64 * j).cast()) };
        }
        let mut b = [_mm512_setzero_si512(); 4];
        for blk in b.iter_mut() {
            *blk = _mm512_xor_si512(_mm512_shuffle_epi8(ctr, bswap), k[0]);
            ctr = _mm512_add_epi32(ctr, four);
        }
        // The GHASH work of this step, issued among the AES rounds.
        let hash_now: Option<[__m512i; 4]> = if SEAL {
            pending.take()
        } else {
            Some(inp.map(|v| _mm512_shuffle_epi8(v, bswap)))
        };
        for (r, key) in k[1..R].iter().enumerate() {
            for blk in b.iter_mut() {
                *blk = _mm512_aesenc_epi128(*blk, *key);
            }
            if r == 1 {
                if let Some(mut d) = hash_now {
                    d[0] = _mm512_xor_si512(d[0], _mm512_zextsi128_si512(x));
                    x = ghash16(&d, &h);
                }
            }
        }
        let mut c = [_mm512_setzero_si512(); 4];
        for (j, blk) in b.iter().enumerate() {
            c[j] = _mm512_aesenclast_epi128(*blk, _mm512_xor_si512(k[R], inp[j]));
            // SAFETY: `at + 64·j + 64 <= output.len()` (equal lengths).
            unsafe { _mm512_storeu_si512(op.add(at + 64 * j).cast(), c[j]) };
        }
        if SEAL {
            pending = Some(c.map(|v| _mm512_shuffle_epi8(v, bswap)));
        }
    }
    if let Some(mut d) = pending {
        d[0] = _mm512_xor_si512(d[0], _mm512_zextsi128_si512(x));
        x = ghash16(&d, &h);
    }
    (256 * groups, aesni::from_m128(x))
}
