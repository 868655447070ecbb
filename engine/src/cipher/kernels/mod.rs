//! Hand-written AES-CTR, AES-CBC and GHASH kernels for x86-64, and the entry
//! points ([`Aes`], [`AesDec`], `Ghash`) that run the one a caller was given.
//! Which one that is, is chosen once in `cipher::dispatch`.
//!
//! Backends, one file each (blocks per loop: CTR / CBC decryption / GHASH):
//!
//! | kernel    | file         | needs                                                    | per loop       |
//! |-----------|--------------|----------------------------------------------------------|----------------|
//! | `vaes512` | `vaes512.rs` | VAES, VPCLMULQDQ, AVX-512F/BW/VL (zmm)                   | 32 / 32 / 16   |
//! | `vaes256` | `vaes256.rs` | VAES, VPCLMULQDQ, AVX2 (ymm)                             | 16 / 16 / 8    |
//! | `aesni`   | `aesni.rs`   | AES-NI, PCLMULQDQ, SSE4.1 (xmm)                          | 8 / 8 / 8      |
//! | `soft`    | (none)       | the RustCrypto `aes`/`ctr`/`cbc`/`ghash` crates, any CPU |                |
//!
//! CBC encryption is the same AES-NI code under every hardware kernel: one
//! chain is a dependency chain of AES rounds, one block at a time, which no
//! vector width shortens ([`Aes::cbc_encrypt`]); several messages under one
//! key run as eight chains in lockstep in xmm registers
//! ([`Aes::cbc_encrypt_lanes`]). CBC decryption ([`AesDec`]) has no chain
//! (block `i` needs ciphertext blocks `i` and `i - 1`) and runs as wide as
//! CTR, on the equivalent inverse cipher's round keys ([`DecKeys`]).
//!
//! Why hand-written intrinsics rather than a crate: no well-kept Rust crate
//! exposes an AES counter-mode kernel with GCM's *and* a full 128-bit
//! big-endian counter that keeps many blocks in flight in registers, nor a
//! GHASH over precomputed powers with one reduction per 8-16 blocks. The
//! RustCrypto `ctr`/`ghash` (`polyval` 0.6: one 128-bit PCLMULQDQ lane)
//! stack re-enters the AES backend per batch and reduces per block;
//! `aws-lc-rs` only takes 12-byte GCM nonces (we must also write 16-byte-IV
//! GCM and 128-bit-counter CTR, FORMAT.md) and exposes no GHASH for the
//! parallel fold, and it needs a C/asm toolchain build (cmake, ~minutes on
//! this 2-vCPU box), so it was not measured side by side.
//!
//! Counters: a kernel adds to the low 32 bits of the counter block (GCM's
//! inc32, wrapping without carry) or to the low 64 bits *without* carry into
//! the high 64; [`Aes::ctr128`] (safe code, here) splits a run at every point
//! where the low 64 bits wrap, so the 128-bit big-endian counter of CTR mode
//! (wrapping mod 2^128) stays exact while the kernels never branch on carries.
//!
//! GHASH: data blocks are byte-reflected and multiplied without bit
//! reflection; the hash key powers carry an extra factor x^-1 (done once in
//! [`Ghash::new`]), and a reduction by x^128 + x^127 + x^126 + x^121 + 1 is
//! done once per group of blocks (Horner's rule unrolled over H^16..H^1).
//! The scheme follows the public description in the Linux kernel's
//! `aes-gcm-avx10-x86_64.S` comments; the code here is our own.
//!
//! Choice: [`selected`] picks, per mode, the fastest kernel by a short
//! calibration at first use (each kernel the CPU has, the RustCrypto path
//! included, through the real CTR/GCM code, 64 KiB, best of 3, ~1 ms): a
//! fixed table by CPU vendor/family would need maintaining per
//! microarchitecture (512-bit vectors are double-pumped on AMD Zen 4 and may
//! down-clock some Intel parts), a measurement does not. `SEALPIPE_KERNEL`
//! (`vaes512`, `vaes256`, `aesni`, `soft`) forces one; a kernel the CPU
//! lacks falls back to the calibrated choice and `override_note` says so.
//! Tests force each kernel in turn with `with_kernel`. The choice itself
//! (calibration, the override) is in `cipher::dispatch`, above the modes it times.
//! CBC is calibrated on its decryption, the only CBC direction whose speed
//! depends on the kernel.

