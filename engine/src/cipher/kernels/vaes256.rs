//! VAES + VPCLMULQDQ kernels on 256-bit vectors (AVX2 CPUs without AVX-512,
//! e.g. AMD Zen 3, Intel Alder Lake): CTR and CBC decryption sixteen blocks
//! per loop in eight ymm registers, GHASH eight blocks per reduction; the
//! AES-NI kernels finish the last few blocks.

use core::arch::x86_64::*;

use super::{aesni, advance, HTable};

#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
fn add<const INC32: bool>(a: __m256i, b: __m256i) -> __m256i {
    if INC32 {
        _mm256_add_epi32(a, b)
    } else {
        _mm256_add_epi64(a, b)
    }
}

/// CTR, as [`aesni::ctr`].
///
/// # Safety
/// The CPU must have VAES, VPCLMULQDQ, AVX2, AES-NI, SSE4.1; equal lengths.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
pub(super) unsafe fn ctr(rk: &[[u8; 16]; 15], rounds: usize, inc32: bool, counter: u128, input: &[u8], output: &mut [u8]) {
    debug_assert_eq!(input.len(), output.len());
    // SAFETY (all arms): same features as this function; lengths as promised.
    let done = unsafe {
        match (rounds, inc32) {
            (10, true) => ctr_r::<10, true>(rk, counter, input, output),
            (10, false) => ctr_r::<10, false>(rk, counter, input, output),
            (12, true) => ctr_r::<12, true>(rk, counter, input, output),
            (12, false) => ctr_r::<12, false>(rk, counter, input, output),
            (_, true) => ctr_r::<14, true>(rk, counter, input, output),
            (_, false) => ctr_r::<14, false>(rk, counter, input, output),
        }
    };
    if done < input.len() {
        let next = advance(counter, inc32, (done / 16) as u64);
        // SAFETY: this CPU has every feature the AES-NI kernel needs.
        unsafe { aesni::ctr(rk, rounds, inc32, next, &input[done..], &mut output[done..]) }
    }
}

/// Defines an eight-vector VAES round helper: one `asm!` block issuing
/// `$insn` (`vaesenc` or `vaesdec`) with one round key on eight ymm
/// registers (sixteen blocks). As [`aesni::round8`]: the intrinsics
/// version spills and LLVM serializes part of the blocks when keys and
/// blocks outnumber the sixteen ymm registers; eight vectors in flight
/// cover the instruction's latency on cores that issue two ymm AES ops a
/// cycle. (The xmm helpers' near-copy: VEX three-operand form, ymm registers.)
macro_rules! vround8_helper {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        #[inline]
        #[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
        fn $name(b: &mut [__m256i; 8], key: __m256i) {
            let [b0, b1, b2, b3, b4, b5, b6, b7] = b;
            // SAFETY: one VAES round instruction per register (no memory,
            // stack or flags touched); the CPU has VAES and AVX (this
            // function's target features).
            unsafe {
                core::arch::asm!(
                    concat!($insn, " {0}, {0}, {k}"),
                    concat!($insn, " {1}, {1}, {k}"),
                    concat!($insn, " {2}, {2}, {k}"),
                    concat!($insn, " {3}, {3}, {k}"),
                    concat!($insn, " {4}, {4}, {k}"),
                    concat!($insn, " {5}, {5}, {k}"),
                    concat!($insn, " {6}, {6}, {k}"),
                    concat!($insn, " {7}, {7}, {k}"),
                    inout(ymm_reg) *b0,
                    inout(ymm_reg) *b1,
                    inout(ymm_reg) *b2,
                    inout(ymm_reg) *b3,
                    inout(ymm_reg) *b4,
                    inout(ymm_reg) *b5,
                    inout(ymm_reg) *b6,
                    inout(ymm_reg) *b7,
                    k = in(ymm_reg) key,
                    options(pure, nomem, nostack, preserves_flags),
                );
            }
        }
    };
}

vround8_helper!(
    /// One encryption round (`VAESENC`) of `key` on sixteen blocks.
    vround8,
    "vaesenc"
);
vround8_helper!(
    /// One decryption round (`VAESDEC`) of `key` on sixteen blocks.
    vdround8,
    "vaesdec"
);

/// Round keys, `R + 1` of them, broadcast to both lanes.
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
fn load_keys<const R: usize>(rk: &[[u8; 16]; 15]) -> [__m256i; 15] {
    let mut k = [_mm256_setzero_si256(); 15];
    for (i, key) in k.iter_mut().enumerate().take(R + 1) {
        // SAFETY: reads the 16 bytes of `rk[i]`.
        *key = _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(rk[i].as_ptr().cast()) });
    }
    k
}

/// The sixteen-block loop; returns how many bytes it did (a multiple of 256).
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn ctr_r<const R: usize, const INC32: bool>(rk: &[[u8; 16]; 15], counter: u128, input: &[u8], output: &mut [u8]) -> usize {
    let k = load_keys::<R>(rk);
    let bswap = _mm256_broadcastsi128_si256(aesni::bswap_mask());
    let two = _mm256_set_epi64x(0, 2, 0, 2);
    let mut ctr = add::<INC32>(_mm256_broadcastsi128_si256(aesni::to_m128(counter)), _mm256_set_epi64x(0, 1, 0, 0));
    let n = input.len();
    let (ip, op) = (input.as_ptr(), output.as_mut_ptr());
    let mut at = 0;
    while at + 256 <= n {
        let mut b = [_mm256_setzero_si256(); 8];
        for blk in b.iter_mut() {
            *blk = _mm256_xor_si256(_mm256_shuffle_epi8(ctr, bswap), k[0]);
            ctr = add::<INC32>(ctr, two);
        }
        for key in &k[1..R] {
            vround8(&mut b, *key);
        }
        for (j, blk) in b.iter().enumerate() {
            // SAFETY: `at + 32·j + 32 <= at + 256 <= n`, in bounds of both slices.
            unsafe {
                let x = _mm256_loadu_si256(ip.add(at + 32 * j).cast());
                _mm256_storeu_si256(op.add(at + 32 * j).cast(), _mm256_aesenclast_epi128(*blk, _mm256_xor_si256(k[R], x)));
            }
        }
        at += 256;
    }
    at
}

