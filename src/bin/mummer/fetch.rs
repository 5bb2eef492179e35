//! `mummer fetch`: one request, curl-like, with a plain client or, with `--session FILE`,
//! a persistent session that is loaded before and saved after the request.

use std::io::Write;

use mummer::api::TransportOptions;
use mummer::RetryPolicy;
use mummer::{
    Client, ClientBuilder, Engine, Profile, Request, RequestKind, Response, SessionConfig,
};

use crate::session_cmd::{session_key, SessionFile};
use crate::{CliResult, FetchArgs};

/// The transport options of `args`, parsed up front (so a typo fails before anything is
/// sent) by the same [`TransportOptions`] the message API uses, and applied to a client
/// builder later.
pub fn transport(
    args: &FetchArgs,
) -> CliResult<impl FnOnce(ClientBuilder) -> ClientBuilder + Send + 'static> {
    let timeout_ms = args
        .max_time
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1));
    let version = if args.http1 {
        "http1"
    } else if args.http2 {
        "http2"
    } else if args.http3_only {
        "http3-only"
    } else if args.http3 {
        "http3"
    } else {
        "auto"
    };
    let parsed = TransportOptions {
        proxy: args.proxy.clone(),
        resolve: args.resolve.clone(),
        connect_to: args.connect_to.clone(),
        cacert: args.cacert.clone(),
        insecure: Some(args.insecure),
        http_version: Some(version.to_owned()),
        timeout_ms,
    }
    .parse_over(&TransportOptions::default())?;
    Ok(move |b: ClientBuilder| parsed.apply(b))
}

fn method(args: &FetchArgs) -> CliResult<http::Method> {
    Ok(match (&args.method, &args.data) {
        (Some(m), _) => m
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| format!("invalid method `{m}`"))?,
        (None, Some(_)) => http::Method::POST,
        (None, None) => http::Method::GET,
    })
}

/// Splits curl's `Name: value`.
fn header_pair(line: &str) -> CliResult<(&str, &str)> {
    line.split_once(':')
        .map(|(n, v)| (n.trim(), v.trim()))
        .ok_or_else(|| format!("invalid header `{line}`: expected `Name: value`").into())
}

/// The one request the flags describe, whichever way it is sent.
fn request(args: &FetchArgs) -> CliResult<Request> {
    let mut request = Request::new(method(args)?, &args.url);
    request.set_kind(args.kind.parse::<RequestKind>()?);
    for h in &args.headers {
        let (n, v) = header_pair(h)?;
        request.push_header(n, v)?;
    }
    if let Some(d) = &args.data {
        request.set_body(Some(d.clone().into_bytes().into()));
    }
    Ok(request)
}

pub async fn fetch(args: FetchArgs) -> CliResult {
    let request = request(&args)?;
    let transport = transport(&args)?;
    if args.load {
        return load_page(&args, transport).await;
    }
    let response = match &args.session {
        None => {
            let client = transport(Client::builder(Profile::resolve(&args.profile)?)).build()?;
            client.execute(request).await?
        }
        Some(id) if args.store.is_some() => {
            through_store(&args, &id.to_string_lossy(), request, transport).await?
        }
        Some(path) => {
            let file = SessionFile::new(path.clone(), session_key(args.session_key.as_deref())?);
            let session = file.open_or_create(&args.profile, transport)?;
            let result = session.execute(request).await;
            // Saved whatever happened: cookies from hops before a failure are kept.
            file.save(&session)?;
            if args.verbose {
                let st = session.stats();
                eprintln!(
                    "* session {} ({}): {} cookies, {} requests, saved to {}",
                    st.id,
                    st.profile,
                    st.cookie_count,
                    st.request_count,
                    path.display()
                );
            }
            result?
        }
    };
    print_response(&args, &response)
}

/// `--store URL --session ID|new`: the session is checked out of the store (leased),
/// used for the request without retries, saved, and released.
async fn through_store(
    args: &FetchArgs,
    wanted: &str,
    request: Request,
    transport: impl FnOnce(ClientBuilder) -> ClientBuilder + Send + 'static,
) -> CliResult<Response> {
    let url = args.store.as_deref().unwrap_or_default();
    let store = mummer::store::open_store(url, &args.namespace)?;
    let described = store.describe();
    let mut builder = Engine::builder().store(store).retry(RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    });
    if let Some(key) = session_key(args.session_key.as_deref())? {
        builder = builder.snapshot_key(key);
    }
    let engine = builder.start()?;
    let id = if wanted == "new" {
        let config = SessionConfig::profile(&args.profile).transport(transport);
        let id = engine.create_session(config).await?;
        eprintln!("* new session {id} in {described}");
        id
    } else {
        engine.checkout_session(wanted, transport).await?
    };
    let session = engine.session(&id).await?;
    let result = session.execute(request).await;
    // Saved whatever happened: cookies from hops before a failure are kept.
    let saved = engine.save_session(&id).await;
    engine.shutdown().await;
    let version = saved?;
    if args.verbose {
        let st = session.session().stats();
        eprintln!(
            "* session {} ({}): {} cookies, {} requests, saved to {described} as version {version}",
            st.id, st.profile, st.cookie_count, st.request_count
        );
    }
    Ok(result?)
}