/// `$f::<R>(args)` for the round count `$rounds` (10, 12, else 14): the
/// kernels' loops take it as a constant so the round loop unrolls.
#[cfg(target_arch = "x86_64")]
macro_rules! by_rounds {
    ($rounds:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $rounds {
            10 => $f::<10>($($arg),*),
            12 => $f::<12>($($arg),*),
            _ => $f::<14>($($arg),*),
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod aesni;
#[cfg(target_arch = "x86_64")]
mod vaes256;
#[cfg(target_arch = "x86_64")]
mod vaes512;


use zeroize::{Zeroize, ZeroizeOnDrop};



/// A CTR/CBC/GHASH implementation the engine can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// VAES + VPCLMULQDQ on 512-bit vectors (AVX-512F/BW/VL).
    Vaes512,
    /// VAES + VPCLMULQDQ on 256-bit vectors (AVX2).
    Vaes256,
    /// AES-NI + PCLMULQDQ on 128-bit vectors.
    Aesni,
    /// The RustCrypto `aes`, `ctr`, `cbc` and `ghash` crates (portable;
    /// they do their own CPU detection inside).
    Soft,
}

impl Kernel {
    /// Every kernel, fastest first on typical hardware.
    pub const ALL: [Kernel; 4] = [Kernel::Vaes512, Kernel::Vaes256, Kernel::Aesni, Kernel::Soft];

    /// The name `SEALPIPE_KERNEL` takes and `kernel_name` reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Vaes512 => "vaes512",
            Kernel::Vaes256 => "vaes256",
            Kernel::Aesni => "aesni",
            Kernel::Soft => "soft",
        }
    }

    /// The kernel called `name`, if any.
    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name.trim())
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let aesni = has!("aes") && has!("pclmulqdq") && has!("sse4.1") && has!("ssse3");
            match self {
                Kernel::Soft => true,
                Kernel::Aesni => aesni,
                Kernel::Vaes256 => aesni && has!("avx2") && has!("vaes") && has!("vpclmulqdq"),
                Kernel::Vaes512 => {
                    aesni
                        && has!("avx2")
                        && has!("vaes")
                        && has!("vpclmulqdq")
                        && has!("avx512f")
                        && has!("avx512bw")
                        && has!("avx512vl")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Kernel::Soft
        }
    }
}

/// The kernels this CPU can run, fastest first on typical hardware.
pub fn available_kernels() -> Vec<Kernel> {
    Kernel::ALL.into_iter().filter(|k| k.is_available()).collect()
}

