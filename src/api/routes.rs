//! The message API's routes: one handler per supervisor or session message, each
//! turning JSON into an engine call and the result (or a [`Problem`]) back into JSON.
//!
//! The table of routes is [`router`]; `docs/openapi.json` describes the same table and a
//! test checks that they agree.
//!
//! Why one file (about 890 lines): one short handler per operation beside the route
//! table, in the order of `docs/openapi.json`; a handler is found by its path in the
//! table, and the document test reads the table from this file.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Extension, FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use futures_util::Stream;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use super::access::visible_session;
use super::access::{Access, Caller};
use super::problem::Problem;
use super::proxy::ProxyStats;
use super::transport::{ParsedTransport, TransportOptions};
use super::wire::{
    BodyFormat, CreateSession, LoadSpec, PageLoadView, RequestSpec, ResponseView, Rotate,
    SetIdentifier, SetRoutes,
};
use crate::cookies::formats::{self, CookieFormat};
use crate::engine::{Engine, SessionConfig};
use crate::profile::RequestKind;
use crate::session::SnapshotKey;

/// The OpenAPI document, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub defaults: Arc<TransportOptions>,
    pub snapshot_key: Option<SnapshotKey>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub proxy: Option<Arc<ProxyStats>>,
    /// Whether callers may name files on the server ([`super::ApiConfig::allow_file_paths`]).
    pub allow_file_paths: bool,
    /// Time and size limits on what callers send.
    pub limits: super::ServerLimits,
    /// The destination policy put on every session the API builds.
    pub destination: Option<Arc<crate::destination::DestinationPolicy>>,
    /// Which tokens are accepted, and whom each stands for.
    pub access: Access,
    /// Set to true when the API is asked to shut down (or the server stops).
    pub stopping: watch::Sender<bool>,
}

type ApiResult<T> = Result<T, Problem>;

impl ApiState {
    /// A caller's transport options laid over the server's defaults, with the server's
    /// destination policy: how every session the API builds gets its transport. A
    /// caller's file path is refused first, unless the operator allows them.
    fn transport_for(&self, options: &TransportOptions) -> ApiResult<ParsedTransport> {
        options
            .check_caller_paths(self.allow_file_paths)
            .map_err(|e| field_problem(e.to_string()))?;
        Ok(options
            .parse_over(&self.defaults)
            .map_err(|e| field_problem(e.to_string()))?
            .with_destination(self.destination.clone()))
    }
}

/// Every route of the API (the list `docs/openapi.json` documents).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics_text))
        .route("/v1/sessions", get(list_sessions).post(create_session))
        .route("/v1/sessions/import", post(import_snapshot))
        .route("/v1/sessions/{id}", get(get_session).delete(close_session))
        .route("/v1/sessions/{id}/touch", post(touch))
        .route("/v1/sessions/{id}/cache", delete(clear_cache))
        .route(
            "/v1/sessions/{id}/cookies",
            get(export_cookies)
                .post(import_cookies)
                .delete(clear_cookies),
        )
        .route("/v1/sessions/{id}/identifier", put(set_identifier))
        .route("/v1/sessions/{id}/snapshot", get(export_snapshot))
        .route("/v1/sessions/{id}/save", post(save_session))
        .route("/v1/sessions/{id}/requests", post(perform))
        .route("/v1/sessions/{id}/load", post(load_page))
        .route("/v1/sessions/{id}/rotate", post(rotate))
        .route("/v1/proxies", get(proxy_health))
        .route("/v1/proxies/routes", put(set_routes))
        .route("/v1/store/sessions", get(stored_sessions))
        .route("/v1/store/sessions/{id}/checkout", post(checkout))
        .route("/v1/dead-letters", get(dead_letters))
        .route("/v1/events", get(events))
        .route("/v1/proxy", get(proxy_stats))
        .route("/v1/shutdown", post(shutdown))
        .fallback(|uri: axum::http::Uri| async move { Problem::no_route(uri.path()) })
        .method_not_allowed_fallback(|uri: axum::http::Uri| async move {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                format!(
                    "{} does not take this method; see /openapi.json",
                    uri.path()
                ),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(state.limits.max_body))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.limits.body_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// A request body read whole, whose failures are problems: 413 over the size limit,
/// 408 when it did not arrive in time (the body timeout), 400 otherwise.
pub struct BodyBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for BodyBytes {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        Bytes::from_request(req, state)
            .await
            .map(BodyBytes)
            .map_err(|e| {
                let text = e.body_text();
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body-too-large",
                        "Request body too large",
                        format!("the body is over the server's limit: {text}"),
                    )
                } else if timed_out(&e) {
                    Problem::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "body-timeout",
                        "Request body too slow",
                        "the body did not arrive within the server's body timeout",
                    )
                } else {
                    Problem::invalid(None, format!("cannot read the body: {text}"))
                }
            })
    }
}

