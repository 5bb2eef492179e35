//! What a tenant is, and every place its name separates one tenant's state from
//! another's: the name rules, the store key a session is saved under, and the TLS-ticket
//! partition its handshakes resume from.
//!
//! Every session belongs to exactly one tenant, fixed when it is built
//! ([`crate::SessionBuilder::tenant`], default [`DEFAULT_TENANT`]) and carried in its
//! snapshot. Cookie jars and ticket caches are per session already; what tenants share
//! is the store and a ticket backend (Redis), so the keys there carry the tenant:
//!
//! - store key: the bare session id for the default tenant (so stores written before
//!   tenants existed still load), `TENANT.ID` for any other; ids never contain a `.`
//!   (they are UUIDs), so a key names its tenant without ambiguity;
//! - ticket partition: `IDENTIFIER|PROFILE|tls` for the default tenant and
//!   `TENANT/IDENTIFIER|PROFILE|tls` for others, so two tenants that pick the same
//!   identifier never resume each other's TLS sessions.

use crate::error::{Error, Result};

/// The tenant of sessions created without one (the engine's default tenant label, so
/// its request counters use the keys built at compile time).
pub const DEFAULT_TENANT: &str = mummer_actors::core::DEFAULT_TENANT;

/// Checks a tenant name: 1 to 64 characters from `[A-Za-z0-9_-]` (it becomes part of
/// store keys, file names, Redis keys and metric labels).
///
/// # Errors
///
/// [`Error::is_invalid_input`] naming the rule.
pub fn check_tenant(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "invalid tenant `{name}`: use 1 to 64 characters from A-Z, a-z, 0-9, `_`, `-`"
        )))
    }
}

/// The key a session of `tenant` is stored under.
pub fn store_key(tenant: &str, id: &str) -> String {
    if tenant == DEFAULT_TENANT {
        id.to_owned()
    } else {
        format!("{tenant}.{id}")
    }
}

/// The tenant and session id a store key stands for.
pub fn split_store_key(key: &str) -> (&str, &str) {
    match key.split_once('.') {
        Some((tenant, id)) => (tenant, id),
        None => (DEFAULT_TENANT, key),
    }
}

/// The ids of `tenant`'s sessions among a store's keys.
pub fn ids_of(tenant: &str, keys: Vec<String>) -> Vec<String> {
    keys.iter()
        .filter_map(|k| match split_store_key(k) {
            (t, id) if t == tenant => Some(id.to_owned()),
            _ => None,
        })
        .collect()
}

/// The TLS-ticket partition of a session of `tenant` with `identifier` and `profile`.
/// The identifier and profile name are caller-chosen, so `%`, `/` and `|` in them are
/// percent-escaped: a default-tenant identifier `acme/alice` must not make tenant
/// `acme`'s `alice` partition, nor an identifier with `|` another profile's.
pub fn ticket_partition(tenant: &str, identifier: &str, profile: &str) -> String {
    let (identifier, profile) = (escape(identifier), escape(profile));
    if tenant == DEFAULT_TENANT {
        format!("{identifier}|{profile}|tls")
    } else {
        format!("{tenant}/{identifier}|{profile}|tls")
    }
}

/// `s` with the partition's separators (and `%` itself) percent-escaped; unchanged,
/// and not copied, when it has none (so existing partitions keep their keys).
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['%', '/', '|']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 6);
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '|' => out.push_str("%7C"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_reach_other_keys_are_refused() {
        for good in ["default", "acme", "team_7-eu"] {
            assert!(check_tenant(good).is_ok(), "{good}");
        }
        for bad in ["", "a.b", "a/b", "a*", "a b", &"x".repeat(65)] {
            let e = check_tenant(bad).unwrap_err();
            assert!(e.is_invalid_input(), "{bad}");
            assert!(e.to_string().contains("invalid tenant"), "{e}");
        }
    }

    #[test]
    fn store_keys_name_their_tenant_and_the_default_keeps_bare_ids() {
        let id = "0b1c6a34-5d59-4c9e-9a3e-6f1f7d1f2a10";
        assert_eq!(store_key("default", id), id);
        assert_eq!(store_key("acme", id), format!("acme.{id}"));
        assert_eq!(split_store_key(&store_key("acme", id)), ("acme", id));
        assert_eq!(split_store_key(id), ("default", id));
        let keys = vec![
            id.to_owned(),
            format!("acme.{id}"),
            "acme.other".to_owned(),
            format!("bolt.{id}"),
        ];
        assert_eq!(ids_of("acme", keys.clone()), vec![id, "other"]);
        assert_eq!(ids_of("default", keys.clone()), vec![id]);
        assert!(ids_of("nobody", keys).is_empty());
    }

    #[test]
    fn ticket_partitions_differ_per_tenant_for_one_identifier() {
        let a = ticket_partition("acme", "alice", "chrome-156");
        let b = ticket_partition("bolt", "alice", "chrome-156");
        assert_ne!(a, b);
        assert_eq!(
            ticket_partition("default", "alice", "chrome-156"),
            "alice|chrome-156|tls"
        );
    }

    #[test]
    fn an_identifier_cannot_spell_another_tenants_partition() {
        // Issue 16 defect 12 (b): concatenation made these equal.
        assert_ne!(
            ticket_partition("default", "acme/alice", "chrome-156"),
            ticket_partition("acme", "alice", "chrome-156")
        );
        assert_ne!(
            ticket_partition("default", "a|firefox", "chrome"),
            ticket_partition("default", "a", "firefox|chrome")
        );
        assert_ne!(
            ticket_partition("default", "a%2Fb", "p"),
            ticket_partition("default", "a/b", "p")
        );
    }
}