/// AES S-box (FIPS-197 figure 7), for the key schedule only.
const SBOX: [u8; 256] = [0x63, 0x7c, 0x77, 0x7b, 0xf2, 0x6b, 0x6f, 0xc5, 0x30, 0x01, 0x67, 0x2b, 0xfe, 0xd7, 0xab, 0x76, 0xca, 0x82, 0xc9, 0x7d, 0xfa, 0x59, 0x47, 0xf0, 0xad, 0xd4, 0xa2, 0xaf, 0x9c, 0xa4, 0x72, 0xc0, 0xb7, 0xfd, 0x93, 0x26, 0x36, 0x3f, 0xf7, 0xcc, 0x34, 0xa5, 0xe5, 0xf1, 0x71, 0xd8, 0x31, 0x15, 0x04, 0xc7, 0x23, 0xc3, 0x18, 0x96, 0x05, 0x9a, 0x07, 0x12, 0x80, 0xe2, 0xeb, 0x27, 0xb2, 0x75, 0x09, 0x83, 0x2c, 0x1a, 0x1b, 0x6e, 0x5a, 0xa0, 0x52, 0x3b, 0xd6, 0xb3, 0x29, 0xe3, 0x2f, 0x84, 0x53, 0xd1, 0x00, 0xed, 0x20, 0xfc, 0xb1, 0x5b, 0x6a, 0xcb, 0xbe, 0x39, 0x4a, 0x4c, 0x58, 0xcf, 0xd0, 0xef, 0xaa, 0xfb, 0x43, 0x4d, 0x33, 0x85, 0x45, 0xf9, 0x02, 0x7f, 0x50, 0x3c, 0x9f, 0xa8, 0x51, 0xa3, 0x40, 0x8f, 0x92, 0x9d, 0x38, 0xf5, 0xbc, 0xb6, 0xda, 0x21, 0x10, 0xff, 0xf3, 0xd2, 0xcd, 0x0c, 0x13, 0xec, 0x5f, 0x97, 0x44, 0x17, 0xc4, 0xa7, 0x7e, 0x3d, 0x64, 0x5d, 0x19, 0x73, 0x60, 0x81, 0x4f, 0xdc, 0x22, 0x2a, 0x90, 0x88, 0x46, 0xee, 0xb8, 0x14, 0xde, 0x5e, 0x0b, 0xdb, 0xe0, 0x32, 0x3a, 0x0a, 0x49, 0x06, 0x24, 0x5c, 0xc2, 0xd3, 0xac, 0x62, 0x91, 0x95, 0xe4, 0x79, 0xe7, 0xc8, 0x37, 0x6d, 0x8d, 0xd5, 0x4e, 0xa9, 0x6c, 0x56, 0xf4, 0xea, 0x65, 0x7a, 0xae, 0x08, 0xba, 0x78, 0x25, 0x2e, 0x1c, 0xa6, 0xb4, 0xc6, 0xe8, 0xdd, 0x74, 0x1f, 0x4b, 0xbd, 0x8b, 0x8a, 0x70, 0x3e, 0xb5, 0x66, 0x48, 0x03, 0xf6, 0x0e, 0x61, 0x35, 0x57, 0xb9, 0x86, 0xc1, 0x1d, 0x9e, 0xe1, 0xf8, 0x98, 0x11, 0x69, 0xd9, 0x8e, 0x94, 0x9b, 0x1e, 0x87, 0xe9, 0xce, 0x55, 0x28, 0xdf, 0x8c, 0xa1, 0x89, 0x0d, 0xbf, 0xe6, 0x42, 0x68, 0x41, 0x99, 0x2d, 0x0f, 0xb0, 0x54, 0xbb, 0x16];

/// Expanded AES encryption round keys, as the bytes AESENC takes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct RoundKeys {
    rk: [[u8; 16]; 15],
    rounds: usize,
}

impl RoundKeys {
    /// FIPS-197 key expansion for 16-, 24- or 32-byte keys.
    fn expand(key: &[u8]) -> RoundKeys {
        let nk = key.len() / 4;
        let rounds = nk + 6;
        let mut w = [0u32; 60];
        for (i, word) in key.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        let sub = |x: u32| u32::from_be_bytes(x.to_be_bytes().map(|b| SBOX[b as usize]));
        let mut rcon: u8 = 1;
        for i in nk..4 * (rounds + 1) {
            let mut t = w[i - 1];
            if i % nk == 0 {
                t = sub(t.rotate_left(8)) ^ ((rcon as u32) << 24);
                rcon = (rcon << 1) ^ if rcon & 0x80 != 0 { 0x1b } else { 0 };
            } else if nk > 6 && i % nk == 4 {
                t = sub(t);
            }
            w[i] = w[i - nk] ^ t;
        }
        let mut rk = [[0u8; 16]; 15];
        for (r, k) in rk.iter_mut().enumerate().take(rounds + 1) {
            for j in 0..4 {
                k[4 * j..4 * j + 4].copy_from_slice(&w[4 * r + j].to_be_bytes());
            }
        }
        w.zeroize();
        RoundKeys { rk, rounds }
    }
}

