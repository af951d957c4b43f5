//! Rates and latency percentiles of a load run. Percentiles are exact:
//! every latency is kept and sorted, and the nearest-rank method picks the
//! value at or above the asked fraction of calls.

use std::time::Duration;

use crate::load::Recorded;

/// What a measured window comes to.
#[derive(Debug, Clone)]
pub struct Summary {
    pub calls: u64,
    pub calls_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Units of work (entries, increments) per second.
    pub units_per_sec: f64,
    pub units: u64,
    /// Compare-and-set attempts lost before a success.
    pub retries: u64,
}

impl Summary {
    pub fn of(recorded: &Recorded) -> Self {
        let seconds = recorded.window.as_secs_f64();
        let calls = recorded.latencies_ns.len() as u64;
        let at = |q| percentile(&recorded.latencies_ns, q);
        Self {
            calls,
            calls_per_sec: calls as f64 / seconds,
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            errors: recorded.errors,
            first_error: recorded.first_error.clone(),
            units_per_sec: recorded.units as f64 / seconds,
            units: recorded.units,
            retries: recorded.retries,
        }
    }
}

/// The nearest-rank `q` percentile of `sorted` nanoseconds; zero when empty.
pub fn percentile(sorted: &[u64], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Duration::from_nanos(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of some durations (the lower middle when even); zero when empty.
pub fn median(mut durations: Vec<Duration>) -> Duration {
    durations.sort_unstable();
    durations.get(durations.len().saturating_sub(1) / 2).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 0.50), Duration::from_nanos(50));
        assert_eq!(percentile(&hundred, 0.99), Duration::from_nanos(99));
        assert_eq!(percentile(&hundred, 0.999), Duration::from_nanos(100));
        assert_eq!(percentile(&[7], 0.5), Duration::from_nanos(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn the_median_of_five_is_the_third() {
        let runs = [5, 1, 4, 2, 3].map(Duration::from_millis).to_vec();
        assert_eq!(median(runs), Duration::from_millis(3));
    }
}