/// `--load`: the page through a session (the `--session` file's, saved after, or a
/// fresh one), a line per subresource, and an error when the load did not complete.
async fn load_page(
    args: &FetchArgs,
    transport: impl FnOnce(ClientBuilder) -> ClientBuilder + Send + 'static,
) -> CliResult {
    let mut options = mummer::page::LoadOptions::default();
    if let Some(n) = args.load_max {
        options.max_subresources = n;
    }
    if let Some(limit) = args.max_time {
        options.timeout = limit;
    }
    options.same_origin_only = args.load_same_origin;
    if let Some(bytes) = args.load_max_bytes {
        options.max_bytes = bytes;
    }
    if let Some(kinds) = &args.load_kinds {
        options.kinds = Some(kinds.clone());
    }
    let file = match &args.session {
        Some(path) => Some(SessionFile::new(
            path.clone(),
            session_key(args.session_key.as_deref())?,
        )),
        None => None,
    };
    let session = match &file {
        Some(file) => file.open_or_create(&args.profile, transport)?,
        None => mummer::Session::builder(Profile::resolve(&args.profile)?)
            .transport(transport)
            .build()?,
    };
    let result = session.load_page(&args.url, &options).await;
    if let Some(file) = &file {
        // Saved whatever happened: cookies from the document and subresources are kept.
        file.save(&session)?;
    }
    let load = result?;
    if args.json {
        let out = serde_json::json!({
            "url": load.document.url(),
            "status": load.document.status().as_u16(),
            "http_version": format!("{:?}", load.document.version()),
            "subresources": load.subresources,
            "not_listed": load.not_listed,
            "document_bytes_not_read": load.document_bytes_not_read,
            "complete": load.complete(),
            "took_ms": load.took.as_secs_f64() * 1000.0,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut out = String::new();
        out.push_str(&format!(
            "{} {:>9} {:<10} {:<8} {}\n",
            load.document.status().as_u16(),
            load.document.body().len(),
            "navigation",
            "u=0, i",
            load.document.url()
        ));
        for f in &load.subresources {
            let (status, bytes) = match &f.outcome {
                mummer::page::Outcome::Fetched { status, bytes, .. } => {
                    (status.to_string(), bytes.to_string())
                }
                mummer::page::Outcome::Failed { error } => ("ERR".into(), error.clone()),
                mummer::page::Outcome::LeftOut { reason } => ("---".into(), reason.clone()),
            };
            out.push_str(&format!(
                "{status} {bytes:>9} {:<10} {:<8} {} ({})\n",
                f.kind.as_str(),
                f.priority.as_deref().unwrap_or("-"),
                f.url,
                f.found_in
            ));
        }
        std::io::stdout().write_all(out.as_bytes())?;
    }
    if load.not_listed > 0 {
        eprintln!(
            "mummer: {} more subresources were found but not listed or fetched (the listing limit)",
            load.not_listed
        );
    }
    if load.document_bytes_not_read > 0 {
        eprintln!(
            "mummer: the last {} bytes of the document were not read for subresources (over {} MiB)",
            load.document_bytes_not_read,
            mummer::page::MAX_DOCUMENT_BYTES >> 20
        );
    }
    if !load.complete() {
        let failed = load
            .subresources
            .iter()
            .filter(|f| !matches!(f.outcome, mummer::page::Outcome::Fetched { .. }))
            .filter(|f| !matches!(&f.outcome, mummer::page::Outcome::LeftOut { reason } if reason != "time limit"))
            .count();
        return Err(format!(
            "page load incomplete: {failed} subresources failed or were cut by --max-time"
        )
        .into());
    }
    Ok(())
}

fn print_response(args: &FetchArgs, response: &Response) -> CliResult {
    if args.verbose {
        for r in response.redirects() {
            eprintln!("* redirect {} from {}", r.status, r.url);
        }
        eprintln!(
            "* {:?} {} {}",
            response.version(),
            response.status(),
            response.url()
        );
        if let Some(tls) = response.tls() {
            eprintln!(
                "* TLS {} {} alpn={} resumed={}",
                tls.version,
                tls.cipher,
                tls.alpn.as_deref().unwrap_or("-"),
                tls.resumed
            );
        }
        let t = response.timings();
        eprintln!(
            "* timings: dns {:?} connect {:?} tls {:?} first byte {:?} total {:?}",
            t.dns, t.connect, t.tls, t.first_byte, t.total
        );
        for (n, v) in response.request_headers() {
            eprintln!("> {n}: {}", String::from_utf8_lossy(v.as_bytes()));
        }
    }
    if args.json {
        let headers: Vec<(String, String)> = response
            .wire_headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let out = serde_json::json!({
            "url": response.url(),
            "status": response.status().as_u16(),
            "http_version": format!("{:?}", response.version()),
            "headers": headers,
            "body_length": response.body().len(),
            "raw_body_length": response.raw_body_len(),
            "timings_us": response.timings(),
            "tls": response.tls(),
            "redirects": response.redirects(),
            "cache": response.cache_status(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut out = Vec::new();
    if args.include {
        out.extend_from_slice(
            format!("{:?} {}\r\n", response.version(), response.status()).as_bytes(),
        );
        for (n, v) in response.wire_headers() {
            out.extend_from_slice(format!("{n}: ").as_bytes());
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, response.body())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        None => out.extend_from_slice(response.body()),
    }
    std::io::stdout().write_all(&out)?;
    Ok(())
}
