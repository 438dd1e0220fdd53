//! Capped exponential backoff for the retry loops that never give up (kube2sky's etcd writer,
//! its connection and its election): the delays come from `backon`'s exponential builder
//! (factor 2, no jitter, no attempt limit); this wrapper adds what those loops need around it —
//! a peek at the next delay, a reset after a success, and a sleep that ends on shutdown.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// Delays `initial`, 2×, 4×, … up to `max`, then `max` forever; `reset` starts over.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    upcoming: Duration,
    max: Duration,
}

impl Backoff {
    /// First delay `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_min_delay(initial)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times();
        let mut delays = builder.build();
        let upcoming = delays.next().unwrap_or(max);
        Backoff {
            builder,
            delays,
            upcoming,
            max,
        }
    }

    /// The delay to wait now; the following one doubles (up to the cap).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Duration {
        let d = self.upcoming;
        self.upcoming = self.delays.next().unwrap_or(self.max);
        d
    }

    /// The delay `next` would return, without advancing.
    pub fn peek(&self) -> Duration {
        self.upcoming
    }

    /// Start over from the initial delay (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
        self.upcoming = self.delays.next().unwrap_or(self.max);
    }
}

/// Sleep `d` unless `stop` is cancelled first; `true` when stopped.
pub async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let seq: Vec<u128> = (0..5).map(|_| b.next().as_millis()).collect();
        assert_eq!(seq, vec![100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(100));
    }

    #[test]
    fn the_cap_holds_forever_and_peek_does_not_advance() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        assert_eq!(b.peek(), Duration::from_millis(200));
        assert_eq!(b.peek(), Duration::from_millis(200));
        let seq: Vec<u128> = (0..8).map(|_| b.next().as_millis()).collect();
        assert_eq!(seq, vec![200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        for _ in 0..1000 {
            assert_eq!(b.next(), Duration::from_secs(5));
        }
    }
}
