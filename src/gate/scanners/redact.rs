//! Keeping the quarantine registry's secret out of what a scanner leaves behind. A scanner
//! sees the password (or identity token) and may echo it — raw, JSON-escaped, URL-encoded,
//! or as base64 (a docker `auth` field is base64 of `user:password`; any alphabet, padded or
//! not, at any offset inside a longer base64 text). Everything kept from a scanner (its
//! findings, its version, its error messages with their stderr tail and output start) goes
//! through [`Redactor::text`] before it is stored in a verdict or printed.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use crate::records::Finding;
use crate::registry::credentials::Credential;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Base64 text shorter than this that encodes only part of a secret is not masked: it would
/// match ordinary text by chance (a whole-secret encoding is always masked).
const MIN_PARTIAL: usize = 8;

/// The spellings of one or more secrets, masked wherever they appear.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Longest first, so that a long form is masked whole before a shorter one inside it.
    patterns: Vec<String>,
}

impl Redactor {
    /// Mask nothing.
    pub fn none() -> Redactor {
        Redactor::default()
    }

    /// Mask the secret of a credential (and, for a password, base64 of `user:password`).
    pub fn for_credential(credential: Option<&Credential>) -> Redactor {
        match credential {
            None => Redactor::none(),
            Some(Credential::UsernamePassword { username, password }) => {
                let mut r = Redactor::new(&[password.expose()]);
                let pair = format!("{username}:{}", password.expose());
                if !password.expose().is_empty() {
                    r.add_exact_base64(&pair);
                    r.patterns.push(pair);
                }
                r.sort();
                r
            }
            Some(Credential::IdentityToken(token)) => Redactor::new(&[token.expose()]),
        }
    }

