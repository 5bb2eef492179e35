//! What differs between two profiles, field by field (`mummer profile diff A B`), and
//! the traits that give a headless browser away in a learned profile. Pure: profiles
//! in, a list out.
//!
//! Profiles are compared as their JSON: a field is a path such as
//! `http2.settings[2]` or `requests.navigation.headers[4]`, and a difference names the
//! path with both values. A template's header list is compared by name (its order,
//! when the headers both have moved, as one entry; then each value that changed and each
//! header only one side sends); other lists position by position, with the extra
//! positions of the longer list named on their own.

use serde_json::Value;

use super::Profile;

/// One field that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDiff {
    /// Where (`tls.cipher_suites[3]`).
    pub path: String,
    /// The first profile's value (`None`: it has no such field).
    pub left: Option<Value>,
    /// The second profile's value.
    pub right: Option<Value>,
}

impl std::fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<Value>| {
            v.as_ref()
                .map_or_else(|| "(none)".to_string(), |v| v.to_string())
        };
        write!(
            f,
            "{}: {} -> {}",
            self.path,
            show(&self.left),
            show(&self.right)
        )
    }
}

/// Fields that only say where a profile comes from, left out of a diff unless asked:
/// they differ between any two files without changing a byte on the wire.
pub const INFORMATIONAL: &[&str] = &["name", "description", "sources", "browser"];

/// Every field in which `a` and `b` differ, in the profiles' field order;
/// [`INFORMATIONAL`] fields only with `informational`.
pub fn diff(a: &Profile, b: &Profile, informational: bool) -> Vec<FieldDiff> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(a), serde_json::to_value(b)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    if !informational {
        out.retain(|d| {
            !INFORMATIONAL.iter().any(|f| {
                d.path == *f
                    || d.path.starts_with(&format!("{f}["))
                    || d.path.starts_with(&format!("{f}."))
            }) && !d.path.ends_with(".source")
        });
    }
    out
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<FieldDiff>) {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (key, va) in x {
                match y.get(key) {
                    Some(vb) => walk(&at(key), va, vb, out),
                    None => out.push(FieldDiff {
                        path: at(key),
                        left: Some(va.clone()),
                        right: None,
                    }),
                }
            }
            for (key, vb) in y {
                if !x.contains_key(key) {
                    out.push(FieldDiff {
                        path: at(key),
                        left: None,
                        right: Some(vb.clone()),
                    });
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if path.ends_with(".headers") => {
            headers(path, x, y, out);
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let here = format!("{path}[{i}]");
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => walk(&here, va, vb, out),
                    (va, vb) => out.push(FieldDiff {
                        path: here,
                        left: va.cloned(),
                        right: vb.cloned(),
                    }),
                }
            }
        }
        _ if a != b => out.push(FieldDiff {
            path: path.to_string(),
            left: Some(a.clone()),
            right: Some(b.clone()),
        }),
        _ => {}
    }
}

/// A template's header list, by name: the order when it moved (one entry with both
/// name lists), each value that changed, and each header only one side has.
fn headers(path: &str, x: &[Value], y: &[Value], out: &mut Vec<FieldDiff>) {
    let pairs = |list: &[Value]| -> Vec<(String, Value)> {
        list.iter()
            .filter_map(|h| {
                let name = h.get(0)?.as_str()?.to_string();
                Some((name, h.get(1).cloned().unwrap_or(Value::Null)))
            })
            .collect()
    };
    let (a, b) = (pairs(x), pairs(y));
    let names = |p: &[(String, Value)]| -> Vec<Value> {
        p.iter().map(|(n, _)| Value::String(n.clone())).collect()
    };
    let common = |p: &[(String, Value)], other: &[(String, Value)]| -> Vec<String> {
        p.iter()
            .filter(|(n, _)| other.iter().any(|(m, _)| m == n))
            .map(|(n, _)| n.clone())
            .collect()
    };
    if common(&a, &b) != common(&b, &a) {
        out.push(FieldDiff {
            path: format!("{path} (order)"),
            left: Some(Value::Array(names(&a))),
            right: Some(Value::Array(names(&b))),
        });
    }
    for (name, va) in &a {
        match b.iter().find(|(n, _)| n == name) {
            Some((_, vb)) if vb != va => out.push(FieldDiff {
                path: format!("{path}.{name}"),
                left: Some(va.clone()),
                right: Some(vb.clone()),
            }),
            Some(_) => {}
            None => out.push(FieldDiff {
                path: format!("{path}.{name}"),
                left: Some(va.clone()),
                right: None,
            }),
        }
    }
    for (name, vb) in &b {
        if !a.iter().any(|(n, _)| n == name) {
            out.push(FieldDiff {
                path: format!("{path}.{name}"),
                left: None,
                right: Some(vb.clone()),
            });
        }
    }
}

