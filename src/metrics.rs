//! Metrics: per-core counters and HdrHistograms, merged across cores when scraped and rendered in
//! the Prometheus text format (version 0.0.4).
//!
//! Each core owns its metrics (`Cell`, `RefCell`): the request path bumps a `Cell` and records
//! into a histogram, with no atomics and no locks. A scrape (the admin HTTP thread, see
//! [`crate::admin`]) asks every core for a snapshot through the [`MetricsHub`]: one request per
//! core's bounded inbox, each core answers with its [`Sample`]s (histograms cloned), and the
//! scraper merges them. The hub's lock is taken only when a core registers and while a scrape
//! sends its requests, never on a request path.
//!
//! The module knows nothing of PairDB's roles: coordinators and storage nodes add their own
//! samples; [`RpcMetrics`] (calls by method and status, latency, in-flight) is the one part the
//! gRPC server records for every method.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ahash::AHashMap;
use hdrhistogram::Histogram;

/// Largest value a histogram keeps exactly: 60 s in microseconds (larger values are clamped).
const HISTOGRAM_MAX: u64 = 60_000_000;
/// Significant digits: 2 keeps a histogram near 20 KiB, and 1% error is far below what a
/// latency alert cares about.
const HISTOGRAM_DIGITS: u8 = 2;
/// Latency bucket bounds, microseconds (rendered as seconds): 100 µs to 10 s.
const LATENCY_BUCKETS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
/// Size bucket bounds (operations per batch).
const SIZE_BUCKETS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
/// Requests a core's scrape inbox holds; a scrape finding it full skips that core (it is busy
/// answering earlier scrapes).
const SCRAPE_QUEUE: usize = 4;

/// A histogram with its exact sum (HdrHistogram keeps counts only).
#[derive(Clone, Debug)]
pub struct Hist {
    hist: Histogram<u64>,
    sum: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, digits <= 5).
            hist: Histogram::new_with_bounds(1, HISTOGRAM_MAX, HISTOGRAM_DIGITS)
                .expect("valid histogram bounds"),
            sum: 0,
        }
    }
}

impl Hist {
    /// Records `value` (clamped to the histogram's range).
    pub fn record(&mut self, value: u64) {
        self.hist.saturating_record(value.max(1));
        self.sum = self.sum.saturating_add(value);
    }