    /// Mask these secrets (empty ones are ignored).
    pub fn new(secrets: &[&str]) -> Redactor {
        let mut r = Redactor::none();
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            r.patterns.push(s.to_string());
            let json = serde_json::to_string(s).expect("a string serialises");
            r.patterns.push(json[1..json.len() - 1].to_string());
            r.patterns.push(percent_encode(s));
            r.add_exact_base64(s);
            r.add_partial_base64(s.as_bytes());
        }
        r.sort();
        r
    }

    fn sort(&mut self) {
        self.patterns.retain(|p| !p.is_empty());
        self.patterns
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        self.patterns.dedup();
    }

    /// The whole text's base64 in the four usual variants.
    fn add_exact_base64(&mut self, text: &str) {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            self.patterns.push(engine.encode(text));
        }
    }

    /// The base64 characters that depend on the secret's bytes alone, for the secret at each
    /// of the three alignments it can have inside a longer encoded text.
    fn add_partial_base64(&mut self, secret: &[u8]) {
        for offset in 0..3usize {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(secret);
            let bits = bytes.len() * 8;
            // Character j holds bits 6j..6j+6: keep those inside the secret's bits.
            let first = (offset * 8).div_ceil(6);
            let Some(last) = (bits / 6).checked_sub(1) else {
                continue;
            };
            if last < first || last + 1 - first < MIN_PARTIAL {
                continue;
            }
            for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                let encoded = engine.encode(&bytes);
                self.patterns.push(encoded[first..=last].to_string());
            }
        }
    }

    /// The text with every spelling of a secret replaced by `***`.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for p in &self.patterns {
            if out.contains(p.as_str()) {
                out = out.replace(p.as_str(), MASK);
            }
        }
        out
    }

    /// A finding with every text field masked.
    pub fn finding(&self, f: &mut Finding) {
        for field in [&mut f.id, &mut f.message, &mut f.scanner] {
            *field = self.text(field);
        }
        for field in [
            &mut f.package,
            &mut f.installed_version,
            &mut f.fixed_version,
            &mut f.platform,
        ]
        .into_iter()
        .flatten()
        {
            *field = self.text(field);
        }
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::credentials::Secret;

    const PASSWORD: &str = "pa55-w0rd/never+printed";

    fn basic() -> Redactor {
        Redactor::for_credential(Some(&Credential::UsernamePassword {
            username: "scanner-bot".into(),
            password: Secret::new(PASSWORD),
        }))
    }

    fn assert_hidden(r: &Redactor, text: &str) {
        let out = r.text(text);
        assert!(out.contains(MASK), "nothing masked in {text:?} -> {out:?}");
        assert!(!out.contains(PASSWORD), "{out}");
        // No 8-character run of any base64 form of the password survives.
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            for offset in 0..3 {
                let mut bytes = vec![b'x'; offset];
                bytes.extend_from_slice(PASSWORD.as_bytes());
                let enc = engine.encode(&bytes);
                let inner = &enc[4..enc.len() - 4];
                assert!(!out.contains(inner), "{inner} left in {out}");
            }
        }
    }

    #[test]
    fn every_spelling_of_the_password_is_masked() {
        let r = basic();
        let pair = format!("scanner-bot:{PASSWORD}");
        for text in [
            format!("login failed for {PASSWORD}"),
            format!("{{\"auth\":\"{}\"}}", STANDARD.encode(&pair)),
            format!("auth={}", STANDARD_NO_PAD.encode(&pair)),
            format!("auth={}", URL_SAFE.encode(&pair)),
            format!("auth={}", URL_SAFE_NO_PAD.encode(&pair)),
            format!("basic {}", STANDARD.encode(PASSWORD)),
            format!("basic {}", URL_SAFE_NO_PAD.encode(PASSWORD)),
            // Inside a longer base64 text at each alignment: a whole config.json encoded.
            STANDARD.encode(format!(
                "{{\"auths\":{{\"h\":{{\"username\":\"u\",\"password\":\"{PASSWORD}\"}}}}}}"
            )),
            STANDARD.encode(format!("a{PASSWORD}b")),
            URL_SAFE.encode(format!("ab{PASSWORD}\n")),
            format!("https://scanner-bot:{}@registry", percent_encode(PASSWORD)),
        ] {
            assert_hidden(&r, &text);
        }
        // The pair's base64 is masked whole, with the username's part.
        assert_eq!(
            r.text(&format!("auth {}", STANDARD.encode(&pair))),
            "auth ***"
        );
        assert_eq!(r.text("nothing secret here"), "nothing secret here");
    }

    #[test]
    fn json_escaped_and_token_secrets_are_masked() {
        let r = Redactor::new(&["quote\"back\\slash"]);
        assert_eq!(r.text(r#"{"p": "quote\"back\\slash"}"#), r#"{"p": "***"}"#);
        let t = Redactor::for_credential(Some(&Credential::IdentityToken(Secret::new(
            "eyJhbGciOiJIUzI1NiJ9.refresh",
        ))));
        assert_eq!(t.text("token eyJhbGciOiJIUzI1NiJ9.refresh"), "token ***");
        assert_eq!(Redactor::none().text("as is"), "as is");
        assert_eq!(Redactor::new(&[""]).text("as is"), "as is");
    }

    #[test]
    fn findings_are_masked_field_by_field() {
        let r = basic();
        let mut f = Finding {
            id: format!("CVE-{PASSWORD}"),
            severity: crate::model::Severity::High,
            scanner: "trivy".into(),
            message: format!(
                "leaked {}",
                STANDARD.encode(format!("scanner-bot:{PASSWORD}"))
            ),
            package: Some(PASSWORD.into()),
            installed_version: None,
            fixed_version: Some(format!("1.0-{PASSWORD}")),
            platform: None,
            allowed_by: None,
        };
        r.finding(&mut f);
        let all = serde_json::to_string(&f).unwrap();
        assert!(!all.contains(PASSWORD), "{all}");
        assert_eq!(f.message, "leaked ***");
        assert_eq!(f.package.as_deref(), Some("***"));
    }
}