/// What in `profile` only a headless browser sends: `HeadlessChrome` in the user agent
/// or in a header value (the `sec-ch-ua` brands). A profile learned from headless
/// Chromium carries them, and a server that looks for them blocks it.
pub fn headless_traits(profile: &Profile) -> Vec<String> {
    let mut found = Vec::new();
    if profile.user_agent.contains("HeadlessChrome") {
        found.push("user_agent carries HeadlessChrome".to_string());
    }
    for (kind, template) in &profile.requests {
        for (name, value) in &template.headers {
            if value
                .as_deref()
                .is_some_and(|v| v.contains("HeadlessChrome"))
            {
                found.push(format!(
                    "requests.{}: {name} carries HeadlessChrome",
                    kind.as_str()
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_equals_itself_and_chrome_differs_from_chromium_in_brands_only() {
        let chromium = Profile::named("chromium-156-linux").expect("built-in");
        assert!(diff(&chromium, &chromium, true).is_empty());
        let chrome = Profile::named("chrome-156-linux").expect("built-in");
        let d = diff(&chromium, &chrome, false);
        assert!(!d.is_empty());
        assert!(
            d.iter().all(|f| f.path.ends_with(".headers.sec-ch-ua")),
            "only the sec-ch-ua values: {d:?}"
        );
        assert!(d.iter().all(|f| f.to_string().contains("Google Chrome")));
        assert!(
            diff(&chromium, &chrome, true)
                .iter()
                .any(|f| f.path == "name"),
            "names differ when asked"
        );
    }

    #[test]
    fn moved_added_and_removed_fields_are_named() {
        let a = Profile::named("chromium-156-linux").expect("built-in");
        let mut b = a.clone();
        b.http2.settings.pop();
        b.http2.initial_stream_id = 3;
        b.tls.cipher_suites.swap(0, 1);
        let d = diff(&a, &b, false);
        let paths: Vec<&str> = d.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"http2.settings[3]"), "{paths:?}");
        assert!(paths.contains(&"http2.initial_stream_id"));
        assert!(paths.contains(&"tls.cipher_suites[0]") && paths.contains(&"tls.cipher_suites[1]"));
        let removed = d
            .iter()
            .find(|f| f.path == "http2.settings[3]")
            .expect("named");
        assert!(removed.left.is_some() && removed.right.is_none());
    }

    #[test]
    fn header_lists_are_compared_by_name() {
        let a = Profile::named("chromium-156-linux").expect("built-in");
        let mut b = a.clone();
        let nav = crate::profile::RequestKind::Navigation;
        if let Some(t) = b.requests.get_mut(&nav) {
            t.headers.swap(0, 1);
            t.headers.push(("x-new".into(), Some("1".into())));
            t.headers.retain(|(n, _)| n != "upgrade-insecure-requests");
        }
        let d = diff(&a, &b, false);
        let paths: Vec<&str> = d.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "requests.navigation.headers (order)",
                "requests.navigation.headers.upgrade-insecure-requests",
                "requests.navigation.headers.x-new"
            ]
        );
    }

    #[test]
    fn headless_traits_are_found() {
        let mut p = Profile::named("chromium-156-linux").expect("built-in");
        assert!(headless_traits(&p).is_empty());
        p.user_agent = p.user_agent.replace("Chrome/", "HeadlessChrome/");
        if let Some(t) = p.requests.get_mut(&crate::profile::RequestKind::Navigation) {
            for (name, value) in &mut t.headers {
                if name == "user-agent" || name == "sec-ch-ua" {
                    *value = value
                        .as_ref()
                        .map(|v| v.replace("Chromium", "HeadlessChrome"));
                }
            }
        }
        let found = headless_traits(&p);
        assert!(
            found.iter().any(|f| f.starts_with("user_agent")),
            "{found:?}"
        );
        assert!(found.iter().any(|f| f.contains("sec-ch-ua")), "{found:?}");
    }
}
