//! Time-based state of the stateful policies: the token bucket behind rate_limiting and bytes_limiting, and composite's per-second span budgets. Time comes from the caller's `now`.

use parking_lot::Mutex;
use tokio::time::Instant;

/// A token bucket with the semantics of Go's `golang.org/x/time/rate.Limiter.AllowN`, which the
/// Collector uses: it starts full, refills continuously at `rate` tokens a second up to
/// `burst`, and a request for `n` tokens either takes them all or takes none.
#[derive(Debug)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: f64,
    /// Capacity; a request larger than this never passes.
    burst: u64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    /// When `tokens` was last brought up to date; `None` until the first request (full bucket).
    last: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: u64, burst: u64) -> TokenBucket {
        TokenBucket {
            rate: rate as f64,
            burst,
            state: Mutex::new(BucketState {
                tokens: 0.0,
                last: None,
            }),
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Takes `n` tokens at `now` if the bucket holds them.
    pub fn allow(&self, now: Instant, n: u64) -> bool {
        let mut s = self.state.lock();
        let burst = self.burst as f64;
        let available = match s.last {
            None => burst,
            Some(last) => {
                let elapsed = now.saturating_duration_since(last).as_secs_f64();
                (s.tokens + elapsed * self.rate).min(burst)
            }
        };
        let left = available - n as f64;
        // x/time/rate allows a request whose wait, in whole nanoseconds, rounds down to zero.
        let wait_ns = if left < 0.0 {
            (-left / self.rate * 1e9) as i64
        } else {
            0
        };
        let ok = n <= self.burst && wait_ns <= 0;
        if ok {
            s.tokens = left;
            s.last = Some(match s.last {
                Some(last) if now < last => last,
                _ => now,
            });
        }
        ok
    }
}

/// The spans each composite sub-policy has sampled in the current one-second window. Windows
/// are whole seconds counted from the first evaluation (the Collector counts Unix seconds).
#[derive(Debug)]
pub struct Budget {
    /// Spans a second each sub-policy may sample (0 = never).
    allocated: Vec<i64>,
    /// `max_total_spans_per_second`.
    total: i64,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    epoch: Option<Instant>,
    window: u64,
    used: Vec<i64>,
}

impl Budget {
    pub fn new(allocated: Vec<i64>, total: i64) -> Budget {
        let used = vec![0; allocated.len()];
        Budget {
            allocated,
            total,
            state: Mutex::new(BudgetState {
                epoch: None,
                window: 0,
                used,
            }),
        }
    }

    /// Charges `spans` to sub-policy `sub` if that keeps it within its allocation and within
    /// the total; otherwise charges nothing (a smaller trace may still fit later).
    pub fn take(&self, sub: usize, spans: i64, now: Instant) -> bool {
        let mut s = self.state.lock();
        let epoch = *s.epoch.get_or_insert(now);
        let window = now.saturating_duration_since(epoch).as_secs();
        if window != s.window {
            s.window = window;
            s.used.iter_mut().for_each(|u| *u = 0);
        }
        let after = s.used[sub] + spans;
        if after <= self.allocated[sub] && after <= self.total {
            s.used[sub] = after;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn bucket_starts_full_refills_at_rate_and_caps_at_burst() {
        let t0 = Instant::now();
        let b = TokenBucket::new(10, 20);
        assert!(b.allow(t0, 15));
        assert!(!b.allow(t0, 6), "5 left");
        assert!(b.allow(t0, 5));
        assert!(!b.allow(t0, 1), "empty");
        assert!(
            b.allow(t0 + Duration::from_millis(100), 1),
            "one token after 100 ms"
        );
        assert!(!b.allow(t0 + Duration::from_millis(100), 1));
        assert!(
            b.allow(t0 + Duration::from_secs(60), 20),
            "refilled up to burst"
        );
        assert!(
            !b.allow(t0 + Duration::from_secs(120), 21),
            "never more than burst"
        );
    }

    #[test]
    fn budget_resets_each_second_and_charges_only_on_success() {
        let t0 = Instant::now();
        let b = Budget::new(vec![10, 0], 12);
        assert!(b.take(0, 6, t0));
        assert!(!b.take(0, 5, t0), "11 > 10");
        assert!(b.take(0, 4, t0), "a smaller trace still fits");
        assert!(!b.take(1, 1, t0), "no allocation, never");
        assert!(b.take(0, 10, t0 + SECOND), "new window");
    }
}
