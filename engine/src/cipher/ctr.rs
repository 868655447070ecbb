//! AES-CTR with a 128-bit big-endian counter (`openssl enc -aes-*-ctr`),
//! split into chunks that run in parallel.
//!
//! Chunk `i` of a window starting at byte `pos` starts its keystream at
//! counter block `first + (pos + i·chunk) / 16` (128-bit wrapping addition,
//! done by `ctr::Ctr128BE`'s seek), so the output does not depend on the
//! chunk size or the number of threads.

use aes::cipher::{InnerIvInit, StreamCipher, StreamCipherCoreWrapper, StreamCipherSeek};
use ctr::flavors::{Ctr128BE, Ctr32BE};
use ctr::{CtrCore, CtrFlavor};
use rayon::prelude::*;

use super::BlockCipher;
use aes::cipher::consts::U16;

/// XOR the keystream that starts at `first_counter` and is advanced by
/// `byte_pos` bytes into `input`, writing `output`. `F` is the counter
/// flavor: 128-bit (CTR mode) or 32-bit wrapping (GCM's inc32).
pub(super) fn xor_keystream<C, F>(cipher: &C, first_counter: &[u8; 16], byte_pos: u64, input: &[u8], output: &mut [u8])
where
    C: BlockCipher,
    F: CtrFlavor<U16>,
{
    let core = CtrCore::<C, F>::inner_iv_init(cipher.clone(), first_counter.into());
    let mut stream = StreamCipherCoreWrapper::from_core(core);
    stream.seek(byte_pos);
    stream.apply_keystream_b2b(input, output);
}

/// Parallel CTR state for one message.
pub(super) struct Ctr<C: BlockCipher> {
    cipher: C,
    first: [u8; 16],
    pos: u64,
    chunk: usize,
}

impl<C: BlockCipher> Ctr<C> {
    pub(super) fn new(cipher: C, first: [u8; 16], chunk: usize) -> Self {
        Ctr { cipher, first, pos: 0, chunk }
    }

    /// Encrypt or decrypt (the same operation) the next bytes.
    pub(super) fn apply(&mut self, input: &[u8], output: &mut [u8]) {
        par_xor::<C, Ctr128BE>(&self.cipher, &self.first, self.pos, input, output, self.chunk);
        self.pos += input.len() as u64;
    }
}

/// `xor_keystream` over `chunk`-sized pieces on the rayon pool.
pub(super) fn par_xor<C: BlockCipher, F: CtrFlavor<U16>>(
    cipher: &C,
    first: &[u8; 16],
    pos: u64,
    input: &[u8],
    output: &mut [u8],
    chunk: usize,
) {
    if input.len() <= chunk {
        return xor_keystream::<C, F>(cipher, first, pos, input, output);
    }
    input
        .par_chunks(chunk)
        .zip(output.par_chunks_mut(chunk))
        .enumerate()
        .for_each(|(i, (inp, out))| {
            xor_keystream::<C, F>(cipher, first, pos + (i * chunk) as u64, inp, out)
        });
}

/// GCM's counter: only the low 32 bits count, wrapping without carry.
pub(super) type GcmCounter = Ctr32BE;
