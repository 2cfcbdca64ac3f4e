//! The OTLP exporter's standard environment variables beyond the endpoint: headers for the
//! collector (an API key, a tenant) and the time one export may take, each read from its
//! traces variable first, then the general one, as OpenTelemetry's SDKs do.

use crate::TelemetryError;
use std::time::Duration;

/// How long one export may take when no variable says (the OTLP exporter's default).
const TIMEOUT: Duration = Duration::from_secs(10);

fn variable(names: [&'static str; 2]) -> Option<(&'static str, String)> {
    names.into_iter().find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()).map(|v| (name, v)))
}

/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs
/// separated by commas, values percent-encoded.
pub(crate) fn headers() -> Result<http::HeaderMap, TelemetryError> {
    let mut headers = http::HeaderMap::new();
    let Some((variable, value)) = variable(["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"]) else {
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
    let Some((variable, value)) = variable(["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"]) else {
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
