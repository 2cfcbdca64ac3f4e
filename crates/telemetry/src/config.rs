//! The OTLP exporter's standard environment variables beyond the endpoint: headers for the
//! collector (an API key, a tenant) and the time one export may take, each read from its
//! traces variable first, then the general one, as OpenTelemetry's SDKs do; and the batch
//! span processor's bounds of the export queue.

use crate::TelemetryError;
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

/// Checks `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` before the SDK reads them: the
/// SDK only logs a warning for a sampler it does not know or a ratio it cannot read, and
/// then samples everything, which is not what was asked.
pub(crate) fn check_sampler() -> Result<(), TelemetryError> {
    const KNOWN: [&str; 6] = [
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ];
    let Some((variable, sampler)) = self::variable(&["OTEL_TRACES_SAMPLER"]) else { return Ok(()) };
    if !KNOWN.contains(&sampler.as_str()) {
        let reason = format!("membrane samples with one of {}", KNOWN.join(", "));
        return Err(TelemetryError::Variable { variable, value: sampler, reason });
    }
    if sampler.ends_with("traceidratio")
        && let Some((variable, ratio)) = self::variable(&["OTEL_TRACES_SAMPLER_ARG"])
        && !ratio.trim().parse::<f64>().is_ok_and(|r| (0.0..=1.0).contains(&r))
    {
        let reason = "give the ratio of traces to sample, from 0 to 1, such as 0.01".into();
        return Err(TelemetryError::Variable { variable, value: ratio, reason });
    }
    Ok(())
}
