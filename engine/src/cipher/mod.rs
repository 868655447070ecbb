//! Streaming, parallel AES-CTR / AES-CBC / AES-GCM, byte-identical to the
//! one-pass sequential definitions in `FORMAT.md`.
//!
//! A [`Sealer`] (encrypt) or [`Opener`] (decrypt) is fed the data front to
//! back in windows whose lengths are multiples of 16 bytes ([`Sealer::update`]),
//! then finished with the last partial block and any trailer
//! ([`Sealer::finish`]). Inside a window, CTR, GCM and CBC decryption split
//! the work into `chunk`-sized pieces run on the current rayon pool; CBC
//! encryption is inherently sequential and runs on the calling thread.
//!
//! The key schedule is expanded once per file and shared by every thread.
//!
//! CTR, GCM and CBC run on the fastest kernel this CPU has for the mode
//! (VAES-512, VAES-256, AES-NI, or the portable RustCrypto crates), chosen
//! once in `dispatch` ([`kernel_name`] says which; `SEALPIPE_KERNEL` or
//! [`with_kernel`] force one). CBC encryption, one chain or eight in
//! lockstep, is AES-NI under every hardware kernel; CBC decryption runs as
//! wide as the kernel.

mod cbc;
mod ctr;
mod dispatch;
mod gcm;
// x86-64 intrinsics (AES-NI, VAES, PCLMULQDQ) are `unsafe` functions: the
// kernels call them only after checking the CPU has them (`kernels/mod.rs`).
#[allow(unsafe_code)]
mod kernels;
pub mod reference;

pub use dispatch::{force_kernel, kernel_name, override_note, with_kernel};
pub use kernels::{available_kernels, Kernel};

use aes::cipher::consts::U16;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, BlockSizeUser, KeyInit};

use crate::keys::DataKey;
use crate::format::{Iv, Mode, BLOCK, GCM_TAG_LEN};

/// Default parallel work unit: 1 MiB of 16-byte blocks.
pub const DEFAULT_CHUNK: usize = 1 << 20;

/// What an AES implementation must offer to every mode here.
pub(crate) trait BlockCipher:
    BlockCipherEncrypt + BlockCipherDecrypt + BlockSizeUser<BlockSize = U16> + Clone + Send + Sync
{
}
impl<C> BlockCipher for C where
    C: BlockCipherEncrypt + BlockCipherDecrypt + BlockSizeUser<BlockSize = U16> + Clone + Send + Sync
{
}

/// Per-mode state, generic over the AES key size.
enum ModeState<C: BlockCipher> {
    Ctr(ctr::Ctr<C>),
    Gcm(gcm::Gcm<C>),
    CbcEnc(cbc::CbcEncrypt<C>),
    CbcDec(cbc::CbcDecrypt<C>),
}

/// The key size is a run-time choice; the modes are generic over it.
enum Keyed {
    A128(ModeState<aes::Aes128>),
    A192(ModeState<aes::Aes192>),
    A256(ModeState<aes::Aes256>),
}

macro_rules! with_state {
    ($keyed:expr, $s:ident => $body:expr) => {
        match $keyed {
            Keyed::A128($s) => $body,
            Keyed::A192($s) => $body,
            Keyed::A256($s) => $body,
        }
    };
}

fn new_state<C: BlockCipher + KeyInit>(mode: Mode, encrypt: bool, key: &[u8], iv: &Iv, chunk: usize) -> ModeState<C> {
    let aes = C::new_from_slice(key).expect("DataKey length matches the AES variant");
    let kernel = dispatch::selected(mode);
    match (mode, encrypt) {
        (Mode::Ctr, _) => ModeState::Ctr(ctr::Ctr::new(aes, kernels::Aes::new(kernel, key), iv.ctr_block(), chunk)),
        (Mode::Gcm, _) => ModeState::Gcm(gcm::Gcm::new(aes, kernel, key, iv.as_bytes(), chunk)),
        (Mode::Cbc, true) => ModeState::CbcEnc(cbc::CbcEncrypt::new(aes, kernels::Aes::new(kernel, key), iv.as_bytes())),
        (Mode::Cbc, false) => {
            let fast = kernels::Aes::new(kernel, key).map(|a| a.decryptor());
            ModeState::CbcDec(cbc::CbcDecrypt::new(aes, fast, iv.as_bytes(), chunk))
        }
    }
}

fn new_keyed(mode: Mode, encrypt: bool, key: &DataKey, iv: &Iv, chunk: usize) -> Keyed {
    assert!(chunk >= BLOCK && chunk % BLOCK == 0, "chunk must be a positive multiple of 16");
    let raw = key.expose_secret();
    match raw.len() {
        16 => Keyed::A128(new_state(mode, encrypt, raw, iv, chunk)),
        24 => Keyed::A192(new_state(mode, encrypt, raw, iv, chunk)),
        _ => Keyed::A256(new_state(mode, encrypt, raw, iv, chunk)),
    }
}

/// Encrypts one message (one file), front to back.
pub struct Sealer {
    state: Keyed,
    iv: Iv,
    mode: Mode,
}

