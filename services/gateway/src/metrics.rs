//! Prometheus text metrics of the gateway: HTTP requests by method, route and status; NATS
//! request latency by subject; the last log head and view seq seen, whose difference is the
//! projections' lag in events (and how long they have been behind, in ms) as this gateway
//! observes it; from the timers (`authkeys.timers.status`), their seq, schedule size and firings;
//! and, asked from the command service (`authkeys.status`), its command, event,
//! transaction and checkpoint counters and the relay's lag.

use authkeys_protocol::status::{CommandStatus, TimersStatus};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the NATS latency histogram's buckets.
pub const LATENCY_BUCKETS_SECS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS_SECS.len()],
    count: u64,
    sum_secs: f64,
}

/// The gateway's counters. Cheap to update: one short lock per request.
#[derive(Debug, Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    nats: Mutex<BTreeMap<String, Histogram>>,
    log_head: AtomicU64,
    view_seq: AtomicU64,
    /// Since when the views have been seen behind the log head (`None`: caught up).
    behind_since: Mutex<Option<Instant>>,
}

impl Metrics {
    /// Counts one answered HTTP request.
    pub fn http(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut m) = self.http.lock() {
            *m.entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
    }

    /// Records one NATS request's round trip.
    pub fn nats(&self, subject: &str, took: Duration) {
        let secs = took.as_secs_f64();
        if let Ok(mut m) = self.nats.lock() {
            let h = m.entry(subject.to_owned()).or_default();
            h.count += 1;
            h.sum_secs += secs;
            for (bucket, bound) in h.buckets.iter_mut().zip(LATENCY_BUCKETS_SECS) {
                if secs <= bound {
                    *bucket += 1;
                }
            }
        }
    }

    /// The log head a request read.
    pub fn saw_head(&self, head: u64) {
        self.log_head.fetch_max(head, Ordering::Relaxed);
        self.update_behind();
    }

    /// The seq a view answered at.
    pub fn saw_view_seq(&self, seq: u64) {
        self.view_seq.fetch_max(seq, Ordering::Relaxed);
        self.update_behind();
    }

    fn update_behind(&self) {
        let behind = self.view_seq.load(Ordering::Relaxed) < self.log_head.load(Ordering::Relaxed);
        if let Ok(mut since) = self.behind_since.lock() {
            match (behind, *since) {
                (true, None) => *since = Some(Instant::now()),
                (false, Some(_)) => *since = None,
                _ => {}
            }
        }
    }

