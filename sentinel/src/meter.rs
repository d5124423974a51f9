//! The live speed: one sample per drain, kept for 120 s (the seed's window), each carrying the
//! time it covers, so rates are bytes over measured seconds rather than per nominal tick (D21).

use std::collections::VecDeque;

/// How long samples are kept.
pub const KEEP_MS: i64 = 120_000;

/// Bytes counted over one drain interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpeedSample {
    /// End of the interval, Unix milliseconds.
    pub ts_ms: i64,
    /// Upload IP bytes in the interval.
    pub up: u64,
    /// Download IP bytes in the interval.
    pub down: u64,
    /// Length of the interval in seconds.
    pub secs: f64,
}

impl SpeedSample {
    /// Upload bytes per second.
    pub fn up_bps(&self) -> f64 {
        self.up as f64 / self.secs.max(1e-3)
    }

    /// Download bytes per second.
    pub fn down_bps(&self) -> f64 {
        self.down as f64 / self.secs.max(1e-3)
    }
}

/// The last two minutes of samples.
#[derive(Debug, Default)]
pub struct SpeedRing {
    samples: VecDeque<SpeedSample>,
}

impl SpeedRing {
    /// Adds a sample and forgets those older than [`KEEP_MS`].
    pub fn push(&mut self, sample: SpeedSample) {
        self.samples.push_back(sample);
        while self
            .samples
            .front()
            .is_some_and(|s| s.ts_ms < sample.ts_ms - KEEP_MS)
        {
            self.samples.pop_front();
        }
    }

    /// Samples newer than `window_ms` before `now_ms`, the last `max` of them, oldest first.
    pub fn recent(&self, now_ms: i64, window_ms: i64, max: usize) -> Vec<SpeedSample> {
        let fresh: Vec<SpeedSample> = self
            .samples
            .iter()
            .filter(|s| s.ts_ms > now_ms - window_ms)
            .copied()
            .collect();
        fresh[fresh.len().saturating_sub(max)..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_two_minutes_and_answers_the_last_window() {
        let mut ring = SpeedRing::default();
        for i in 0..300 {
            ring.push(SpeedSample {
                ts_ms: i * 1000,
                up: i as u64,
                down: 2 * i as u64,
                secs: 1.0,
            });
        }
        assert_eq!(ring.samples.len(), 121);
        let recent = ring.recent(299_000, 60_000, 30);
        assert_eq!(recent.len(), 30);
        assert_eq!(recent.last().map(|s| s.up), Some(299));
        let half = SpeedSample {
            ts_ms: 0,
            up: 1000,
            down: 0,
            secs: 0.5,
        };
        assert_eq!(half.up_bps(), 2000.0);
    }
}
