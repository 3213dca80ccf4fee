//! Image references as docker resolves them: `[host/]path[:tag][@digest]`.
//!
//! A first component with a `.` or `:`, or `localhost`, is a host; otherwise the host is
//! `docker.io`, and a one-component docker.io path gets `library/` in front.
//! `index.docker.io` and `registry-1.docker.io` are spelled `docker.io`.

use std::fmt;
use std::str::FromStr;

use super::digest::Digest;

pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    pub host: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{reference}`: {problem}")]
pub struct ReferenceError {
    pub reference: String,
    pub problem: String,
}

impl Reference {
    /// `host/path`, without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.host, self.path)
    }

    /// The tag if there is one, else the digest: what to ask a registry for.
    pub fn tag_or_digest(&self) -> String {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => d.to_string(),
            (Some(t), None) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

fn err(reference: &str, problem: impl Into<String>) -> ReferenceError {
    ReferenceError {
        reference: reference.to_string(),
        problem: problem.into(),
    }
}

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

/// A repository path (components joined by `/`).
pub fn valid_path(p: &str) -> bool {
    !p.is_empty() && p.len() <= 255 && p.split('/').all(valid_path_component)
}

fn normalise_host(h: &str) -> String {
    match h {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => h.to_string(),
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(err(s, "it is empty"));
        }
        if s.contains("://") {
            return Err(err(
                s,
                "write it without a scheme, e.g. `ghcr.io/org/image:tag`",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(d.parse::<Digest>().map_err(|e| err(s, e.to_string()))?),
            ),
            None => (s, None),
        };
        let (host, remainder) = match rest.split_once('/') {
            Some((first, after))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (normalise_host(first), after)
            }
            _ => (DOCKER_HUB.to_string(), rest),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = remainder.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (path, tag) = match remainder[last_slash..].rfind(':') {
            Some(i) => (
                &remainder[..last_slash + i],
                Some(remainder[last_slash + i + 1..].to_string()),
            ),
            None => (remainder, None),
        };
        let mut path = path.to_string();
        if host == DOCKER_HUB && !path.contains('/') {
            path = format!("library/{path}");
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err(s, "repository names must be lowercase"));
        }
        if !valid_path(&path) {
            return Err(err(
                s,
                format!(
                    "`{path}` is not a valid repository path (lowercase letters, digits and single `.`, `_`, `__` or `-` between them, components joined by `/`)"
                ),
            ));
        }
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(err(
                s,
                format!(
                    "`{t}` is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128; not starting with `.` or `-`)"
                ),
            ));
        }
        Ok(Reference {
            host,
            path,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn docker_hub_short_names() {
        let b = r("busybox:1.33.0");
        assert_eq!(b.host, "docker.io");
        assert_eq!(b.path, "library/busybox");
        assert_eq!(b.tag.as_deref(), Some("1.33.0"));
        assert_eq!(r("docker.io/busybox").path, "library/busybox");
        assert_eq!(
            r("index.docker.io/weaveworks/kured:1.6.1").host,
            "docker.io"
        );
        assert_eq!(r("weaveworks/kured:1.6.1").path, "weaveworks/kured");
    }

    #[test]
    fn hosts_and_ports() {
        let g = r("ghcr.io/fluxcd/kustomize-controller:v0.6.3");
        assert_eq!(g.host, "ghcr.io");
        assert_eq!(g.path, "fluxcd/kustomize-controller");
        let l = r("127.0.0.1:5000/a/b:1");
        assert_eq!(l.host, "127.0.0.1:5000");
        assert_eq!(l.path, "a/b");
        let lh = r("localhost/x");
        assert_eq!(lh.host, "localhost");
        assert_eq!(lh.tag, None);
        let p = r("localhost:5000/x");
        assert_eq!(p.host, "localhost:5000");
        assert_eq!(p.tag, None);
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let x = r(&format!("ghcr.io/a/b:1@{d}"));
        assert_eq!(x.tag.as_deref(), Some("1"));
        assert_eq!(x.digest.unwrap().to_string(), d);
        assert_eq!(
            r(&format!("ghcr.io/a/b:1@{d}")).to_string(),
            format!("ghcr.io/a/b:1@{d}")
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = "ghcr.io/Flux/x:1".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("lowercase"), "{e}");
        let e = "ghcr.io/a/b:-x".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("not a valid tag"), "{e}");
        let e = "ghcr.io/a//b".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("repository path"), "{e}");
        let e = "ghcr.io/a/b@sha256:zz".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("64 lowercase hex"), "{e}");
        let e = "https://ghcr.io/a".parse::<Reference>().unwrap_err();
        assert!(e.to_string().contains("scheme"), "{e}");
    }

    #[test]
    fn path_components() {
        assert!(valid_path_component("a__b"));
        assert!(valid_path_component("a--b"));
        assert!(!valid_path_component("a___b"));
        assert!(!valid_path_component("a..b"));
        assert!(!valid_path_component("-a"));
    }
}