/// Decryption round keys of the equivalent inverse cipher (FIPS-197
/// §5.3.5), as the bytes AESDEC takes: the encryption round keys in reverse
/// order, InvMixColumns (AESIMC) applied to all but the first and last.
/// Zeroized on drop (the inner [`RoundKeys`] is).
#[derive(Clone)]
pub(crate) struct DecKeys(RoundKeys);

impl DecKeys {
    /// # Safety
    /// The CPU must have AES-NI and SSE4.1.
    #[cfg(target_arch = "x86_64")]
    unsafe fn of(enc: &RoundKeys) -> DecKeys {
        // SAFETY: the caller promises AES-NI and SSE4.1.
        let rk = unsafe { aesni::inverse_keys(&enc.rk, enc.rounds) };
        DecKeys(RoundKeys { rk, rounds: enc.rounds })
    }
}

/// An AES key bound to a hardware kernel, encryption direction (CTR, GCM,
/// CBC encryption).
#[derive(Clone)]
pub(crate) struct Aes {
    kernel: Kernel,
    keys: RoundKeys,
}

impl Aes {
    /// `None` for `Kernel::Soft` (the caller keeps its crate path) or a key
    /// that is not 16, 24 or 32 bytes.
    pub(crate) fn new(kernel: Kernel, key: &[u8]) -> Option<Aes> {
        if kernel == Kernel::Soft || !matches!(key.len(), 16 | 24 | 32) || !kernel.is_available() {
            return None;
        }
        Some(Aes { kernel, keys: RoundKeys::expand(key) })
    }

    /// Encrypt one block (tests: key schedule and counters).
    #[cfg(test)]
    pub(crate) fn encrypt_block(&self, block: &[u8; 16]) -> [u8; 16] {
        // CTR over zeros with the block as the counter is E_K(block).
        let mut out = [0u8; 16];
        self.run(true, u128::from_be_bytes(*block), &[0u8; 16], &mut out);
        out
    }

    /// CTR with a 128-bit big-endian counter: XOR into `output` the keystream
    /// that starts `block` blocks after `first` (wrapping mod 2^128).
    pub(crate) fn ctr128(&self, first: u128, block: u64, mut input: &[u8], mut output: &mut [u8]) {
        let mut counter = first.wrapping_add(block as u128);
        while !input.is_empty() {
            // Blocks left before the low 64 bits wrap (2^64 when they are 0).
            let room = (1u128 << 64) - (counter as u64) as u128;
            let blocks = (input.len() as u128).div_ceil(16);
            let take = if blocks <= room { input.len() } else { (room * 16) as usize };
            let (i, rest_in) = input.split_at(take);
            let (o, rest_out) = std::mem::take(&mut output).split_at_mut(take);
            self.run(false, counter, i, o);
            counter = counter.wrapping_add(room.min(blocks));
            input = rest_in;
            output = rest_out;
        }
    }

    /// CTR with GCM's counter (inc32: the low 32 bits wrap, no carry).
    pub(crate) fn ctr32(&self, first: u128, block: u64, input: &[u8], output: &mut [u8]) {
        if !input.is_empty() {
            self.run(true, advance_inc32(first, block), input, output)
        }
    }

