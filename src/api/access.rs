//! Who is calling the API or the proxy, and what they may touch: the operator's token,
//! the tenants' tokens ([`TenantTokens`], from `mummer serve --tenant-tokens FILE`) and
//! the [`Caller`] a presented secret stands for, and `visible_session`, where every
//! route and the proxy find a session the caller may see.
//!
//! The rules, enforced by the routes and the proxy:
//! - no token configured at all: every caller is the operator (loopback only, see
//!   [`super::check_exposure`]);
//! - with any token configured, every call (but `/healthz`) presents one; the operator
//!   token sees everything, a tenant token only its tenant's sessions: another tenant's
//!   session is "not found" (its existence is not confirmed), sessions it creates or
//!   imports belong to it, and operator-wide routes (metrics, events, dead letters,
//!   proxy pools, shutdown) answer 403.
//!
//! Secrets are compared in constant time against every configured token, so the time
//! taken does not say which one (or whether any) nearly matched.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::problem::Problem;
use crate::engine::EngineSession;
use crate::error::{Error, Result};
use crate::tenant::check_tenant;
use crate::Engine;

/// Shortest token accepted (operator or tenant).
pub const MIN_TOKEN_LEN: usize = 16;

/// Who a call is made by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The server's own token (or no token configured): every tenant's sessions.
    Operator,
    /// A tenant's token: that tenant's sessions only.
    Tenant(Arc<str>),
}

impl Caller {
    /// Whether this caller may see a session of `tenant`.
    pub fn can_see(&self, tenant: &str) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Tenant(own) => &**own == tenant,
        }
    }

    /// The tenant the caller is confined to, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::Operator => None,
            Caller::Tenant(t) => Some(t),
        }
    }
}

/// Tenants' API tokens, one per tenant.
#[derive(Clone, Default)]
pub struct TenantTokens {
    by_tenant: BTreeMap<String, String>,
}

impl std::fmt::Debug for TenantTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tokens are secrets: only the tenants are shown.
        f.debug_struct("TenantTokens")
            .field("tenants", &self.by_tenant.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The tokens file: `[tenants]` mapping tenant names to tokens (TOML), or the same as
/// JSON (`{"tenants": {"acme": "..."}}`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tenants: BTreeMap<String, String>,
}

impl TenantTokens {
    /// No tenant tokens.
    pub fn new() -> TenantTokens {
        TenantTokens::default()
    }

    /// Adds `tenant` with `token`.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`]: a malformed tenant name, a token shorter than
    /// [`MIN_TOKEN_LEN`], or a token another tenant already has.
    pub fn insert(&mut self, tenant: &str, token: &str) -> Result<()> {
        check_tenant(tenant)?;
        if token.len() < MIN_TOKEN_LEN {
            return Err(Error::invalid_input(format!(
                "the token of tenant `{tenant}` is too short: use at least {MIN_TOKEN_LEN} characters"
            )));
        }
        if let Some((other, _)) = self.by_tenant.iter().find(|(_, t)| t.as_str() == token) {
            return Err(Error::invalid_input(format!(
                "tenants `{other}` and `{tenant}` have the same token: give each its own"
            )));
        }
        self.by_tenant.insert(tenant.to_owned(), token.to_owned());
        Ok(())
    }

    /// Reads a tokens file (TOML, or JSON when it starts with `{`).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] naming the file and what is wrong in it.
    pub fn load(path: &Path) -> Result<TenantTokens> {
        let shown = path.display();
        let text = crate::files::read_capped_text(path, crate::files::MAX_CONFIG_FILE_BYTES)
            .map_err(|e| Error::invalid_input(format!("cannot read tenant tokens {shown}: {e}")))?;
        let file: TokensFile = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        }
        .map_err(|e| Error::invalid_input(format!("tenant tokens {shown}: {e}")))?;
        let mut tokens = TenantTokens::new();
        for (tenant, token) in &file.tenants {
            tokens
                .insert(tenant, token)
                .map_err(|e| Error::invalid_input(format!("tenant tokens {shown}: {e}")))?;
        }
        Ok(tokens)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_tenant.is_empty()
    }

    /// The tenants that have a token.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.by_tenant.keys().map(String::as_str)
    }
}

/// Every token a server accepts, and the caller each stands for.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    operator: Option<Arc<str>>,
    tenants: Arc<[(Arc<str>, Arc<str>)]>,
}

impl Access {
    pub(crate) fn new(operator: Option<&str>, tenants: &TenantTokens) -> Access {
        Access {
            operator: operator.map(Arc::from),
            tenants: tenants
                .by_tenant
                .iter()
                .map(|(name, token)| (Arc::from(name.as_str()), Arc::from(token.as_str())))
                .collect(),
        }
    }

