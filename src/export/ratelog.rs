//! A log line at most every so often for events that can come in floods (spans a
//! downstream refuses one by one), with how many happened since the last line.

use std::time::Duration;

use tokio::time::Instant;

pub(super) struct RateLimitedLog {
    every: Duration,
    /// When the last line was written, and the events since (it included).
    state: parking_lot::Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedLog {
    pub(super) fn new(every: Duration) -> RateLimitedLog {
        RateLimitedLog {
            every,
            state: parking_lot::Mutex::new((None, 0)),
        }
    }

    /// Counts one event; `Some(n)` when a line is due now, `n` the events it stands for
    /// (this one and those not logged since the last line).
    pub(super) fn hit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut st = self.state.lock();
        st.1 += 1;
        match st.0 {
            Some(last) if now < last + self.every => None,
            _ => {
                let n = st.1;
                *st = (Some(now), 0);
                Some(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_period_with_the_count_since() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        assert_eq!(log.hit(), Some(1));
        assert_eq!(log.hit(), None);
        assert_eq!(log.hit(), None);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(log.hit(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(log.hit(), Some(4));
        assert_eq!(log.hit(), None);
    }
}