impl Sealer {
    /// A sealer for `mode` under `key`, consuming the fresh `iv`.
    /// `chunk` (a multiple of 16) is the unit of parallel work.
    pub fn new(mode: Mode, key: &DataKey, iv: Iv, chunk: usize) -> Self {
        let state = new_keyed(mode, true, key, &iv, chunk);
        Sealer { state, iv, mode }
    }

    /// The IV this sealer encrypts with.
    pub fn iv(&self) -> &Iv {
        &self.iv
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Encrypt the next `input` (a multiple of 16 bytes) into `output` (same length).
    pub fn update(&mut self, input: &[u8], output: &mut [u8]) {
        assert_eq!(input.len() % BLOCK, 0, "update takes whole blocks");
        assert_eq!(input.len(), output.len());
        with_state!(&mut self.state, s => match s {
            ModeState::Ctr(c) => c.apply(input, output),
            ModeState::Gcm(g) => g.seal(input, output),
            ModeState::CbcEnc(c) => c.encrypt(input, output),
            ModeState::CbcDec(_) => unreachable!("sealer holds an encryptor"),
        })
    }

    /// Encrypt the final `tail` (under 16 bytes) and append it and the mode's
    /// trailer (CBC padding block, GCM tag) to `out`.
    pub fn finish(self, tail: &[u8], out: &mut Vec<u8>) {
        assert!(tail.len() < BLOCK, "finish takes the last partial block");
        with_state!(self.state, s => match s {
            ModeState::Ctr(mut c) => {
                let start = out.len();
                out.resize(start + tail.len(), 0);
                c.apply(tail, &mut out[start..]);
            }
            ModeState::Gcm(mut g) => {
                let start = out.len();
                out.resize(start + tail.len(), 0);
                g.seal(tail, &mut out[start..]);
                out.extend_from_slice(&g.tag());
            }
            ModeState::CbcEnc(c) => out.extend_from_slice(&c.finish(tail)),
            ModeState::CbcDec(_) => unreachable!("sealer holds an encryptor"),
        })
    }
}

/// Why decryption of a message failed at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailure {
    /// GCM tag mismatch.
    Authentication,
    /// CBC padding malformed.
    Padding,
    /// Ciphertext too short or not a whole number of blocks.
    Truncated,
}

/// Decrypts one message, front to back.
pub struct Opener {
    state: Keyed,
    mode: Mode,
}

impl Opener {
    /// An opener for `mode` under `key` and `iv`.
    pub fn new(mode: Mode, key: &DataKey, iv: &Iv, chunk: usize) -> Self {
        Opener { state: new_keyed(mode, false, key, iv, chunk), mode }
    }

    /// Bytes at the end of a ciphertext that must go to [`Opener::finish`]
    /// whole: the GCM tag, or CBC's padded last block.
    pub fn trailer_len(mode: Mode) -> usize {
        match mode {
            Mode::Ctr => 0,
            Mode::Cbc => BLOCK,
            Mode::Gcm => GCM_TAG_LEN,
        }
    }

    /// Split a ciphertext length into (whole-block body, tail for `finish`),
    /// or say why it cannot be a ciphertext of this mode.
    pub fn split(mode: Mode, cipher_len: u64) -> Result<(u64, u64), String> {
        let trailer = Self::trailer_len(mode) as u64;
        match mode {
            Mode::Cbc if cipher_len < 16 || cipher_len % 16 != 0 => {
                return Err(format!(
                    "CBC ciphertext must be a non-zero multiple of 16 bytes, this is {cipher_len} bytes (truncated?)"
                ))
            }
            Mode::Gcm if cipher_len < trailer => {
                return Err(format!(
                    "GCM ciphertext of {cipher_len} bytes is shorter than its 16-byte tag (truncated)"
                ))
            }
            _ => {}
        }
        let body = cipher_len - trailer;
        let whole = body - body % BLOCK as u64;
        Ok((whole, cipher_len - whole))
    }

    /// Decrypt the next `input` (a multiple of 16 bytes) into `output`.
    pub fn update(&mut self, input: &[u8], output: &mut [u8]) {
        assert_eq!(input.len() % BLOCK, 0, "update takes whole blocks");
        assert_eq!(input.len(), output.len());
        with_state!(&mut self.state, s => match s {
            ModeState::Ctr(c) => c.apply(input, output),
            ModeState::Gcm(g) => g.open(input, output),
            ModeState::CbcDec(c) => c.decrypt(input, output),
            ModeState::CbcEnc(_) => unreachable!("opener holds a decryptor"),
        })
    }