    fn run(&self, inc32: bool, counter: u128, input: &[u8], output: &mut [u8]) {
        assert_eq!(input.len(), output.len());
        let k = &self.keys;
        match self.kernel {
            // SAFETY: `Aes::new` only binds a kernel that `is_available`
            // says this CPU runs; the kernels read `input.len()` bytes and
            // write as many to `output` (checked equal above).
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes512 => unsafe { vaes512::ctr(&k.rk, k.rounds, inc32, counter, input, output) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes256 => unsafe { vaes256::ctr(&k.rk, k.rounds, inc32, counter, input, output) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Aesni => unsafe { aesni::ctr(&k.rk, k.rounds, inc32, counter, input, output) },
            _ => unreachable!("Aes::new binds only hardware kernels"),
        }
    }

    /// GCM encryption of whole blocks (and a final partial one): CTR with
    /// inc32 from `block` blocks after `first`, and GHASH of the ciphertext
    /// into `acc` (see [`Ghash`]); returns the new `acc`. One fused pass on
    /// VAES-512, CTR then GHASH over the (cache-resident) piece otherwise.
    pub(crate) fn gcm_seal(&self, gh: &Ghash, acc: u128, first: u128, block: u64, input: &[u8], output: &mut [u8]) -> u128 {
        let (done, acc) = self.gcm_fused(gh, true, acc, first, block, input, output);
        let rest = (block + (done / 16) as u64, &input[done..], &mut output[done..]);
        self.ctr32(first, rest.0, rest.1, rest.2);
        gh.hash(acc, rest.2)
    }

    /// GCM decryption: GHASH of the ciphertext `input` into `acc`, and CTR.
    pub(crate) fn gcm_open(&self, gh: &Ghash, acc: u128, first: u128, block: u64, input: &[u8], output: &mut [u8]) -> u128 {
        let (done, acc) = self.gcm_fused(gh, false, acc, first, block, input, output);
        let (block, input, output) = (block + (done / 16) as u64, &input[done..], &mut output[done..]);
        let acc = gh.hash(acc, input);
        self.ctr32(first, block, input, output);
        acc
    }

    /// The fused kernel's share (whole 256-byte groups), if the kernel has one.
    #[allow(clippy::too_many_arguments)]
    fn gcm_fused(&self, gh: &Ghash, seal: bool, acc: u128, first: u128, block: u64, input: &[u8], output: &mut [u8]) -> (usize, u128) {
        assert_eq!(input.len(), output.len());
        let counter = advance_inc32(first, block);
        match self.kernel {
            // SAFETY: `Aes::new` only binds a kernel this CPU runs (and
            // `Ghash` was made for the same kernel by the same check);
            // lengths checked equal above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes512 if gh.kernel == Kernel::Vaes512 => unsafe {
                vaes512::gcm(&self.keys.rk, self.keys.rounds, &gh.table, seal, acc, counter, input, output)
            },
            _ => (0, acc),
        }
    }
}

impl Aes {
    /// CBC encryption of whole blocks on one chain from `chain` (the IV or
    /// the previous ciphertext block), left holding the last ciphertext block.
    /// AES-NI under every hardware kernel (see the module doc).
    pub(crate) fn cbc_encrypt(&self, chain: &mut [u8; 16], input: &[u8], output: &mut [u8]) {
        assert!(input.len() == output.len() && input.len().is_multiple_of(16), "whole blocks, equal lengths");
        let k = &self.keys;
        match self.kernel {
            // SAFETY: `Aes::new` binds only a kernel that `is_available`
            // says this CPU runs, and every hardware kernel needs AES-NI and
            // SSE4.1; lengths checked above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes512 | Kernel::Vaes256 | Kernel::Aesni => unsafe { aesni::cbc_encrypt(&k.rk, k.rounds, chain, input, output) },
            _ => unreachable!("Aes::new binds only hardware kernels"),
        }
    }

