//! Ctrl-C and SIGTERM: caught from the start of a run, so work in progress can be undone (machines
//! half made) or stopped between actions, instead of the process dying mid-step.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Tells whether the user asked to stop.
#[derive(Debug, Clone)]
pub struct Interrupt {
    rx: watch::Receiver<bool>,
}

impl Interrupt {
    /// Starts catching SIGINT and SIGTERM. The handlers are in place when this returns. Must be
    /// called inside a tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            let _ = tx.send(true);
        });
        Ok(Self { rx })
    }

    /// One that never fires (for callers that handle signals themselves, and tests).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        // Keep the sender alive so `wait` pends forever instead of returning on a closed channel.
        std::mem::forget(tx);
        Self { rx }
    }

    /// True once a signal arrived.
    pub fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when a signal arrives.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|v| *v).await;
    }
}
