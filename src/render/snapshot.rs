//! Stable snapshots: rendered output with this build's version replaced by `[version]`, so
//! snapshots (`snapshots/`, insta) do not change with each release. The one place both the
//! unit snapshots (src/render/tests.rs) and the integration scenarios redact it.

/// `text` with `"airlock_version": "<this version>"` written as `"airlock_version": "[version]"`.
pub fn redact_version(text: &str) -> String {
    text.replace(
        &format!("\"airlock_version\": \"{}\"", env!("CARGO_PKG_VERSION")),
        "\"airlock_version\": \"[version]\"",
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_this_version_is_redacted() {
        let this = format!("{{\"airlock_version\": \"{}\"}}", env!("CARGO_PKG_VERSION"));
        assert_eq!(
            super::redact_version(&this),
            "{\"airlock_version\": \"[version]\"}"
        );
        let other = "{\"airlock_version\": \"0.0.0-other\"}";
        assert_eq!(super::redact_version(other), other);
    }
}
