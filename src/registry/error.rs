//! `RegistryError`: every way a registry operation can fail, with messages that read
//! "failed to …" and name the registry and the repository or reference concerned, the
//! registry's own error code kept as it answered, and `is_transient()` deciding retries.

use std::time::Duration;

use crate::model::Digest;

/// `Result` with [`RegistryError`]: the registry modules' own signatures.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status; `code` is its own error code
    /// (MANIFEST_UNKNOWN, DENIED, TOOMANYREQUESTS, …) or the HTTP reason when it gave none.
    #[error("failed to {what} on `{registry}`: {status} {code}: {message}")]
    Api {
        registry: String,
        what: String,
        status: u16,
        code: String,
        message: String,
        /// The `Retry-After` the registry asked for, if any.
        retry_after: Option<Duration>,
    },
    /// The registry refused the request for lack of (valid) credentials.
    #[error("failed to {what} on `{registry}`: unauthorized{}. {hint}", code_suffix(.code))]
    Unauthorized {
        registry: String,
        what: String,
        code: Option<String>,
        hint: String,
    },
    /// Credentials could not be obtained (missing environment variable, failing helper, …).
    #[error("failed to get credentials for `{registry}`: {message}")]
    Credentials { registry: String, message: String },
    /// Connection, TLS, reset or body errors; the message names the cause (connection
    /// refused, DNS, timed out, reset) rather than reqwest's bare "error sending request".
    #[error("failed to {what} on `{registry}`: {}", transport_cause(.source))]
    Transport {
        registry: String,
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// No progress within the stall timeout (`stall_timeout`).
    #[error(
        "failed to {what} on `{registry}`: timed out: no progress for {} (stall_timeout)",
        humantime::format_duration(*.after)
    )]
    Timeout {
        registry: String,
        what: String,
        after: Duration,
    },
    /// The overall deadline of one operation (`timeout`, retries included) passed.
    #[error(
        "failed to {what} on `{registry}`: timed out: gave up after {} (timeout){}",
        humantime::format_duration(*.after),
        last_suffix(.last)
    )]
    Deadline {
        registry: String,
        what: String,
        after: Duration,
        /// The last attempt's error, if one failed before the deadline.
        last: Option<String>,
    },
    /// A body ended before its announced length.
    #[error("failed to {what} on `{registry}`: body ended after {received} of {expected} bytes")]
    Truncated {
        registry: String,
        what: String,
        expected: u64,
        received: u64,
    },
    /// Content did not hash to the digest it was asked for or announced with.
    #[error("failed to verify {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    /// Content whose length is not the size its descriptor gives (a lying manifest, or a
    /// registry holding other bytes): refused like a digest mismatch.
    #[error(
        "failed to verify {what}: its descriptor says {expected} bytes, the content has {actual}"
    )]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// A malformed answer, an invalid argument or an unusable configuration.
    #[error("failed to {what} on `{registry}`: {message}")]
    Invalid {
        registry: String,
        what: String,
        message: String,
    },
    /// Content that is missing or not what a plan expected (reported by apply and the gate).
    #[error("{what}: {message}")]
    Content { what: String, message: String },
    /// Local file system errors (layout backend, temp files).
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Drop the query of the URL a transport error carries: upload locations and storage
/// redirects hold signed state (presigned URLs are credentials) that must not be printed.
pub(crate) fn redact_url(mut e: reqwest::Error) -> reqwest::Error {
    if let Some(u) = e.url_mut() {
        u.set_query(None);
    }
    e
}

fn last_suffix(last: &Option<String>) -> String {
    match last {
        Some(l) => format!("; last attempt: {l}"),
        None => String::new(),
    }
}

/// What went wrong in a transport error, named: "connection refused", "DNS lookup
/// failed", "timed out", "connection reset", … followed by the innermost cause. reqwest's
/// own message ("error sending request for url (…)") names neither cause nor fix.
pub fn transport_cause(e: &reqwest::Error) -> String {
    let (label, detail) = transport_parts(e);
    format!("{label} ({detail})")
}

