//! The navigation headers of `chrome-latest` with their values (slots left out): what
//! the benchmarks' reqwest and raw-floor clients send, so their HPACK work and the
//! server's match mummer's.

/// `chrome-latest`'s navigation header list, in order.
pub fn browser_headers() -> http::HeaderMap {
    let profile = mummer::Profile::named("chrome-latest").expect("built-in profile");
    let mut map = http::HeaderMap::new();
    for (name, value) in &profile.template(mummer::RequestKind::Navigation).headers {
        if let Some(value) = value {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("profile header name"),
                http::HeaderValue::from_str(value).expect("profile header value"),
            );
        }
    }
    map
}
