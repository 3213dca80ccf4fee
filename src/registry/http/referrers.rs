//! The OCI 1.1 referrers API: `GET /v2/<name>/referrers/<digest>[?artifactType=…]`, an OCI
//! image index of the manifests whose `subject` is the digest (OCI distribution spec 1.1,
//! "Listing Referrers").
//!
//! Whether a registry has the API is learnt from its first answer and remembered per
//! registry: a registry with it never answers 404 without a registry error code (the spec
//! forbids it), so `404 page not found` (Distribution 2.8's unknown route) or 405 means "no
//! API, use the tag schema" for the rest of the run. A `404 NAME_UNKNOWN` is about the
//! repository, not the API: no repository, no referrers, by either path.
//!
//! A registry that answers 200 has the API, and its answer is hostile input like any other:
//! it must be an OCI image index (Content-Type and `mediaType`, `schemaVersion` 2, a
//! `manifests` list), within the manifest size limit per page and [`MAX_REFERRERS`] in
//! total, every descriptor a manifest or index media type with a well-formed digest and a
//! plausible size. A bad answer is an error naming the registry, never a silent fall back to
//! the tag schema (which could hide records or show ones the registry does not list). The
//! server-side `artifactType` filter is a hint: [`crate::registry::Registry::referrers`]
//! filters again.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::transport::{Body, Pages, Request, parse_error_body, read_limited};
use super::{
    HttpRegistry, REFERRERS_SUPPORTED, REFERRERS_UNKNOWN, REFERRERS_UNSUPPORTED, content_type,
};
use crate::model::{Digest, media};
use crate::registry::error::RegistryError;
use crate::registry::{MAX_MANIFEST_SIZE, Referrer, auth};

/// The most referrers one subject may have in a referrers API answer (all pages).
pub const MAX_REFERRERS: usize = 10_000;

/// One answer of the referrers endpoint.
enum Answered {
    /// 200: a page of the listing, its Content-Type and the next page.
    Page(bytes::Bytes, Option<String>, Option<reqwest::Url>),
    /// 404 NAME_UNKNOWN: the repository does not exist.
    NoRepository,
    /// No referrers API (or not for this request): use the tag schema.
    NoApi,
}

impl HttpRegistry {
    /// Whether this registry has the referrers API, as its answers so far showed (see the
    /// module documentation); `None` before its first answer.
    pub fn has_referrers_api(&self) -> Option<bool> {
        match self.inner.referrers.load(Ordering::Acquire) {
            REFERRERS_SUPPORTED => Some(true),
            REFERRERS_UNSUPPORTED => Some(false),
            _ => None,
        }
    }

