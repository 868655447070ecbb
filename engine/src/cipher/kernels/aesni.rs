//! AES-NI + PCLMULQDQ kernels on 128-bit vectors: CTR and CBC decryption
//! eight blocks per loop, GHASH eight blocks per reduction, CBC encryption
//! (one chain, or eight chains in lockstep). Also the single-block pieces
//! the wider backends use for their tails, and the only CBC encryption: a
//! chain is one block at a time whatever the vector width.

use core::arch::x86_64::*;

use super::HTable;

/// Byte-reverse each 128-bit lane (PSHUFB mask).
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) fn bswap_mask() -> __m128i {
    _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
}

/// The reduction constant: x^127 + x^126 + x^121 + 1 (see `reduce`).
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) fn gfpoly() -> __m128i {
    _mm_set_epi64x(0xc200_0000_0000_0000_u64 as i64, 1)
}

#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) fn to_m128(x: u128) -> __m128i {
    _mm_set_epi64x((x >> 64) as i64, x as i64)
}

#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) fn from_m128(v: __m128i) -> u128 {
    let lo = _mm_cvtsi128_si64(v) as u64 as u128;
    let hi = _mm_extract_epi64(v, 1) as u64 as u128;
    (hi << 64) | lo
}

/// Add `b` to the counter lane `a`: to its low 32 bits (inc32, wrapping) or
/// its low 64 bits (no carry; the caller splits runs where they would wrap).
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
fn add<const INC32: bool>(a: __m128i, b: __m128i) -> __m128i {
    if INC32 {
        _mm_add_epi32(a, b)
    } else {
        _mm_add_epi64(a, b)
    }
}

/// Reduce the 256-bit product `hi·x^128 + mi·x^64 + lo` to 128 bits: two
/// folds, each cancelling the lowest 64 bits with a multiple of the
/// polynomial (the bits are not reflected; the key powers carry x^-1).
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) fn reduce(lo: __m128i, mi: __m128i, hi: __m128i) -> __m128i {
    let poly = gfpoly();
    let t = _mm_clmulepi64_si128(poly, lo, 0x01);
    let mi = _mm_xor_si128(_mm_xor_si128(mi, _mm_shuffle_epi32(lo, 0x4e)), t);
    let t = _mm_clmulepi64_si128(poly, mi, 0x01);
    _mm_xor_si128(_mm_xor_si128(hi, _mm_shuffle_epi32(mi, 0x4e)), t)
}

/// One GHASH multiplication, reduced.
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) fn mul(a: __m128i, b: __m128i) -> __m128i {
    let lo = _mm_clmulepi64_si128(a, b, 0x00);
    let mi = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x01), _mm_clmulepi64_si128(a, b, 0x10));
    let hi = _mm_clmulepi64_si128(a, b, 0x11);
    reduce(lo, mi, hi)
}

/// `a·b` on the kernels' representation (key powers).
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) fn gmul(a: u128, b: u128) -> u128 {
    from_m128(mul(to_m128(a), to_m128(b)))
}

/// CTR: XOR the keystream from counter block `counter` (an integer, big-endian
/// on the wire) into `output`. `input` and `output` have the same length.
///
/// # Safety
/// The CPU must have AES-NI, PCLMULQDQ and SSE4.1; `output.len() == input.len()`.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
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

