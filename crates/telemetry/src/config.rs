//! The OTLP exporter's standard environment variables beyond the endpoint: headers for the
//! collector (an API key, a tenant) and the time one export may take, each read from its
//! traces variable first, then the general one, as OpenTelemetry's SDKs do; and the batch
//! span processor's bounds of the export queue.

use crate::TelemetryError;
use opentelemetry::trace::{SpanContext, TraceId};
use std::time::Duration;

/// How long one export may take when no variable says (the OTLP exporter's default).
const TIMEOUT: Duration = Duration::from_secs(10);

/// The first of `names` that is set (and not blank), with its value.
fn variable(names: &[&'static str]) -> Option<(&'static str, String)> {
    names.iter().find_map(|&name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()).map(|v| (name, v)))
}

/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs
/// separated by commas, values percent-encoded.
pub(crate) fn headers() -> Result<http::HeaderMap, TelemetryError> {
    let mut headers = http::HeaderMap::new();
    let Some((variable, value)) = variable(&["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"]) else {
        return Ok(headers);
    };
    let bad = |reason: String| TelemetryError::Variable { variable, value: value.clone(), reason };
    for pair in value.split(',').filter(|p| !p.trim().is_empty()) {
        let (key, raw) = pair.split_once('=').ok_or_else(|| bad(format!("{pair:?} is not key=value")))?;
        let decoded = percent_encoding::percent_decode_str(raw.trim()).decode_utf8_lossy();
        let name = http::HeaderName::try_from(key.trim()).map_err(|e| bad(format!("{key:?}: {e}")))?;
        let value =
            http::HeaderValue::try_from(decoded.as_ref()).map_err(|e| bad(format!("the value of {key:?}: {e}")))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds.
pub(crate) fn timeout() -> Result<Duration, TelemetryError> {
    let Some((variable, value)) = variable(&["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"]) else {
        return Ok(TIMEOUT);
    };
    match value.trim().parse::<u64>() {
        Ok(millis) if millis > 0 => Ok(Duration::from_millis(millis)),
        _ => Err(TelemetryError::Variable {
            variable,
            value,
            reason: "give the milliseconds one export may take, such as 10000".into(),
        }),
    }
}

/// How many spans may wait for export, and how many leave in one export: the batch span
/// processor's `OTEL_BSP_MAX_QUEUE_SIZE` and `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`. A batch
/// larger than the queue is the queue.
pub(crate) fn queue() -> Result<(usize, usize), TelemetryError> {
    let count = |name: &'static str, default: usize| match variable(&[name]) {
        None => Ok(default),
        Some((variable, value)) => match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => {
                Err(TelemetryError::Variable { variable, value, reason: "give a count of spans, such as 2048".into() })
            }
        },
    };
    let capacity = count("OTEL_BSP_MAX_QUEUE_SIZE", crate::QUEUE_SPANS)?;
    let batch = count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", crate::BATCH_SPANS)?;
    Ok((capacity, batch.min(capacity)))
}

/// The samplers `OTEL_TRACES_SAMPLER` may name.
const STANDARD_SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// The sampler `OTEL_TRACES_SAMPLER` names (with its ratio, `OTEL_TRACES_SAMPLER_ARG`): one
/// of the six standard samplers, parent-based always-on when none is named.
///
/// Decided here rather than by the SDK's `Sampler`: that one answers through its
/// `ShouldSample` trait with a result holding a vector of attributes and a copy of the
/// parent's trace state, behind a box for each parent-based sampler, code run cold at every
/// span a request starts, for what is one comparison. The decisions are the SDK's (the
/// tests compare them); and the SDK only logs a warning for a sampler it does not know or a
/// ratio it cannot read, then samples everything, which is not what was asked: here that is
/// an error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sampler {
    /// A span with a parent is sampled when its parent is (`parentbased_*`).
    follows_parent: bool,
    /// Whether a span without a parent (or with any, when not parent-based) is sampled.
    roots: Roots,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Roots {
    All,
    None,
    /// The trace ids whose lower 63 bits are below this, as the SDK's `TraceIdRatioBased`
    /// chooses them.
    Below(u64),
}

impl Default for Sampler {
    /// `parentbased_always_on`, OpenTelemetry's default.
    fn default() -> Sampler {
        Sampler { follows_parent: true, roots: Roots::All }
    }
}

impl Sampler {
    /// The sampler the environment names.
    pub(crate) fn from_env() -> Result<Sampler, TelemetryError> {
        let Some((variable, name)) = self::variable(&["OTEL_TRACES_SAMPLER"]) else { return Ok(Sampler::default()) };
        let ratio = self::variable(&["OTEL_TRACES_SAMPLER_ARG"]);
        Sampler::named(&name, ratio.as_ref().map(|(_, r)| r.as_str())).map_err(|refused| match refused {
            Refused::Name(reason) => TelemetryError::Variable { variable, value: name.clone(), reason },
            Refused::Ratio(reason) => {
                let (variable, value) = ratio.clone().expect("a ratio was read");
                TelemetryError::Variable { variable, value, reason }
            }
        })
    }