    /// CBC encryption of up to eight chains in lockstep: lane `l` encrypts
    /// `inputs[l]` into `outputs[l]` from, and updating, `chains[l]`; every
    /// input and output has one length, a multiple of 16.
    pub(crate) fn cbc_encrypt_lanes(&self, chains: &mut [[u8; 16]], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        let n = inputs.first().map_or(0, |i| i.len());
        assert!(chains.len() <= 8 && inputs.len() == chains.len() && outputs.len() == chains.len(), "at most 8 lanes, one input and output each");
        assert!(n.is_multiple_of(16) && inputs.iter().all(|i| i.len() == n) && outputs.iter().all(|o| o.len() == n), "whole blocks, equal lengths");
        let k = &self.keys;
        match self.kernel {
            // SAFETY: as in `cbc_encrypt`; lane count and lengths checked above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes512 | Kernel::Vaes256 | Kernel::Aesni => unsafe {
                aesni::cbc_encrypt_lanes(&k.rk, k.rounds, chains, inputs, outputs)
            },
            _ => unreachable!("Aes::new binds only hardware kernels"),
        }
    }

    /// The same key for decryption, on the same kernel.
    pub(crate) fn decryptor(&self) -> AesDec {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `Aes::new` binds only a kernel this CPU runs, and every
            // hardware kernel needs AES-NI and SSE4.1.
            AesDec { kernel: self.kernel, keys: unsafe { DecKeys::of(&self.keys) } }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("Aes::new binds only hardware kernels")
    }
}

/// An AES key bound to a hardware kernel, decryption direction (CBC).
#[derive(Clone)]
pub(crate) struct AesDec {
    kernel: Kernel,
    keys: DecKeys,
}

impl AesDec {
    /// CBC decryption of whole blocks, `iv` being the ciphertext block
    /// before `input` (or the IV).
    pub(crate) fn cbc_decrypt(&self, iv: &[u8; 16], input: &[u8], output: &mut [u8]) {
        assert!(input.len() == output.len() && input.len().is_multiple_of(16), "whole blocks, equal lengths");
        let k = &self.keys.0;
        match self.kernel {
            // SAFETY: `AesDec` is made only from an `Aes`, which binds only a
            // kernel this CPU runs; `keys` are its inverse keys; lengths checked above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes512 => unsafe { vaes512::cbc_decrypt(&k.rk, k.rounds, iv, input, output) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes256 => unsafe { vaes256::cbc_decrypt(&k.rk, k.rounds, iv, input, output) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Aesni => unsafe { aesni::cbc_decrypt(&k.rk, k.rounds, iv, input, output) },
            _ => unreachable!("Aes::new binds only hardware kernels"),
        }
    }
}

/// The ciphertext block before byte `at` of a CBC decryption: `iv` at 0,
/// else `input`'s block ending at `at` (never the output's: the kernels'
/// output may not hold ciphertext).
#[cfg(target_arch = "x86_64")]
fn block_before<'a>(iv: &'a [u8; 16], input: &'a [u8], at: usize) -> &'a [u8; 16] {
    if at == 0 {
        iv
    } else {
        input[at - 16..at].try_into().expect("16 bytes")
    }
}

/// GCM's inc32 applied `n` times.
fn advance_inc32(first: u128, n: u64) -> u128 {
    (first & !0xffff_ffff) | (first as u32).wrapping_add(n as u32) as u128
}

/// Powers H^16..H^1 of a GHASH key, byte-reflected and times x^-1, as the
/// little-endian 128-bit lanes the kernels load (`table[i]` = H^(16-i)).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
#[repr(C, align(64))]
pub(crate) struct HTable {
    pub(crate) pow: [[u8; 16]; 16],
}

/// GHASH (no AAD handling: just the update over data) on a hardware kernel.
/// Accumulators are `u128::from_be_bytes` of the standard 16-byte value.
#[derive(Clone)]
pub(crate) struct Ghash {
    kernel: Kernel,
    table: HTable,
}

