//! `WWW-Authenticate` challenges (Bearer with realm, service and space-separated scopes;
//! Basic) and token scopes (`type:name:actions`): the ones airlock asks for and their union.

use std::collections::{BTreeMap, BTreeSet};

/// One challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scopes: Vec<String>,
        /// `insufficient_scope`, `invalid_token`, …
        error: Option<String>,
    },
    Basic,
}

/// Parse every challenge of a `WWW-Authenticate` value (unknown schemes are skipped).
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let b = header.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let read_token = |i: &mut usize| -> String {
        let start = *i;
        while *i < b.len() && !matches!(b[*i], b' ' | b'\t' | b',' | b'=') {
            *i += 1;
        }
        header[start..*i].to_string()
    };
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let scheme = read_token(&mut i);
        if scheme.is_empty() {
            // A stray '=': skip it.
            i += 1;
            continue;
        }
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        loop {
            skip_ws(&mut i);
            let at = i;
            let name = read_token(&mut i);
            skip_ws(&mut i);
            if name.is_empty() || i >= b.len() || b[i] != b'=' {
                i = at;
                break;
            }
            i += 1;
            skip_ws(&mut i);
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = header[i..].chars().next().unwrap_or('\u{fffd}');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1; // closing quote
                v
            } else {
                let start = i;
                while i < b.len() && !matches!(b[i], b',' | b' ' | b'\t') {
                    i += 1;
                }
                header[start..i].to_string()
            };
            params.insert(name.to_ascii_lowercase(), value);
            skip_ws(&mut i);
            if i < b.len() && b[i] == b',' {
                i += 1;
            }
        }
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => {
                if let Some(realm) = params.remove("realm") {
                    out.push(Challenge::Bearer {
                        realm,
                        service: params.remove("service"),
                        scopes: params
                            .remove("scope")
                            .map(|s| s.split_whitespace().map(str::to_string).collect())
                            .unwrap_or_default(),
                        error: params.remove("error"),
                    });
                }
            }
            "basic" => out.push(Challenge::Basic),
            _ => {}
        }
    }
    out
}

/// Merge scopes (`type:name:actions`), joining the actions of the same resource.
/// The result is sorted and deterministic.
pub fn merge_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut by_resource: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut opaque = BTreeSet::new();
    for s in scopes {
        let parsed = s.split_once(':').and_then(|(t, rest)| {
            rest.rsplit_once(':')
                .map(|(name, actions)| (t.to_string(), name.to_string(), actions))
        });
        match parsed {
            Some((t, name, actions)) => {
                let set = by_resource.entry((t, name)).or_default();
                set.extend(
                    actions
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(str::to_string),
                );
            }
            None => {
                opaque.insert(s.to_string());
            }
        }
    }
    let mut out: Vec<String> = by_resource
        .into_iter()
        .map(|((t, name), actions)| {
            let mut actions: Vec<String> = actions.into_iter().collect();
            // Conventional order: pull before push, then the rest.
            actions.sort_by_key(|a| match a.as_str() {
                "pull" => (0, a.clone()),
                "push" => (1, a.clone()),
                _ => (2, a.clone()),
            });
            format!("{t}:{name}:{}", actions.join(","))
        })
        .collect();
    out.extend(opaque);
    out.sort();
    out
}

/// `repository:<repo>:pull`.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// `repository:<repo>:pull,push`.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// `repository:<repo>:delete` plus pull (Distribution asks for `*` on delete; ACR for delete).
pub fn delete_scope(repo: &str) -> String {
    format!("repository:{repo}:delete,pull,push")
}

pub const CATALOG_SCOPE: &str = "registry:catalog:*";
