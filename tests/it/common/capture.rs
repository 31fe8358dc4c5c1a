//! Captures the metrics and spans of one test, for tests of what the runtime reports: every
//! counter and histogram sample by `name{label=value,...}`, each gauge's value and the highest
//! it reached, and every closed `plugin.execute` or
//! `agent.hop` span's fields as text (its name under `span`). Scoped to the test's own runtime
//! ([`run`]), so the other tests of the binary, running at the same time, do not feed it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use tracing::dispatcher::Dispatch;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

#[derive(Default)]
pub struct Captured {
    /// `name{label=value,...}` → counter total.
    pub counters: Mutex<HashMap<String, u64>>,
    /// `name{label=value,...}` → every recorded sample.
    pub histograms: Mutex<HashMap<String, Vec<f64>>>,
    /// `name{label=value,...}` → the gauge's value now and the highest it has been.
    pub gauges: Mutex<HashMap<String, GaugeReading>>,
    /// Closed `plugin.execute` and `agent.hop` spans: their fields as text, the span's name
    /// under `span`.
    pub spans: Mutex<Vec<HashMap<String, String>>>,
}

/// A gauge as captured: its value now, and the highest value it has had.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GaugeReading {
    pub value: f64,
    pub peak: f64,
}

impl Captured {
    /// The readings of the gauges named `name` whose labels include every one of `labels`
    /// (`"agent=worker"`), whatever other labels they carry.
    pub fn gauges_matching(&self, name: &str, labels: &[&str]) -> Vec<(String, GaugeReading)> {
        let prefix = format!("{name}{{");
        self.gauges
            .lock()
            .unwrap()
            .iter()
            .filter(|(key, _)| {
                key.starts_with(&prefix) && {
                    let inside = key[prefix.len()..].trim_end_matches('}');
                    let present: Vec<&str> = inside.split(',').collect();
                    labels.iter().all(|l| present.contains(l))
                }
            })
            .map(|(key, reading)| (key.clone(), *reading))
            .collect()
    }
}

/// Runs `test` on a runtime of its own (see [`super::scoped`]) whose metrics and spans go to a
/// fresh [`Captured`], handed to `test`.
pub fn run<F: Future<Output = ()>>(test: impl FnOnce(Arc<Captured>) -> F) {
    let captured = Arc::new(Captured::default());
    // The runtime's threads keep the recorder until they stop: one small leak per test.
    let recorder: &'static CaptureRecorder = Box::leak(Box::new(CaptureRecorder(captured.clone())));
    let subscriber = tracing_subscriber::registry().with(SpanCapture(captured.clone()));
    super::scoped::block_on(recorder, Dispatch::new(subscriber), test(captured));
}

fn render(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

struct CaptureRecorder(Arc<Captured>);

struct Handle {
    key: String,
    captured: Arc<Captured>,
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        *self
            .captured
            .counters
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default() += value;
    }
    fn absolute(&self, value: u64) {
        self.captured
            .counters
            .lock()
            .unwrap()
            .insert(self.key.clone(), value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.captured
            .histograms
            .lock()
            .unwrap()
            .entry(self.key.clone())
            .or_default()
            .push(value);
    }
}

impl Handle {
    fn gauge(&self, change: impl FnOnce(f64) -> f64) {
        let mut gauges = self.captured.gauges.lock().unwrap();
        let reading = gauges.entry(self.key.clone()).or_default();
        reading.value = change(reading.value);
        reading.peak = reading.peak.max(reading.value);
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.gauge(|now| now + value);
    }
    fn decrement(&self, value: f64) {
        self.gauge(|now| now - value);
    }
    fn set(&self, value: f64) {
        self.gauge(|_| value);
    }
}

impl Recorder for CaptureRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Handle {
            key: render(key),
            captured: self.0.clone(),
        }))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Handle {
            key: render(key),
            captured: self.0.clone(),
        }))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Handle {
            key: render(key),
            captured: self.0.clone(),
        }))
    }
}

struct SpanCapture(Arc<Captured>);

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S> Layer<S> for SpanCapture
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let name = attrs.metadata().name();
        if name != "plugin.execute" && name != "agent.hop" {
            return;
        }
        let mut fields = Fields::default();
        fields.0.insert("span".to_string(), name.to_string());
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<Fields>() {
            values.record(fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span.extensions_mut().remove::<Fields>();
        if let Some(fields) = fields {
            self.0.spans.lock().unwrap().push(fields.0);
        }
    }
}
