//! A stand-in for the OCI 1.1 referrers API (distribution-spec 1.1, "Pushing Manifests with
//! Subject" and "Listing Referrers") in front of a real Docker Distribution 2.8, which has
//! none. It is a mode of the [`FaultProxy`]: blobs, manifests and tags still live in
//! Distribution; the proxy only watches manifests go by and keeps the referrers index:
//!
//! - a manifest PUT whose body has a `subject` is forwarded; when Distribution answers 201,
//!   the manifest's descriptor (mediaType, digest, size, artifactType — the manifest's own,
//!   else its config's mediaType, else none — and annotations) is listed for (repository,
//!   subject digest), and the answer carries `OCI-Subject: <subject digest>`;
//! - `GET /v2/<name>/referrers/<digest>[?artifactType=…]` answers 200 with an OCI image
//!   index of those descriptors, in push order, filtered by artifactType when asked (then
//!   with `OCI-Filters-Applied: artifactType`); an unknown subject is an empty list; a
//!   malformed digest is 400 `DIGEST_INVALID`; with [`FaultProxy::referrers_page_size`]
//!   the listing is paged with `Link: <…>; rel="next"`;
//! - a manifest DELETE by digest that Distribution accepts (202) removes that referrer.
//!
//! Authorization is not checked here (the registry behind checks every other request): the
//! tests that use the stand-in run without authentication.
//!
//! [`FaultProxy`]: super::proxy::FaultProxy
//! [`FaultProxy::referrers_page_size`]: super::proxy::FaultProxy::referrers_page_size

use std::collections::BTreeMap;

use airlock::model::{Digest, media};
use serde_json::{Value, json};

/// The referrers index of the stand-in: (repository, subject) → descriptors in push order.
#[derive(Default)]
pub struct ReferrersIndex {
    by_subject: BTreeMap<(String, Digest), Vec<Value>>,
    /// Page size of listings (`None`: one page).
    pub page_size: Option<usize>,
}

/// What a request is to the stand-in.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /v2/<name>/referrers/<digest>`: answered by the stand-in.
    List {
        repo: String,
        subject: String,
        artifact_type: Option<String>,
        /// Where a paged listing continues (`?last=<n>` of the stand-in's own `Link`).
        start: usize,
    },
    /// `PUT /v2/<name>/manifests/<reference>`: forwarded, watched for a `subject`.
    PutManifest { repo: String },
    /// `DELETE /v2/<name>/manifests/<digest>`: forwarded, the referrer forgotten on 202.
    DeleteManifest { repo: String, digest: String },
}

/// The route of a request (path with query), `None` for everything else (passed through).
pub fn route(method: &str, path_and_query: &str) -> Option<Route> {
    let url = reqwest::Url::parse(&format!("http://proxy{path_and_query}")).ok()?;
    let rest = url.path().strip_prefix("/v2/")?;
    if let Some((repo, subject)) = rest.rsplit_once("/referrers/") {
        if method != "GET" {
            return None;
        }
        let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        return Some(Route::List {
            repo: repo.to_string(),
            subject: subject.to_string(),
            artifact_type: q.get("artifactType").cloned(),
            start: q.get("last").and_then(|l| l.parse().ok()).unwrap_or(0),
        });
    }
    let (repo, reference) = rest.rsplit_once("/manifests/")?;
    match method {
        "PUT" => Some(Route::PutManifest {
            repo: repo.to_string(),
        }),
        "DELETE" => Some(Route::DeleteManifest {
            repo: repo.to_string(),
            digest: reference.to_string(),
        }),
        _ => None,
    }
}

/// The subject and the referrers descriptor of a pushed manifest, `None` when it has no
/// `subject` (or is not JSON: Distribution refuses it anyway).
pub fn descriptor_of(body: &[u8], content_type: Option<&str>) -> Option<(Digest, Value)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let subject: Digest = v.get("subject")?.get("digest")?.as_str()?.parse().ok()?;
    let media_type = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .or(content_type)
        .unwrap_or(media::OCI_MANIFEST);
    let mut d = json!({
        "mediaType": media_type,
        "digest": Digest::of(body).to_string(),
        "size": body.len(),
    });
    let artifact_type = v
        .get("artifactType")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .or_else(|| {
            v.get("config")
                .and_then(|c| c.get("mediaType"))
                .and_then(|m| m.as_str())
        });
    if let Some(a) = artifact_type {
        d["artifactType"] = json!(a);
    }
    if let Some(a) = v.get("annotations").filter(|a| a.is_object()) {
        d["annotations"] = a.clone();
    }
    Some((subject, d))
}

impl ReferrersIndex {
    /// A manifest with a subject was stored in `repo`: list it (once).
    pub fn add(&mut self, repo: &str, subject: Digest, descriptor: Value) {
        let list = self
            .by_subject
            .entry((repo.to_string(), subject))
            .or_default();
        if !list.iter().any(|d| d["digest"] == descriptor["digest"]) {
            list.push(descriptor);
        }
    }

    /// The manifest `digest` of `repo` was deleted: it refers to nothing any more.
    pub fn remove(&mut self, repo: &str, digest: &str) {
        for ((r, _), list) in self.by_subject.iter_mut() {
            if r == repo {
                list.retain(|d| d["digest"] != digest);
            }
        }
    }

    /// Every descriptor listed for (repo, subject).
    pub fn listed(&self, repo: &str, subject: &Digest) -> Vec<Value> {
        self.by_subject
            .get(&(repo.to_string(), subject.clone()))
            .cloned()
            .unwrap_or_default()
    }

    /// The answer to a listing: status, headers and body. `path` is the request's path
    /// (for the next page's `Link`).
    pub fn answer(
        &self,
        repo: &str,
        subject: &str,
        artifact_type: Option<&str>,
        start: usize,
        path: &str,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let Ok(subject) = subject.parse::<Digest>() else {
            let body = json!({"errors": [{
                "code": "DIGEST_INVALID",
                "message": "invalid digest",
                "detail": subject,
            }]});
            return (
                400,
                vec![("Content-Type".into(), "application/json".into())],
                body.to_string().into_bytes(),
            );
        };
        let all: Vec<Value> = self
            .listed(repo, &subject)
            .into_iter()
            .filter(|d| artifact_type.is_none_or(|t| d["artifactType"] == t))
            .collect();
        let end = self
            .page_size
            .map_or(all.len(), |n| (start + n).min(all.len()));
        let page = all
            .get(start..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let mut headers = vec![("Content-Type".to_string(), media::OCI_INDEX.to_string())];
        if artifact_type.is_some() {
            headers.push(("OCI-Filters-Applied".into(), "artifactType".into()));
        }
        if end < all.len() {
            let base = path.split('?').next().unwrap_or(path);
            let mut next = reqwest::Url::parse(&format!("http://proxy{base}")).expect("url");
            if let Some(t) = artifact_type {
                next.query_pairs_mut().append_pair("artifactType", t);
            }
            next.query_pairs_mut().append_pair("last", &end.to_string());
            let rel = &next.as_str()["http://proxy".len()..];
            headers.push(("Link".into(), format!("<{rel}>; rel=\"next\"")));
        }
        let body = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": page,
        });
        (200, headers, serde_json::to_vec(&body).expect("json"))
    }
}