    /// The Prometheus text exposition, with the command service's `status` and the timers'
    /// `timers` status when they answered.
    pub fn render(&self, status: Option<&CommandStatus>, timers: Option<&TimersStatus>) -> String {
        let mut out = String::new();
        out.push_str("# HELP authkeys_http_requests_total HTTP requests answered.\n");
        out.push_str("# TYPE authkeys_http_requests_total counter\n");
        if let Ok(m) = self.http.lock() {
            for ((method, route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "authkeys_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str(
            "# HELP authkeys_nats_request_seconds Round trip of the gateway's NATS requests.\n",
        );
        out.push_str("# TYPE authkeys_nats_request_seconds histogram\n");
        if let Ok(m) = self.nats.lock() {
            for (subject, h) in m.iter() {
                for (n, bound) in h.buckets.iter().zip(LATENCY_BUCKETS_SECS) {
                    let _ = writeln!(
                        out,
                        "authkeys_nats_request_seconds_bucket{{subject=\"{subject}\",le=\"{bound}\"}} {n}"
                    );
                }
                let _ = writeln!(
                    out,
                    "authkeys_nats_request_seconds_bucket{{subject=\"{subject}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "authkeys_nats_request_seconds_sum{{subject=\"{subject}\"}} {}",
                    h.sum_secs
                );
                let _ = writeln!(
                    out,
                    "authkeys_nats_request_seconds_count{{subject=\"{subject}\"}} {}",
                    h.count
                );
            }
        }
        let head = self.log_head.load(Ordering::Relaxed);
        let seq = self.view_seq.load(Ordering::Relaxed);
        for (name, help, value) in [
            (
                "authkeys_gateway_log_head",
                "Highest log head this gateway read.",
                head,
            ),
            (
                "authkeys_gateway_view_seq",
                "Highest seq a view answered this gateway at.",
                seq,
            ),
            (
                "authkeys_gateway_projection_lag_events",
                "Log head minus view seq, as last observed here.",
                head.saturating_sub(seq),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let behind_ms = self
            .behind_since
            .lock()
            .ok()
            .and_then(|s| *s)
            .map_or(0, |t| t.elapsed().as_millis());
        let _ = writeln!(
            out,
            "# HELP authkeys_gateway_projection_lag_ms How long the views have been seen behind the log head.\n# TYPE authkeys_gateway_projection_lag_ms gauge\nauthkeys_gateway_projection_lag_ms {behind_ms}"
        );
        if let Some(s) = status {
            for (name, kind, help, value) in [
                (
                    "authkeys_log_head",
                    "gauge",
                    "The log's last committed seq.",
                    s.head,
                ),
                (
                    "authkeys_commands_total",
                    "counter",
                    "Commands the command service answered.",
                    s.commands,
                ),
                (
                    "authkeys_events_total",
                    "counter",
                    "Events appended to the log.",
                    s.events,
                ),
                (
                    "authkeys_log_transactions_total",
                    "counter",
                    "Write transactions (fsyncs) of the log.",
                    s.transactions,
                ),
                (
                    "authkeys_log_checkpoints_total",
                    "counter",
                    "Signed checkpoints written.",
                    s.checkpoints,
                ),
                (
                    "authkeys_relay_lag_events",
                    "gauge",
                    "Log head minus the relay's durable cursor.",
                    s.head.saturating_sub(s.relay_cursor),
                ),
            ] {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                );
            }
        }
        if let Some(t) = timers {
            let lag = status.map(|s| s.head.saturating_sub(t.seq));
            for (name, kind, help, value) in [
                (
                    "authkeys_timers_seq",
                    "gauge",
                    "The last event applied to the timers' schedule.",
                    Some(t.seq),
                ),
                (
                    "authkeys_timers_lag_events",
                    "gauge",
                    "Log head minus the timers' schedule seq.",
                    lag,
                ),
                (
                    "authkeys_timers_scheduled",
                    "gauge",
                    "Key expiries, node-key expiries and ephemeral removals scheduled.",
                    Some(t.scheduled),
                ),
                (
                    "authkeys_timers_fired_total",
                    "counter",
                    "Timer commands answered since the timers started.",
                    Some(t.fired),
                ),
                (
                    "authkeys_timers_last_late_ms",
                    "gauge",
                    "How far past its deadline the most overdue entry of the last fired batch was.",
                    Some(t.last_late_ms),
                ),
            ] {
                if let Some(value) = value {
                    let _ = writeln!(
                        out,
                        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                    );
                }
            }
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.http("GET", "/api/v2/device/{id}", 200);
        m.http("GET", "/api/v2/device/{id}", 200);
        let subject = authkeys_protocol::subject::query_full::DEVICES_GET;
        m.nats(subject, Duration::from_millis(3));
        m.saw_head(10);
        m.saw_view_seq(7);
        let text = m.render(None, None);
        assert!(!text.contains("authkeys_timers_"));
        assert!(text.contains(
            "authkeys_http_requests_total{method=\"GET\",route=\"/api/v2/device/{id}\",status=\"200\"} 2"
        ));
        assert!(text.contains(&format!(
            "authkeys_nats_request_seconds_bucket{{subject=\"{subject}\",le=\"0.005\"}} 1"
        )));
        assert!(text.contains(&format!(
            "authkeys_nats_request_seconds_bucket{{subject=\"{subject}\",le=\"0.0025\"}} 0"
        )));
        assert!(text.contains("authkeys_gateway_projection_lag_events 3"));
        let timers = TimersStatus {
            seq: 8,
            scheduled: 5,
            fired: 2,
            last_late_ms: 4,
        };
        let status = CommandStatus {
            head: 10,
            relay_cursor: 10,
            commands: 3,
            events: 10,
            transactions: 3,
            checkpoints: 1,
            writer_failure: None,
        };
        let text = m.render(Some(&status), Some(&timers));
        for line in [
            "authkeys_timers_seq 8",
            "authkeys_timers_lag_events 2",
            "authkeys_timers_scheduled 5",
            "authkeys_timers_fired_total 2",
            "authkeys_timers_last_late_ms 4",
        ] {
            assert!(text.contains(line), "{line}");
        }
    }
}
