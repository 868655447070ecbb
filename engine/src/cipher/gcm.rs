//! AES-GCM (NIST SP 800-38D, no AAD) over one message, in parallel.
//!
//! Each chunk is CTR-encrypted with GCM's 32-bit counter and its ciphertext
//! hashed from zero to a partial GHASH value `G_j`, on its own core. The
//! partials are then folded in order: `Y = Y·H^(blocks in chunk j) ⊕ G_j`,
//! and finally `S = (Y ⊕ lengths)·H`, `tag = E_K(J0) ⊕ S`. That is the
//! single-pass GHASH rearranged (Horner's rule split at chunk boundaries),
//! so the tag is the standard one.
//!
//! Field arithmetic: the `ghash` crate (RustCrypto, PCLMULQDQ/VPCLMULQDQ
//! backends via `polyval`) does all the hashing. It has no public multiply,
//! but GHASH keyed with `a` over the single block `b` is exactly `a·b` in
//! GCM's field, so the few multiplications of the fold use that instead of a
//! hand-written carry-less multiply.
//!
//! With a hardware kernel bound ([`super::kernels`]), each cache-sized piece
//! of a chunk is encrypted and hashed by it (CTR then GHASH over the piece
//! while it is in L1/L2); the RustCrypto path stays for the `soft` kernel.

use aes::cipher::Array;
use ghash::universal_hash::UniversalHash;
use ghash::GHash;
use rayon::prelude::*;

use super::ctr::{par_xor, xor_keystream, GcmCounter};
use super::kernels::{Aes, Ghash, Kernel};
use super::BlockCipher;
use crate::format::BLOCK;

type Block = [u8; 16];

/// `a·b` in GF(2^128) with GCM's bit order.
fn gmul(a: &Block, b: &Block) -> Block {
    let mut g = GHash::new(&Array::from(*a));
    g.update(&[Array::from(*b)]);
    g.finalize().into()
}

/// `h^n` by square-and-multiply (`h^0` is the field's one: 0x80 00 … 00).
fn gpow(h: &Block, mut n: u64) -> Block {
    let mut result = [0u8; 16];
    result[0] = 0x80;
    let mut base = *h;
    while n > 0 {
        if n & 1 == 1 {
            result = gmul(&result, &base);
        }
        base = gmul(&base, &base);
        n >>= 1;
    }
    result
}