/// Whether reading the body failed because the body timeout passed.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A JSON body whose errors name the field (`headers[2]`, `timeout_ms`). The body must
/// be a JSON object (serde would take an array as a struct's fields in order); an
/// empty body is `{}`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let BodyBytes(bytes) = BodyBytes::from_request(req, state).await?;
        let bytes: &[u8] = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => b"{}",
            Some(b'{') => &bytes,
            Some(_) => {
                return Err(Problem::invalid(
                    None,
                    "invalid JSON body: expected a JSON object",
                ))
            }
        };
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(de)
            .map(JsonBody)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    Problem::invalid(None, format!("invalid JSON body: {inner}"))
                } else if path == "." {
                    // `missing field `url`` and `unknown field `x`` name the field in the text.
                    let message = inner.to_string();
                    let field = ["missing field `", "unknown field `"]
                        .iter()
                        .find_map(|p| message.strip_prefix(p))
                        .and_then(|rest| rest.split('`').next())
                        .map(str::to_owned);
                    Problem::invalid(field, format!("invalid JSON body: {message}"))
                } else {
                    Problem::invalid(
                        Some(path.clone()),
                        format!("invalid field `{path}`: {inner}"),
                    )
                }
            })
    }
}

/// Query parameters whose errors are problems naming the parameter.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Problem> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| {
                let detail = e.body_text();
                let field = detail
                    .strip_prefix("Failed to deserialize query string: ")
                    .and_then(|d| d.split(':').next())
                    .filter(|f| !f.contains(' '))
                    .map(str::to_owned);
                Problem::invalid(field, detail)
            })
    }
}

/// Finds who is calling from the bearer token (see [`super::access`]) and hands the
/// [`Caller`] to the handlers; `/healthz` is open, for probes.
async fn authorize(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 9110 section 11.1).
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim_start())
        })
        .map(str::as_bytes);
    let caller = match state.access.identify(given) {
        Some(caller) => caller,
        None if request.uri().path() == "/healthz" => Caller::Operator,
        None => return Problem::unauthorized().into_response(),
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Refuses a tenant's token on a route that shows or changes every tenant's state.
fn operator_only(caller: &Caller, what: &str) -> ApiResult<()> {
    match caller {
        Caller::Operator => Ok(()),
        Caller::Tenant(t) => Err(Problem::forbidden(format!(
            "{what} spans every tenant: it takes the operator's token, not tenant {t}'s"
        ))),
    }
}

/// The tenant a call acts for: the caller's own, or (for the operator) `asked`, else
/// the default one. A tenant naming another tenant is refused.
fn acting_tenant(caller: &Caller, asked: Option<&str>) -> ApiResult<String> {
    match (caller.tenant(), asked) {
        (Some(own), Some(asked)) if own != asked => Err(Problem::forbidden(format!(
            "tenant {own}'s token cannot act for tenant {asked}"
        ))),
        (Some(own), _) => Ok(own.to_owned()),
        (None, Some(asked)) => {
            crate::tenant::check_tenant(asked)
                .map_err(|e| Problem::invalid(Some("tenant".into()), e.to_string()))?;
            Ok(asked.to_owned())
        }
        (None, None) => Ok(crate::tenant::DEFAULT_TENANT.to_owned()),
    }
}

/// One log line per API call, carrying the session id when the path names one; never
/// a header value.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let session = path
        .strip_prefix("/v1/sessions/")
        .or_else(|| path.strip_prefix("/v1/store/sessions/"))
        .map(|rest| rest.split('/').next().unwrap_or_default().to_owned())
        .filter(|s| s != "import");
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match session {
        Some(session) => {
            tracing::info!(target: "mummer::api", %session, %method, %path, status, ms, "api call")
        }
        None => tracing::info!(target: "mummer::api", %method, %path, status, ms, "api call"),
    }
    response
}

