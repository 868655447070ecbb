//! Ctrl-C and SIGTERM: undo what is half done, then exit 130.
//!
//! One watcher thread waits for the signal on the process's runtime
//! ([`crate::aws::runtime`]); then, off the runtime (hooks block on it), it
//! runs the registered hooks (abort open S3 multipart uploads, give back the
//! job's lease) and deletes the temporary files of local outputs not yet
//! complete, so an interrupted run leaves nothing under a final name, no
//! temporary files and no open uploads.

use std::sync::Mutex;

type Hook = Box<dyn FnOnce() + Send>;

static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// Run `hook` if the process is interrupted.
pub fn on_interrupt(hook: impl FnOnce() + Send + 'static) {
    HOOKS.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(hook));
}

/// Start the watcher thread.
pub fn install() {
    let started = crate::aws::runtime().and_then(|runtime| {
        // The signal handlers are registered now, before any work starts.
        let signals = runtime.block_on(async { Signals::new() });
        std::thread::Builder::new()
            .name("sealpipe-signals".into())
            .spawn(move || {
                // A plain thread, not one of the runtime's: the hooks below may block on the runtime.
                runtime.block_on(signals.wait());
                let hooks = std::mem::take(&mut *HOOKS.lock().unwrap_or_else(|p| p.into_inner()));
                for hook in hooks.into_iter().rev() {
                    hook();
                }
                let removed = sealpipe::store::local::discard_pending_outputs();
                errln!("sealpipe: interrupted: {removed} incomplete output(s) discarded");
                std::process::exit(130);
            })
            .map_err(anyhow::Error::from)
    });
    if let Err(e) = started {
        errln!("sealpipe: warning: cannot watch for Ctrl-C ({e}); an interrupted run may leave temporary files");
    }
}

/// Ctrl-C, and SIGTERM on Unix.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Register the handlers (inside the runtime).
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals { term: signal(SignalKind::terminate()).ok() }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn wait(mut self) {
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
                _ = tokio::signal::ctrl_c() => {}
                _ = term => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
