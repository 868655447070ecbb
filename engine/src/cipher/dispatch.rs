//! The one place a kernel is chosen: by measurement at first use (every
//! kernel this CPU has, the RustCrypto path included, timed through the real
//! CTR, GCM and CBC-decryption code), or as the caller forces it for the
//! process ([`force_kernel`]: the CLI's `SEALPIPE_KERNEL`), or as a test
//! forces it on one thread ([`with_kernel`]). It sits above `ctr`,
//! `gcm` and `cbc`, which take the kernel they are given, so nothing below
//! it calls back up.
//!
//! CBC is calibrated on decryption, not given CTR's choice: CBC encryption
//! is the same AES-NI code under every hardware kernel, so decryption is
//! the only CBC direction the choice changes, and its loop (one AESDEC
//! chain per block, no counters) need not rank the kernels as CTR's does.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

use super::kernels::{available_kernels, Aes, Kernel};
use crate::format::Mode;

thread_local! {
    static FORCED: Cell<Option<Kernel>> = const { Cell::new(None) };
}

/// The kernel the caller named for the whole process, by name (see
/// [`Kernel::from_name`]); set once, before the first cipher is made.
static NAMED: OnceLock<String> = OnceLock::new();

/// Use the kernel `name` for every mode in this process, if this CPU has
/// it (else the measured choice, with [`override_note`] saying why). Call
/// it before the first cipher is made; a later call changes nothing.
pub fn force_kernel(name: &str) {
    let _ = NAMED.set(name.to_string());
}

/// Run `f` with every `Sealer`/`Opener` *created on this thread* inside it
/// using `kernel` (for tests and benchmarks; the rayon workers they use
/// follow the choice made at creation). Panics if the CPU lacks `kernel`.
pub fn with_kernel<R>(kernel: Kernel, f: impl FnOnce() -> R) -> R {
    assert!(kernel.is_available(), "this CPU cannot run the {} kernel", kernel.name());
    let before = FORCED.with(|c| c.replace(Some(kernel)));
    struct Restore(Option<Kernel>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(before);
    f()
}

struct Choice {
    ctr: Kernel,
    gcm: Kernel,
    cbc: Kernel,
    note: Option<String>,
}

static CHOICE: OnceLock<Choice> = OnceLock::new();

fn choice() -> &'static Choice {
    CHOICE.get_or_init(|| {
        let forced = NAMED.get().filter(|v| !v.trim().is_empty());
        match forced.as_deref().map(|v| (v, Kernel::from_name(v))) {
            Some((_, Some(k))) if k.is_available() => Choice { ctr: k, gcm: k, cbc: k, note: None },
            Some((v, found)) => {
                let Choice { ctr, gcm, cbc, .. } = calibrated();
                let why = if found.is_some() { "this CPU lacks it" } else { "unknown kernel (vaes512, vaes256, aesni, soft)" };
                let note = format!(
                    "SEALPIPE_KERNEL={v} ignored: {why}; using ctr={} gcm={} cbc={}",
                    ctr.name(),
                    gcm.name(),
                    cbc.name()
                );
                Choice { ctr, gcm, cbc, note: Some(note) }
            }
            None => calibrated(),
        }
    })
}

fn calibrated() -> Choice {
    Choice { ctr: calibrate(Mode::Ctr), gcm: calibrate(Mode::Gcm), cbc: calibrate(Mode::Cbc), note: None }
}

/// The kernel new sealers and openers of `mode` (and CBC batches) use on this thread.
pub(crate) fn selected(mode: Mode) -> Kernel {
    if let Some(k) = FORCED.with(|c| c.get()) {
        return k;
    }
    match mode {
        Mode::Ctr => choice().ctr,
        Mode::Gcm => choice().gcm,
        Mode::Cbc => choice().cbc,
    }
}

/// The name of the kernel that encrypts `mode` (for CBC: decrypts; its
/// encryption is AES-NI under any hardware kernel, RustCrypto under `soft`).
pub fn kernel_name(mode: Mode) -> &'static str {
    selected(mode).name()
}

/// Why the kernel [`force_kernel`] named was not honoured, if it was not.
pub fn override_note() -> Option<&'static str> {
    choice().note.as_deref()
}

/// Time each kernel this CPU has, the RustCrypto path included, through the
/// real CTR, GCM or CBC-decryption code on 64 KiB (best of 3); pick the fastest.
fn calibrate(mode: Mode) -> Kernel {
    use aes::cipher::KeyInit;
    let candidates = available_kernels();
    let key = [0x5au8; 32];
    let Ok(cipher) = aes::Aes256::new_from_slice(&key) else { return Kernel::Soft };
    let input = vec![0xa5u8; 64 << 10];
    let mut output = vec![0u8; input.len()];
    let mut best = (Kernel::Soft, f64::INFINITY);
    for k in candidates {
        let mut t = f64::INFINITY;
        for _ in 0..3 {
            let start = Instant::now();
            match mode {
                Mode::Gcm => {
                    let mut g = super::gcm::Gcm::new(cipher.clone(), k, &key, &[7u8; 12], 1 << 20);
                    g.seal(&input, &mut output);
                }
                Mode::Cbc => {
                    let fast = Aes::new(k, &key).map(|a| a.decryptor());
                    let mut d = super::cbc::CbcDecrypt::new(cipher.clone(), fast, &[0xff; 16], 1 << 20);
                    d.decrypt(&input, &mut output);
                }
                Mode::Ctr => {
                    let mut c = super::ctr::Ctr::new(cipher.clone(), Aes::new(k, &key), [0xff; 16], 1 << 20);
                    c.apply(&input, &mut output);
                }
            }
            t = t.min(start.elapsed().as_secs_f64());
        }
        if t < best.1 {
            best = (k, t);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatcher_picks_a_kernel_this_cpu_has() {
        for mode in Mode::ALL {
            let k = Kernel::from_name(kernel_name(mode)).unwrap();
            assert!(k.is_available(), "{mode}: {k:?}");
        }
        for k in available_kernels() {
            assert_eq!(with_kernel(k, || selected(Mode::Cbc)), k);
        }
        assert_eq!(with_kernel(Kernel::Soft, || selected(Mode::Gcm)), Kernel::Soft);
        assert_eq!(Kernel::from_name("nope"), None);
    }
}