async fn healthz(State(s): State<ApiState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": if *s.stopping.borrow() { "stopping" } else { "ok" },
        "sessions": s.engine.session_count().await,
    }))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn metrics_text(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    operator_only(&caller, "/metrics")?;
    let handle = s.metrics.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "metrics-disabled",
            "Metrics not enabled",
            "this server was started without a Prometheus recorder",
        )
    })?;
    let live = s.engine.session_count().await;
    if let Some(proxy) = &s.proxy {
        proxy.publish_gauges(live);
    }
    metrics::gauge!("mummer_sessions_live").set(live as f64);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}

/// `?limit=&cursor=` of `GET /v1/sessions`: either one asks for a page.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<usize>,
}

/// A page's size when only `cursor` is given.
const DEFAULT_PAGE: usize = 1000;
/// The largest `limit` (docs/openapi.json states it).
const MAX_PAGE: usize = 1_000_000;
/// The largest `cursor`: the engine's table has 1024 shards, and 1024 is past the last.
const MAX_CURSOR: usize = 1024;

async fn list_sessions(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    QueryParams(q): QueryParams<ListQuery>,
) -> ApiResult<Response> {
    if q.limit.is_none() && q.cursor.is_none() {
        let mut all = s.engine.list_sessions().await?;
        all.retain(|stats| caller.can_see(&stats.tenant));
        return Ok(Json(all).into_response());
    }
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::invalid(
            Some("limit".into()),
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let cursor = q.cursor.unwrap_or(0);
    if cursor > MAX_CURSOR {
        return Err(Problem::invalid(
            Some("cursor".into()),
            format!("cursor must be 0 to {MAX_CURSOR} (a `Link` header gives the next one)"),
        ));
    }
    let (mut page, next) = s.engine.list_sessions_page(cursor, limit).await?;
    page.retain(|stats| caller.can_see(&stats.tenant));
    let mut response = Json(page).into_response();
    if let Some(next) = next {
        // RFC 8288: the next page, as GitHub's API and others give it.
        let link = format!("</v1/sessions?limit={limit}&cursor={next}>; rel=\"next\"");
        if let Ok(value) = header::HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

async fn session_view(
    s: &ApiState,
    caller: &Caller,
    id: &str,
) -> ApiResult<crate::session::SessionStats> {
    Ok(visible_session(&s.engine, caller, id).await?.stats())
}

async fn create_session(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CreateSession>,
) -> ApiResult<Response> {
    let tenant = acting_tenant(&caller, body.tenant.as_deref())?;
    let transport = s.transport_for(&body.transport())?;
    let profile = caller_profile(body.profile.as_ref(), s.allow_file_paths)
        .map_err(|e| Problem::invalid(Some("profile".into()), e))?;
    let mut config = SessionConfig::with_profile(profile).transport(move |b| transport.apply(b));
    if let Some(identifier) = body.identifier {
        check_identifier(&identifier)?;
        config = config.identifier(identifier);
    }
    config = config.tenant(tenant);
    if let Some(target) = body.target {
        config = config.target(target);
    }
    if let Some(key) = body.proxy_key {
        config = config.proxy_key(key);
    }
    let id = s.engine.create_session(config).await?;
    created(&s, &caller, &id).await
}

/// A transport option error (`resolve[1]: ...`) as a 400 naming the field.
/// The profile an API caller asked for: a built-in name or alias, inline profile JSON
/// (validated like every profile), or, only where the operator allows file paths, a
/// profile file. Without that permission a name is never looked up on disk, so the
/// answer says nothing about which files exist.
fn caller_profile(
    spec: Option<&serde_json::Value>,
    allow_file_paths: bool,
) -> Result<std::sync::Arc<crate::Profile>, String> {
    match spec {
        None => crate::Profile::shared("chrome-latest").map_err(|e| e.to_string()),
        Some(serde_json::Value::String(name)) if allow_file_paths => {
            crate::Profile::resolve_shared(name).map_err(|e| e.to_string())
        }
        Some(serde_json::Value::String(name)) => crate::Profile::shared(name).map_err(|e| {
            if e.is_unknown_profile() {
                let names: Vec<&str> = crate::Profile::builtin_names().collect();
                format!(
                    "`{name}` is not a built-in profile ({}); the API takes built-in names or inline profile JSON, and file paths only when the server runs with --allow-file-paths",
                    names.join(", ")
                )
            } else {
                e.to_string()
            }
        }),
        Some(inline @ serde_json::Value::Object(_)) => {
            let profile = crate::Profile::from_json(&inline.to_string())
                .map_err(|e| format!("inline profile: {e}"))?;
            profile
                .validate()
                .map_err(|e| format!("inline profile: {e}"))?;
            Ok(std::sync::Arc::new(profile))
        }
        Some(_) => Err("a built-in profile name (string) or an inline profile (object)".into()),
    }
}

fn field_problem(detail: String) -> Problem {
    let field = detail.split(':').next().map(str::to_owned);
    Problem::invalid(field, detail)
}

async fn created(s: &ApiState, caller: &Caller, id: &str) -> ApiResult<Response> {
    let view = session_view(s, caller, id).await?;
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/sessions/{id}")) {
        response.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(response)
}

/// The path's session id and the caller, for the routes that address one session.
type Addressed = (Extension<Caller>, PathId);

/// The `{id}` of a route. An id that is not UTF-8 after percent-decoding names no
/// session: a 404 problem, like any unknown id (axum's own rejection is a text/plain
/// 400 the document does not list).
pub struct PathId(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathId {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(PathId(id)),
            Err(_) => Err(Problem::from(crate::Error::session_not_found(
                "(an id that is not UTF-8)",
            ))),
        }
    }
}

async fn get_session(
    State(s): State<ApiState>,
    (Extension(caller), PathId(id)): Addressed,
) -> ApiResult<Response> {
    Ok(Json(session_view(&s, &caller, &id).await?).into_response())
}

async fn close_session(
    State(s): State<ApiState>,
    (Extension(caller), PathId(id)): Addressed,
) -> ApiResult<StatusCode> {
    visible_session(&s.engine, &caller, &id).await?;
    s.engine.close_session(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs `act` on the addressed session (when the caller may see it); 204.
async fn on_session(
    s: &ApiState,
    (Extension(caller), PathId(id)): Addressed,
    act: impl FnOnce(&crate::Session),
) -> ApiResult<StatusCode> {
    act(visible_session(&s.engine, &caller, &id).await?.session());
    Ok(StatusCode::NO_CONTENT)
}

async fn touch(State(s): State<ApiState>, addressed: Addressed) -> ApiResult<StatusCode> {
    on_session(&s, addressed, crate::Session::touch).await
}

async fn clear_cache(State(s): State<ApiState>, addressed: Addressed) -> ApiResult<StatusCode> {
    on_session(&s, addressed, crate::Session::clear_cache).await
}

async fn clear_cookies(State(s): State<ApiState>, addressed: Addressed) -> ApiResult<StatusCode> {
    on_session(&s, addressed, crate::Session::clear_cookies).await
}

/// The rule for a TLS-ticket partition named by a caller (create and PUT
/// .../identifier): at least one character that is not an ASCII space or control
/// character. docs/openapi.json states it as the pattern `[^\x00-\x20\x7F]`, so the
/// two say the same thing.
fn check_identifier(identifier: &str) -> ApiResult<()> {
    if identifier.chars().any(|c| c > ' ' && c != '\x7f') {
        Ok(())
    } else {
        Err(Problem::invalid(
            Some("identifier".into()),
            "identifier must hold a character other than spaces and control characters",
        ))
    }
}

async fn set_identifier(
    State(s): State<ApiState>,
    addressed: Addressed,
    JsonBody(body): JsonBody<SetIdentifier>,
) -> ApiResult<StatusCode> {
    check_identifier(&body.identifier)?;
    on_session(&s, addressed, |session| {
        session.set_identifier(&body.identifier)
    })
    .await
}

/// `?format=` of the cookie endpoints: `json` (default) or a cookie file format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CookieQuery {
    #[serde(default)]
    format: Option<String>,
    /// Only the cookies that would be sent to this URL (export).
    #[serde(default)]
    url: Option<String>,
}

fn cookie_format(q: &CookieQuery) -> ApiResult<Option<CookieFormat>> {
    match q.format.as_deref() {
        None | Some("json") => Ok(None),
        Some(other) => other.parse().map(Some).map_err(|e: crate::Error| {
            Problem::invalid(Some("format".into()), format!("{e}, or json"))
        }),
    }
}

async fn export_cookies(
    State(s): State<ApiState>,
    (Extension(caller), PathId(id)): Addressed,
    QueryParams(q): QueryParams<CookieQuery>,
) -> ApiResult<Response> {
    let format = cookie_format(&q)?;
    let session = visible_session(&s.engine, &caller, &id).await?;
    let cookies = match &q.url {
        Some(url) => session.session().cookies_for(url)?,
        None => session.session().cookies(),
    };
    Ok(match format {
        None => Json(cookies).into_response(),
        Some(f) => {
            let content_type = if f == CookieFormat::Netscape {
                "text/plain; charset=utf-8"
            } else {
                "application/json"
            };
            (
                [(header::CONTENT_TYPE, content_type)],
                formats::write(f, &cookies),
            )
                .into_response()
        }
    })
}

async fn import_cookies(
    State(s): State<ApiState>,
    (Extension(caller), PathId(id)): Addressed,
    QueryParams(q): QueryParams<CookieQuery>,
    BodyBytes(body): BodyBytes,
) -> ApiResult<Response> {
    let format = cookie_format(&q)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| Problem::invalid(None, "the cookie body is not UTF-8"))?;
    let records = match format {
        None => serde_json::from_str(text).map_err(|e| {
            Problem::invalid(None, format!("expected a JSON array of cookies: {e}"))
        })?,
        Some(f) => formats::parse(f, text)?,
    };
    let session = visible_session(&s.engine, &caller, &id).await?;
    let counted = session.session().import_cookies(&records)?;
    Ok(Json(serde_json::json!({
        "imported": counted.stored,
        "expired": counted.expired,
    }))
    .into_response())
}

async fn export_snapshot(
    State(s): State<ApiState>,
    (Extension(caller), PathId(id)): Addressed,
) -> ApiResult<Response> {
    let session = visible_session(&s.engine, &caller, &id).await?;
    let bytes = session.session().snapshot_bytes(s.snapshot_key.as_ref())?;
    let content_type = if s.snapshot_key.is_some() {
        "application/octet-stream"
    } else {
        "application/json"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

async fn import_snapshot(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    BodyBytes(body): BodyBytes,
) -> ApiResult<Response> {
    let snapshot = crate::session::snapshot::decode(&body, s.snapshot_key.as_ref())
        .map_err(|why| Problem::from(crate::Error::snapshot("in the request body", why)))?;
    acting_tenant(&caller, Some(&snapshot.tenant))?;
    let id = snapshot.id.to_string();
    if s.engine.session(&id).await.is_ok() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "session-exists",
            "Session already live",
            format!(
                "session {id} is already live here; close it before importing its snapshot again"
            ),
        ));
    }
    let transport = s.transport_for(&TransportOptions::default())?;
    let session = crate::Session::from_snapshot(snapshot, move |b| transport.apply(b))
        .map_err(|e| Problem::from(crate::Error::snapshot("in the request body", e)))?;
    let id = s.engine.adopt_session(session).await?;
    created(&s, &caller, &id).await
}

async fn save_session(
    State(s): State<ApiState>,
    (Extension(caller), PathId(id)): Addressed,
) -> ApiResult<Response> {
    visible_session(&s.engine, &caller, &id).await?;
    let version = s.engine.save_session(&id).await?;
    Ok(Json(serde_json::json!({ "id": id, "version": version })).into_response())
}

/// `?tenant=` of the store routes: whose stored sessions (the operator may name any;
/// a tenant only itself).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantQuery {
    #[serde(default)]
    tenant: Option<String>,
}