/// [`transport_cause`] in two parts: the named cause and the innermost error's message.
fn transport_parts(e: &reqwest::Error) -> (&'static str, String) {
    let mut innermost: &dyn std::error::Error = e;
    let mut io_kind = None;
    let mut chain = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(x) = cur {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        chain.push(x.to_string());
        innermost = x;
        cur = x.source();
    }
    let inner = innermost.to_string();
    let lower = chain.join(" | ").to_ascii_lowercase();
    use std::io::ErrorKind as K;
    let label = match io_kind {
        Some(K::ConnectionRefused) => "connection refused",
        Some(K::ConnectionReset) => "connection reset",
        Some(K::ConnectionAborted) => "connection aborted",
        Some(K::TimedOut) => "timed out",
        Some(K::UnexpectedEof) => "connection closed early",
        _ if lower.contains("dns error") || lower.contains("failed to lookup address") => {
            "DNS lookup failed"
        }
        _ if e.is_timeout() => "timed out",
        _ if lower.contains("certificate") || lower.contains("tls") => "TLS failed",
        _ if e.is_connect() => "cannot connect",
        _ if e.is_body() || e.is_decode() => "the answer broke off",
        _ => "transport error",
    };
    if inner == e.to_string() {
        // No deeper cause: reqwest's message, without its URL (it may hold signed state).
        let top = inner
            .split(" for url (")
            .next()
            .unwrap_or(&inner)
            .to_string();
        (label, top)
    } else {
        (label, inner)
    }
}

fn code_suffix(code: &Option<String>) -> String {
    match code {
        Some(c) => format!(" ({c})"),
        None => String::new(),
    }
}