    /// Whether calls need no token (none configured).
    pub(crate) fn is_open(&self) -> bool {
        self.operator.is_none() && self.tenants.is_empty()
    }

    /// The caller `secret` stands for; `None` when it matches no token (or when tokens
    /// are configured and none was given).
    pub(crate) fn identify(&self, secret: Option<&[u8]>) -> Option<Caller> {
        if self.is_open() {
            return Some(Caller::Operator);
        }
        let secret = secret?;
        let mut found = None;
        // Every token is compared, whatever matched earlier.
        if let Some(op) = &self.operator {
            if bool::from(secret.ct_eq(op.as_bytes())) {
                found = Some(Caller::Operator);
            }
        }
        for (tenant, token) in self.tenants.iter() {
            if bool::from(secret.ct_eq(token.as_bytes())) && found.is_none() {
                found = Some(Caller::Tenant(tenant.clone()));
            }
        }
        found
    }
}

/// The live session `id` when the caller may see it; another tenant's session is "not
/// found", exactly like a missing one. Not marked used: reading a session (stats,
/// cookies, a snapshot) never keeps it from being reaped. Sending on it marks it used
/// by itself; `POST .../touch` does on purpose.
pub(crate) async fn visible_session(
    engine: &Engine,
    caller: &Caller,
    id: &str,
) -> std::result::Result<EngineSession, Problem> {
    let session = engine.peek_session(id).await?;
    if caller.can_see(session.session().tenant()) {
        Ok(session)
    } else {
        Err(Error::session_not_found(id).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> TenantTokens {
        let mut t = TenantTokens::new();
        t.insert("acme", "acme-token-0123456789").expect("acme");
        t.insert("bolt", "bolt-token-0123456789").expect("bolt");
        t
    }

    #[test]
    fn each_secret_names_its_caller() {
        let access = Access::new(Some("operator-token-0123"), &tokens());
        assert!(!access.is_open());
        assert_eq!(
            access.identify(Some(b"operator-token-0123")),
            Some(Caller::Operator)
        );
        assert_eq!(
            access.identify(Some(b"acme-token-0123456789")),
            Some(Caller::Tenant("acme".into()))
        );
        assert_eq!(access.identify(Some(b"acme-token-012345678")), None);
        assert_eq!(access.identify(None), None);
        let open = Access::new(None, &TenantTokens::new());
        assert_eq!(open.identify(None), Some(Caller::Operator));
        // Tenant tokens alone: no anonymous operator.
        let tenants_only = Access::new(None, &tokens());
        assert_eq!(tenants_only.identify(None), None);
        assert_eq!(tenants_only.identify(Some(b"")), None);
    }

    #[test]
    fn callers_see_their_own_tenant_only() {
        let acme = Caller::Tenant("acme".into());
        assert!(acme.can_see("acme"));
        assert!(!acme.can_see("bolt"));
        assert!(Caller::Operator.can_see("bolt"));
    }

    #[test]
    fn bad_token_files_are_refused_with_the_reason() {
        let mut t = TenantTokens::new();
        let short = t.insert("acme", "short").unwrap_err().to_string();
        assert!(short.contains("too short"), "{short}");
        t.insert("acme", "acme-token-0123456789").expect("acme");
        let same = t
            .insert("bolt", "acme-token-0123456789")
            .unwrap_err()
            .to_string();
        assert!(same.contains("same token"), "{same}");
        assert!(t.insert("a.b", "another-token-0123456").is_err());
        assert!(
            !format!("{t:?}").contains("acme-token"),
            "tokens are secret"
        );

        let dir = tempfile::tempdir().expect("dir");
        let toml_file = dir.path().join("tokens.toml");
        std::fs::write(
            &toml_file,
            "[tenants]\nacme = \"acme-token-0123456789\"\nbolt = \"bolt-token-0123456789\"\n",
        )
        .expect("write");
        let loaded = TenantTokens::load(&toml_file).expect("toml");
        assert_eq!(loaded.tenants().collect::<Vec<_>>(), vec!["acme", "bolt"]);
        let json_file = dir.path().join("tokens.json");
        std::fs::write(&json_file, r#"{"tenants": {"acme": "x"}}"#).expect("write");
        let e = TenantTokens::load(&json_file).unwrap_err().to_string();
        assert!(e.contains("tokens.json") && e.contains("too short"), "{e}");
        std::fs::write(&json_file, r#"{"tenant": {}}"#).expect("write");
        let e = TenantTokens::load(&json_file).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}