fn xor(a: &Block, b: &Block) -> Block {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Hash sub-slices of this size right after producing them, while they are
/// still in L1/L2 cache.
const FUSE: usize = 16 * 1024;

pub(super) struct Gcm<C: BlockCipher> {
    cipher: C,
    /// The hardware kernel's AES and GHASH, unless the kernel is `soft`.
    fast: Option<Box<(Aes, Ghash)>>,
    h: Block,
    /// `H^(chunk/16)`, the multiplier for every full chunk.
    h_chunk: Block,
    ek_j0: Block,
    /// `inc32(J0)`: the counter block of the first data block.
    first: Block,
    y: Block,
    pos: u64,
    chunk: usize,
}

impl<C: BlockCipher> Gcm<C> {
    pub(super) fn new(cipher: C, kernel: Kernel, key: &[u8], iv: &[u8], chunk: usize) -> Self {
        let mut h = Array::default();
        cipher.encrypt_block(&mut h);
        let h: Block = h.into();
        let j0: Block = if iv.len() == 12 {
            let mut j0 = [0u8; 16];
            j0[..12].copy_from_slice(iv);
            j0[15] = 1;
            j0
        } else {
            // J0 = GHASH_H(IV ‖ 0-padding ‖ [0]64 ‖ [len(IV) in bits]64)
            let mut g = GHash::new(&Array::from(h));
            g.update_padded(iv);
            let mut lengths = [0u8; 16];
            lengths[8..].copy_from_slice(&(iv.len() as u64 * 8).to_be_bytes());
            g.update(&[Array::from(lengths)]);
            g.finalize().into()
        };
        let mut ek_j0 = Array::from(j0);
        cipher.encrypt_block(&mut ek_j0);
        let mut first = j0;
        let low = u32::from_be_bytes(j0[12..].try_into().expect("4 bytes")).wrapping_add(1);
        first[12..].copy_from_slice(&low.to_be_bytes());
        let fast = Aes::new(kernel, key).zip(Ghash::new(kernel, &h)).map(Box::new);
        Gcm {
            fast,
            h_chunk: gpow(&h, (chunk / BLOCK) as u64),
            cipher,
            h,
            ek_j0: ek_j0.into(),
            first,
            y: [0; 16],
            pos: 0,
            chunk,
        }
    }

    /// Fold the partial GHASH values of consecutive pieces into `y`.
    fn fold(&mut self, partials: Vec<(usize, Block)>) {
        for (len, g) in partials {
            let blocks = len.div_ceil(BLOCK);
            let mult = if blocks == self.chunk / BLOCK { self.h_chunk } else { gpow(&self.h, blocks as u64) };
            self.y = xor(&gmul(&self.y, &mult), &g);
        }
    }

    fn ghash_from_zero(&self) -> GHash {
        GHash::new(&Array::from(self.h))
    }

    /// One chunk on the hardware kernel: encrypt (`seal`) or decrypt, and
    /// hash the ciphertext, piece by cache-sized piece; the partial GHASH.
    fn kernel_chunk(&self, aes: &Aes, gh: &Ghash, seal: bool, at: u64, inp: &[u8], out: &mut [u8]) -> Block {
        let first = u128::from_be_bytes(self.first);
        let mut acc = 0u128;
        let mut block = at / BLOCK as u64;
        for (pin, pout) in inp.chunks(FUSE).zip(out.chunks_mut(FUSE)) {
            acc = if seal {
                aes.gcm_seal(gh, acc, first, block, pin, pout)
            } else {
                aes.gcm_open(gh, acc, first, block, pin, pout)
            };
            block += (pin.len() / BLOCK) as u64;
        }
        acc.to_be_bytes()
    }

    /// Both directions on the hardware kernel, chunks in parallel.
    fn kernel_update(&mut self, seal: bool, input: &[u8], output: &mut [u8]) -> bool {
        let Some(fast) = &self.fast else { return false };
        let (aes, gh) = (&fast.0, &fast.1);
        let (pos, chunk) = (self.pos, self.chunk);
        let partials: Vec<(usize, Block)> = input
            .par_chunks(chunk)
            .zip(output.par_chunks_mut(chunk))
            .enumerate()
            .map(|(i, (inp, out))| (inp.len(), self.kernel_chunk(aes, gh, seal, pos + (i * chunk) as u64, inp, out)))
            .collect();
        self.fold(partials);
        self.pos += input.len() as u64;
        true
    }

    /// Encrypt the next bytes (whole blocks, or the final partial block).
    pub(super) fn seal(&mut self, input: &[u8], output: &mut [u8]) {
        if self.kernel_update(true, input, output) {
            return;
        }
        let (cipher, first, pos, chunk) = (&self.cipher, &self.first, self.pos, self.chunk);
        let partials: Vec<(usize, Block)> = input
            .par_chunks(chunk)
            .zip(output.par_chunks_mut(chunk))
            .enumerate()
            .map(|(i, (inp, out))| {
                let mut g = self.ghash_from_zero();
                let mut at = pos + (i * chunk) as u64;
                for (pin, pout) in inp.chunks(FUSE).zip(out.chunks_mut(FUSE)) {
                    xor_keystream::<C, GcmCounter>(cipher, None, first, at, pin, pout);
                    g.update_padded(pout);
                    at += pin.len() as u64;
                }
                (inp.len(), g.finalize().into())
            })
            .collect();
        self.fold(partials);
        self.pos += input.len() as u64;
    }

    /// Decrypt the next bytes: hash the ciphertext, then CTR-decrypt it.
    pub(super) fn open(&mut self, input: &[u8], output: &mut [u8]) {
        if self.kernel_update(false, input, output) {
            return;
        }
        let partials: Vec<(usize, Block)> = input
            .par_chunks(self.chunk)
            .map(|inp| {
                let mut g = self.ghash_from_zero();
                g.update_padded(inp);
                (inp.len(), g.finalize().into())
            })
            .collect();
        self.fold(partials);
        par_xor::<C, GcmCounter>(&self.cipher, None, &self.first, self.pos, input, output, self.chunk);
        self.pos += input.len() as u64;
    }

    /// The tag over everything sealed or opened so far.
    pub(super) fn tag(&self) -> Block {
        let mut lengths = [0u8; 16];
        lengths[8..].copy_from_slice(&(self.pos * 8).to_be_bytes());
        let s = gmul(&xor(&self.y, &lengths), &self.h);
        xor(&s, &self.ek_j0)
    }

    /// Compare the computed tag with `tag` in constant time.
    pub(super) fn verify(&self, tag: &[u8]) -> bool {
        let ours = self.tag();
        tag.len() == ours.len() && ours.iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}