    /// Decrypt the final `tail` (as given by [`Opener::split`]), check the
    /// tag or padding, and append the last plaintext bytes to `out`.
    pub fn finish(self, tail: &[u8], out: &mut Vec<u8>) -> Result<(), OpenFailure> {
        let trailer = Self::trailer_len(self.mode);
        if tail.len() < trailer || tail.len() - trailer >= BLOCK {
            return Err(OpenFailure::Truncated);
        }
        with_state!(self.state, s => match s {
            ModeState::Ctr(mut c) => {
                let start = out.len();
                out.resize(start + tail.len(), 0);
                c.apply(tail, &mut out[start..]);
                Ok(())
            }
            ModeState::Gcm(mut g) => {
                let (partial, tag) = tail.split_at(tail.len() - GCM_TAG_LEN);
                let start = out.len();
                out.resize(start + partial.len(), 0);
                g.open(partial, &mut out[start..]);
                if g.verify(tag) {
                    Ok(())
                } else {
                    // Do not hand back unauthenticated plaintext.
                    out.truncate(start);
                    Err(OpenFailure::Authentication)
                }
            }
            ModeState::CbcDec(c) => {
                let block = c.finish(tail).ok_or(OpenFailure::Padding)?;
                out.extend_from_slice(&block);
                Ok(())
            }
            ModeState::CbcEnc(_) => unreachable!("opener holds a decryptor"),
        })
    }
}

/// Most messages a [`CbcBatch`] advances together.
pub const CBC_LANES: usize = cbc::MAX_LANES;

enum KeyedLanes {
    A128(cbc::CbcLanes<aes::Aes128>),
    A192(cbc::CbcLanes<aes::Aes192>),
    A256(cbc::CbcLanes<aes::Aes256>),
}

macro_rules! with_lanes {
    ($keyed:expr, $l:ident => $body:expr) => {
        match $keyed {
            KeyedLanes::A128($l) => $body,
            KeyedLanes::A192($l) => $body,
            KeyedLanes::A256($l) => $body,
        }
    };
}

/// Multi-buffer CBC: up to [`CBC_LANES`] messages under one data key (a
/// batch of files sharing a key), encrypted in lockstep on one thread so
/// their independent chains overlap in the CPU. Each lane's output equals
/// its one-pass CBC encryption.
pub struct CbcBatch {
    lanes: KeyedLanes,
}

impl CbcBatch {
    /// A batch under `key`, on the CBC kernel selected on this thread.
    pub fn new(key: &DataKey) -> Self {
        let raw = key.expose_secret();
        let fast = kernels::Aes::new(dispatch::selected(Mode::Cbc), raw);
        let lanes = match raw.len() {
            16 => KeyedLanes::A128(cbc::CbcLanes::new(KeyInit::new_from_slice(raw).expect("16 bytes"), fast)),
            24 => KeyedLanes::A192(cbc::CbcLanes::new(KeyInit::new_from_slice(raw).expect("24 bytes"), fast)),
            _ => KeyedLanes::A256(cbc::CbcLanes::new(KeyInit::new_from_slice(raw).expect("32 bytes"), fast)),
        };
        CbcBatch { lanes }
    }

    /// Start a new message in `lane` (below [`CBC_LANES`]) with its fresh 16-byte IV.
    pub fn start(&mut self, lane: usize, iv: Iv) {
        with_lanes!(&mut self.lanes, l => l.start(lane, iv.as_bytes()))
    }

    /// Encrypt the next whole blocks of `lanes`: `inputs[i]` into
    /// `outputs[i]` for lane `lanes[i]`, all of one length (a multiple of 16).
    pub fn update(&mut self, lanes: &[usize], inputs: &[&[u8]], outputs: &mut [&mut [u8]]) {
        assert!(lanes.len() == inputs.len() && lanes.len() == outputs.len());
        if let Some(first) = inputs.first() {
            assert_eq!(first.len() % BLOCK, 0, "update takes whole blocks");
        }
        with_lanes!(&mut self.lanes, l => l.encrypt(lanes, inputs, outputs))
    }

    /// Pad and encrypt the last partial block (under 16 bytes) of `lane`'s message.
    pub fn finish(&mut self, lane: usize, tail: &[u8]) -> [u8; 16] {
        assert!(tail.len() < BLOCK, "finish takes the last partial block");
        with_lanes!(&mut self.lanes, l => l.finish(lane, tail))
    }
}

/// Encrypt a whole message in memory (tests, benchmarks, small files).
pub fn seal_to_vec(mode: Mode, key: &DataKey, iv: Iv, chunk: usize, plaintext: &[u8]) -> Vec<u8> {
    let whole = plaintext.len() - plaintext.len() % BLOCK;
    let mut out = vec![0u8; whole];
    let mut sealer = Sealer::new(mode, key, iv, chunk);
    sealer.update(&plaintext[..whole], &mut out);
    sealer.finish(&plaintext[whole..], &mut out);
    out
}

/// Decrypt a whole message in memory.
pub fn open_to_vec(mode: Mode, key: &DataKey, iv: &Iv, chunk: usize, ciphertext: &[u8]) -> Result<Vec<u8>, OpenFailure> {
    let (whole, _) = Opener::split(mode, ciphertext.len() as u64).map_err(|_| OpenFailure::Truncated)?;
    let whole = whole as usize;
    let mut out = vec![0u8; whole];
    let mut opener = Opener::new(mode, key, iv, chunk);
    opener.update(&ciphertext[..whole], &mut out);
    opener.finish(&ciphertext[whole..], &mut out)?;
    Ok(out)
}
