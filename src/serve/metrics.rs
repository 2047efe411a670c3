//! `/metrics` in Prometheus' text format: requests by route and status, their latency, the
//! batches the model ran (inputs and tokens each), and the requests in flight.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    batch_inputs: Histogram,
    batch_tokens: Histogram,
    pub in_flight: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("bertkit_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("valid metric");
        let buckets = prometheus::exponential_buckets(0.001, 2.0, 15).expect("valid buckets");
        let latency = HistogramVec::new(
            HistogramOpts::new("bertkit_request_duration_seconds", "Time from request to response").buckets(buckets),
            &["route"],
        )
        .expect("valid metric");
        let sizes = prometheus::exponential_buckets(1.0, 2.0, 12).expect("valid buckets");
        let batch_inputs = Histogram::with_opts(
            HistogramOpts::new("bertkit_batch_inputs", "Inputs per model batch").buckets(sizes.clone()),
        )
        .expect("valid metric");
        let tokens = prometheus::exponential_buckets(16.0, 2.0, 12).expect("valid buckets");
        let batch_tokens =
            Histogram::with_opts(HistogramOpts::new("bertkit_batch_tokens", "Tokens per model batch").buckets(tokens))
                .expect("valid metric");
        let in_flight = IntGauge::new("bertkit_requests_in_flight", "Requests being answered").expect("valid metric");
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(batch_inputs.clone()),
            Box::new(batch_tokens.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(m).expect("each metric registered once");
        }
        Metrics { registry, requests, latency, batch_inputs, batch_tokens, in_flight }
    }

    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        self.requests.with_label_values(&[route, &status.to_string()]).inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    pub fn observe_batch(&self, inputs: usize, tokens: usize) {
        self.batch_inputs.observe(inputs as f64);
        self.batch_tokens.observe(tokens as f64);
    }

    pub fn text(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("encoding to memory");
        String::from_utf8(out).expect("Prometheus text is UTF-8")
    }
}
