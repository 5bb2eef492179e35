//! Errors of the message API as RFC 9457 problem details (`application/problem+json`):
//! where a [`crate::Error`] becomes an HTTP status, a title and a detail.
//!
//! The status follows what the caller can do about it: 400 fix the request, 404 the
//! session is gone, 409 the session cannot take it now, 429 the session limit, 502/504
//! the target failed, 503 the engine or the store cannot serve now.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

/// One problem: serialized as the response body.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// A URI reference naming the problem type (`/problems/session-not-found`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, the same for every occurrence of the type.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened here and what to do.
    pub detail: String,
    /// The JSON path of the offending field, for invalid request bodies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds until a retry can succeed (breaker open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of type `slug` with `status`.
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            kind: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 400: a body or parameter that cannot be used; `field` names it when known.
    pub fn invalid(field: Option<String>, detail: impl Into<String>) -> Problem {
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail,
        );
        p.field = field;
        p
    }

    /// 404 for a path the API does not have.
    pub fn no_route(path: &str) -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            "no-such-endpoint",
            "No such endpoint",
            format!("{path} is not an endpoint of this API; see /openapi.json"),
        )
    }

    /// 401 for a missing or wrong bearer token.
    pub fn unauthorized() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or wrong token",
            "send `Authorization: Bearer <token>` with the operator's token (`mummer serve --token`) or a tenant's (`--tenant-tokens`)",
        )
    }

    /// 403: a tenant's token on a route only the operator may use, or naming another
    /// tenant.
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }
}

/// Where an [`Error`] gets its status, slug and title: the first row whose test
/// holds; anything else is a 500.
type Row = (fn(&Error) -> bool, StatusCode, &'static str, &'static str);
const STATUSES: &[Row] = &[
    (
        Error::is_session_not_found,
        StatusCode::NOT_FOUND,
        "session-not-found",
        "Session not found",
    ),
    (
        Error::is_session_limit,
        StatusCode::TOO_MANY_REQUESTS,
        "session-limit",
        "Session limit reached",
    ),
    (
        |e| e.is_unknown_profile() || e.is_invalid_profile(),
        StatusCode::BAD_REQUEST,
        "invalid-profile",
        "Unknown or invalid profile",
    ),
    (
        Error::is_invalid_url,
        StatusCode::BAD_REQUEST,
        "invalid-url",
        "Invalid URL",
    ),
    (
        Error::is_invalid_input,
        StatusCode::BAD_REQUEST,
        "invalid-request",
        "Invalid request",
    ),
    (
        Error::is_conflict,
        StatusCode::CONFLICT,
        "conflict",
        "Conflicts with the server's state",
    ),
    (
        Error::is_snapshot,
        StatusCode::BAD_REQUEST,
        "invalid-snapshot",
        "Unusable snapshot",
    ),
    (
        Error::is_quarantined,
        StatusCode::CONFLICT,
        "session-quarantined",
        "Session quarantined",
    ),
    (
        Error::is_lease_held,
        StatusCode::CONFLICT,
        "lease-held",
        "Session leased elsewhere",
    ),
    (
        Error::is_store_conflict,
        StatusCode::CONFLICT,
        "store-conflict",
        "Newer version in the store",
    ),
    (
        Error::is_store_unavailable,
        StatusCode::SERVICE_UNAVAILABLE,
        "store-unavailable",
        "Store unavailable",
    ),
    (
        Error::is_no_healthy_proxy,
        StatusCode::SERVICE_UNAVAILABLE,
        "no-healthy-proxy",
        "No healthy proxy",
    ),
    (
        Error::is_breaker_open,
        StatusCode::SERVICE_UNAVAILABLE,
        "breaker-open",
        "Circuit breaker open",
    ),
    (
        Error::is_robots_unavailable,
        StatusCode::SERVICE_UNAVAILABLE,
        "robots-unavailable",
        "robots.txt unavailable",
    ),
    (
        Error::is_robots_disallowed,
        StatusCode::FORBIDDEN,
        "robots-disallowed",
        "Disallowed by robots.txt",
    ),
    (
        Error::is_closed,
        StatusCode::CONFLICT,
        "session-closed",
        "Session closed",
    ),
    (
        Error::is_destination_refused,
        StatusCode::FORBIDDEN,
        "destination-refused",
        "Destination refused by the server's network policy",
    ),
    (
        Error::is_timeout,
        StatusCode::GATEWAY_TIMEOUT,
        "upstream-timeout",
        "Target timed out",
    ),
    (
        |e| {
            e.is_dns()
                || e.is_connect()
                || e.is_proxy()
                || e.is_tls()
                || e.is_protocol()
                || e.is_body_too_large()
                || e.is_decode()
                || e.is_redirect()
        },
        StatusCode::BAD_GATEWAY,
        "upstream-failed",
        "Request to the target failed",
    ),
];

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        let (status, slug, title) = STATUSES.iter().find(|(test, ..)| test(&e)).map_or(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
            |&(_, status, slug, title)| (status, slug, title),
        );
        let mut p = Problem::new(status, slug, title, e.to_string());
        p.retry_after = e.retry_in().map(retry_after_secs);
        p
    }
}

/// A wait as a `Retry-After` in whole seconds, rounded up, at least 1.
fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry {
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    #[test]
    fn waits_become_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(12_300)), 13);
        assert_eq!(retry_after_secs(Duration::from_millis(250)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