/// Defines an eight-block AES round helper: one `asm!` block issuing
/// `$insn` (`aesenc` or `aesdec`) with one round key on eight xmm registers.
///
/// Why inline assembly: with intrinsics, the fifteen round keys and eight
/// blocks do not fit the sixteen xmm registers, and LLVM's scheduler then
/// ran four blocks interleaved and the other four one after another, each a
/// 14-round dependency chain (seen with objdump; CTR-256 ran at 5.3 GB/s
/// against `openssl speed`'s 8.2 on a Zen 4 core with the same AES-NI). An
/// asm block per round pins the eight-way interleave: eight independent
/// rounds cover the instruction's latency at two per cycle.
macro_rules! round8_helper {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        #[inline]
        #[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
        pub(super) fn $name(b: &mut [__m128i; 8], key: __m128i) {
            let [b0, b1, b2, b3, b4, b5, b6, b7] = b;
            // SAFETY: one AES round instruction per register (no memory,
            // stack or flags touched); the CPU has AES-NI (this function's
            // target feature).
            unsafe {
                core::arch::asm!(
                    concat!($insn, " {0}, {k}"),
                    concat!($insn, " {1}, {k}"),
                    concat!($insn, " {2}, {k}"),
                    concat!($insn, " {3}, {k}"),
                    concat!($insn, " {4}, {k}"),
                    concat!($insn, " {5}, {k}"),
                    concat!($insn, " {6}, {k}"),
                    concat!($insn, " {7}, {k}"),
                    inout(xmm_reg) *b0,
                    inout(xmm_reg) *b1,
                    inout(xmm_reg) *b2,
                    inout(xmm_reg) *b3,
                    inout(xmm_reg) *b4,
                    inout(xmm_reg) *b5,
                    inout(xmm_reg) *b6,
                    inout(xmm_reg) *b7,
                    k = in(xmm_reg) key,
                    options(pure, nomem, nostack, preserves_flags),
                );
            }
        }
    };
}

round8_helper!(
    /// One encryption round (`AESENC`) of `key` on eight blocks.
    round8,
    "aesenc"
);
round8_helper!(
    /// One decryption round (`AESDEC`, equivalent inverse cipher) of `key` on eight blocks.
    dround8,
    "aesdec"
);

/// Round keys, `R + 1` of them, in registers (or where LLVM keeps them).
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
fn load_keys<const R: usize>(rk: &[[u8; 16]; 15]) -> [__m128i; 15] {
    let mut k = [_mm_setzero_si128(); 15];
    for (i, key) in k.iter_mut().enumerate().take(R + 1) {
        // SAFETY: reads the 16 bytes of `rk[i]`.
        *key = unsafe { _mm_loadu_si128(rk[i].as_ptr().cast()) };
    }
    k
}

#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
unsafe fn ctr_r<const R: usize, const INC32: bool>(rk: &[[u8; 16]; 15], counter: u128, input: &[u8], output: &mut [u8]) {
    let k = load_keys::<R>(rk);
    let bswap = bswap_mask();
    let one = _mm_set_epi64x(0, 1);
    let mut ctr = to_m128(counter);
    let n = input.len();
    let (ip, op) = (input.as_ptr(), output.as_mut_ptr());
    let mut at = 0;
    while at + 128 <= n {
        let mut b = [_mm_setzero_si128(); 8];
        for blk in b.iter_mut() {
            *blk = _mm_xor_si128(_mm_shuffle_epi8(ctr, bswap), k[0]);
            ctr = add::<INC32>(ctr, one);
        }
        for key in &k[1..R] {
            round8(&mut b, *key);
        }
        for (j, blk) in b.iter().enumerate() {
            // SAFETY: `at + 16·j + 16 <= at + 128 <= n`, in bounds of both slices.
            unsafe {
                let x = _mm_loadu_si128(ip.add(at + 16 * j).cast());
                _mm_storeu_si128(op.add(at + 16 * j).cast(), _mm_aesenclast_si128(*blk, _mm_xor_si128(k[R], x)));
            }
        }
        at += 128;
    }
    while at < n {
        let mut blk = _mm_xor_si128(_mm_shuffle_epi8(ctr, bswap), k[0]);
        ctr = add::<INC32>(ctr, one);
        for key in &k[1..R] {
            blk = _mm_aesenc_si128(blk, *key);
        }
        let ks = _mm_aesenclast_si128(blk, k[R]);
        if n - at >= 16 {
            // SAFETY: `at + 16 <= n`.
            unsafe { _mm_storeu_si128(op.add(at).cast(), _mm_xor_si128(ks, _mm_loadu_si128(ip.add(at).cast()))) };
        } else {
            let mut buf = [0u8; 16];
            // SAFETY: writes the 16 bytes of `buf`.
            unsafe { _mm_storeu_si128(buf.as_mut_ptr().cast(), ks) };
            for (i, b) in buf.iter().enumerate().take(n - at) {
                output[at + i] = input[at + i] ^ b;
            }
        }
        at += 16;
    }
}

