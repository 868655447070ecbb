//! VAES + VPCLMULQDQ kernels on 256-bit vectors (AVX2 CPUs without AVX-512,
//! e.g. AMD Zen 3, Intel Alder Lake): CTR sixteen blocks per loop in eight
//! ymm registers, GHASH eight blocks per reduction; the AES-NI kernels
//! finish the last few blocks.

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

/// One AES round (`VAESENC`) of `key` on eight ymm vectors (sixteen
/// blocks), in one `asm!` block: as [`aesni::round8`], the intrinsics
/// version spills and LLVM serializes part of the blocks when keys and
/// blocks outnumber the sixteen ymm registers; eight vectors in flight
/// cover VAESENC's latency on cores that issue two ymm AES ops a cycle.
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
fn vround8(b: &mut [__m256i; 8], key: __m256i) {
    let [b0, b1, b2, b3, b4, b5, b6, b7] = b;
    // SAFETY: VAESENC on registers only (no memory, stack or flags touched);
    // the CPU has VAES and AVX (this function's target features).
    unsafe {
        core::arch::asm!(
            "vaesenc {0}, {0}, {k}",
            "vaesenc {1}, {1}, {k}",
            "vaesenc {2}, {2}, {k}",
            "vaesenc {3}, {3}, {k}",
            "vaesenc {4}, {4}, {k}",
            "vaesenc {5}, {5}, {k}",
            "vaesenc {6}, {6}, {k}",
            "vaesenc {7}, {7}, {k}",
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

/// The sixteen-block loop; returns how many bytes it did (a multiple of 256).
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn ctr_r<const R: usize, const INC32: bool>(rk: &[[u8; 16]; 15], counter: u128, input: &[u8], output: &mut [u8]) -> usize {
    let mut k = [_mm256_setzero_si256(); 15];
    for (i, key) in k.iter_mut().enumerate().take(R + 1) {
        // SAFETY: reads the 16 bytes of `rk[i]`.
        *key = _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(rk[i].as_ptr().cast()) });
    }
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
