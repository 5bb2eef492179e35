//! `mummer inspect`: the fingerprint inspector, and `--save-profile`.

use mummer::inspect::ConnectionReport;

use crate::InspectArgs;

pub async fn inspect(args: InspectArgs) -> crate::CliResult {
    let mut inspector = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            mummer::inspect::Inspector::start_with_files(args.listen, c, k).await?
        }
        _ => mummer::inspect::Inspector::start(args.listen, &args.names).await?,
    };
    inspector.offer_http3(args.alt_svc);
    if let Some(path) = &args.write_cert {
        std::fs::write(path, inspector.cert_pem())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    eprintln!(
        "mummer inspect: listening on https://{} (TCP, and HTTP/3 over UDP on the same port{})",
        inspector.local_addr(),
        if args.alt_svc {
            ", offered with Alt-Svc"
        } else {
            ""
        }
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
    for t in mummer::profile::diff::headless_traits(&profile) {
        eprintln!(
            "mummer inspect: warning: the learned profile has a headless browser's trait: {t}; \
             a server that looks for it blocks this profile (learn from a headful browser)"
        );
    }
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