/// GHASH `data` (a multiple of 16 bytes) into `acc`.
///
/// # Safety
/// The CPU must have PCLMULQDQ and SSE4.1.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) unsafe fn ghash(t: &HTable, acc: u128, data: &[u8]) -> u128 {
    debug_assert_eq!(data.len() % 16, 0);
    let bswap = bswap_mask();
    let mut h = [_mm_setzero_si128(); 8];
    for (j, p) in h.iter_mut().enumerate() {
        // SAFETY: reads the 16 bytes of `t.pow[8 + j]` (H^(8-j)).
        *p = unsafe { _mm_loadu_si128(t.pow[8 + j].as_ptr().cast()) };
    }
    let mut x = to_m128(acc);
    let (n, dp) = (data.len(), data.as_ptr());
    let mut at = 0;
    while at + 128 <= n {
        let (mut lo, mut mi, mut hi) = (_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128());
        for (j, p) in h.iter().enumerate() {
            // SAFETY: `at + 16·j + 16 <= n`.
            let mut d = _mm_shuffle_epi8(unsafe { _mm_loadu_si128(dp.add(at + 16 * j).cast()) }, bswap);
            if j == 0 {
                d = _mm_xor_si128(d, x);
            }
            lo = _mm_xor_si128(lo, _mm_clmulepi64_si128(d, *p, 0x00));
            mi = _mm_xor_si128(mi, _mm_clmulepi64_si128(d, *p, 0x01));
            mi = _mm_xor_si128(mi, _mm_clmulepi64_si128(d, *p, 0x10));
            hi = _mm_xor_si128(hi, _mm_clmulepi64_si128(d, *p, 0x11));
        }
        x = reduce(lo, mi, hi);
        at += 128;
    }
    while at < n {
        // SAFETY: `at + 16 <= n` (whole blocks).
        let d = _mm_shuffle_epi8(unsafe { _mm_loadu_si128(dp.add(at).cast()) }, bswap);
        x = mul(_mm_xor_si128(d, x), h[7]);
        at += 16;
    }
    from_m128(x)
}

/// The decryption round keys of the equivalent inverse cipher (FIPS-197
/// §5.3.5) from the encryption ones: `dk[0] = rk[R]`, `dk[i] =
/// InvMixColumns(rk[R - i])` (`AESIMC`) for `0 < i < R`, `dk[R] = rk[0]`.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) fn inverse_keys(rk: &[[u8; 16]; 15], rounds: usize) -> [[u8; 16]; 15] {
    let mut dk = [[0u8; 16]; 15];
    for (i, d) in dk.iter_mut().enumerate().take(rounds + 1) {
        // SAFETY: reads the 16 bytes of `rk[rounds - i]` (`i <= rounds <= 14`).
        let k = unsafe { _mm_loadu_si128(rk[rounds - i].as_ptr().cast()) };
        let k = if i == 0 || i == rounds { k } else { _mm_aesimc_si128(k) };
        // SAFETY: writes the 16 bytes of `dk[i]`.
        unsafe { _mm_storeu_si128(d.as_mut_ptr().cast(), k) };
    }
    dk
}

/// CBC decryption of whole blocks: `output[i] = D(input[i]) ^ input[i - 1]`,
/// `iv` before the first. Blocks are independent, eight per loop.
///
/// # Safety
/// The CPU must have AES-NI and SSE4.1; `dk` from [`inverse_keys`];
/// `output.len() == input.len()`, a multiple of 16.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) unsafe fn cbc_decrypt(dk: &[[u8; 16]; 15], rounds: usize, iv: &[u8; 16], input: &[u8], output: &mut [u8]) {
    debug_assert!(input.len() == output.len() && input.len().is_multiple_of(16));
    // SAFETY (all arms): same features as this function; lengths as promised.
    unsafe {
        by_rounds!(rounds, cbc_decrypt_r(dk, iv, input, output))
    }
}