    /// Records a duration in microseconds.
    pub fn record_duration(&mut self, d: Duration) {
        self.record(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// Adds every value of `other`.
    pub fn add(&mut self, other: &Hist) {
        // Both have the same bounds, so adding cannot fail; saturate rather than panic anyway.
        if self.hist.add(&other.hist).is_err() {
            for v in other.hist.iter_recorded() {
                self.hist.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The value at quantile `q` (0.0 to 1.0).
    pub fn quantile(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }

    fn count_at_most(&self, bound: u64) -> u64 {
        if self.hist.is_empty() {
            return 0;
        }
        self.hist.count_between(0, bound)
    }
}

/// What a sample's value means to Prometheus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (resets when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Latencies in microseconds, rendered in seconds.
    LatencyHistogram,
    /// Sizes (counts), rendered as they are.
    SizeHistogram,
}

/// How samples with the same name and labels from different cores combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Add them (counters, per-process totals of per-core gauges, histograms).
    Sum,
    /// Keep the largest (the ring epoch: every core converges on the same one).
    Max,
}

/// One value of one metric family.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Metric name, `pairdb_...`; counters end in `_total`.
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// How cores combine.
    pub merge: Merge,
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The number (counters and gauges).
    pub value: f64,
    /// The histogram (histogram kinds).
    pub hist: Option<Hist>,
}

impl Sample {
    /// A counter.
    pub fn counter(name: &'static str, help: &'static str, value: u64) -> Self {
        Self::number(name, help, Kind::Counter, value as f64)
    }

    /// A counter of a fractional quantity (seconds, for example).
    pub fn counter_f64(name: &'static str, help: &'static str, value: f64) -> Self {
        Self::number(name, help, Kind::Counter, value)
    }

    /// A gauge, summed over cores.
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Self {
        Self::number(name, help, Kind::Gauge, value)
    }

    /// A latency histogram (microseconds).
    pub fn latency(name: &'static str, help: &'static str, hist: &Hist) -> Self {
        Self { hist: Some(hist.clone()), ..Self::number(name, help, Kind::LatencyHistogram, 0.0) }
    }

    /// A size histogram.
    pub fn sizes(name: &'static str, help: &'static str, hist: &Hist) -> Self {
        Self { hist: Some(hist.clone()), ..Self::number(name, help, Kind::SizeHistogram, 0.0) }
    }

    fn number(name: &'static str, help: &'static str, kind: Kind, value: f64) -> Self {
        Self { name, help, kind, merge: Merge::Sum, labels: Vec::new(), value, hist: None }
    }

    /// Adds a label.
    pub fn label(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.labels.push((name, value.into()));
        self
    }

    /// Combines cores by keeping the largest value.
    pub fn max_across_cores(mut self) -> Self {
        self.merge = Merge::Max;
        self
    }
}

/// A series: metric name and labels.
type SeriesKey = (&'static str, Vec<(&'static str, String)>);

/// Merges samples with the same name and labels (in the order first seen).
pub fn merge(samples: Vec<Sample>) -> Vec<Sample> {
    let mut index: AHashMap<SeriesKey, usize> = AHashMap::new();
    let mut out: Vec<Sample> = Vec::new();
    for s in samples {
        match index.get(&(s.name, s.labels.clone())) {
            Some(&i) => {
                let into = &mut out[i];
                match into.merge {
                    Merge::Sum => into.value += s.value,
                    Merge::Max => into.value = into.value.max(s.value),
                }
                if let (Some(a), Some(b)) = (into.hist.as_mut(), s.hist.as_ref()) {
                    a.add(b);
                }
            }
            None => {
                index.insert((s.name, s.labels.clone()), out.len());
                out.push(s);
            }
        }
    }
    out
}

/// Renders merged samples in the Prometheus text format: one HELP and TYPE per family, the
/// family's samples together.
pub fn render(samples: &[Sample]) -> String {
    let mut families: Vec<&'static str> = Vec::new();
    let mut by_family: AHashMap<&'static str, Vec<&Sample>> = AHashMap::new();
    for s in samples {
        by_family
            .entry(s.name)
            .or_insert_with(|| {
                families.push(s.name);
                Vec::new()
            })
            .push(s);
    }
    let mut out = String::with_capacity(samples.len() * 96);
    for name in families {
        let members = &by_family[name];
        let first = members[0];
        let kind = match first.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::LatencyHistogram | Kind::SizeHistogram => "histogram",
        };
        let _ = writeln!(out, "# HELP {name} {}", first.help);
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in members {
            match (&s.hist, s.kind) {
                (Some(h), Kind::LatencyHistogram) => {
                    render_histogram(&mut out, s, h, LATENCY_BUCKETS_US, 1e6)
                }
                (Some(h), _) => render_histogram(&mut out, s, h, SIZE_BUCKETS, 1.0),
                (None, _) => {
                    let _ = writeln!(out, "{name}{} {}", labels(&s.labels, None), number(s.value));
                }
            }
        }
    }
    out
}

/// `divisor` turns recorded units into the rendered ones (1e6: microseconds to seconds); dividing
/// keeps bounds like 0.0001 exact in their shortest decimal form, where multiplying by 1e-6 would not.
fn render_histogram(out: &mut String, s: &Sample, h: &Hist, bounds: &[u64], divisor: f64) {
    for &bound in bounds {
        let le = number(bound as f64 / divisor);
        let _ = writeln!(
            out,
            "{}_bucket{} {}",
            s.name,
            labels(&s.labels, Some(&le)),
            h.count_at_most(bound)
        );
    }
    let _ = writeln!(out, "{}_bucket{} {}", s.name, labels(&s.labels, Some("+Inf")), h.count());
    let _ = writeln!(
        out,
        "{}_sum{} {}",
        s.name,
        labels(&s.labels, None),
        number(h.sum as f64 / divisor)
    );
    let _ = writeln!(out, "{}_count{} {}", s.name, labels(&s.labels, None), h.count());
}

fn labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let all = labels.iter().map(|(k, v)| (*k, v.as_str())).chain(le.map(|le| ("le", le)));
    for (i, (k, v)) in all.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

// ------------------------------------------------------------------------------------------------
// The hub: how a scrape reaches every core.
// ------------------------------------------------------------------------------------------------

/// A scrape request: where the core sends its samples.
pub type ScrapeReply = flume::Sender<Vec<Sample>>;

/// Every core's scrape inbox. Cloned into the admin server and the cores.
#[derive(Clone, Default)]
pub struct MetricsHub {
    cores: Arc<Mutex<Vec<flume::Sender<ScrapeReply>>>>,
}

