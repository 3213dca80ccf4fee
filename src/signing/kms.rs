//! Keys held by a key management service: `azurekms://<vault>.vault.azure.net/<key>[/<version>]`
//! (cosign's key-reference convention for Azure Key Vault). Parsing is pure and strict; the
//! client that signs with such a key is a plug-in ([`Kms`], src/azure/keyvault.rs), so this
//! module names nothing in src/azure.

use std::fmt;

use futures_util::future::BoxFuture;

use super::{Signer, SigningError, Verifier};

pub const SCHEME: &str = "azurekms://";

/// Every Key Vault DNS suffix airlock knows (public, China, US Government clouds).
const SUFFIXES: [&str; 3] = [
    "vault.azure.net",
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
];

/// An Azure Key Vault key: `vault` is the host (`<name>.<suffix>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsKey {
    pub vault: String,
    pub name: String,
    pub version: Option<String>,
}

impl fmt::Display for KmsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.vault, self.name)?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A vault name: 3–24 of `[0-9a-zA-Z-]`, starting with a letter, ending with a letter or
/// digit, no `--` (Key Vault's naming rules).
fn vault_name_ok(n: &str) -> bool {
    (3..=24).contains(&n.len())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && n.starts_with(|c: char| c.is_ascii_alphabetic())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !n.contains("--")
}

/// A key name: 1–127 of `[0-9a-zA-Z-]`.
fn key_name_ok(n: &str) -> bool {
    (1..=127).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A key version: 32 hex digits, as Key Vault makes them.
fn version_ok(v: &str) -> bool {
    v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit())
}

impl KmsKey {
    /// Parse `azurekms://<vault>.<suffix>/<key>[/<version>]`, where `suffix` is the Key Vault
    /// DNS suffix of the configured cloud. Nothing else is accepted: no port, user, query,
    /// fragment or further path (the reference is a name, not a URL to follow).
    pub fn parse(s: &str, suffix: &str) -> Result<KmsKey, String> {
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| format!("expected {SCHEME}<vault>.{suffix}/<key>[/<version>]"))?;
        let mut parts = rest.split('/');
        let host = parts.next().unwrap_or_default().to_ascii_lowercase();
        let name = parts.next().unwrap_or_default();
        let version = parts.next();
        if parts.next().is_some() {
            return Err(format!(
                "too many path segments: expected {SCHEME}<vault>.{suffix}/<key>[/<version>]"
            ));
        }
        let Some(vault) = host.strip_suffix(suffix).and_then(|v| v.strip_suffix('.')) else {
            if let Some(other) = SUFFIXES.iter().find(|x| host.ends_with(&format!(".{x}"))) {
                return Err(format!(
                    "the vault host `{host}` is in another Azure cloud ({other}) than the \
                     configured one ({suffix}); set `cloud` on the Azure registry entries to match"
                ));
            }
            return Err(format!(
                "the vault host `{host}` is not `<vault>.{suffix}` (an Azure Key Vault of the \
                 configured cloud)"
            ));
        };
        if !vault_name_ok(vault) {
            return Err(format!(
                "`{vault}` is not a Key Vault name (3-24 letters, digits and single hyphens, \
                 starting with a letter)"
            ));
        }
        if !key_name_ok(name) {
            return Err(format!(
                "`{name}` is not a Key Vault key name (1-127 letters, digits and hyphens)"
            ));
        }
        if let Some(v) = version
            && !version_ok(v)
        {
            return Err(format!(
                "`{v}` is not a Key Vault key version (32 hex digits)"
            ));
        }
        Ok(KmsKey {
            vault: host.clone(),
            name: name.to_string(),
            version: version.map(str::to_ascii_lowercase),
        })
    }

    /// `keys/<key>[/<version>]` under the vault.
    pub fn path(&self) -> String {
        match &self.version {
            Some(v) => format!("keys/{}/{v}", self.name),
            None => format!("keys/{}", self.name),
        }
    }
}

/// What a service answered to a signing request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSignature {
    /// The raw `r‖s` (64 bytes for ES256), as the service sent it.
    pub raw: Vec<u8>,
    /// The key id the service names, if any.
    pub kid: Option<String>,
}

/// A key a service signs with.
pub trait RemoteKey: Send + Sync {
    /// ECDSA P-256 over a SHA-256 `digest` (ES256).
    fn sign_digest<'a>(
        &'a self,
        digest: &'a [u8; 32],
    ) -> BoxFuture<'a, Result<RemoteSignature, SigningError>>;
}

/// The key management service plug-in (src/azure: Key Vault).
pub trait Kms: Send + Sync {
    /// The key's public key (its `keyid` the service's key id).
    fn public_key<'a>(&'a self, key: &'a KmsKey) -> BoxFuture<'a, Result<Verifier, SigningError>>;

    /// A signer for the key: its public key read first, every signature checked against it.
    fn signer<'a>(&'a self, key: &'a KmsKey) -> BoxFuture<'a, Result<Signer, SigningError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn references_parse_strictly() {
        let k = KmsKey::parse(
            "azurekms://my-vault.vault.azure.net/airlock",
            "vault.azure.net",
        )
        .unwrap();
        assert_eq!(k.vault, "my-vault.vault.azure.net");
        assert_eq!(k.name, "airlock");
        assert_eq!(k.version, None);
        assert_eq!(k.path(), "keys/airlock");
        assert_eq!(k.to_string(), "azurekms://my-vault.vault.azure.net/airlock");
        let k = KmsKey::parse(
            &format!("azurekms://kv1.vault.azure.cn/k/{V}"),
            "vault.azure.cn",
        )
        .unwrap();
        assert_eq!(k.path(), format!("keys/k/{V}"));
        let bad = [
            ("azurekms://vault.azure.net/k", "not `<vault>."),
            ("azurekms://v.vault.azure.net/k", "not a Key Vault name"),
            (
                "azurekms://my--vault.vault.azure.net/k",
                "not a Key Vault name",
            ),
            (
                "azurekms://1vault.vault.azure.net/k",
                "not a Key Vault name",
            ),
            (
                "azurekms://kv1.vault.azure.net/",
                "not a Key Vault key name",
            ),
            (
                "azurekms://kv1.vault.azure.net/a_b",
                "not a Key Vault key name",
            ),
            (
                "azurekms://kv1.vault.azure.net/k/v1",
                "not a Key Vault key version",
            ),
            (
                &format!("azurekms://kv1.vault.azure.net/k/{V}/x"),
                "too many",
            ),
            ("azurekms://kv1.vault.azure.net:8443/k", "not `<vault>."),
            ("azurekms://u@kv1.vault.azure.net/k", "not a Key Vault name"),
            (
                "azurekms://kv1.vault.azure.net.evil.example/k",
                "not `<vault>.",
            ),
            ("azurekms://kv1.evil.example/k", "not `<vault>."),
            (
                "azurekms://kv1.vault.azure.net/k?x=1",
                "not a Key Vault key name",
            ),
            ("azurekms://kv1.vault.azure.cn/k", "another Azure cloud"),
            ("https://kv1.vault.azure.net/k", "expected azurekms://"),
        ];
        for (s, why) in bad {
            let e = KmsKey::parse(s, "vault.azure.net").unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
