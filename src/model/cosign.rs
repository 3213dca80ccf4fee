//! The cosign tags airlock manages: `sha256-<hex>.sig` (signatures), `.att` (attestations) and
//! `.sbom` (SBOMs), the tag-based layout cosign uses on registries without the referrers API.
//! They travel with the image they are about (import and promote copy them), and `audit` and
//! `prune` skip exactly those whose subject digest is present in the same repository.

use super::digest::Digest;

/// The suffixes of the cosign tags airlock copies, in the order they are copied.
pub const SUFFIXES: [&str; 3] = [".sig", ".att", ".sbom"];

/// The cosign tags for an image digest: `sha256-<hex>.sig`, `.att`, `.sbom`.
pub fn signature_tags(subject: &Digest) -> Vec<String> {
    SUFFIXES
        .iter()
        .map(|s| format!("{}{s}", subject.referrers_tag()))
        .collect()
}

/// The subject digest of a cosign tag airlock manages; `None` for every other tag. Exact:
/// `sha256-`, 64 lowercase hex characters, then one of [`SUFFIXES`] and nothing more.
pub fn signature_subject(tag: &str) -> Option<Digest> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_at_checked(64)?;
    if !SUFFIXES.contains(&suffix) {
        return None;
    }
    format!("sha256:{hex}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_tags_round_trip_to_their_subject() {
        let d = Digest::of(b"image");
        let tags = signature_tags(&d);
        assert_eq!(
            tags,
            [".sig", ".att", ".sbom"].map(|s| format!("sha256-{}{s}", d.hex()))
        );
        for t in &tags {
            assert_eq!(signature_subject(t), Some(d.clone()), "{t}");
        }
    }

    #[test]
    fn nothing_else_is_a_signature_tag() {
        let hex = Digest::of(b"image").hex().to_string();
        for t in [
            format!("sha256-{hex}"),                      // a referrers-schema index
            format!("sha256-{hex}.sig.sig"),              // trailing junk
            format!("sha256-{hex}.SIG"),                  // case
            format!("sha256-{hex}.sign"),                 // other suffix
            format!("sha256-{}.sig", &hex[..63]),         // short
            format!("sha256-{}.sig", hex.to_uppercase()), // upper-case hex
            format!("sha512-{hex}.sig"),                  // algorithm
            format!("x-sha256-{hex}.sig"),                // prefix
            "1.36.1".to_string(),
            "sha256-.sig".to_string(),
        ] {
            assert_eq!(signature_subject(&t), None, "{t}");
        }
    }
}
