//! Prometheus metrics: request counts and latencies by route and status, and the
//! token endpoint's decisions.

use actix_web::http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The `method` label: the standard methods by name, any other as `OTHER`. A
/// client may send any token as its method; were it the label, every invented
/// method would add a series that lives as long as the process.
pub fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
}

/// The server's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    tokens_issued: Counter,
    tokens_refused: Family<ReasonLabels, Counter>,
    rate_limited: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("agentidp");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let tokens_issued = Counter::default();
        let tokens_refused = Family::<ReasonLabels, Counter>::default();
        let rate_limited = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and status",
            latency.clone(),
        );
        registry.register(
            "tokens_issued",
            "Access tokens issued",
            tokens_issued.clone(),
        );
        registry.register(
            "tokens_refused",
            "Token requests refused, by reason",
            tokens_refused.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by the rate limiter",
            rate_limited.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            tokens_issued,
            tokens_refused,
            rate_limited,
        }
    }

    /// Records one finished request. The method goes through [`method_label`]
    /// and `route` is the matched pattern, so label cardinality stays bounded
    /// whatever clients send.
    pub fn observe_request(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let labels = RouteLabels {
            method: method_label(method),
            route: route.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// Counts an issued token.
    pub fn token_issued(&self) {
        self.tokens_issued.inc();
    }

    /// Counts a refused token request.
    pub fn token_refused(&self, reason: &str) {
        self.tokens_refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a rate-limit refusal.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}