    /// The referrers API. `Ok(None)` when the registry has none (404 / 400 / 405), see the
    /// module documentation; `Ok(Some(empty))` when the repository does not exist.
    pub async fn referrers_api(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Referrer>>, RegistryError> {
        let i = &self.inner;
        let what = format!("list referrers of {repo}@{subject}");
        let mut url = i.url(&format!("{repo}/referrers/{subject}"))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        if i.referrers.load(Ordering::Acquire) == REFERRERS_UNSUPPORTED {
            return Ok(None);
        }
        let _probing = if i.referrers.load(Ordering::Acquire) == REFERRERS_UNKNOWN {
            let guard = i.referrers_probe.lock().await;
            match i.referrers.load(Ordering::Acquire) {
                REFERRERS_UNSUPPORTED => return Ok(None),
                REFERRERS_SUPPORTED => None,
                _ => Some(guard),
            }
        } else {
            None
        };
        let mut out = Vec::new();
        let mut pages = Pages::new(&url);
        let mut page = 1usize;
        loop {
            let got = i
                .retry(&what, || async {
                    let req =
                        Request::new(Method::GET, url.clone(), vec![auth::pull_scope(repo)], &what)
                            .header(ACCEPT, media::OCI_INDEX)
                            .accept(|s| {
                                matches!(
                                    s,
                                    StatusCode::OK
                                        | StatusCode::NOT_FOUND
                                        | StatusCode::BAD_REQUEST
                                        | StatusCode::METHOD_NOT_ALLOWED
                                )
                            })
                            .once();
                    let mut answer = i.answer(&req, &Body::None).await?;
                    let Some(resp) = answer.response.take() else {
                        return Ok(Answered::NoApi);
                    };
                    if answer.status == StatusCode::OK {
                        let next = answer.next_page();
                        let ct = content_type(&answer.headers);
                        let body = i.read_body(&what, resp, i.opts.max_manifest_size).await?;
                        return Ok(Answered::Page(body, ct, next));
                    }
                    let body = read_limited(resp, 16 * 1024).await.unwrap_or_default();
                    let code = parse_error_body(&body).map(|(code, _)| code);
                    if answer.status == StatusCode::NOT_FOUND
                        && code.as_deref() == Some("NAME_UNKNOWN")
                    {
                        return Ok(Answered::NoRepository);
                    }
                    if answer.status == StatusCode::METHOD_NOT_ALLOWED || code.is_none() {
                        i.referrers.store(REFERRERS_UNSUPPORTED, Ordering::Release);
                        tracing::debug!(registry = %i.key, "no referrers API: using the tag schema");
                    }
                    Ok(Answered::NoApi)
                })
                .await?;
            let (body, ct, next) = match got {
                Answered::Page(body, ct, next) => (body, ct, next),
                Answered::NoRepository if page == 1 => return Ok(Some(Vec::new())),
                Answered::NoApi if page == 1 => return Ok(None),
                _ => {
                    return Err(RegistryError::invalid(
                        &i.key,
                        &what,
                        format!("the referrers listing broke off at page {page}"),
                    ));
                }
            };
            i.referrers.store(REFERRERS_SUPPORTED, Ordering::Release);
            out.extend(
                referrers_page(ct.as_deref(), &body)
                    .map_err(|m| RegistryError::invalid(&i.key, &what, m))?,
            );
            if out.len() > MAX_REFERRERS {
                return Err(RegistryError::invalid(
                    &i.key,
                    &what,
                    format!("the registry lists more than {MAX_REFERRERS} referrers"),
                ));
            }
            match pages.next(&i.key, &what, next)? {
                Some(n) => url = n,
                None => break,
            }
            page += 1;
        }
        Ok(Some(out))
    }
}

/// The referrers listed in one page of a referrers API answer, checked: the answer must be
/// an OCI image index (Content-Type when given, `mediaType`, `schemaVersion` 2, a
/// `manifests` list), every descriptor a manifest or index with a sha256 digest and a size
/// in (0, [`MAX_MANIFEST_SIZE`]]. The error says what is wrong (the caller names the
/// registry and the request).
pub fn referrers_page(content_type: Option<&str>, body: &[u8]) -> Result<Vec<Referrer>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Page {
        schema_version: Option<serde_json::Value>,
        media_type: Option<serde_json::Value>,
        manifests: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        media_type: String,
        digest: String,
        size: u64,
        artifact_type: Option<String>,
        #[serde(default)]
        annotations: Option<BTreeMap<String, String>>,
    }
    if let Some(ct) = content_type
        && ct != media::OCI_INDEX
    {
        return Err(format!(
            "the referrers API answered Content-Type `{}`, not an OCI image index ({})",
            printable(ct),
            media::OCI_INDEX
        ));
    }
    let page: Page = serde_json::from_slice(body).map_err(|e| {
        format!("the referrers API answer is not an OCI image index (not a JSON object: {e})")
    })?;
    if page.media_type.as_ref().and_then(|m| m.as_str()) != Some(media::OCI_INDEX) {
        return Err(format!(
            "the referrers API answer has mediaType {}, not {}",
            page.media_type
                .map(|m| printable(&m.to_string()))
                .unwrap_or_else(|| "(none)".into()),
            media::OCI_INDEX
        ));
    }
    if page.schema_version.as_ref().and_then(|v| v.as_u64()) != Some(2) {
        return Err(format!(
            "the referrers API answer has schemaVersion {}, not 2",
            page.schema_version
                .map(|v| printable(&v.to_string()))
                .unwrap_or_else(|| "(none)".into())
        ));
    }
    let Some(serde_json::Value::Array(entries)) = page.manifests else {
        return Err("the referrers API answer has no `manifests` list".into());
    };
    entries
        .into_iter()
        .enumerate()
        .map(|(n, v)| {
            let bad = |m: String| format!("the referrers API answer's manifests[{n}]: {m}");
            let e: Entry = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
            if !(media::is_manifest(&e.media_type) || media::is_index(&e.media_type)) {
                return Err(bad(format!(
                    "mediaType `{}` is not a manifest or index",
                    printable(&e.media_type)
                )));
            }
            let digest: Digest = e.digest.parse().map_err(|x| bad(format!("{x}")))?;
            if e.size == 0 || e.size > MAX_MANIFEST_SIZE as u64 {
                return Err(bad(format!(
                    "size {} is not in 1..={MAX_MANIFEST_SIZE}",
                    e.size
                )));
            }
            if let Some(t) = &e.artifact_type
                && (t.is_empty() || t.len() > 255 || t.chars().any(char::is_control))
            {
                return Err(bad(format!("artifactType `{}` is malformed", printable(t))));
            }
            Ok(Referrer {
                digest,
                media_type: e.media_type,
                size: e.size,
                artifact_type: e.artifact_type,
                annotations: e.annotations.unwrap_or_default(),
            })
        })
        .collect()
}