#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
unsafe fn cbc_decrypt_r<const R: usize>(dk: &[[u8; 16]; 15], iv: &[u8; 16], input: &[u8], output: &mut [u8]) {
    let k = load_keys::<R>(dk);
    let n = input.len();
    let (ip, op) = (input.as_ptr(), output.as_mut_ptr());
    // The ciphertext block before `at` (read from `input`, never `output`).
    // SAFETY: reads the 16 bytes of `iv`.
    let mut last = unsafe { _mm_loadu_si128(iv.as_ptr().cast()) };
    let mut at = 0;
    while at + 128 <= n {
        let mut b = [_mm_setzero_si128(); 8];
        for (j, blk) in b.iter_mut().enumerate() {
            // SAFETY: `at + 16·j + 16 <= at + 128 <= n`.
            *blk = _mm_xor_si128(unsafe { _mm_loadu_si128(ip.add(at + 16 * j).cast()) }, k[0]);
        }
        for key in &k[1..R] {
            dround8(&mut b, *key);
        }
        for (j, blk) in b.iter().enumerate() {
            // SAFETY: for `j >= 1`, `at + 16·j - 16 >= at` and `+ 16 <= n`:
            // the input block before block `j`; the store is in `output`'s bounds likewise.
            unsafe {
                let prev = if j == 0 { last } else { _mm_loadu_si128(ip.add(at + 16 * j - 16).cast()) };
                _mm_storeu_si128(op.add(at + 16 * j).cast(), _mm_aesdeclast_si128(*blk, _mm_xor_si128(k[R], prev)));
            }
        }
        // SAFETY: `at + 112 + 16 <= n`.
        last = unsafe { _mm_loadu_si128(ip.add(at + 112).cast()) };
        at += 128;
    }
    while at < n {
        // SAFETY: `at + 16 <= n` (whole blocks), in bounds of both slices.
        unsafe {
            let c = _mm_loadu_si128(ip.add(at).cast());
            let mut x = _mm_xor_si128(c, k[0]);
            for key in &k[1..R] {
                x = _mm_aesdec_si128(x, *key);
            }
            _mm_storeu_si128(op.add(at).cast(), _mm_aesdeclast_si128(x, _mm_xor_si128(k[R], last)));
            last = c;
        }
        at += 16;
    }
}

/// CBC encryption of whole blocks on one chain, from `chain` (the IV or the
/// last ciphertext block), which is left holding the last ciphertext block.
/// Latency-bound (each block needs the one before), so this is the only
/// CBC encryption kernel: wider vectors add nothing to a single chain.
///
/// # Safety
/// The CPU must have AES-NI and SSE4.1; `output.len() == input.len()`, a multiple of 16.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) unsafe fn cbc_encrypt(rk: &[[u8; 16]; 15], rounds: usize, chain: &mut [u8; 16], input: &[u8], output: &mut [u8]) {
    debug_assert!(input.len() == output.len() && input.len().is_multiple_of(16));
    // SAFETY (all arms): same features as this function; lengths as promised.
    unsafe {
        by_rounds!(rounds, cbc_encrypt_r(rk, chain, input, output))
    }
}

#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
unsafe fn cbc_encrypt_r<const R: usize>(rk: &[[u8; 16]; 15], chain: &mut [u8; 16], input: &[u8], output: &mut [u8]) {
    let n = input.len();
    if n == 0 {
        return;
    }
    let k = load_keys::<R>(rk);
    // AESENCLAST ends with the XOR of its key, so the last round of block i
    // with the key `k[R] ^ k[0] ^ p[i + 1]` yields block i + 1's whitened
    // input directly: no XOR on the chain's critical path (13 AESENC + 1
    // AESENCLAST per block). The ciphertext itself comes from a second
    // AESENCLAST beside it, off the chain.
    let last_first = _mm_xor_si128(k[R], k[0]);
    let (ip, op) = (input.as_ptr(), output.as_mut_ptr());
    // SAFETY: reads the 16 bytes of `chain` and the first input block (`n >= 16`).
    let mut s = unsafe { _mm_xor_si128(_mm_loadu_si128(chain.as_ptr().cast()), _mm_xor_si128(_mm_loadu_si128(ip.cast()), k[0])) };
    let mut at = 0;
    loop {
        for key in &k[1..R] {
            s = _mm_aesenc_si128(s, *key);
        }
        let c = _mm_aesenclast_si128(s, k[R]);
        // SAFETY: `at + 16 <= n`, in bounds of `output`.
        unsafe { _mm_storeu_si128(op.add(at).cast(), c) };
        at += 16;
        if at == n {
            // SAFETY: writes the 16 bytes of `chain`.
            unsafe { _mm_storeu_si128(chain.as_mut_ptr().cast(), c) };
            return;
        }
        // SAFETY: `at + 16 <= n` (whole blocks), in bounds of `input`.
        s = _mm_aesenclast_si128(s, _mm_xor_si128(last_first, unsafe { _mm_loadu_si128(ip.add(at).cast()) }));
    }
}

