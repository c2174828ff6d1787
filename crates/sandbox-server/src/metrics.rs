//! Prometheus metrics, in the text exposition format: jobs by outcome, job
//! latency, ε spent per dataset, queue depth and HTTP responses by status.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the job-latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<&'static str, u64>>,
    latency: Mutex<Histogram>,
    epsilon: Mutex<BTreeMap<String, f64>>,
    http: Mutex<BTreeMap<u16, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// A job ended with `outcome` after `elapsed` (from its start).
    pub fn job_finished(&self, outcome: &'static str, elapsed: Duration) {
        *lock(&self.jobs).entry(outcome).or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        let mut h = lock(&self.latency);
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// ε a released job spent on `dataset`.
    pub fn epsilon_spent(&self, dataset: &str, epsilon: f64) {
        *lock(&self.epsilon).entry(dataset.to_string()).or_default() += epsilon;
    }

    pub fn http_response(&self, status: u16) {
        *lock(&self.http).entry(status).or_default() += 1;
    }

    /// The exposition text, with the queue's current depth.
    pub fn render(&self, queued: usize, running: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP sandbox_jobs_total Jobs ended, by outcome.");
        let _ = writeln!(out, "# TYPE sandbox_jobs_total counter");
        for (outcome, n) in lock(&self.jobs).iter() {
            let _ = writeln!(out, "sandbox_jobs_total{{outcome=\"{outcome}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP sandbox_job_duration_seconds Time from a job's start to its end."
        );
        let _ = writeln!(out, "# TYPE sandbox_job_duration_seconds histogram");
        {
            let h = lock(&self.latency);
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(out, "sandbox_job_duration_seconds_bucket{{le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "sandbox_job_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "sandbox_job_duration_seconds_sum {}", h.sum);
            let _ = writeln!(out, "sandbox_job_duration_seconds_count {}", h.count);
        }
        let _ = writeln!(
            out,
            "# HELP sandbox_epsilon_spent_total ε charged by released jobs, per dataset."
        );
        let _ = writeln!(out, "# TYPE sandbox_epsilon_spent_total counter");
        for (dataset, e) in lock(&self.epsilon).iter() {
            let _ = writeln!(out, "sandbox_epsilon_spent_total{{dataset=\"{dataset}\"}} {e}");
        }
        let _ = writeln!(out, "# HELP sandbox_jobs_queued Jobs waiting for a worker.");
        let _ = writeln!(out, "# TYPE sandbox_jobs_queued gauge");
        let _ = writeln!(out, "sandbox_jobs_queued {queued}");
        let _ = writeln!(out, "# HELP sandbox_jobs_running Jobs a worker is running.");
        let _ = writeln!(out, "# TYPE sandbox_jobs_running gauge");
        let _ = writeln!(out, "sandbox_jobs_running {running}");
        let _ = writeln!(
            out,
            "# HELP sandbox_http_responses_total HTTP responses, by status code."
        );
        let _ = writeln!(out, "# TYPE sandbox_http_responses_total counter");
        for (status, n) in lock(&self.http).iter() {
            let _ = writeln!(out, "sandbox_http_responses_total{{status=\"{status}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.job_finished("succeeded", Duration::from_millis(30));
        m.job_finished("refused", Duration::from_millis(3));
        m.epsilon_spent("gov.tax_payments", 0.5);
        m.epsilon_spent("gov.tax_payments", 0.25);
        let text = m.render(1, 2);
        assert!(text.contains("sandbox_jobs_total{outcome=\"succeeded\"} 1"));
        assert!(text.contains("sandbox_job_duration_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("sandbox_job_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("sandbox_job_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("sandbox_epsilon_spent_total{dataset=\"gov.tax_payments\"} 0.75"));
        assert!(text.contains("sandbox_jobs_queued 1\n"));
        assert!(text.contains("sandbox_jobs_running 2\n"));
    }
}
