//! The routing table: which proxy pool a new session uses, from its target domain
//! and its tenant. Rules are tried in order and the first match wins; a table may have
//! a default pool. Domain patterns are exact (`shop.test`), suffix (`.shop.test`: the
//! domain and every subdomain) or wildcard (`*.shop.*`, where `*` matches any run of
//! characters).
//!
//! Pure logic, unit-tested without a socket.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A domain pattern of a routing rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainPattern {
    /// Exactly this host.
    Exact(String),
    /// This host and its subdomains (written with a leading dot).
    Suffix(String),
    /// A glob with `*` (any run of characters, dots included).
    Wildcard(String),
}

impl DomainPattern {
    /// Parses the file form: a leading dot is a suffix, a `*` a wildcard, else exact.
    /// Case-insensitive; a trailing dot is ignored.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] for an empty pattern or one with spaces or slashes.
    pub fn parse(text: &str) -> Result<DomainPattern> {
        let t = text.trim().trim_end_matches('.').to_ascii_lowercase();
        if t.is_empty() || t == "." || t.contains(['/', ' ', ':']) {
            return Err(Error::invalid_input(format!(
                "`{text}` is not a domain pattern: use shop.test (exact), .shop.test (and subdomains) or *.shop.* (wildcard)"
            )));
        }
        Ok(if t.contains('*') {
            DomainPattern::Wildcard(t)
        } else if let Some(rest) = t.strip_prefix('.') {
            DomainPattern::Suffix(rest.to_owned())
        } else {
            DomainPattern::Exact(t)
        })
    }

    /// Whether `host` matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            DomainPattern::Exact(d) => host == *d,
            DomainPattern::Suffix(d) => {
                host == *d
                    || host
                        .strip_suffix(d.as_str())
                        .is_some_and(|p| p.ends_with('.'))
            }
            DomainPattern::Wildcard(glob) => glob_match(glob.as_bytes(), host.as_bytes()),
        }
    }
}

/// `*`-only glob matching, iterative with one backtrack point (linear in practice).
fn glob_match(glob: &[u8], text: &[u8]) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g, t));
            g += 1;
        } else if g < glob.len() && glob[g] == text[t] {
            g += 1;
            t += 1;
        } else if let Some((sg, st)) = star {
            g = sg + 1;
            t = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

/// One rule as written in a pools-and-routes file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Domain pattern (none: any domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Tenant id (none: any tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The pool to use.
    pub pool: String,
}

#[derive(Clone, Debug)]
struct Rule {
    domain: Option<DomainPattern>,
    tenant: Option<String>,
    pool: String,
}

/// Rules from (domain, tenant) to a pool name; first match wins.
#[derive(Clone, Debug, Default)]
pub struct RoutingTable {
    rules: Vec<Rule>,
    default: Option<String>,
}

impl RoutingTable {
    /// A table from `specs` in order, with `default` for what no rule matches.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] naming the rule (`routes[2]`) with a bad pattern or
    /// neither domain nor tenant.
    pub fn new(specs: &[RouteSpec], default: Option<String>) -> Result<RoutingTable> {
        let rules = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                if spec.domain.is_none() && spec.tenant.is_none() {
                    return Err(Error::invalid_input(format!(
                        "routes[{i}] has neither a domain nor a tenant; use default_pool for a catch-all"
                    )));
                }
                if let Some(t) = &spec.tenant {
                    crate::tenant::check_tenant(t)
                        .map_err(|e| Error::invalid_input(format!("routes[{i}].tenant: {e}")))?;
                }
                Ok(Rule {
                    domain: spec
                        .domain
                        .as_deref()
                        .map(DomainPattern::parse)
                        .transpose()
                        .map_err(|e| Error::invalid_input(format!("routes[{i}].domain: {e}")))?,
                    tenant: spec.tenant.clone(),
                    pool: spec.pool.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RoutingTable { rules, default })
    }

    /// The pool for a session of `tenant` aimed at `domain` (none when the session has
    /// no target yet: only tenant rules and the default apply).
    pub fn route(&self, domain: Option<&str>, tenant: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| {
                let domain_ok = match (&r.domain, domain) {
                    (None, _) => true,
                    (Some(p), Some(d)) => p.matches(d),
                    (Some(_), None) => false,
                };
                domain_ok && r.tenant.as_deref().is_none_or(|t| t == tenant)
            })
            .map(|r| r.pool.as_str())
            .or(self.default.as_deref())
    }

    /// Every pool name the table refers to (to check them against the pools).
    pub fn pools(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .map(|r| r.pool.as_str())
            .chain(self.default.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_written() {
        let exact = DomainPattern::parse("Shop.Test").expect("exact");
        assert!(exact.matches("shop.test") && exact.matches("shop.test."));
        assert!(!exact.matches("www.shop.test"));
        let suffix = DomainPattern::parse(".shop.test").expect("suffix");
        assert!(suffix.matches("shop.test") && suffix.matches("a.b.shop.test"));
        assert!(!suffix.matches("evilshop.test"));
        let wild = DomainPattern::parse("*.shop.*").expect("wildcard");
        assert!(wild.matches("www.shop.test") && wild.matches("a.b.shop.co.uk"));
        assert!(!wild.matches("shop.test"));
        assert!(DomainPattern::parse("http://x").is_err());
        assert!(DomainPattern::parse(" ").is_err());
        assert!(glob_match(b"a*b*c", b"aXXbYYc") && !glob_match(b"a*b*c", b"aXXbYY"));
    }

    #[test]
    fn a_route_tenant_follows_the_tenant_rules() {
        for bad in ["", "a b", "a.b"] {
            let spec = RouteSpec {
                domain: None,
                tenant: Some(bad.into()),
                pool: "p".into(),
            };
            let Err(err) = RoutingTable::new(&[spec], None) else {
                panic!("{bad:?} was taken");
            };
            assert!(
                err.to_string().contains("routes[0].tenant"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn first_match_wins_then_the_default() {
        let specs = vec![
            RouteSpec {
                domain: Some(".shop.test".into()),
                tenant: Some("acme".into()),
                pool: "acme-shop".into(),
            },
            RouteSpec {
                domain: Some(".shop.test".into()),
                tenant: None,
                pool: "shop".into(),
            },
            RouteSpec {
                domain: None,
                tenant: Some("acme".into()),
                pool: "acme".into(),
            },
        ];
        let t = RoutingTable::new(&specs, Some("datacenter".into())).expect("table");
        assert_eq!(t.route(Some("www.shop.test"), "acme"), Some("acme-shop"));
        assert_eq!(t.route(Some("www.shop.test"), "other"), Some("shop"));
        assert_eq!(t.route(Some("news.test"), "acme"), Some("acme"));
        assert_eq!(t.route(None, "acme"), Some("acme"));
        assert_eq!(t.route(Some("news.test"), "other"), Some("datacenter"));
        assert_eq!(
            RoutingTable::new(&specs, None)
                .expect("t")
                .route(Some("x.test"), "b"),
            None
        );
        let bad = RoutingTable::new(
            &[RouteSpec {
                domain: None,
                tenant: None,
                pool: "p".into(),
            }],
            None,
        );
        assert!(bad
            .expect_err("catch-all rule")
            .to_string()
            .contains("routes[0]"));
    }
}