impl Ghash {
    /// `None` for `Kernel::Soft` or a kernel this CPU lacks.
    pub(crate) fn new(kernel: Kernel, h: &[u8; 16]) -> Option<Ghash> {
        if kernel == Kernel::Soft || !kernel.is_available() {
            return None;
        }
        let h = u128::from_be_bytes(*h);
        // H·x^-1 in GCM's bit order = a left shift by one, reduced.
        let h1 = (h << 1) ^ if h >> 127 == 1 { 0xc200_0000_0000_0000_0000_0000_0000_0001 } else { 0 };
        let mut pow = [[0u8; 16]; 16];
        let mut cur = h1;
        for i in (0..16).rev() {
            pow[i] = cur.to_le_bytes();
            // SAFETY: every hardware kernel needs PCLMULQDQ, which
            // `is_available` checked above.
            #[cfg(target_arch = "x86_64")]
            {
                cur = unsafe { aesni::gmul(cur, h1) };
            }
        }
        Some(Ghash { kernel, table: HTable { pow } })
    }

    /// Absorb `data` into `acc`, the last partial block zero-padded.
    pub(crate) fn hash(&self, acc: u128, data: &[u8]) -> u128 {
        let whole = data.len() - data.len() % 16;
        let (blocks, tail) = data.split_at(whole);
        let mut acc = self.blocks(acc, blocks);
        if !tail.is_empty() {
            let mut last = [0u8; 16];
            last[..tail.len()].copy_from_slice(tail);
            acc = self.blocks(acc, &last);
        }
        acc
    }

    fn blocks(&self, acc: u128, data: &[u8]) -> u128 {
        let t = &self.table;
        match self.kernel {
            // SAFETY: `Ghash::new` only binds a kernel this CPU runs; the
            // kernels read `data.len()` bytes, a multiple of 16.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes512 => unsafe { vaes512::ghash(t, acc, data) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes256 => unsafe { vaes256::ghash(t, acc, data) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Aesni => unsafe { aesni::ghash(t, acc, data) },
            _ => unreachable!("Ghash::new binds only hardware kernels"),
        }
    }
}

