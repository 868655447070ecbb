//! One-pass sequential reference implementations, straight from the
//! RustCrypto mode crates with no chunking or parallelism. The tests prove
//! the fast paths byte-identical to these; benchmarks compare against them.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::consts::{U12, U16};
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyInit, KeyIvInit, StreamCipher};
use aes_gcm::aead::Aead;
use aes_gcm::AesGcm;

macro_rules! by_key_size {
    ($key:expr, $alias:ident => $body:expr) => {
        match $key.len() {
            16 => {
                type $alias = aes::Aes128;
                $body
            }
            24 => {
                type $alias = aes::Aes192;
                $body
            }
            32 => {
                type $alias = aes::Aes256;
                $body
            }
            n => panic!("AES keys are 16, 24 or 32 bytes, not {n}"),
        }
    };
}

/// AES-CTR, 128-bit big-endian counter starting at `counter` (16 bytes, or a
/// 12-byte IV padded with four zero bytes).
pub fn ctr(key: &[u8], iv: &[u8], data: &[u8]) -> Vec<u8> {
    let mut counter = [0u8; 16];
    counter[..iv.len()].copy_from_slice(iv);
    let mut out = data.to_vec();
    by_key_size!(key, A => {
        ctr::Ctr128BE::<A>::new_from_slices(key, &counter).expect("sizes").apply_keystream(&mut out)
    });
    out
}

/// AES-CBC with PKCS#7 padding.
pub fn cbc_encrypt(key: &[u8], iv: &[u8], data: &[u8]) -> Vec<u8> {
    let mut buf = data.to_vec();
    buf.resize(data.len() / 16 * 16 + 16, 0);
    let n = by_key_size!(key, A => cbc::Encryptor::<A>::new_from_slices(key, iv)
        .expect("sizes")
        .encrypt_padded::<Pkcs7>(&mut buf, data.len())
        .expect("room for padding")
        .len());
    buf.truncate(n);
    buf
}

/// AES-CBC decryption with PKCS#7 unpadding; `None` on bad padding.
pub fn cbc_decrypt(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let mut buf = data.to_vec();
    let n = by_key_size!(key, A => cbc::Decryptor::<A>::new_from_slices(key, iv)
        .expect("sizes")
        .decrypt_padded::<Pkcs7>(&mut buf)
        .ok()?
        .len());
    buf.truncate(n);
    Some(buf)
}

/// AES-GCM without AAD: ciphertext ‖ tag, for 12- or 16-byte IVs.
pub fn gcm_encrypt(key: &[u8], iv: &[u8], data: &[u8]) -> Vec<u8> {
    by_key_size!(key, A => match iv.len() {
        12 => AesGcm::<A, U12>::new_from_slice(key).expect("size").encrypt(iv.try_into().expect("12"), data),
        16 => AesGcm::<A, U16>::new_from_slice(key).expect("size").encrypt(iv.try_into().expect("16"), data),
        n => panic!("reference GCM takes 12- or 16-byte IVs, not {n}"),
    })
    .expect("GCM encryption of a bounded message")
}
