//! The service's Prometheus metrics: one recorder per running service (not the process-wide
//! global), so several services in one process — the test suites — count separately.
//!
//! Names (all prefixed `sessiongate_`) are listed on [`Metrics`]; `/metrics` renders them.

use std::time::Duration;

use metrics::{Counter, Gauge, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Counters and gauges of one service instance:
///
/// - `sessiongate_http_requests_total{route,method,status}` and
///   `sessiongate_http_request_duration_seconds{route,method}` (histogram)
/// - `sessiongate_session_cache_hits_total`, `sessiongate_session_cache_misses_total`,
///   `sessiongate_session_db_fallbacks_total` (cache unavailable, database asked)
/// - `sessiongate_session_refreshes_total` (rows extended),
///   `sessiongate_session_refresh_attempts_total`, `sessiongate_session_refresh_failures_total`
/// - `sessiongate_session_revocations_total`, `sessiongate_cache_evict_failures_total`
/// - `sessiongate_rate_limit_rejections_total{bucket}`, `sessiongate_rate_limit_fallbacks_total`
/// - `sessiongate_audit_write_failures_total`
/// - `sessiongate_password_queue_depth` (gauge: hashing jobs waiting or running)
/// - `sessiongate_db_queries_total` (statements sent to the database)
/// - `sessiongate_cache_round_trips_total` (commands or scripts sent to Redis, each one
///   round trip; the in-process cache has none)
/// - `sessiongate_cleanup_deleted_total`
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub db_fallbacks: Counter,
    pub refreshes: Counter,
    pub refresh_attempts: Counter,
    pub refresh_failures: Counter,
    pub revocations: Counter,
    pub evict_failures: Counter,
    pub rate_limit_fallbacks: Counter,
    pub audit_failures: Counter,
    pub password_queue: Gauge,
    pub db_queries: Counter,
    pub cache_round_trips: Counter,
    pub cleanup_deleted: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            )
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let counter =
            |name: &'static str| recorder.register_counter(&Key::from_static_name(name), &META);
        Metrics {
            cache_hits: counter("sessiongate_session_cache_hits_total"),
            cache_misses: counter("sessiongate_session_cache_misses_total"),
            db_fallbacks: counter("sessiongate_session_db_fallbacks_total"),
            refreshes: counter("sessiongate_session_refreshes_total"),
            refresh_attempts: counter("sessiongate_session_refresh_attempts_total"),
            refresh_failures: counter("sessiongate_session_refresh_failures_total"),
            revocations: counter("sessiongate_session_revocations_total"),
            evict_failures: counter("sessiongate_cache_evict_failures_total"),
            rate_limit_fallbacks: counter("sessiongate_rate_limit_fallbacks_total"),
            audit_failures: counter("sessiongate_audit_write_failures_total"),
            db_queries: counter("sessiongate_db_queries_total"),
            cache_round_trips: counter("sessiongate_cache_round_trips_total"),
            cleanup_deleted: counter("sessiongate_cleanup_deleted_total"),
            password_queue: recorder.register_gauge(
                &Key::from_static_name("sessiongate_password_queue_depth"),
                &META,
            ),
            recorder,
            handle,
        }
    }

    /// One finished HTTP request.
    pub fn request(&self, route: &'static str, method: &str, status: u16, elapsed: Duration) {
        let labels = vec![
            Label::new("route", route),
            Label::new("method", method.to_owned()),
        ];
        let mut with_status = labels.clone();
        with_status.push(Label::new("status", status.to_string()));
        self.recorder
            .register_counter(
                &Key::from_parts("sessiongate_http_requests_total", with_status),
                &META,
            )
            .increment(1);
        self.recorder
            .register_histogram(
                &Key::from_parts("sessiongate_http_request_duration_seconds", labels),
                &META,
            )
            .record(elapsed.as_secs_f64());
    }

    /// One request refused by the limiter.
    pub fn rate_limited(&self, bucket: &'static str) {
        self.recorder
            .register_counter(
                &Key::from_parts(
                    "sessiongate_rate_limit_rejections_total",
                    vec![Label::new("bucket", bucket)],
                ),
                &META,
            )
            .increment(1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
