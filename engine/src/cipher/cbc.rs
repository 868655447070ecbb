//! AES-CBC with PKCS#7 padding (`openssl enc -aes-*-cbc`).
//!
//! Encryption chains every block through the previous one, so one message is
//! one sequential pass (files run in parallel instead). Decryption of block
//! `i` needs only ciphertext blocks `i` and `i−1`, so it splits into chunks
//! that run in parallel, each seeded with the ciphertext block before it.

use aes::cipher::{Array, BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, InOutBuf};
use rayon::prelude::*;

use super::BlockCipher;
use crate::params::BLOCK;

type Block = [u8; 16];

pub(super) struct CbcEncrypt<C: BlockCipher> {
    mode: cbc::Encryptor<C>,
}

impl<C: BlockCipher> CbcEncrypt<C> {
    pub(super) fn new(cipher: C, iv: &[u8]) -> Self {
        let iv: Block = iv.try_into().expect("CBC IVs are 16 bytes (checked by Target::check_iv_len)");
        CbcEncrypt { mode: cbc::Encryptor::inner_iv_init(cipher, &Array::from(iv)) }
    }

    pub(super) fn encrypt(&mut self, input: &[u8], output: &mut [u8]) {
        let (blocks, rest) = InOutBuf::new(input, output).expect("equal lengths").into_chunks();
        debug_assert!(rest.is_empty());
        self.mode.encrypt_blocks_inout(blocks);
    }

    /// Pad the last partial block (PKCS#7: 1 to 16 bytes, always) and encrypt it.
    pub(super) fn finish(mut self, tail: &[u8]) -> Block {
        let pad = (BLOCK - tail.len()) as u8;
        let mut block = [pad; 16];
        block[..tail.len()].copy_from_slice(tail);
        let mut block = Array::from(block);
        self.mode.encrypt_block(&mut block);
        block.into()
    }
}

pub(super) struct CbcDecrypt<C: BlockCipher> {
    cipher: C,
    /// The ciphertext block before the next one to decrypt (the IV at first).
    prev: Block,
    chunk: usize,
}

impl<C: BlockCipher> CbcDecrypt<C> {
    pub(super) fn new(cipher: C, iv: &[u8], chunk: usize) -> Self {
        let prev = iv.try_into().expect("CBC IVs are 16 bytes");
        CbcDecrypt { cipher, prev, chunk }
    }

    fn decrypt_chunk(cipher: &C, iv: &Block, input: &[u8], output: &mut [u8]) {
        let mut mode = cbc::Decryptor::inner_iv_init(cipher.clone(), &Array::from(*iv));
        let (blocks, _) = InOutBuf::new(input, output).expect("equal lengths").into_chunks();
        mode.decrypt_blocks_inout(blocks);
    }

    pub(super) fn decrypt(&mut self, input: &[u8], output: &mut [u8]) {
        if input.is_empty() {
            return;
        }
        let (cipher, first_iv, chunk) = (&self.cipher, &self.prev, self.chunk);
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
                Self::decrypt_chunk(cipher, &iv, inp, out);
            });
        self.prev = input[input.len() - BLOCK..].try_into().expect("16 bytes");
    }

    /// Decrypt the last block and strip its padding; `None` if malformed.
    pub(super) fn finish(self, last: &[u8]) -> Option<Vec<u8>> {
        let mut block = [0u8; 16];
        Self::decrypt_chunk(&self.cipher, &self.prev, last, &mut block);
        let pad = block[15];
        let bad = pad == 0
            || pad as usize > BLOCK
            || block[BLOCK - pad as usize..].iter().any(|&b| b != pad);
        (!bad).then(|| block[..BLOCK - pad as usize].to_vec())
    }
}