impl MetricsHub {
    /// A hub with no cores yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a core; it answers the requests arriving on the returned inbox (see
    /// [`answer_scrapes`]).
    pub fn register(&self) -> flume::Receiver<ScrapeReply> {
        let (tx, rx) = flume::bounded(SCRAPE_QUEUE);
        self.cores.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    /// Asks every core for its samples and waits up to `timeout` for the answers. Returns the
    /// merged samples and how many cores did not answer. Blocking: call off the cores.
    pub fn scrape(&self, timeout: Duration) -> (Vec<Sample>, usize) {
        let asked = {
            let cores = self.cores.lock().unwrap_or_else(|p| p.into_inner());
            // One answer per core at most: a channel of that size never blocks a core.
            let (tx, rx) = flume::bounded(cores.len().max(1));
            let asked = cores.iter().filter(|c| c.try_send(tx.clone()).is_ok()).count();
            (asked, rx)
        };
        let (asked, rx) = asked;
        let registered = self.cores.lock().map(|c| c.len()).unwrap_or(asked);
        let deadline = Instant::now() + timeout;
        let mut samples = Vec::new();
        let mut answered = 0;
        while answered < asked {
            match rx.recv_deadline(deadline) {
                Ok(s) => {
                    samples.extend(s);
                    answered += 1;
                }
                Err(_) => break,
            }
        }
        (merge(samples), registered - answered)
    }
}

/// How often a core looks for scrape requests.
const SCRAPE_POLL: Duration = Duration::from_millis(50);

/// Runs on a core: answers scrape requests with `collect()` until the hub is gone.
///
/// The inbox is polled on a timer rather than awaited: a wake from the scraping thread (a
/// foreign thread to glommio) reached a parked executor only at its next own wake-up, up to
/// seconds later, and scrapes timed out. Twenty cheap timer wake-ups a second cost less than a
/// missed scrape.
pub async fn answer_scrapes(
    inbox: flume::Receiver<ScrapeReply>,
    collect: impl Fn() -> Vec<Sample>,
) {
    loop {
        loop {
            match inbox.try_recv() {
                Ok(reply) => {
                    let _ = reply.send(collect());
                }
                Err(flume::TryRecvError::Empty) => break,
                Err(flume::TryRecvError::Disconnected) => return,
            }
        }
        glommio::timer::sleep(SCRAPE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets_in_seconds() {
        let mut h = Hist::default();
        for us in [50, 120, 120, 3_000, 2_000_000] {
            h.record(us);
        }
        let text = render(&[Sample::latency("pairdb_x_seconds", "x.", &h).label("m", "a")]);
        assert!(text.contains("# TYPE pairdb_x_seconds histogram\n"), "{text}");
        assert!(text.contains("pairdb_x_seconds_bucket{m=\"a\",le=\"0.0001\"} 1\n"), "{text}");
        assert!(text.contains("pairdb_x_seconds_bucket{m=\"a\",le=\"0.00025\"} 3\n"), "{text}");
        assert!(text.contains("pairdb_x_seconds_bucket{m=\"a\",le=\"+Inf\"} 5\n"), "{text}");
        assert!(text.contains("pairdb_x_seconds_count{m=\"a\"} 5\n"), "{text}");
        assert!(text.contains("pairdb_x_seconds_sum{m=\"a\"} 2.00329\n"), "{text}");
    }

    #[test]
    fn cores_merge_by_name_and_labels() {
        let a = Sample::counter("pairdb_c_total", "c.", 2).label("node", "s1");
        let b = Sample::counter("pairdb_c_total", "c.", 3).label("node", "s1");
        let c = Sample::counter("pairdb_c_total", "c.", 7).label("node", "s2");
        let e1 = Sample::gauge("pairdb_epoch", "e.", 4.0).max_across_cores();
        let e2 = Sample::gauge("pairdb_epoch", "e.", 5.0).max_across_cores();
        let merged = merge(vec![a, e1, b, c, e2]);
        let text = render(&merged);
        assert_eq!(
            text,
            "# HELP pairdb_c_total c.\n# TYPE pairdb_c_total counter\n\
             pairdb_c_total{node=\"s1\"} 5\npairdb_c_total{node=\"s2\"} 7\n\
             # HELP pairdb_epoch e.\n# TYPE pairdb_epoch gauge\npairdb_epoch 5\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&[Sample::gauge("g", "h.", 1.0).label("v", "a\"b\\c\nd")]);
        assert!(text.contains("g{v=\"a\\\"b\\\\c\\nd\"} 1\n"), "{text}");
    }
}