    /// The standard sampler `name`, with `ratio` for those of a ratio (1 when not given).
    fn named(name: &str, ratio: Option<&str>) -> Result<Sampler, Refused> {
        let follows_parent = name.starts_with("parentbased_");
        let roots = match name.trim_start_matches("parentbased_") {
            "always_on" => Roots::All,
            "always_off" => Roots::None,
            "traceidratio" => match ratio.map(|r| r.trim().parse::<f64>()) {
                None => Roots::All,
                Some(Ok(ratio)) if (0.0..=1.0).contains(&ratio) => Roots::ratio(ratio),
                Some(_) => {
                    return Err(Refused::Ratio("give the ratio of traces to sample, from 0 to 1, such as 0.01".into()));
                }
            },
            _ => return Err(Refused::Name(format!("membrane samples with one of {}", STANDARD_SAMPLERS.join(", ")))),
        };
        Ok(Sampler { follows_parent, roots })
    }

    /// Whether a span of trace `trace_id` under `parent` (a valid span context, if any) is
    /// sampled.
    #[inline]
    pub(crate) fn samples(&self, parent: Option<&SpanContext>, trace_id: TraceId) -> bool {
        match parent {
            Some(parent) if self.follows_parent => parent.is_sampled(),
            _ => match self.roots {
                Roots::All => true,
                Roots::None => false,
                Roots::Below(bound) => (u128::from_be_bytes(trace_id.to_bytes()) as u64 >> 1) < bound,
            },
        }
    }
}

impl Roots {
    fn ratio(ratio: f64) -> Roots {
        match ratio >= 1.0 {
            true => Roots::All,
            false => Roots::Below((ratio * (1u64 << 63) as f64) as u64),
        }
    }
}

/// Why a sampler was refused: its name, or its ratio.
enum Refused {
    Name(String),
    Ratio(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceContextExt as _, TraceFlags, TraceState};
    use opentelemetry::{Context, trace::SpanKind};
    use opentelemetry_sdk::trace::Sampler as Sdk;
    use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, SamplingDecision, ShouldSample as _};

    /// The SDK's sampler that `OTEL_TRACES_SAMPLER=name` and a ratio of 0.3 make.
    fn sdk(name: &str) -> Sdk {
        let roots = match name.trim_start_matches("parentbased_") {
            "always_on" => Sdk::AlwaysOn,
            "always_off" => Sdk::AlwaysOff,
            _ => Sdk::TraceIdRatioBased(0.3),
        };
        match name.starts_with("parentbased_") {
            true => Sdk::ParentBased(Box::new(roots)),
            false => roots,
        }
    }

    #[test]
    fn each_standard_sampler_decides_as_the_sdks_does() {
        let ids = RandomIdGenerator::default();
        let parent = |sampled: bool, remote: bool| {
            let flags = TraceFlags::default().with_sampled(sampled);
            SpanContext::new(ids.new_trace_id(), ids.new_span_id(), flags, remote, TraceState::NONE)
        };
        let parents = [None, Some(parent(true, true)), Some(parent(false, true)), Some(parent(true, false))];
        for name in STANDARD_SAMPLERS {
            let ours = Sampler::named(name, Some("0.3")).unwrap_or_else(|_| panic!("{name} is standard"));
            let theirs = sdk(name);
            let mut sampled = 0;
            for parent in &parents {
                let context = parent.clone().map_or_else(Context::new, |p| Context::new().with_remote_span_context(p));
                for _ in 0..2000 {
                    let trace_id = parent.as_ref().map_or_else(|| ids.new_trace_id(), |p| p.trace_id());
                    let theirs = theirs.should_sample(Some(&context), trace_id, "", &SpanKind::Server, &[], &[]);
                    let decided = ours.samples(parent.as_ref(), trace_id);
                    assert_eq!(
                        decided,
                        theirs.decision == SamplingDecision::RecordAndSample,
                        "{name} under {parent:?}"
                    );
                    sampled += usize::from(decided && parent.is_none());
                }
            }
            if name.ends_with("traceidratio") {
                // About 30 % of 2,000 new traces, each by its trace id.
                assert!((450..750).contains(&sampled), "{name} sampled {sampled} of 2000 new traces");
            }
        }
    }

    #[test]
    fn a_ratio_is_read_from_0_to_1_and_defaults_to_every_trace() {
        assert_eq!(Sampler::named("traceidratio", None).ok(), Sampler::named("always_on", None).ok());
        assert_eq!(Sampler::named("traceidratio", Some(" 1 ")).ok(), Sampler::named("always_on", None).ok());
        let never = Sampler::named("traceidratio", Some("0")).ok().unwrap();
        assert!(!never.samples(None, TraceId::from(u128::MAX)) && !never.samples(None, TraceId::from(1)));
        assert!(matches!(Sampler::named("traceidratio", Some("1.5")), Err(Refused::Ratio(_))));
        assert!(matches!(Sampler::named("parentbased_traceidratio", Some("ten")), Err(Refused::Ratio(_))));
        assert!(matches!(Sampler::named("jaeger_remote", None), Err(Refused::Name(_))));
        assert_eq!(Sampler::default(), Sampler::named("parentbased_always_on", None).ok().unwrap());
    }
}
