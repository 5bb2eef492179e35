//! Proxy pools and tenant routing: which exit a session uses, for its whole life.
//!
//! - [`pool`]: one named pool, each proxy's health (benched after N failures for a
//!   cooldown) and the assignment strategies.
//! - [`routing`]: rules from target domain and tenant to a pool, first match wins.
//! - [`rotation`]: when a pool's sessions move to another exit by themselves.
//! - [`ProxyRouter`] (here): the pools and the table together, loaded from a TOML or
//!   JSON pools-and-routes file and changeable at runtime; it hands a new session its
//!   [`Assignment`] and hears back how requests through it went.
//!
//! ```toml
//! default_pool = "datacenter"
//!
//! [pools.datacenter]
//! proxies = ["http://127.0.0.2:3128", "http://127.0.0.3:3128"]
//! strategy = "round_robin"      # least_used, random, hash
//! ban_after = 3                 # consecutive failures that bench a proxy
//! cooldown_secs = 60
//!
//! [pools.datacenter.rotate]
//! on_quarantine = true
//! after_requests = 500
//!
//! [pools.residential]
//! proxies = ["socks5h://user:pass@127.0.0.4:1080"]
//! strategy = "hash"
//!
//! [[routes]]
//! domain = ".shop.test"         # shop.test and its subdomains
//! pool = "residential"
//!
//! [[routes]]
//! tenant = "acme"
//! pool = "residential"
//! ```

pub mod pool;
pub mod rotation;
pub mod routing;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use self::pool::{FailureOutcome, PoolSettings, ProxyHealth, ProxyPool, ProxySlot, Strategy};
pub use self::rotation::RotationPolicy;
pub use self::routing::{DomainPattern, RouteSpec, RoutingTable};
use crate::error::{Error, Result};
use crate::net::Proxy;

/// One pool as written in a pools-and-routes file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Proxy URLs.
    pub proxies: Vec<String>,
    /// Assignment strategy (default round-robin).
    #[serde(default)]
    pub strategy: Strategy,
    /// Consecutive failures that bench a proxy (default 3).
    #[serde(default = "default_ban_after")]
    pub ban_after: u32,
    /// Seconds a benched proxy sits out (default 60).
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
    /// When its sessions rotate by themselves (default: only off a failed proxy).
    #[serde(default)]
    pub rotate: RotationPolicy,
}

fn default_ban_after() -> u32 {
    3
}

fn default_cooldown() -> u64 {
    60
}

/// A pools-and-routes file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxiesFile {
    /// Pools by name.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolSpec>,
    /// Rules, first match wins.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// The pool for what no rule matches (none: such sessions go direct).
    #[serde(default)]
    pub default_pool: Option<String>,
}

impl ProxiesFile {
    /// Reads a `.toml` or `.json` file.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] naming the file and, for a malformed one, the field.
    pub fn load(path: &Path) -> Result<ProxiesFile> {
        let text = crate::files::read_capped_text(path, crate::files::MAX_CONFIG_FILE_BYTES)
            .map_err(|e| Error::io(format!("reading the proxies file {}", path.display()), e))?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        ProxiesFile::parse(&text, json)
            .map_err(|e| Error::invalid_input(format!("{}: {e}", path.display())))
    }

    /// Parses TOML (or JSON when `json`).
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] naming the field.
    pub fn parse(text: &str, json: bool) -> Result<ProxiesFile> {
        if json {
            let de = &mut serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de)
                .map_err(|e| Error::invalid_input(format!("at `{}`: {}", e.path(), e.inner())))
        } else {
            toml::from_str(text).map_err(|e| Error::invalid_input(e.to_string()))
        }
    }
}

/// A new session's exit: the pool and slot to report back to, and the proxy to use.
#[derive(Clone, Debug)]
pub struct Assignment {
    /// The pool's name.
    pub pool: String,
    /// The proxy's slot in it.
    pub slot: ProxySlot,
    /// The proxy.
    pub proxy: Proxy,
}

/// Pools and routes, shared by an engine's sessions.
#[derive(Clone, Default)]
pub struct ProxyRouter {
    pools: Arc<Mutex<BTreeMap<String, ProxyPool>>>,
    table: Arc<RwLock<RoutingTable>>,
}

impl std::fmt::Debug for ProxyRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyRouter").finish_non_exhaustive()
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> Error {
    Error::invalid_input("the proxy router's lock is poisoned (a thread panicked holding it)")
}

