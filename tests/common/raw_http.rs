//! Reading a raw HTTP/1.1 response, shared by the test binaries that speak to `membrane
//! serve` over a plain socket: its status and its body, with a chunked body joined.

/// The status and the (dechunked, trimmed) body of a whole response.
pub fn parse(response: &str) -> (u16, String) {
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    (status, dechunk(body))
}

/// Joins a chunked body's chunks (bodies here are small and plain).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.trim().to_string();
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    if out.is_empty() { body.trim().to_string() } else { out.trim().to_string() }
}