async fn stored_sessions(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    QueryParams(q): QueryParams<TenantQuery>,
) -> ApiResult<Response> {
    let tenant = acting_tenant(&caller, q.tenant.as_deref())?;
    Ok(Json(s.engine.stored_sessions_of(&tenant).await?).into_response())
}

async fn checkout(
    State(s): State<ApiState>,
    (Extension(caller), PathId(id)): Addressed,
    QueryParams(q): QueryParams<TenantQuery>,
    JsonBody(body): JsonBody<TransportOptions>,
) -> ApiResult<Response> {
    let tenant = acting_tenant(&caller, q.tenant.as_deref())?;
    let transport = s.transport_for(&body)?;
    let id = s
        .engine
        .checkout_session_of(&tenant, &id, move |b| transport.apply(b))
        .await?;
    created(&s, &caller, &id).await
}

async fn perform(
    State(s): State<ApiState>,
    (Extension(caller), PathId(id)): Addressed,
    JsonBody(spec): JsonBody<RequestSpec>,
) -> ApiResult<Response> {
    let method = spec.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    let method = http::Method::from_bytes(method.as_bytes()).map_err(|_| {
        Problem::invalid(
            Some("method".into()),
            format!("`{method}` is not an HTTP method"),
        )
    })?;
    let kind = match spec.kind.as_deref() {
        None => RequestKind::Navigation,
        Some(k) => k
            .parse()
            .map_err(|e: crate::Error| Problem::invalid(Some("kind".into()), e.to_string()))?,
    };
    let body = match (spec.body, spec.body_base64) {
        (Some(_), Some(_)) => {
            return Err(Problem::invalid(
                Some("body_base64".into()),
                "give `body` or `body_base64`, not both",
            ))
        }
        (Some(text), None) => Some(Bytes::from(text)),
        (None, Some(b64)) => Some(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| {
                    Problem::invalid(Some("body_base64".into()), format!("invalid base64: {e}"))
                })?,
        )),
        (None, None) => None,
    };
    let headers = spec
        .headers
        .pairs()
        .map_err(|e| Problem::invalid(Some("headers".into()), e))?;
    let session = visible_session(&s.engine, &caller, &id).await?;
    // About to send: the reaper must not take it before the request starts.
    session.touch();
    let mut request = session.request(method, &spec.url).kind(kind);
    for (i, (name, value)) in headers.iter().enumerate() {
        let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value.trim()),
        ) else {
            return Err(Problem::invalid(
                Some(format!("headers[{i}]")),
                format!("header {i} (`{name}`) is not a valid HTTP header"),
            ));
        };
        request = request.header_value(n, v);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    if spec.typed {
        request = request.typed();
    }
    if !spec.follow_redirects {
        request = request.no_redirects();
    }
    if !spec.use_cache {
        request = request.no_cache();
    }
    let response = request.send().await.map_err(url_problem)?;
    Ok(Json(ResponseView::new(&response, spec.response_body)).into_response())
}