/// GHASH, as [`aesni::ghash`].
///
/// # Safety
/// The CPU must have VPCLMULQDQ, AVX2, PCLMULQDQ, SSE4.1.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
pub(super) unsafe fn ghash(t: &HTable, acc: u128, data: &[u8]) -> u128 {
    debug_assert_eq!(data.len() % 16, 0);
    let bswap = _mm256_broadcastsi128_si256(aesni::bswap_mask());
    let mut h = [_mm256_setzero_si256(); 4];
    for (j, p) in h.iter_mut().enumerate() {
        // SAFETY: reads `t.pow[8 + 2j]` and `t.pow[9 + 2j]` (H^(8-2j), H^(7-2j)), 32 bytes.
        *p = unsafe { _mm256_loadu_si256(t.pow[8 + 2 * j].as_ptr().cast()) };
    }
    let mut x = aesni::to_m128(acc);
    let (n, dp) = (data.len(), data.as_ptr());
    let mut at = 0;
    while at + 128 <= n {
        let (mut lo, mut mi, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256());
        for (j, p) in h.iter().enumerate() {
            // SAFETY: `at + 32·j + 32 <= n`.
            let mut d = _mm256_shuffle_epi8(unsafe { _mm256_loadu_si256(dp.add(at + 32 * j).cast()) }, bswap);
            if j == 0 {
                d = _mm256_xor_si256(d, _mm256_zextsi128_si256(x));
            }
            lo = _mm256_xor_si256(lo, _mm256_clmulepi64_epi128(d, *p, 0x00));
            mi = _mm256_xor_si256(mi, _mm256_clmulepi64_epi128(d, *p, 0x01));
            mi = _mm256_xor_si256(mi, _mm256_clmulepi64_epi128(d, *p, 0x10));
            hi = _mm256_xor_si256(hi, _mm256_clmulepi64_epi128(d, *p, 0x11));
        }
        let fold = |v: __m256i| _mm_xor_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        x = aesni::reduce(fold(lo), fold(mi), fold(hi));
        at += 128;
    }
    let acc = aesni::from_m128(x);
    // SAFETY: this CPU has every feature the AES-NI kernel needs.
    unsafe { aesni::ghash(t, acc, &data[at..]) }
}

/// CBC decryption, as [`aesni::cbc_decrypt`]: sixteen blocks per loop, the
/// last few on the AES-NI kernel.
///
/// # Safety
/// The CPU must have VAES, AVX2, AES-NI, SSE4.1; `dk` from
/// [`aesni::inverse_keys`]; equal lengths, a multiple of 16.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
pub(super) unsafe fn cbc_decrypt(dk: &[[u8; 16]; 15], rounds: usize, iv: &[u8; 16], input: &[u8], output: &mut [u8]) {
    debug_assert!(input.len() == output.len() && input.len().is_multiple_of(16));
    // SAFETY (all arms): same features as this function; lengths as promised.
    let done = unsafe {
        by_rounds!(rounds, cbc_decrypt_r(dk, iv, input, output))
    };
    let prev = super::block_before(iv, input, done);
    // SAFETY: this CPU has every feature the AES-NI kernel needs.
    unsafe { aesni::cbc_decrypt(dk, rounds, prev, &input[done..], &mut output[done..]) }
}

/// The sixteen-block loop; returns how many bytes it did (a multiple of 256).
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn cbc_decrypt_r<const R: usize>(dk: &[[u8; 16]; 15], iv: &[u8; 16], input: &[u8], output: &mut [u8]) -> usize {
    let k = load_keys::<R>(dk);
    let n = input.len();
    let (ip, op) = (input.as_ptr(), output.as_mut_ptr());
    // The ciphertext block before `at` (read from `input`, never `output`).
    // SAFETY: reads the 16 bytes of `iv`.
    let mut last = unsafe { _mm_loadu_si128(iv.as_ptr().cast()) };
    let mut at = 0;
    while at + 256 <= n {
        let mut b = [_mm256_setzero_si256(); 8];
        for (j, blk) in b.iter_mut().enumerate() {
            // SAFETY: `at + 32·j + 32 <= at + 256 <= n`.
            *blk = _mm256_xor_si256(unsafe { _mm256_loadu_si256(ip.add(at + 32 * j).cast()) }, k[0]);
        }
        for key in &k[1..R] {
            vdround8(&mut b, *key);
        }
        for (j, blk) in b.iter().enumerate() {
            // SAFETY: for `j >= 1`, `at + 32·j - 16 >= at` and `+ 32 <= n`:
            // the two input blocks before vector `j`'s; for `j == 0`, `at + 16 <= n`.
            // The store is in `output`'s bounds as the loads are in `input`'s.
            unsafe {
                let prev = if j == 0 {
                    _mm256_set_m128i(_mm_loadu_si128(ip.add(at).cast()), last)
                } else {
                    _mm256_loadu_si256(ip.add(at + 32 * j - 16).cast())
                };
                _mm256_storeu_si256(op.add(at + 32 * j).cast(), _mm256_aesdeclast_epi128(*blk, _mm256_xor_si256(k[R], prev)));
            }
        }
        // SAFETY: `at + 240 + 16 <= n`.
        last = unsafe { _mm_loadu_si128(ip.add(at + 240).cast()) };
        at += 256;
    }
    at
}
