//! AES-CBC with PKCS#7 padding (`openssl enc -aes-*-cbc`).
//!
//! Encryption chains every block through the previous one, so one message is
//! one sequential pass (files run in parallel instead). Decryption of block
//! `i` needs only ciphertext blocks `i` and `i−1`, so it splits into chunks
//! that run in parallel, each seeded with the ciphertext block before it.
//!
//! With a hardware kernel bound ([`Aes`] / [`AesDec`]) the blocks go through
//! it; otherwise through the RustCrypto `aes`/`cbc` crates (the `soft` kernel).

use aes::cipher::consts::U16;
use aes::cipher::{
    Array, BlockCipherEncBackend, BlockCipherEncClosure, BlockModeDecrypt, BlockModeEncrypt,
    BlockSizeUser, InOutBuf, InnerIvInit,
};
use rayon::prelude::*;

use super::kernels::{Aes, AesDec};
use super::BlockCipher;
use crate::format::BLOCK;

type Block = [u8; 16];

/// PKCS#7: the last partial block padded with 1 to 16 bytes, always.
fn pad(tail: &[u8]) -> Block {
    let pad = (BLOCK - tail.len()) as u8;
    let mut block = [pad; 16];
    block[..tail.len()].copy_from_slice(tail);
    block
}

pub(super) enum CbcEncrypt<C: BlockCipher> {
    Soft(cbc::Encryptor<C>),
    /// A hardware kernel (boxed: the enum stays the crate encryptor's size)
    /// and the chain (the last ciphertext block, the IV at first).
    Kernel(Box<Aes>, Block),
}

impl<C: BlockCipher> CbcEncrypt<C> {
    pub(super) fn new(cipher: C, fast: Option<Aes>, iv: &[u8]) -> Self {
        let iv: Block = iv.try_into().expect("CBC IVs are 16 bytes (checked by Target::check_iv_len)");
        match fast {
            Some(aes) => CbcEncrypt::Kernel(Box::new(aes), iv),
            None => CbcEncrypt::Soft(cbc::Encryptor::inner_iv_init(cipher, &Array::from(iv))),
        }
    }

    pub(super) fn encrypt(&mut self, input: &[u8], output: &mut [u8]) {
        match self {
            CbcEncrypt::Kernel(aes, chain) => aes.cbc_encrypt(chain, input, output),
            CbcEncrypt::Soft(mode) => {
                let (blocks, rest) = InOutBuf::new(input, output).expect("equal lengths").into_chunks();
                debug_assert!(rest.is_empty());
                mode.encrypt_blocks_inout(blocks);
            }
        }
    }

    /// Pad the last partial block and encrypt it.
    pub(super) fn finish(mut self, tail: &[u8]) -> Block {
        let block = pad(tail);
        let mut out = [0u8; 16];
        self.encrypt(&block, &mut out);
        out
    }
}

pub(super) struct CbcDecrypt<C: BlockCipher> {
    cipher: C,
    fast: Option<AesDec>,
    /// The ciphertext block before the next one to decrypt (the IV at first).
    prev: Block,
    chunk: usize,
}

impl<C: BlockCipher> CbcDecrypt<C> {
    pub(super) fn new(cipher: C, fast: Option<AesDec>, iv: &[u8], chunk: usize) -> Self {
        let prev = iv.try_into().expect("CBC IVs are 16 bytes");
        CbcDecrypt { cipher, fast, prev, chunk }
    }

    fn decrypt_chunk(cipher: &C, fast: Option<&AesDec>, iv: &Block, input: &[u8], output: &mut [u8]) {
        if let Some(dec) = fast {
            return dec.cbc_decrypt(iv, input, output);
        }
        let mut mode = cbc::Decryptor::inner_iv_init(cipher.clone(), &Array::from(*iv));
        let (blocks, _) = InOutBuf::new(input, output).expect("equal lengths").into_chunks();
        mode.decrypt_blocks_inout(blocks);
    }

    pub(super) fn decrypt(&mut self, input: &[u8], output: &mut [u8]) {
        if input.is_empty() {
            return;
        }
        let (cipher, fast, first_iv, chunk) = (&self.cipher, self.fast.as_ref(), &self.prev, self.chunk);
        if input.len() <= chunk {
            // One piece: no trip through the rayon pool.
            Self::decrypt_chunk(cipher, fast, first_iv, input, output);
        } else {
            input
                .par_chunks(chunk)
                .zip(output.par_chunks_mut(chunk))
                .enumerate()
                .for_each(|(i, (inp, out))| {
                    let iv: Block = if i == 0 {
                        *first_iv
                    } else {
                        input[i * chunk - BLOCK..i * chunk].try_into().expect("16 bytes")
                    };
                    Self::decrypt_chunk(cipher, fast, &iv, inp, out);
                });
        }
        self.prev = input[input.len() - BLOCK..].try_into().expect("16 bytes");
    }

