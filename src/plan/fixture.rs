//! Test fixtures shared by the planner's tests: digests and observed images named by letter.

use crate::model::Digest;
use crate::observed::{ObservedImage, RecordCheck, SourceInfo, VerdictInfo};

/// `sha256:` and the letter `c` 64 times.
pub fn d(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64))
        .parse()
        .unwrap()
}

/// An image observed with source (and upstream) digest `s`, quarantine `q`, live `l` and
/// verdict `v`, by letter. A live tag here carries a record that binds it
/// (records::binding is tested there).
pub fn image(s: char, q: Option<char>, l: Option<char>, v: Option<VerdictInfo>) -> ObservedImage {
    ObservedImage {
        source: SourceInfo {
            digest: d(s),
            upstream_digest: d(s),
            upstream_tag_digest: None,
            media_type: crate::model::media::OCI_MANIFEST.into(),
            size: Some(1000),
            platforms: None,
        },
        quarantine: q.map(d),
        live: l.map(d),
        verdict: v,
        record: l.map(|_| RecordCheck::Valid),
    }
}
