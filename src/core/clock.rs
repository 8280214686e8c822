//! The broker's clock: Unix time that never goes back, and whose durations survive steps of
//! the system clock.
//!
//! Everything time-driven in the store (entry IDs, TTL and freshness, retry backoff, ack
//! wait, idempotency windows) takes this clock's reading as a parameter. Read straight from
//! the system clock, a step back of an hour (an operator or NTP correcting a clock that ran
//! ahead) would hold every retry and expiry due in that hour back by the hour, and a step
//! forward fires them at once. So:
//!
//! - Between readings the clock runs on the monotonic clock (which NTP slews at the same rate
//!   as the system clock, but never steps).
//! - It follows the system clock forward at once: a step forward is time that passed (a host
//!   resumed from suspend, a clock that was behind), and what fell due in it is due.
//! - It never follows the system clock back. Once ahead of it, it runs at 63/64 speed until
//!   the system clock catches up: a step back of an hour is absorbed in 64 hours, and every
//!   duration meanwhile is at most 1.6% long. Entry IDs stay in order (the store also never
//!   hands out an ID below a stream's last one).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A step of the system clock larger than this is logged.
const STEP_LOG_NS: u64 = 1_000_000_000;

/// While ahead of the system clock, the clock loses `1 / 2^SLEW_SHIFT` of real time.
const SLEW_SHIFT: u32 = 6;

/// See the module documentation.
pub struct Clock {
    /// A step of the system clock simulated by tests (`CX.CLOCK STEP`), in ms.
    offset_ms: AtomicI64,
    anchor: Mutex<Anchor>,
}

/// The clock read `ns` at `at`.
struct Anchor {
    at: Instant,
    ns: u64,
    /// Ahead of the system clock (absorbing a step back).
    ahead: bool,
}

/// What one reading noticed, logged outside the lock.
enum Noticed {
    Nothing,
    SteppedBack(u64),
    SteppedForward(u64),
    CaughtUp,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock reading the system clock now.
    pub fn new() -> Self {
        Clock {
            offset_ms: AtomicI64::new(0),
            anchor: Mutex::new(Anchor {
                at: Instant::now(),
                ns: system_ns(0),
                ahead: false,
            }),
        }
    }

    /// Unix milliseconds, as the broker sees them: never less than an earlier reading.
    pub fn now_ms(&self) -> u64 {
        self.now_ns() / 1_000_000
    }

    /// Unix nanoseconds, as the broker sees them.
    pub fn now_ns(&self) -> u64 {
        self.reading().0
    }

    /// Broker time and the system clock's, from one reading of each. The monotonic instant
    /// is taken first: a pause between the two readings (a preempted thread) then shows as
    /// the system clock being later, never as a step back.
    fn reading(&self) -> (u64, u64) {
        let at = Instant::now();
        let wall = system_ns(self.offset_ms.load(Ordering::Relaxed));
        let (now, noticed) = self.read(wall, at);
        match noticed {
            Noticed::Nothing => {}
            Noticed::SteppedBack(ns) => tracing::warn!(
                "the system clock went back {} ms; broker time goes on and absorbs the step \
                 at 1/{} speed (durations stay within {:.1}%)",
                ns / 1_000_000,
                1u32 << SLEW_SHIFT,
                100.0 / f64::from((1u32 << SLEW_SHIFT) - 1)
            ),
            Noticed::SteppedForward(ns) => tracing::warn!(
                "the system clock jumped forward {} ms; what fell due in that time is due now",
                ns / 1_000_000
            ),
            Noticed::CaughtUp => tracing::info!("the system clock caught up with broker time"),
        }
        (now, wall)
    }

    /// How far the broker's time is ahead of the system clock while it absorbs a step back,
    /// in ms; 0 otherwise. One reading of each clock: before, the system clock was read
    /// twice, and a thread preempted between the reads reported the pause as time ahead
    /// (9 ms seen under load).
    pub fn ahead_ms(&self) -> u64 {
        let (now, wall) = self.reading();
        let ahead = self.anchor.lock().unwrap_or_else(|p| p.into_inner()).ahead;
        if ahead {
            now.saturating_sub(wall) / 1_000_000
        } else {
            0
        }
    }