impl ProxyRouter {
    /// A router from a parsed file.
    ///
    /// # Errors
    ///
    /// A pool with a bad URL, a route with a bad pattern, or a route naming a pool the
    /// file does not define.
    pub fn from_file(file: &ProxiesFile) -> Result<ProxyRouter> {
        let pools = file
            .pools
            .iter()
            .map(|(name, spec)| {
                let settings = PoolSettings {
                    strategy: spec.strategy,
                    ban_after: spec.ban_after,
                    cooldown: Duration::from_secs(spec.cooldown_secs),
                    rotate: spec.rotate,
                };
                Ok((name.clone(), ProxyPool::new(name, &spec.proxies, settings)?))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        let router = ProxyRouter {
            pools: Arc::new(Mutex::new(pools)),
            table: Arc::default(),
        };
        router.set_routes(&file.routes, file.default_pool.clone())?;
        Ok(router)
    }

    /// Replaces the routing table (at runtime; sessions keep the proxy they have).
    ///
    /// # Errors
    ///
    /// A bad rule ([`Error::is_invalid_input`]), or a rule naming an unknown pool
    /// ([`Error::is_conflict`]); the old table stays.
    pub fn set_routes(&self, routes: &[RouteSpec], default_pool: Option<String>) -> Result<()> {
        let table = RoutingTable::new(routes, default_pool)?;
        {
            let pools = self.pools.lock().map_err(poisoned)?;
            if let Some(missing) = table.pools().find(|p| !pools.contains_key(*p)) {
                let known: Vec<&str> = pools.keys().map(String::as_str).collect();
                return Err(Error::conflict(format!(
                    "the routes name pool `{missing}`, which is not defined (pools: {})",
                    known.join(", ")
                )));
            }
        }
        *self.table.write().map_err(poisoned)? = table;
        Ok(())
    }

    /// The exit for a new session of `tenant` aimed at `domain`: `None` when no rule
    /// and no default applies (the session goes direct). `key` feeds the hash
    /// strategy (the tenant when absent); `avoid` is a proxy to move away from.
    ///
    /// # Errors
    ///
    /// [`Error::is_no_healthy_proxy`] naming the pool.
    pub fn assign(
        &self,
        domain: Option<&str>,
        tenant: &str,
        key: Option<&str>,
        avoid: Option<&Assignment>,
    ) -> Result<Option<Assignment>> {
        let pool_name = match self.table.read().map_err(poisoned)?.route(domain, tenant) {
            Some(p) => p.to_owned(),
            None => return Ok(None),
        };
        let mut pools = self.pools.lock().map_err(poisoned)?;
        let pool = pools
            .get_mut(&pool_name)
            .ok_or_else(|| Error::invalid_input(format!("pool `{pool_name}` is not defined")))?;
        let avoid = avoid.filter(|a| a.pool == pool_name).map(|a| a.slot);
        let slot = pool.assign(Instant::now(), Some(key.unwrap_or(tenant)), avoid)?;
        let proxy = pool
            .proxy(slot)
            .cloned()
            .ok_or_else(|| Error::invalid_input("a pool handed out a slot it does not have"))?;
        Ok(Some(Assignment {
            pool: pool_name,
            slot,
            proxy,
        }))
    }

    /// An exit in `pool` for a session moving away from `avoid` (rotation): another
    /// healthy proxy of the same pool when there is one.
    ///
    /// # Errors
    ///
    /// [`Error::is_no_healthy_proxy`], or an unknown pool.
    pub fn assign_in(&self, pool: &str, key: &str, avoid: Option<ProxySlot>) -> Result<Assignment> {
        let mut pools = self.pools.lock().map_err(poisoned)?;
        let p = pools
            .get_mut(pool)
            .ok_or_else(|| Error::invalid_input(format!("pool `{pool}` is not defined")))?;
        let slot = p.assign(Instant::now(), Some(key), avoid)?;
        let proxy = p
            .proxy(slot)
            .cloned()
            .ok_or_else(|| Error::invalid_input("a pool handed out a slot it does not have"))?;
        Ok(Assignment {
            pool: pool.to_owned(),
            slot,
            proxy,
        })
    }

    /// A session on `a` ended.
    pub fn release(&self, a: &Assignment) {
        if let Ok(mut pools) = self.pools.lock() {
            if let Some(p) = pools.get_mut(&a.pool) {
                p.release(a.slot);
            }
        }
    }

    /// A request through `a` got past the proxy.
    pub fn record_success(&self, a: &Assignment) {
        if let Ok(mut pools) = self.pools.lock() {
            if let Some(p) = pools.get_mut(&a.pool) {
                p.record_success(a.slot);
            }
        }
    }

    /// Connecting or authenticating through `a` failed.
    pub fn record_failure(&self, a: &Assignment, error: &str) -> FailureOutcome {
        self.pools
            .lock()
            .ok()
            .and_then(|mut pools| {
                pools
                    .get_mut(&a.pool)
                    .map(|p| p.record_failure(a.slot, Instant::now(), error))
            })
            .unwrap_or(FailureOutcome::Counted)
    }

    /// The rotation policy of `pool` (the default for an unknown one).
    pub fn rotation(&self, pool: &str) -> RotationPolicy {
        self.pools
            .lock()
            .ok()
            .and_then(|pools| pools.get(pool).map(ProxyPool::rotation))
            .unwrap_or_default()
    }

    /// Whether `a`'s proxy is usable now.
    pub fn is_healthy(&self, a: &Assignment) -> bool {
        self.pools.lock().ok().is_some_and(|pools| {
            pools
                .get(&a.pool)
                .is_some_and(|p| p.is_healthy(a.slot, Instant::now()))
        })
    }

    /// Health of every proxy, by pool.
    pub fn health(&self) -> BTreeMap<String, Vec<ProxyHealth>> {
        let now = Instant::now();
        self.pools
            .lock()
            .map(|pools| {
                pools
                    .iter()
                    .map(|(n, p)| (n.clone(), p.health(now)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
default_pool = "dc"

[pools.dc]
proxies = ["http://127.0.0.2:3128", "http://127.0.0.3:3128"]

[pools.res]
proxies = ["socks5h://user:pw@127.0.0.4:1080"]
strategy = "hash"
ban_after = 1
cooldown_secs = 5

[[routes]]
domain = ".shop.test"
pool = "res"
"#;

    #[test]
    fn a_toml_file_routes_sessions_to_pools() {
        let file = ProxiesFile::parse(FILE, false).expect("toml");
        let router = ProxyRouter::from_file(&file).expect("router");
        let shop = router
            .assign(Some("www.shop.test"), "default", None, None)
            .expect("ok")
            .expect("routed");
        assert_eq!(shop.pool, "res");
        let other = router
            .assign(Some("news.test"), "default", None, None)
            .expect("ok")
            .expect("default");
        assert_eq!(other.pool, "dc");
        assert_eq!(
            router.record_failure(&shop, "auth failed"),
            FailureOutcome::Benched
        );
        let e = router
            .assign(Some("shop.test"), "default", None, None)
            .expect_err("benched");
        assert!(
            e.is_no_healthy_proxy() && e.to_string().contains("`res`"),
            "{e}"
        );
        assert!(
            !format!("{:?}", router.health()).contains("pw@"),
            "no credentials in health"
        );

        // Runtime change; an unknown pool leaves the table as it was.
        assert!(router
            .set_routes(
                &[RouteSpec {
                    domain: Some("x.test".into()),
                    tenant: None,
                    pool: "nope".into()
                }],
                None
            )
            .is_err());
        assert_eq!(
            router
                .assign(Some("news.test"), "t", None, None)
                .expect("ok")
                .map(|a| a.pool),
            Some("dc".into())
        );
        router.set_routes(&[], None).expect("set");
        assert!(
            router
                .assign(Some("news.test"), "t", None, None)
                .expect("ok")
                .is_none(),
            "direct"
        );
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let e = ProxiesFile::parse("[pools.a]\nproxies = 3\n", false).expect_err("type");
        assert!(e.to_string().contains("proxies"), "{e}");
        let e = ProxiesFile::parse(
            r#"{"pools": {"a": {"proxies": ["http://x:1"], "stratgy": "hash"}}}"#,
            true,
        )
        .expect_err("unknown field");
        assert!(e.to_string().contains("stratgy"), "{e}");
        let file = ProxiesFile::parse("[[routes]]\ndomain = \"a.test\"\npool = \"ghost\"\n", false)
            .expect("parses");
        let e = ProxyRouter::from_file(&file).expect_err("unknown pool");
        assert!(e.to_string().contains("ghost"), "{e}");
    }
}