/// A failed request as a problem; an invalid URL names the `url` field.
fn url_problem(e: crate::Error) -> Problem {
    let mut p = Problem::from(e);
    if p.title == "Invalid URL" {
        p.field = Some("url".into());
    }
    p
}

/// The limits of a load, each checked against its bound.
fn load_options(spec: &LoadSpec) -> ApiResult<crate::page::LoadOptions> {
    let mut options = crate::page::LoadOptions::default();
    let out_of = |field: &str, range: &str| {
        Problem::invalid(Some(field.into()), format!("`{field}` must be {range}"))
    };
    if let Some(n) = spec.max_subresources {
        if n > 10_000 {
            return Err(out_of("max_subresources", "at most 10000"));
        }
        options.max_subresources = n as usize; // at most 10 000: fits
    }
    if let Some(n) = spec.max_bytes {
        if n > 1 << 30 {
            return Err(out_of("max_bytes", "at most 1073741824"));
        }
        options.max_bytes = n;
    }
    if let Some(ms) = spec.timeout_ms {
        if !(1..=600_000).contains(&ms) {
            return Err(out_of("timeout_ms", "1 to 600000"));
        }
        options.timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(w) = spec.viewport_width {
        if !(1..=10_000).contains(&w) {
            return Err(out_of("viewport_width", "1 to 10000"));
        }
        options.viewport.width = w as u32; // at most 10 000: fits
    }
    if let Some(r) = spec.device_pixel_ratio {
        if !(0.1..=10.0).contains(&r) {
            return Err(out_of("device_pixel_ratio", "0.1 to 10"));
        }
        options.viewport.device_pixel_ratio = r;
    }
    if let Some(kinds) = &spec.kinds {
        let mut parsed = Vec::new();
        for (i, k) in kinds.iter().enumerate() {
            let kind: RequestKind = k.parse().map_err(|e: crate::Error| {
                Problem::invalid(Some(format!("kinds[{i}]")), e.to_string())
            })?;
            parsed.push(kind);
        }
        options.kinds = Some(parsed);
    }
    options.same_origin_only = spec.same_origin_only;
    options.favicon = spec.favicon;
    Ok(options)
}

async fn load_page(
    State(s): State<ApiState>,
    (Extension(caller), PathId(id)): Addressed,
    JsonBody(spec): JsonBody<LoadSpec>,
) -> ApiResult<Response> {
    let options = load_options(&spec)?;
    let session = visible_session(&s.engine, &caller, &id).await?;
    session.touch();
    let load = session
        .load_page(&spec.url, &options)
        .await
        .map_err(url_problem)?;
    Ok(Json(PageLoadView {
        document: ResponseView::new(&load.document, BodyFormat::None),
        complete: load.complete(),
        took_ms: load.took.as_secs_f64() * 1000.0,
        not_listed: load.not_listed,
        document_bytes_not_read: load.document_bytes_not_read,
        subresources: load.subresources,
    })
    .into_response())
}

/// The router, or a 404 saying the server has no pools.
fn pools(s: &ApiState) -> ApiResult<&crate::proxies::ProxyRouter> {
    s.engine.proxy_router().ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "no-proxy-pools",
            "No proxy pools",
            "this server has no proxy pools: start it with --proxies FILE",
        )
    })
}