/// The counter `n` blocks after `counter`, as the kernels count: the low 32
/// bits wrapping (inc32) or the low 64 bits (no carry; never wraps in a run).
#[cfg(target_arch = "x86_64")]
fn advance(counter: u128, inc32: bool, n: u64) -> u128 {
    if inc32 {
        (counter & !0xffff_ffff) | (counter as u32).wrapping_add(n as u32) as u128
    } else {
        (counter & !0xffff_ffff_ffff_ffff) | (counter as u64).wrapping_add(n) as u128
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::{BlockCipherEncrypt, KeyInit};
    use ghash::universal_hash::UniversalHash;

    fn bytes(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32).map(|i| (i.wrapping_mul(2654435761) ^ seed).rotate_left(seed % 29) as u8).collect()
    }

    #[test]
    fn key_schedule_matches_the_aes_crate_for_every_key_size() {
        for kernel in available_kernels().into_iter().filter(|&k| k != Kernel::Soft) {
            for len in [16, 24, 32] {
                let key = bytes(len, 3);
                let aes = Aes::new(kernel, &key).unwrap();
                for seed in 0..20 {
                    let block: [u8; 16] = bytes(16, seed).try_into().unwrap();
                    let mut want = aes::Block::from(block);
                    match len {
                        16 => aes::Aes128::new_from_slice(&key).unwrap().encrypt_block(&mut want),
                        24 => aes::Aes192::new_from_slice(&key).unwrap().encrypt_block(&mut want),
                        _ => aes::Aes256::new_from_slice(&key).unwrap().encrypt_block(&mut want),
                    }
                    assert_eq!(aes.encrypt_block(&block), <[u8; 16]>::from(want), "{} key {len}", kernel.name());
                }
            }
        }
    }

    #[test]
    fn cbc_decryption_keys_and_kernels_match_the_aes_crate_for_every_key_size() {
        use aes::cipher::BlockCipherDecrypt;
        for kernel in available_kernels().into_iter().filter(|&k| k != Kernel::Soft) {
            for len in [16, 24, 32] {
                let key = bytes(len, 5);
                let dec = Aes::new(kernel, &key).unwrap().decryptor();
                let iv: [u8; 16] = bytes(16, 77).try_into().unwrap();
                // 37 blocks: the kernel's own loop (32 blocks on vaes512),
                // then every narrower one's, then single blocks.
                let ct = bytes(16 * 37, len as u32);
                let want: Vec<u8> = ct
                    .chunks(16)
                    .enumerate()
                    .flat_map(|(i, c)| {
                        let mut b = aes::Block::try_from(c).unwrap();
                        match len {
                            16 => aes::Aes128::new_from_slice(&key).unwrap().decrypt_block(&mut b),
                            24 => aes::Aes192::new_from_slice(&key).unwrap().decrypt_block(&mut b),
                            _ => aes::Aes256::new_from_slice(&key).unwrap().decrypt_block(&mut b),
                        }
                        let prev = if i == 0 { &iv[..] } else { &ct[16 * i - 16..16 * i] };
                        b.iter().zip(prev).map(|(x, p)| x ^ p).collect::<Vec<u8>>()
                    })
                    .collect();
                for blocks in [1, 2, 8, 9, 16, 17, 32, 33, 37] {
                    let mut got = vec![0u8; 16 * blocks];
                    dec.cbc_decrypt(&iv, &ct[..16 * blocks], &mut got);
                    assert_eq!(got, want[..16 * blocks], "{} key {len} blocks {blocks}", kernel.name());
                }
            }
        }
    }

    #[test]
    fn ghash_matches_the_ghash_crate_for_every_length() {
        for kernel in available_kernels().into_iter().filter(|&k| k != Kernel::Soft) {
            for seed in 0..4 {
                let h: [u8; 16] = bytes(16, 100 + seed).try_into().unwrap();
                let gh = Ghash::new(kernel, &h).unwrap();
                for len in [0, 1, 15, 16, 17, 64, 127, 128, 255, 256, 257, 511, 512, 1000, 4096 + 48] {
                    let data = bytes(len, seed);
                    let mut want = ghash::GHash::new(&h.into());
                    want.update_padded(&data);
                    let want: [u8; 16] = want.finalize().into();
                    assert_eq!(gh.hash(0, &data).to_be_bytes(), want, "{} len {len}", kernel.name());
                    // Split anywhere on a block boundary: the same value.
                    let cut = (len / 3) / 16 * 16;
                    let acc = gh.hash(gh.hash(0, &data[..cut]), &data[cut..]);
                    assert_eq!(acc.to_be_bytes(), want, "{} len {len} cut {cut}", kernel.name());
                }
            }
        }
    }

    #[test]
    fn ctr128_carries_exactly_across_64_and_128_bits() {
        for kernel in available_kernels().into_iter().filter(|&k| k != Kernel::Soft) {
            let key = bytes(32, 9);
            let aes = Aes::new(kernel, &key).unwrap();
            for first in [0u128, (1u128 << 64) - 5, u128::MAX - 20, u128::MAX, 0x1234_ffff_ffff_ffff_fff0] {
                for len in [1usize, 16, 100, 256, 257, 1000] {
                    let data = bytes(len, len as u32);
                    let mut got = vec![0u8; len];
                    aes.ctr128(first, 3, &data, &mut got);
                    let want: Vec<u8> = data
                        .chunks(16)
                        .enumerate()
                        .flat_map(|(i, c)| {
                            let ks = aes.encrypt_block(&first.wrapping_add(3 + i as u128).to_be_bytes());
                            c.iter().zip(ks).map(|(a, b)| a ^ b).collect::<Vec<u8>>()
                        })
                        .collect();
                    assert_eq!(got, want, "{} first {first:x} len {len}", kernel.name());
                }
            }
        }
    }
}
