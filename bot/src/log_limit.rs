//! Warnings that could repeat once per request are logged at most once a
//! period, with the number held back since the last one: an alert storm
//! answered 503, or a misconfigured sender posting bad bodies, must not
//! bury everything else in the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One rate limit for one kind of warning.
#[derive(Debug)]
pub struct Every {
    period: Duration,
    /// When the last warning went out, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Every {
    pub const fn new(period: Duration) -> Every {
        Every {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back)` when a warning is due now (the first always is),
    /// `None` when this one is to be held back.
    pub fn due(&self) -> Option<u64> {
        self.due_at(Instant::now())
    }

    fn due_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, held) = &mut *state;
        if last.is_some_and(|t| now.saturating_duration_since(t) < self.period) {
            *held += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_warning_goes_out_then_one_a_period_with_the_count_held_back() {
        let every = Every::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let s = Duration::from_secs;

        let seen = [
            every.due_at(t0),
            every.due_at(t0 + s(1)),
            every.due_at(t0 + s(9)),
            every.due_at(t0 + s(10)),
            every.due_at(t0 + s(11)),
        ];

        assert_eq!(seen, [Some(0), None, None, Some(2), None]);
    }
}
