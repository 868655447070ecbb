//! Ctrl-C and SIGTERM: stop gracefully where the command can, else (and on
//! a second signal, or when the grace period is over) undo what is half
//! done and exit 130.
//!
//! One watcher thread waits for the signal on the process's runtime
//! ([`crate::aws::runtime`]). While an encrypt or reencrypt
//! run has asked for a graceful stop ([`graceful`]), the first signal only
//! sets its stop token: the run starts no more files, lets those in flight
//! finish, stores its manifest (an `s3://` one included) and exits 130 by
//! itself, all within `--grace-seconds` (an eviction's SIGTERM gives 30 s
//! by default before SIGKILL, a spot reclaim 2 minutes). Otherwise, or on
//! a second signal, or once the grace period is over, it runs the
//! registered hooks (abort open S3 multipart uploads, give the lease back)
//! and deletes the temporary files of local outputs not yet complete, so an
//! interrupted run leaves nothing under a final name, no temporary files
//! and no open uploads; then it exits 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Hook = Box<dyn FnOnce() + Send>;

static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// The stop token of the run that stops gracefully, and its grace period.
static GRACEFUL: Mutex<Option<(Arc<AtomicBool>, Duration)>> = Mutex::new(None);

/// Exit code of an interrupted run (graceful or not): a re-run resumes it.
pub const INTERRUPTED: u8 = 130;

/// Run `hook` if the process is interrupted.
pub fn on_interrupt(hook: impl FnOnce() + Send + 'static) {
    HOOKS.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(hook));
}

/// From now on the first signal stops the run gracefully: the token
/// returned is set, and the run has `grace` to finish before the hooks run.
pub fn graceful(grace: Duration) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    *GRACEFUL.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop.clone(), grace));
    stop
}

/// Start the watcher thread.
pub fn install() {
    let started = crate::aws::runtime().and_then(|runtime| {
        // The signal handlers are registered now, before any work starts.
        let mut signals = runtime.block_on(async { Signals::new() });
        std::thread::Builder::new()
            .name("sealpipe-signals".into())
            .spawn(move || {
                // A plain thread, not one of the runtime's: the hooks below may block on the runtime.
                runtime.block_on(async {
                    let first = signals.next().await;
                    let graceful = GRACEFUL.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    if let Some((stop, grace)) = graceful {
                        stop.store(true, Ordering::SeqCst);
                        errln!(
                            "sealpipe: {first}: stopping: no new files; the files in flight finish and the manifest is stored \
                             (another signal, or {} s from now, aborts them instead)",
                            grace.as_secs_f64()
                        );
                        tokio::select! {
                            second = signals.next() => errln!("sealpipe: {second} again: aborting"),
                            _ = tokio::time::sleep(grace) => errln!("sealpipe: the grace period ({} s) is over: aborting", grace.as_secs_f64()),
                        }
                    }
                });
                let hooks = std::mem::take(&mut *HOOKS.lock().unwrap_or_else(|p| p.into_inner()));
                for hook in hooks.into_iter().rev() {
                    hook();
                }
                let removed = sealpipe::discard_pending_outputs();
                errln!("sealpipe: interrupted: {removed} incomplete output(s) discarded");
                std::process::exit(i32::from(INTERRUPTED));
            })
            .map_err(anyhow::Error::from)
    });
    if let Err(e) = started {
        errln!("sealpipe: warning: cannot watch for Ctrl-C ({e}); an interrupted run may leave temporary files");
    }
}

/// Ctrl-C and SIGTERM, each time one comes.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Register the handlers (inside the runtime).
    fn new() -> Self {
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            let term = async {
                match self.term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupt",
                _ = term => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupt"
        }
    }
}
