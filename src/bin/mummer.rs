//! `mummer`: fetch with a browser's fingerprint, list and show profiles, and run the
//! fingerprint inspector.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mummer::inspect::ConnectionReport;
use mummer::net::{ConnectTo, Proxy, ResolveOverride};
use mummer::profile::ALIASES;
use mummer::{Client, HttpVersionPref, Profile, RequestKind};

#[derive(Parser)]
#[command(
    name = "mummer",
    version,
    about = "HTTP sessions that wear a real browser's TLS, HTTP/2 and headers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch a URL with a browser profile (curl-like).
    Fetch(FetchArgs),
    /// List built-in profiles and aliases.
    Profiles,
    /// Profile commands.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Run a loopback HTTPS server that reports the fingerprint of whoever connects.
    Inspect(InspectArgs),
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Print a profile (built-in name, alias or file) as JSON.
    Show {
        /// Profile name or file.
        name: String,
    },
}

#[derive(clap::Args)]
struct FetchArgs {
    /// The URL (http:// or https://).
    url: String,
    /// Profile name, alias or file.
    #[arg(long, default_value = "chrome-latest")]
    profile: String,
    /// Request method.
    #[arg(short = 'X', long = "request")]
    method: Option<String>,
    /// Extra header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Request body (implies POST unless -X is given).
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    /// Request kind: navigation, fetch, xhr, image, script, style, font.
    #[arg(long, default_value = "navigation")]
    kind: String,
    /// Write the body to FILE.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Include response headers in the output.
    #[arg(short = 'i', long = "include")]
    include: bool,
    /// Print protocol, TLS and timing details to stderr.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Offer only HTTP/1.1.
    #[arg(long = "http1.1", conflicts_with = "http2")]
    http1: bool,
    /// Offer only HTTP/2.
    #[arg(long = "http2")]
    http2: bool,
    /// Proxy URL (http://, https://, socks5://, socks5h://).
    #[arg(long)]
    proxy: Option<String>,
    /// HOST:PORT:ADDR override (repeatable).
    #[arg(long)]
    resolve: Vec<String>,
    /// Connect to HOST2:PORT2 for requests to HOST1:PORT1 (TLS and headers keep HOST1);
    /// repeatable, empty parts match any / keep the original.
    #[arg(long = "connect-to", value_name = "HOST1:PORT1:HOST2:PORT2")]
    connect_to: Vec<String>,
    /// Trust this CA bundle (PEM).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Skip certificate verification.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Total deadline in seconds.
    #[arg(long = "max-time")]
    max_time: Option<f64>,
    /// Print one JSON object describing the response.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Certificate (PEM); a self-signed one is generated when absent.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Extra host names for the generated certificate.
    #[arg(long = "name")]
    names: Vec<String>,
    /// Write the generated certificate here, for clients' --cacert.
    #[arg(long = "write-cert")]
    write_cert: Option<PathBuf>,
    /// Stop after this many connections.
    #[arg(long)]
    count: Option<usize>,
    /// Write a profile learned from the connecting browser to FILE (rewritten after
    /// every connection that carried a request; two or more connections also show
    /// whether the browser permutes its extensions).
    #[arg(long = "save-profile")]
    save_profile: Option<PathBuf>,
    /// Name for the profile written by --save-profile.
    #[arg(long = "profile-name", default_value = "learned")]
    profile_name: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mummer: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Fetch(args) => fetch(args).await,
            Command::Profiles => {
                list_profiles();
                Ok(())
            }
            Command::Profile {
                command: ProfileCommand::Show { name },
            } => show_profile(&name),
            Command::Inspect(args) => inspect(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mummer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list_profiles() {
    for name in Profile::builtin_names() {
        let description = Profile::named(name)
            .map(|p| p.description)
            .unwrap_or_default();
        println!("{name:<22} {description}");
    }
    for (alias, target) in ALIASES {
        println!("{alias:<22} alias of {target}");
    }
}

fn show_profile(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let profile = Profile::resolve(name)?;
    println!("{}", serde_json::to_string_pretty(&profile)?);
    Ok(())
}

async fn fetch(args: FetchArgs) -> Result<(), Box<dyn std::error::Error>> {
    let profile = Profile::resolve(&args.profile)?;
    let kind: RequestKind = args.kind.parse()?;
    let mut builder = Client::builder(profile).insecure(args.insecure);
    if let Some(ca) = &args.cacert {
        builder = builder.ca_file(ca);
    }
    for rule in &args.connect_to {
        builder = builder.connect_to(rule.parse::<ConnectTo>()?);
    }
    for r in &args.resolve {
        builder = builder.resolve(r.parse::<ResolveOverride>()?);
    }
    if let Some(p) = &args.proxy {
        builder = builder.proxy(Proxy::parse(p)?);
    }
    if let Some(secs) = args.max_time {
        if !(secs.is_finite() && secs > 0.0) {
            return Err("--max-time must be a positive number of seconds".into());
        }
        builder = builder.timeout(Duration::from_secs_f64(secs));
    }
    builder = builder.http_version(if args.http1 {
        HttpVersionPref::Http1Only
    } else if args.http2 {
        HttpVersionPref::Http2Only
    } else {
        HttpVersionPref::Auto
    });
    let client = builder.build()?;
    let method = match (&args.method, &args.data) {
        (Some(m), _) => m
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| format!("invalid method `{m}`"))?,
        (None, Some(_)) => http::Method::POST,
        (None, None) => http::Method::GET,
    };
    let mut request = client.request(method, &args.url).kind(kind);
    for h in &args.headers {
        request = request.header_line(h);
    }
    if let Some(d) = &args.data {
        request = request.body(d.clone().into_bytes());
    }
    let response = request.send().await?;

    if args.verbose {
        eprintln!("* {:?} {}", response.version(), response.status());
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
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        use std::io::Write;
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
                std::io::stdout().write_all(&out)?;
            }
            None => {
                out.extend_from_slice(response.body());
                std::io::stdout().write_all(&out)?;
            }
        }
    }
    Ok(())
}

