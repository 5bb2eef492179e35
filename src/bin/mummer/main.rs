//! `mummer`: fetch with a browser's fingerprint, list and show profiles, and run the
//! fingerprint inspector.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mummer::profile::ALIASES;
use mummer::Profile;

mod fetch;
mod inspect;
mod serve;
mod session_cmd;

/// What every subcommand returns: a one-line error for `main` to print.
type CliResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

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
    Fetch(Box<FetchArgs>),
    /// List built-in profiles and aliases.
    Profiles,
    /// Profile commands.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Run a loopback HTTPS server that reports the fingerprint of whoever connects.
    Inspect(InspectArgs),
    /// Session file commands.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Move cookies between a session file and other tools.
    Cookies {
        #[command(subcommand)]
        command: CookiesCommand,
    },
    /// Run an engine behind the HTTP/JSON message API (and optionally a forward proxy).
    Serve(Box<serve::ServeArgs>),
    /// The forward proxy's local certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Write the CA certificate (creating the CA on first use) for clients to trust.
    Export(serve::CaExportArgs),
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Print a session file's stats and cookies (values hidden).
    Show {
        /// The session file.
        file: PathBuf,
        /// Print cookie values.
        #[arg(long = "show-values")]
        show_values: bool,
        /// Key of an encrypted session file, 64 hex digits (or MUMMER_SESSION_KEY).
        #[arg(long = "session-key")]
        session_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum CookiesCommand {
    /// Write a session's cookies in another tool's format.
    Export {
        /// The session file.
        #[arg(long)]
        session: PathBuf,
        /// netscape, playwright or cdp.
        #[arg(long)]
        format: String,
        /// Write here instead of stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Key of an encrypted session file (or MUMMER_SESSION_KEY).
        #[arg(long = "session-key")]
        session_key: Option<String>,
    },
    /// Add cookies to a session (created when the file does not exist); all or nothing.
    Import {
        /// The session file.
        #[arg(long)]
        session: PathBuf,
        /// netscape, playwright or cdp.
        #[arg(long)]
        format: String,
        /// The cookie file.
        input: PathBuf,
        /// Profile for a new session.
        #[arg(long, default_value = "chrome-latest")]
        profile: String,
        /// Key of an encrypted session file (or MUMMER_SESSION_KEY).
        #[arg(long = "session-key")]
        session_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Print a profile (built-in name, alias or file) as JSON.
    Show {
        /// Profile name or file.
        name: String,
    },
    /// Show field by field what differs between two profiles (built-in, alias or file,
    /// learned ones included); exits 1 when they differ, as diff(1) does.
    Diff {
        /// The first profile.
        a: String,
        /// The second profile.
        b: String,
        /// Also compare the informational fields (name, description, sources, browser).
        #[arg(long)]
        all: bool,
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
    #[arg(long = "http1.1", conflicts_with_all = ["http2", "http3", "http3_only"])]
    http1: bool,
    /// Offer only HTTP/2.
    #[arg(long = "http2", conflicts_with_all = ["http3", "http3_only"])]
    http2: bool,
    /// Try HTTP/3 first (QUIC raced against TCP, as for an origin that offered it with
    /// Alt-Svc); without this flag HTTP/3 is used once an origin offers it.
    #[arg(long = "http3", conflicts_with = "http3_only")]
    http3: bool,
    /// HTTP/3 over QUIC only: UDP to the server, no TCP (the TLS handshake from the
    /// profile, as over TCP).
    #[arg(long = "http3-only")]
    http3_only: bool,
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
    #[arg(long = "max-time", value_parser = mummer::flags::seconds)]
    max_time: Option<Duration>,
    /// Print one JSON object describing the response.
    #[arg(long)]
    json: bool,
    /// Load the session from FILE when it exists, and save it there after the request
    /// (cookies, TLS tickets, cache validators persist across runs). With --store: the
    /// session's id in the store, or `new` to create one (its id is printed).
    #[arg(long)]
    session: Option<PathBuf>,
    /// Keep the session in a store instead of a file: file:DIR or redis://HOST:PORT/DB.
    /// It is leased while the request runs and saved (encrypted with the session key,
    /// when there is one) before the lease is released.
    #[arg(long, requires = "session")]
    store: Option<String>,
    /// Namespace of the store's keys (Redis).
    #[arg(long, default_value = "mummer")]
    namespace: String,
    /// Key of an encrypted session file, 64 hex digits (or MUMMER_SESSION_KEY); the file
    /// is written encrypted when a key is given.
    #[arg(long = "session-key")]
    session_key: Option<String>,
    /// Load the page as Chromium does: the document, then its stylesheets, scripts,
    /// images, fonts and icon; one line per subresource (or --json). Exits non-zero when
    /// one failed or --max-time cut it.
    #[arg(long, conflicts_with_all = ["store", "output", "include"])]
    load: bool,
    /// With --load: fetch at most N subresources (default 100); the rest are listed.
    #[arg(long = "load-max", requires = "load", value_name = "N")]
    load_max: Option<usize>,
    /// With --load: only subresources of the document's origin.
    #[arg(long = "load-same-origin", requires = "load")]
    load_same_origin: bool,
    /// With --load: start no subresource once this many body bytes arrived (default
    /// 32 MiB).
    #[arg(long = "load-max-bytes", requires = "load", value_name = "BYTES")]
    load_max_bytes: Option<u64>,
    /// With --load: only these kinds, comma-separated (style, script, image, font,
    /// fetch); the others are listed as left out.
    #[arg(long = "load-kinds", requires = "load", value_name = "KINDS", value_delimiter = ',', value_parser = parse_kind)]
    load_kinds: Option<Vec<mummer::profile::RequestKind>>,
}

/// A request kind named on the command line (`style`, `script`, ...).
fn parse_kind(s: &str) -> Result<mummer::profile::RequestKind, String> {
    s.trim().parse().map_err(|e: mummer::Error| e.to_string())
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
    /// Offer HTTP/3 on the same port with `Alt-Svc` in the TCP answers, so a browser
    /// (or a session) upgrades to QUIC as it does on the internet.
    #[arg(long = "alt-svc")]
    alt_svc: bool,
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
    if let Command::Profile {
        command: ProfileCommand::Diff { a, b, all },
    } = &cli.command
    {
        // diff(1)'s codes: 0 the same, 1 different, 2 trouble.
        return match diff_profiles(a, b, *all) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("mummer: {e}");
                ExitCode::from(2)
            }
        };
    }
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
            Command::Fetch(args) => fetch::fetch(*args).await,
            Command::Profiles => {
                list_profiles();
                Ok(())
            }
            Command::Profile {
                command: ProfileCommand::Show { name },
            } => show_profile(&name),
            // Answered before the runtime starts (its exit code says same or not).
            Command::Profile {
                command: ProfileCommand::Diff { .. },
            } => Ok(()),
            Command::Inspect(args) => inspect::inspect(args).await,
            Command::Session { command } => session_cmd::session(command),
            Command::Cookies { command } => session_cmd::cookies(command),
            Command::Serve(args) => serve::serve(*args).await,
            Command::Ca {
                command: CaCommand::Export(args),
            } => serve::ca_export(args),
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
        match mummer::profile::alias_override(alias) {
            Some(spec) => println!(
                "{alias:<22} alias of {spec} (from {}; built-in: {target})",
                mummer::profile::alias_variable(alias)
            ),
            None => println!("{alias:<22} alias of {target}"),
        }
    }
}

/// Prints what differs between profiles `a` and `b`; whether they are the same.
fn diff_profiles(a: &str, b: &str, all: bool) -> CliResult<bool> {
    let (left, right) = (Profile::resolve(a)?, Profile::resolve(b)?);
    let differences = mummer::profile::diff::diff(&left, &right, all);
    let mut out = std::io::stdout().lock();
    for d in &differences {
        // A closed pipe (`| head`) ends the listing, not the process.
        if writeln!(out, "{d}").is_err() {
            break;
        }
    }
    drop(out);
    for (which, profile) in [(a, &left), (b, &right)] {
        for t in mummer::profile::diff::headless_traits(profile) {
            eprintln!("mummer: warning: {which}: {t} (a headless browser's trait)");
        }
    }
    if differences.is_empty() {
        eprintln!("{a} and {b} send the same fingerprint");
    } else {
        eprintln!("{} fields differ", differences.len());
    }
    Ok(differences.is_empty())
}

fn show_profile(name: &str) -> CliResult {
    let profile = Profile::resolve(name)?;
    println!("{}", serde_json::to_string_pretty(&profile)?);
    Ok(())
}
