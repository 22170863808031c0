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
//!
//! There is one way to stop. Every stage runs in the daemon's [`Stages`], and one
//! [`Shutdown`] token, the supervisor's, reaches them all (probes and scrapes through
//! the reload control that owns them, delivery workers through the router):
//! [`Stages::stop`] fires it, once the API has drained. A stage started with [`Stages::spawn`] is cancelled when it fires (its
//! work is on disk or done again at the next start); a stage started with
//! [`Stages::spawn_draining`] finishes its work first: it watches the token itself
//! (the CloudWatch publisher's last flush) or ends when its inputs close (the health
//! stage, the rule manager). [`Stages::stop`] then waits for all of them, for at most
//! a deadline.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// Collects the first stage failure, and holds the shutdown token.
#[derive(Debug)]
pub struct Supervisor {
    /// The first failure (`"<stage> panicked"`, `"<stage> ended"`), once there is one.
    failed: watch::Sender<Option<String>>,
    /// Set once a stop is under way: stages ending then are expected.
    stopping: AtomicBool,
    /// The shutdown token's sender: `true` once a stop is under way.
    stop: watch::Sender<bool>,
}

/// The shutdown token: fired once, when the daemon stops.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Completes once a stop is under way (at once if it already is).
    pub async fn requested(&mut self) {
        // A supervisor gone is a stop too.
        let _ = self.0.wait_for(|s| *s).await;
    }

    /// Whether a stop is under way.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

impl Supervisor {
    /// A supervisor with no failure yet.
    pub fn new() -> Arc<Supervisor> {
        Arc::new(Supervisor {
            failed: watch::channel(None).0,
            stopping: AtomicBool::new(false),
            stop: watch::channel(false).0,
        })
    }

    /// The shutdown token.
    pub fn shutdown(&self) -> Shutdown {
        Shutdown(self.stop.subscribe())
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
    /// The token is not fired yet: the API drains first, with every stage running.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Fires the shutdown token (and marks the stop as expected).
    pub fn shut_down(&self) {
        self.stopping();
        self.stop.send_replace(true);
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

/// Every long-lived stage of a daemon, supervised, stopped one way.
pub struct Stages {
    /// Told of failures; its token stops the stages.
    supervisor: Arc<Supervisor>,
    /// The running stages.
    set: JoinSet<()>,
}

impl Stages {
    /// No stages yet, supervised by `supervisor`.
    pub fn new(supervisor: Arc<Supervisor>) -> Stages {
        Stages {
            supervisor,
            set: JoinSet::new(),
        }
    }

    /// The supervisor.
    pub fn supervisor(&self) -> &Arc<Supervisor> {
        &self.supervisor
    }

    /// Starts `fut` as the stage `name`, cancelled when the shutdown token fires.
    pub fn spawn<F>(&mut self, name: impl Into<String>, fut: F)
    where
        F: Future + Send + 'static,
        F::Output: Into<Ended>,
    {
        let mut shutdown = self.supervisor.shutdown();
        let run = stage(&self.supervisor, name.into(), fut);
        self.set.spawn(async move {
            tokio::select! {
                () = run => {}
                () = shutdown.requested() => {}
            }
        });
    }

    /// Starts `fut` as the stage `name`, left to finish by itself once the token
    /// fires: it watches the token, or ends when its inputs close.
    pub fn spawn_draining<F>(&mut self, name: impl Into<String>, fut: F)
    where
        F: Future + Send + 'static,
        F::Output: Into<Ended>,
    {
        self.set.spawn(stage(&self.supervisor, name.into(), fut));
    }

    /// Fires the shutdown token and waits, for at most `deadline`, for every stage
    /// to end; what is left then is cancelled. Answers how many were left. A stage
    /// stuck outside an `.await` (a hung disk under an fsync) cannot be cancelled:
    /// it gets a second more, then is left behind, so the stop stays bounded.
    pub async fn stop(mut self, deadline: Duration) -> usize {
        self.supervisor.shut_down();
        let all = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(deadline, all).await.is_ok() {
            return 0;
        }
        let left = self.set.len();
        self.set.abort_all();
        let cancelled = async { while self.set.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), cancelled).await;
        self.set.detach_all();
        left
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

    #[tokio::test]
    async fn one_token_stops_every_stage_and_draining_ones_finish_first() {
        let mut stages = Stages::new(Supervisor::new());
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<&str>(4);
        stages.spawn("probe x", std::future::pending::<()>());
        let mut token = stages.supervisor().shutdown();
        let tx = done_tx.clone();
        stages.spawn_draining("publisher", async move {
            token.requested().await;
            // The last flush: work done after the token fired.
            tokio::task::yield_now().await;
            let _ = tx.send("flushed").await;
        });
        let (inputs_tx, mut inputs) = tokio::sync::mpsc::channel::<()>(1);
        stages.spawn("source", async move {
            let _keep = inputs_tx;
            std::future::pending::<()>().await;
        });
        stages.spawn_draining("manager", async move {
            while inputs.recv().await.is_some() {}
            let _ = done_tx.send("inputs closed").await;
        });
        let supervisor = stages.supervisor().clone();
        // A stop expected is not yet the token: the API drains with every stage up.
        let token = supervisor.shutdown();
        supervisor.stopping();
        tokio::task::yield_now().await;
        assert!(!token.is_requested());
        assert!(
            done_rx.try_recv().is_err(),
            "nothing stopped before the token"
        );
        assert_eq!(
            stages.stop(Duration::from_secs(60)).await,
            0,
            "every stage ended"
        );
        let mut done = vec![done_rx.recv().await.unwrap(), done_rx.recv().await.unwrap()];
        done.sort_unstable();
        assert_eq!(done, ["flushed", "inputs closed"]);
        assert_eq!(supervisor.failure(), None, "stopping is not a failure");
        // A stage that never ends is cancelled at the deadline and counted.
        let mut stuck = Stages::new(Supervisor::new());
        stuck.spawn_draining("stuck", std::future::pending::<()>());
        assert_eq!(stuck.stop(Duration::from_millis(1)).await, 1);
    }
}