    /// Steps the (simulated) system clock by `ms`, either way (tests).
    pub fn step(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// The reading at monotonic instant `at` when the system clock says `wall`.
    fn read(&self, wall: u64, at: Instant) -> (u64, Noticed) {
        let mut a = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = at.saturating_duration_since(a.at).as_nanos() as u64;
        let steady = a.ns.saturating_add(elapsed);
        if wall >= steady {
            let noticed = if a.ahead {
                Noticed::CaughtUp
            } else if wall - steady > STEP_LOG_NS {
                Noticed::SteppedForward(wall - steady)
            } else {
                Noticed::Nothing
            };
            *a = Anchor {
                at: at.max(a.at),
                ns: wall,
                ahead: false,
            };
            return (wall, noticed);
        }
        // The system clock is behind: go on, slower, until it catches up.
        let slewed = a.ns + elapsed - (elapsed >> SLEW_SHIFT);
        let now = slewed.max(wall);
        let (noticed, ahead) = if slewed <= wall {
            let noticed = if a.ahead {
                Noticed::CaughtUp
            } else {
                Noticed::Nothing
            };
            (noticed, false)
        } else if !a.ahead && steady - wall > STEP_LOG_NS {
            (Noticed::SteppedBack(steady - wall), true)
        } else {
            // Small lags (the two clocks read a few µs apart) are not a step to absorb.
            (Noticed::Nothing, a.ahead)
        };
        *a = Anchor {
            at: at.max(a.at),
            ns: now,
            ahead,
        };
        (now, noticed)
    }
}

/// The system clock plus a simulated step, in Unix ns.
fn system_ns(offset_ms: i64) -> u64 {
    let sys = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    (sys + i128::from(offset_ms) * 1_000_000).clamp(0, i128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u64 = 1_000_000_000;

    fn at(c: &Clock, t0: Instant, wall: u64, real: u64) -> u64 {
        c.read(wall, t0 + Duration::from_nanos(real)).0
    }

    #[test]
    fn follows_the_system_clock_and_its_steps_forward() {
        let c = Clock::new();
        let t0 = Instant::now();
        let w0 = 1_800_000_000 * S;
        assert_eq!(at(&c, t0, w0, 0), w0);
        assert_eq!(at(&c, t0, w0 + S, S), w0 + S);
        // A step forward of an hour is taken at once.
        assert_eq!(at(&c, t0, w0 + 3602 * S, 2 * S), w0 + 3602 * S);
    }

    #[test]
    fn a_step_back_is_absorbed_slowly_and_never_goes_back() {
        let c = Clock::new();
        let t0 = Instant::now();
        let w0 = 1_800_000_000 * S;
        assert_eq!(at(&c, t0, w0, 0), w0);
        // The system clock goes back an hour; the broker clock goes on at 63/64 speed.
        let mut last = w0;
        let mut real = 0;
        for _ in 0..640 {
            real += S;
            let now = at(&c, t0, w0 + real - 3600 * S, real);
            assert!(now > last, "time went back: {now} after {last}");
            let step = now - last;
            assert!(
                (S - S / 64 - 1..=S).contains(&step),
                "one real second took {step} ns"
            );
            last = now;
        }
        // 640 s of real time absorbed 10 s of the step.
        assert_eq!(last, w0 + 640 * S - 10 * S);
        // Once the system clock has caught up, it is followed again at full speed.
        let c = Clock::new();
        assert_eq!(at(&c, t0, w0, 0), w0);
        assert!(at(&c, t0, w0 - 2 * S, S) < w0 + S);
        assert!(c.anchor.lock().unwrap().ahead);
        let caught = at(&c, t0, w0 + 200 * S, 202 * S);
        assert_eq!(caught, w0 + 200 * S);
        assert!(!c.anchor.lock().unwrap().ahead);
        assert_eq!(at(&c, t0, w0 + 201 * S, 203 * S), w0 + 201 * S);
    }

    #[test]
    fn tiny_lags_between_the_two_clocks_are_not_steps() {
        let c = Clock::new();
        let t0 = Instant::now();
        let w0 = 1_800_000_000 * S;
        at(&c, t0, w0, 0);
        // The system clock read 3 µs "late" relative to the monotonic one.
        let now = at(&c, t0, w0 + S - 3_000, S);
        assert!(now >= w0 + S - 3_000 && now <= w0 + S);
        assert!(!c.anchor.lock().unwrap().ahead);
    }
}