async fn proxy_health(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    operator_only(&caller, "proxy pool health")?;
    Ok(Json(pools(&s)?.health()).into_response())
}

async fn set_routes(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<SetRoutes>,
) -> ApiResult<StatusCode> {
    operator_only(&caller, "the routing table")?;
    pools(&s)?
        .set_routes(&body.routes, body.default_pool)
        .map_err(|e| {
            // A bad rule is a 400, an undefined pool a 409 (STATUSES in problem.rs).
            let mut problem = Problem::from(e);
            problem.field = Some("routes".into());
            problem
        })?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate(
    State(s): State<ApiState>,
    (Extension(caller), PathId(id)): Addressed,
    JsonBody(body): JsonBody<Rotate>,
) -> ApiResult<Response> {
    pools(&s)?;
    visible_session(&s.engine, &caller, &id).await?;
    let reason = body
        .reason
        .unwrap_or_else(|| "asked through the API".into());
    let new_id = s.engine.rotate_session(&id, &reason).await?;
    created(&s, &caller, &new_id).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainQuery {
    #[serde(default)]
    drain: bool,
}

async fn dead_letters(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    QueryParams(q): QueryParams<DrainQuery>,
) -> ApiResult<Response> {
    operator_only(&caller, "the dead-letter queue")?;
    Ok(Json(s.engine.dead_letters(q.drain).await).into_response())
}

/// Engine events as server-sent events; the stream ends when the server stops.
async fn events(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    operator_only(&caller, "the event stream")?;
    let receiver = s.engine.events();
    let stopping = s.stopping.subscribe();
    let stream = futures_util::stream::unfold(
        (receiver, stopping),
        |(mut receiver, mut stopping)| async move {
            if *stopping.borrow() {
                return None;
            }
            let event = tokio::select! {
                _ = stopping.changed() => return None,
                next = receiver.recv() => match next {
                    Ok(e) => {
                        let json = serde_json::to_value(&e).unwrap_or_default();
                        let name = json["event"].as_str().unwrap_or("event").to_owned();
                        Event::default().event(name).data(json.to_string())
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => Event::default()
                        .event("lagged")
                        .data(serde_json::json!({ "event": "lagged", "missed": n }).to_string()),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            Some((Ok(event), (receiver, stopping)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn proxy_stats(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    operator_only(&caller, "the forward proxy's counters")?;
    let sessions = s.engine.session_count().await;
    Ok(match &s.proxy {
        Some(p) => Json(p.view(sessions)).into_response(),
        None => Json(serde_json::json!({ "running": false, "registered_sessions": sessions }))
            .into_response(),
    })
}

async fn shutdown(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    operator_only(&caller, "shutting the server down")?;
    tracing::info!(target: "mummer::api", "shutdown requested through the API");
    s.stopping.send_replace(true);
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "status": "stopping" })),
    ))
}