/// CBC encryption of up to eight chains in lockstep (multi-buffer): step
/// `j` encrypts block `j` of every lane, the eight chains kept in xmm
/// registers across steps and interleaved by [`round8`], so their AESENCs
/// overlap. Lane `l` reads `inputs[l]`, writes `outputs[l]` and continues
/// from, then updates, `chains[l]`; lanes past `chains.len()` run on a
/// scratch block (free: eight chains take as long as one, AESENC's latency
/// being four times its issue interval at two per cycle).
///
/// # Safety
/// The CPU must have AES-NI and SSE4.1; `chains`, `inputs` and `outputs`
/// have the same length, at most 8; every input and output has the same
/// length, a multiple of 16.
#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
pub(super) unsafe fn cbc_encrypt_lanes(rk: &[[u8; 16]; 15], rounds: usize, chains: &mut [[u8; 16]], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
    debug_assert!(chains.len() <= 8 && inputs.len() == chains.len() && outputs.len() == chains.len());
    // SAFETY (all arms): same features as this function; lengths as promised.
    unsafe {
        by_rounds!(rounds, cbc_encrypt_lanes_r(rk, chains, inputs, outputs))
    }
}

#[target_feature(enable = "sse2,ssse3,sse4.1,aes,pclmulqdq")]
unsafe fn cbc_encrypt_lanes_r<const R: usize>(rk: &[[u8; 16]; 15], chains: &mut [[u8; 16]], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
    let n = inputs.first().map_or(0, |i| i.len());
    let k = load_keys::<R>(rk);
    // Unused lanes read a zero block and write a scratch one, always at
    // offset 0, so the loop below is the same for any number of lanes.
    let zero = [0u8; 16];
    let mut sink = [0u8; 16];
    let mut ip = [zero.as_ptr(); 8];
    let mut op = [sink.as_mut_ptr(); 8];
    let mut live = [0usize; 8];
    let mut c = [_mm_setzero_si128(); 8];
    for l in 0..chains.len() {
        debug_assert!(inputs[l].len() == n && outputs[l].len() == n);
        (ip[l], op[l], live[l]) = (inputs[l].as_ptr(), outputs[l].as_mut_ptr(), 1);
        // SAFETY: reads the 16 bytes of `chains[l]`.
        c[l] = unsafe { _mm_loadu_si128(chains[l].as_ptr().cast()) };
    }
    let mut at = 0;
    while at < n {
        let mut b = [_mm_setzero_si128(); 8];
        for l in 0..8 {
            // SAFETY: a used lane reads its block at `at` (`at + 16 <= n`,
            // its length); an unused one reads `zero` (offset 0).
            let p = unsafe { _mm_loadu_si128(ip[l].add(at * live[l]).cast()) };
            b[l] = _mm_xor_si128(_mm_xor_si128(p, k[0]), c[l]);
        }
        for key in &k[1..R] {
            round8(&mut b, *key);
        }
        for l in 0..8 {
            c[l] = _mm_aesenclast_si128(b[l], k[R]);
            // SAFETY: a used lane writes its block at `at` of its output
            // (same length); an unused one writes `sink` (offset 0).
            unsafe { _mm_storeu_si128(op[l].add(at * live[l]).cast(), c[l]) };
        }
        at += 16;
    }
    for (l, chain) in chains.iter_mut().enumerate() {
        // SAFETY: writes the 16 bytes of `chains[l]`.
        unsafe { _mm_storeu_si128(chain.as_mut_ptr().cast(), c[l]) };
    }
}
