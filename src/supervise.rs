//! Supervision: a long-lived stage that panics or ends by itself is never silent.
//!
//! Every long-lived task (the rule manager, the health stage, the router, the lease,
//! each delivery worker, the publisher, each probe and scrape) runs inside
//! [`stage`]. When one panics or returns while the daemon is not stopping, the
//! [`Supervisor`] records why: `/healthz` answers 503 with that reason and the daemon
//! stops and exits non-zero, so ECS replaces the task (its state is on disk). A stage
//! cancelled on purpose — by a reload, or at shutdown — is not a failure.
//!
//! A stage tells a panic from a cancellation by `std::thread::panicking()` in its
//! guard's `Drop`: a panic unwinds through the guard, a cancellation drops it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Collects the first stage failure.
#[derive(Debug)]
pub struct Supervisor {
    /// The first failure (`"<stage> panicked"`, `"<stage> ended"`), once there is one.
    failed: watch::Sender<Option<String>>,
    /// Set once a stop is under way: stages ending then are expected.
    stopping: AtomicBool,
}

impl Supervisor {
    /// A supervisor with no failure yet.
    pub fn new() -> Arc<Supervisor> {
        Arc::new(Supervisor {
            failed: watch::channel(None).0,
            stopping: AtomicBool::new(false),
        })
    }

    /// Watches for the first failure.
    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.failed.subscribe()
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    /// From now on stages end because the daemon stops; they are no longer failures.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Records that `name` stopped (`how`: "panicked", "ended"), unless stopping.
    pub fn report(&self, name: &str, how: &str) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let reason = format!("{name} {how}");
        tracing::error!(message = "A stage of the daemon stopped; the daemon stops so that it is replaced.", stage = %name, how = %how);
        self.failed.send_if_modified(|f| {
            if f.is_none() {
                *f = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// Reports its stage when dropped by a panic.
struct Guard {
    /// Who to tell.
    supervisor: Arc<Supervisor>,
    /// The stage's name.
    name: String,
    /// Set when the stage's future returned.
    done: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done && std::thread::panicking() {
            self.supervisor.report(&self.name, "panicked");
        }
    }
}

/// How a stage's future ended: a plain `()` is an end nobody asked for (a failure);
/// [`Ended::Asked`] is a stage that was told to stop and did (a delivery worker
/// retired by a reload once its delivery in flight is done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Told to stop, and stopped: not a failure.
    Asked,
    /// Ended by itself: a failure.
    Unasked,
}

impl From<()> for Ended {
    fn from((): ()) -> Ended {
        Ended::Unasked
    }
}

/// `fut` as a supervised stage named `name`: a panic or a return is reported to
/// `supervisor`; being dropped (cancelled) is not, and neither is a return of
/// [`Ended::Asked`].
pub fn stage<F, N>(
    supervisor: &Arc<Supervisor>,
    name: N,
    fut: F,
) -> impl Future<Output = ()> + use<F, N>
where
    F: Future,
    F::Output: Into<Ended>,
    N: Into<String>,
{
    let mut guard = Guard {
        supervisor: supervisor.clone(),
        name: name.into(),
        done: false,
    };
    async move {
        let ended = fut.await.into();
        guard.done = true;
        if ended == Ended::Unasked {
            guard.supervisor.report(&guard.name, "ended");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_or_an_end_is_reported_a_cancellation_is_not() {
        let s = Supervisor::new();
        let cancelled = tokio::spawn(stage(&s, "probe x", std::future::pending::<()>()));
        cancelled.abort();
        assert!(cancelled.await.unwrap_err().is_cancelled());
        assert_eq!(s.failure(), None);
        let panicked = tokio::spawn(stage(&s, "router", async { panic!("boom") as () }));
        assert!(panicked.await.unwrap_err().is_panic());
        assert_eq!(s.failure().as_deref(), Some("router panicked"));
        // Only the first failure is kept.
        tokio::spawn(stage(&s, "lease", async {})).await.unwrap();
        assert_eq!(s.failure().as_deref(), Some("router panicked"));
        let t = Supervisor::new();
        tokio::spawn(stage(&t, "lease", async {})).await.unwrap();
        assert_eq!(t.failure().as_deref(), Some("lease ended"));
        let u = Supervisor::new();
        u.stopping();
        tokio::spawn(stage(&u, "lease", async {})).await.unwrap();
        assert_eq!(u.failure(), None);
        let v = Supervisor::new();
        tokio::spawn(stage(&v, "worker", async { Ended::Asked }))
            .await
            .unwrap();
        assert_eq!(v.failure(), None, "told to stop, and stopped");
    }
}