async fn inspect(args: InspectArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut inspector = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            mummer::inspect::Inspector::start_with_files(args.listen, c, k).await?
        }
        _ => mummer::inspect::Inspector::start(args.listen, &args.names).await?,
    };
    if let Some(path) = &args.write_cert {
        std::fs::write(path, inspector.cert_pem())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    eprintln!(
        "mummer inspect: listening on https://{}",
        inspector.local_addr()
    );
    let mut seen = 0usize;
    let mut reports = Vec::new();
    loop {
        tokio::select! {
            report = inspector.next_report() => {
                let Some(report) = report else { break };
                println!("{}", serde_json::to_string(&report)?);
                seen += 1;
                if let Some(path) = &args.save_profile {
                    reports.push(report);
                    save_learned_profile(path, &args.profile_name, &reports);
                }
                if args.count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}

/// Writes the profile learned from `reports` to `path`, saying on stderr what happened.
fn save_learned_profile(path: &std::path::Path, name: &str, reports: &[ConnectionReport]) {
    let profile = match mummer::inspect::learn_profile(name, reports) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("mummer inspect: no profile yet: {e}");
            return;
        }
    };
    let written = serde_json::to_string_pretty(&profile)
        .map_err(|e| e.to_string())
        .and_then(|text| std::fs::write(path, text + "\n").map_err(|e| e.to_string()));
    match written {
        Ok(()) => eprintln!(
            "mummer inspect: saved profile `{name}` ({} {}, {}) to {}",
            profile.browser,
            profile.version,
            profile.platform,
            path.display()
        ),
        Err(e) => eprintln!("mummer inspect: cannot write {}: {e}", path.display()),
    }
}
