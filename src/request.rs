//! What every request builder shares: the URL as the caller handed it over
//! ([`RequestUrl`]) and the one parser of a header given as text
//! ([`parse_header`]). The client's `RequestBuilder`, the session's `SessionRequest`
//! and the engine's `EngineRequestBuilder` all hold their URL and parse their headers
//! here, so each rule is written once.

use http::{HeaderName, HeaderValue};

use crate::error::{Error, Result};

/// A header given as text, parsed: the name and value with surrounding whitespace
/// trimmed (as a header line would be read).
///
/// # Errors
///
/// [`Error::is_invalid_input`] naming the header when the name is not a token or the
/// value holds a byte a header value may not (a control character, a newline).
pub(crate) fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue)> {
    match (
        HeaderName::from_bytes(name.trim().as_bytes()),
        HeaderValue::from_str(value.trim()),
    ) {
        (Ok(n), Ok(v)) => Ok((n, v)),
        _ => Err(Error::invalid_input(format!(
            "invalid header `{name}: {value}`"
        ))),
    }
}

/// A request's URL as the caller handed it over: the text, or already parsed (then it
/// is not parsed again, and its text is the parsed URL's serialization, not a copy).
#[derive(Clone, Debug)]
pub(crate) enum RequestUrl {
    /// Not parsed yet: parsed when the request is sent, and reported as written if it
    /// does not parse.
    Text(String),
    /// Parsed by the caller.
    Parsed(url::Url),
}

impl RequestUrl {
    /// The URL's text.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RequestUrl::Text(text) => text,
            RequestUrl::Parsed(url) => url.as_str(),
        }
    }

    /// `text` parsed now when it parses; kept as text otherwise (the error is reported
    /// when the request is sent).
    pub(crate) fn parse(text: &str) -> RequestUrl {
        match url::Url::parse(text) {
            Ok(url) => RequestUrl::Parsed(url),
            Err(_) => RequestUrl::Text(text.to_string()),
        }
    }

    /// The URL parsed (a copy when it already was).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_url`] naming the text as written.
    pub(crate) fn to_url(&self) -> Result<url::Url> {
        match self {
            RequestUrl::Parsed(url) => Ok(url.clone()),
            RequestUrl::Text(text) => {
                url::Url::parse(text).map_err(|e| Error::invalid_url(text, e))
            }
        }
    }

    /// The URL's text, owned (a parsed URL gives up its serialization: no copy).
    pub(crate) fn into_string(self) -> String {
        match self {
            RequestUrl::Text(text) => text,
            RequestUrl::Parsed(url) => url.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_trimmed_and_bad_ones_named() {
        let (n, v) = parse_header(" X-Test ", " a b ").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-test", "a b"));
        for (name, value) in [("bad name", "v"), ("x", "line\nbreak"), ("", "v")] {
            let e = parse_header(name, value).unwrap_err();
            assert!(e.is_invalid_input() && e.to_string().contains(name), "{e}");
        }
    }
}
