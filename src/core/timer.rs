//! The timer: drives time-dependent state (ack deadlines, retries, TTLs) by submitting
//! [`Op::Tick`] when the store's next deadline passes, where the sequencer leads.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cortex_storage::Op;

use super::{BrokerError, Core};

/// The longest the timer sleeps without reading the clock again.
const TIMER_RECHECK: Duration = Duration::from_secs(1);

impl Core {
    /// Submits [`Op::Tick`] when the store's next deadline passes; sleeps until that
    /// deadline (or until a commit or a clock change moves it), at most [`TIMER_RECHECK`],
    /// so a step of the system clock forward takes effect within it.
    pub(super) async fn timer_loop(self) {
        let seq = self.sequencer().clone();
        while !self.stopping() {
            if !seq.leads() {
                // Time-driven work is the leader's, as ops in the log.
                tokio::select! {
                    _ = seq.until_leads() => {}
                    _ = self.timer_wake.notified() => {}
                }
                continue;
            }
            let wake = self.timer_wake.notified();
            let now = self.now_ms();
            let due = self.next_deadline_ms.load(Ordering::Acquire);
            if due <= now {
                match self
                    .submit_system(vec![Op::Tick])
                    .await
                    .map(|mut r| r.pop())
                {
                    Ok(Some(Err(e))) => tracing::warn!("tick failed: {e}"),
                    Ok(_) => {}
                    Err(BrokerError::Busy) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(_) => break,
                }
                continue;
            }
            if due == u64::MAX {
                wake.await;
            } else {
                let wait = Duration::from_millis(due - now).min(TIMER_RECHECK);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake => {}
                }
            }
        }
    }
}
