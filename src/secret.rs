//! Secrets and credentials: a leaf module (it imports nothing of airlock), so the registry
//! client and its plug-ins (src/azure) share these types without importing each other.
//! Every type here redacts itself in `Debug` and has no `Display`.

use std::fmt;

/// A password, token or refresh token. `Debug` prints `***`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for building a request header or form. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What a registry (or its token server) accepts as proof of identity.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Sent as HTTP Basic to the registry or to its token realm.
    UsernamePassword { username: String, password: Secret },
    /// An OAuth2 refresh token (docker `identitytoken`, helper Username `<token>`, ACR
    /// refresh tokens): exchanged with `grant_type=refresh_token`.
    IdentityToken(Secret),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::UsernamePassword { username, .. } => {
                write!(f, "UsernamePassword({username}, ***)")
            }
            Credential::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}