/// A registry-provided string for an error message: control characters escaped, at most
/// 100 characters.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(100).flat_map(char::escape_default).collect();
    if s.chars().count() > 100 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> serde_json::Value {
        json!({
            "mediaType": media::OCI_MANIFEST,
            "digest": Digest::of(b"r").to_string(),
            "size": 123,
            "artifactType": media::VERDICT_ARTIFACT,
            "annotations": {"a": "b"},
        })
    }

    fn index(manifests: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": manifests,
        }))
        .unwrap()
    }

    #[test]
    fn a_well_formed_page_lists_its_referrers() {
        let refs = referrers_page(Some(media::OCI_INDEX), &index(json!([entry()]))).unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].digest, Digest::of(b"r"));
        assert_eq!(refs[0].size, 123);
        assert_eq!(
            refs[0].artifact_type.as_deref(),
            Some(media::VERDICT_ARTIFACT)
        );
        assert_eq!(refs[0].annotations["a"], "b");
        // No Content-Type: the body decides. An empty list is a valid answer.
        assert!(referrers_page(None, &index(json!([]))).unwrap().is_empty());
    }

    #[test]
    fn answers_that_are_not_an_oci_index_are_refused() {
        let ok = index(json!([entry()]));
        let refused = |ct: Option<&str>, body: &[u8], want: &str| {
            let e = referrers_page(ct, body).expect_err(want);
            assert!(e.contains(want), "{e}");
        };
        refused(
            Some("application/json"),
            &ok,
            "Content-Type `application/json`",
        );
        refused(Some("text/html"), b"<html>login</html>", "text/html");
        refused(None, b"<html>login</html>", "not a JSON object");
        refused(None, b"{}", "mediaType (none)");
        refused(None, b"[]", "not a JSON object");
        let mut v: serde_json::Value = serde_json::from_slice(&ok).unwrap();
        v["mediaType"] = media::OCI_MANIFEST.into();
        refused(None, &serde_json::to_vec(&v).unwrap(), "has mediaType");
        v["mediaType"] = media::OCI_INDEX.into();
        v["schemaVersion"] = 1.into();
        refused(None, &serde_json::to_vec(&v).unwrap(), "schemaVersion 1");
        v["schemaVersion"] = 2.into();
        v["manifests"] = serde_json::Value::Null;
        refused(
            None,
            &serde_json::to_vec(&v).unwrap(),
            "no `manifests` list",
        );
        v.as_object_mut().unwrap().remove("manifests");
        refused(
            None,
            &serde_json::to_vec(&v).unwrap(),
            "no `manifests` list",
        );
    }

    #[test]
    fn malformed_descriptors_are_refused() {
        let with = |k: &str, val: serde_json::Value| {
            let mut e = entry();
            e[k] = val;
            index(json!([entry(), e]))
        };
        for (k, val, want) in [
            (
                "digest",
                json!("sha256:abc"),
                "manifests[1]: digest `sha256:abc`",
            ),
            ("digest", json!("md5:00"), "unsupported algorithm"),
            ("digest", json!(7), "manifests[1]: invalid type"),
            ("mediaType", json!("text/plain"), "not a manifest or index"),
            ("size", json!(0), "size 0"),
            ("size", json!(1u64 << 40), "is not in 1..="),
            ("size", json!(-1), "manifests[1]"),
            ("artifactType", json!(""), "artifactType `` is malformed"),
            ("artifactType", json!("a\nb"), "malformed"),
            ("annotations", json!({"a": 1}), "manifests[1]"),
        ] {
            let e = referrers_page(Some(media::OCI_INDEX), &with(k, val.clone()))
                .expect_err(&format!("{k} = {val}"));
            assert!(e.contains(want), "{k} = {val}: {e}");
        }
    }
}
