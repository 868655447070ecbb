//! Ctrl-C and SIGTERM: undo what is half done, then exit 130.
//!
//! One watcher thread waits for the signal; then it runs the registered
//! hooks (abort open S3 multipart uploads) and deletes the temporary files
//! of local outputs not yet complete, so an interrupted run leaves nothing
//! under a final name, no temporary files and no open uploads.

use std::sync::Mutex;

type Hook = Box<dyn FnOnce() + Send>;

static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// Run `hook` if the process is interrupted.
pub fn on_interrupt(hook: impl FnOnce() + Send + 'static) {
    HOOKS.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(hook));
}

/// Start the watcher thread.
pub fn install() {
    let started = std::thread::Builder::new().name("sealpipe-signals".into()).spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(wait_for_signal());
        // Out of the watcher's runtime: hooks may block on another runtime.
        drop(runtime);
        let hooks = std::mem::take(&mut *HOOKS.lock().unwrap_or_else(|p| p.into_inner()));
        for hook in hooks.into_iter().rev() {
            hook();
        }
        let removed = sealpipe::store::local::discard_pending_outputs();
        errln!("sealpipe: interrupted: {removed} incomplete output(s) discarded");
        std::process::exit(130);
    });
    if let Err(e) = started {
        errln!("sealpipe: warning: cannot watch for Ctrl-C ({e}); an interrupted run may leave temporary files");
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
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