    /// Decrypt the last block and strip its padding; `None` if malformed.
    pub(super) fn finish(self, last: &[u8]) -> Option<Vec<u8>> {
        let mut block = [0u8; 16];
        Self::decrypt_chunk(&self.cipher, self.fast.as_ref(), &self.prev, last, &mut block);
        let pad = block[15];
        let bad = pad == 0
            || pad as usize > BLOCK
            || block[BLOCK - pad as usize..].iter().any(|&b| b != pad);
        (!bad).then(|| block[..BLOCK - pad as usize].to_vec())
    }
}

/// Most CBC chains advanced together by one thread.
pub const MAX_LANES: usize = 8;

/// Several CBC encryptions under one key, advanced in lockstep.
///
/// CBC encryption of one message is a chain of dependent AES calls, so one
/// message runs at the cipher's latency, not its throughput. Interleaving
/// the chains of up to [`MAX_LANES`] independent messages inside one call
/// into the AES backend gives the CPU independent blocks to overlap: each
/// step encrypts block `j` of every lane. Each lane's output is the same as
/// its own one-pass CBC encryption.
///
/// With a hardware kernel, the AES-NI lanes kernel keeps the chains in
/// registers ([`Aes::cbc_encrypt_lanes`]); otherwise the RustCrypto backend
/// encrypts block `j` of each lane in turn.
pub(super) struct CbcLanes<C: BlockCipher> {
    cipher: C,
    fast: Option<Aes>,
    chains: Vec<Block>,
}

impl<C: BlockCipher> CbcLanes<C> {
    pub(super) fn new(cipher: C, fast: Option<Aes>) -> Self {
        CbcLanes { cipher, fast, chains: Vec::new() }
    }

    /// Start a message in `lane` (growing the set of lanes as needed).
    pub(super) fn start(&mut self, lane: usize, iv: &[u8]) {
        assert!(lane < MAX_LANES, "at most {MAX_LANES} lanes");
        if self.chains.len() <= lane {
            self.chains.resize(lane + 1, [0; 16]);
        }
        self.chains[lane] = iv.try_into().expect("CBC IVs are 16 bytes");
    }

    /// Encrypt the next whole blocks of the given lanes; every input has the
    /// same length.
    pub(super) fn encrypt(&mut self, lanes: &[usize], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        let blocks = inputs.first().map_or(0, |i| i.len() / BLOCK);
        assert!(inputs.iter().all(|i| i.len() == blocks * BLOCK) && outputs.iter().all(|o| o.len() == blocks * BLOCK));
        let mut chains: Vec<Block> = lanes.iter().map(|&l| self.chains[l]).collect();
        match &self.fast {
            Some(aes) => aes.cbc_encrypt_lanes(&mut chains, inputs, outputs),
            None => self.cipher.encrypt_with_backend(LanesClosure { inputs, outputs, chains: &mut chains }),
        }
        for (&l, c) in lanes.iter().zip(chains) {
            self.chains[l] = c;
        }
    }

    /// Pad and encrypt the last partial block of `lane`'s message.
    pub(super) fn finish(&mut self, lane: usize, tail: &[u8]) -> Block {
        let block = pad(tail);
        if let Some(aes) = &self.fast {
            let mut out = [0u8; 16];
            aes.cbc_encrypt(&mut self.chains[lane], &block, &mut out);
            return out;
        }
        let mut x = Array::from(xor(&block, &self.chains[lane]));
        self.cipher.encrypt_block(&mut x);
        x.into()
    }
}

fn xor(a: &Block, b: &Block) -> Block {
    (u128::from_ne_bytes(*a) ^ u128::from_ne_bytes(*b)).to_ne_bytes()
}

struct LanesClosure<'a, 'i, 'o> {
    inputs: &'a [&'i [u8]],
    outputs: &'a mut [&'o mut [u8]],
    chains: &'a mut [Block],
}

impl BlockSizeUser for LanesClosure<'_, '_, '_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for LanesClosure<'_, '_, '_> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let lanes = self.inputs.len();
        let blocks = self.inputs.first().map_or(0, |i| i.len() / BLOCK);
        let mut x = [Array::<u8, U16>::default(); MAX_LANES];
        for j in 0..blocks {
            let at = j * BLOCK;
            for l in 0..lanes {
                let p: Block = self.inputs[l][at..at + BLOCK].try_into().expect("16 bytes");
                x[l] = Array::from(xor(&p, &self.chains[l]));
            }
            // Independent blocks: the CPU overlaps their AES rounds.
            for b in x[..lanes].iter_mut() {
                backend.encrypt_block(b.into());
            }
            for l in 0..lanes {
                let c: Block = x[l].into();
                self.outputs[l][at..at + BLOCK].copy_from_slice(&c);
                self.chains[l] = c;
            }
        }
    }
}