impl RegistryError {
    /// Whether retrying the same request later may succeed: throttling (429,
    /// TOOMANYREQUESTS), 408, gateway errors (502, 503, 504), connection failures,
    /// timeouts, resets and truncated bodies. A 500 is not: Distribution answers 500 to
    /// some malformed requests, deterministically.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Api { status, code, .. } => {
                matches!(status, 408 | 429 | 502 | 503 | 504)
                    // 413 on a monolithic upload switches the registry to chunked uploads:
                    // the next attempt takes the other path.
                    || *status == 413
                    || code == "TOOMANYREQUESTS"
            }
            RegistryError::Transport { source, .. } => {
                !(source.is_builder() || source.is_redirect() || source.is_status())
            }
            RegistryError::Timeout { .. } | RegistryError::Truncated { .. } => true,
            // The operation's whole budget is spent: retrying elsewhere would overrun it.
            RegistryError::Deadline { .. }
            | RegistryError::Unauthorized { .. }
            | RegistryError::Credentials { .. }
            | RegistryError::DigestMismatch { .. }
            | RegistryError::SizeMismatch { .. }
            | RegistryError::Invalid { .. }
            | RegistryError::Content { .. }
            | RegistryError::Io { .. } => false,
        }
    }

    /// The delay the registry asked for before a retry.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The registry's error code (`MANIFEST_UNKNOWN`, `DENIED`, …), when it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            RegistryError::Api { code, .. } => Some(code),
            RegistryError::Unauthorized { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The registry the error happened on, when it names one.
    pub fn registry(&self) -> Option<&str> {
        match self {
            RegistryError::Api { registry, .. }
            | RegistryError::Unauthorized { registry, .. }
            | RegistryError::Credentials { registry, .. }
            | RegistryError::Transport { registry, .. }
            | RegistryError::Timeout { registry, .. }
            | RegistryError::Deadline { registry, .. }
            | RegistryError::Truncated { registry, .. }
            | RegistryError::Invalid { registry, .. } => Some(registry),
            RegistryError::DigestMismatch { .. }
            | RegistryError::SizeMismatch { .. }
            | RegistryError::Content { .. }
            | RegistryError::Io { .. } => None,
        }
    }

    /// What went wrong on the registry as a whole, the same for every request it fails
    /// (unreachable, timed out, throttled, failing, refusing credentials), as opposed to
    /// something about one image (a missing tag, a denied repository, bad content).
    /// `None` for the latter.
    pub fn registry_cause(&self) -> Option<String> {
        Some(match self {
            RegistryError::Transport { source, .. } => {
                format!("unreachable: {}", transport_cause(source))
            }
            RegistryError::Timeout { after, .. } => format!(
                "unreachable: timed out: no progress for {} (stall_timeout)",
                humantime::format_duration(*after)
            ),
            RegistryError::Deadline { after, .. } => format!(
                "unreachable: timed out: gave up after {} (timeout)",
                humantime::format_duration(*after)
            ),
            RegistryError::Api { status, code, .. } if *status == 429 || *status >= 500 => {
                format!("answers {status} {code}")
            }
            RegistryError::Api { code, .. } if code == "TOOMANYREQUESTS" => {
                format!("answers {code}")
            }
            RegistryError::Unauthorized { code, hint, .. } => {
                format!("unauthorized{}. {hint}", code_suffix(code))
            }
            RegistryError::Credentials { message, .. } => {
                format!("has no usable credentials: {message}")
            }
            _ => return None,
        })
    }

    /// What a retry of this error is counted under in the registry's retry summary:
    /// the status and the registry's code (`429 TOOMANYREQUESTS`), or the transport cause
    /// (`connection reset`, `timed out`).
    pub fn retry_cause(&self) -> String {
        match self {
            RegistryError::Api { status, code, .. } => format!("{status} {code}"),
            RegistryError::Transport { source, .. } => transport_parts(source).0.to_string(),
            RegistryError::Timeout { .. } => "timed out (stall_timeout)".to_string(),
            RegistryError::Truncated { .. } => "body ended early".to_string(),
            RegistryError::Unauthorized { .. } => "unauthorized".to_string(),
            RegistryError::Deadline { .. } => "timed out (timeout)".to_string(),
            RegistryError::Credentials { .. } => "no credentials".to_string(),
            RegistryError::DigestMismatch { .. } => "digest mismatch".to_string(),
            RegistryError::SizeMismatch { .. } => "size mismatch".to_string(),
            RegistryError::Invalid { .. } => "invalid answer".to_string(),
            RegistryError::Content { .. } => "content".to_string(),
            RegistryError::Io { .. } => "i/o error".to_string(),
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Api { status, .. } => Some(*status),
            RegistryError::Unauthorized { .. } => Some(401),
            _ => None,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> RegistryError {
        RegistryError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn invalid(
        registry: &str,
        what: impl Into<String>,
        message: impl Into<String>,
    ) -> RegistryError {
        RegistryError::Invalid {
            registry: registry.to_string(),
            what: what.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> RegistryError {
        RegistryError::Api {
            registry: "r".into(),
            what: "get manifest x:1".into(),
            status,
            code: code.into(),
            message: "m".into(),
            retry_after: None,
        }
    }

    #[test]
    fn transient_classification() {
        for s in [408, 429, 502, 503, 504] {
            assert!(api(s, "X").is_transient(), "{s}");
        }
        for s in [400, 401, 403, 404, 405, 409, 500] {
            assert!(!api(s, "X").is_transient(), "{s}");
        }
        assert!(api(400, "TOOMANYREQUESTS").is_transient());
        let d = Digest::of(b"a");
        assert!(
            !RegistryError::DigestMismatch {
                what: "blob".into(),
                expected: d.clone(),
                actual: d
            }
            .is_transient()
        );
        assert!(
            RegistryError::Truncated {
                registry: "r".into(),
                what: "w".into(),
                expected: 2,
                received: 1
            }
            .is_transient()
        );
    }

    #[test]
    fn messages_name_registry_and_code() {
        let e = api(404, "MANIFEST_UNKNOWN");
        assert_eq!(
            e.to_string(),
            "failed to get manifest x:1 on `r`: 404 MANIFEST_UNKNOWN: m"
        );
        let u = RegistryError::Unauthorized {
            registry: "ghcr.io".into(),
            what: "pull".into(),
            code: Some("UNAUTHORIZED".into()),
            hint: "run `docker login ghcr.io`".into(),
        };
        assert!(u.to_string().contains("unauthorized (UNAUTHORIZED). run"));
    }
}
