//! A small raw registry client on plain reqwest, for seeding registries fast and reading
//! content back in tests: monolithic blob uploads (POST, then PUT `?digest=` with
//! `application/octet-stream` and Content-Length), child manifests before the index, and
//! Basic or Bearer authentication answered from the registry's challenge. It is deliberately
//! independent of airlock's own client.

use std::sync::Mutex;

use airlock::model::{Digest, RawManifest, media};
use bytes::Bytes;
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};

use super::images::{BlobData, Content};

/// Username and password.
pub type Creds<'a> = Option<(&'a str, &'a str)>;

/// A raw client for one registry.
pub struct RawClient {
    base: String,
    http: reqwest::Client,
    creds: Option<(String, String)>,
    /// The Authorization header that worked last.
    auth: Mutex<Option<String>>,
}

impl RawClient {
    /// A client for `base_url` (`http://127.0.0.1:PORT`), with optional credentials.
    pub fn new(base_url: &str, creds: Creds<'_>) -> RawClient {
        RawClient {
            base: base_url.trim_end_matches('/').to_string(),
            http: super::http_client(),
            creds: creds.map(|(u, p)| (u.to_string(), p.to_string())),
            auth: Mutex::new(None),
        }
    }

    /// Send a request built by `build` (called again after authenticating on a 401).
    pub async fn send(&self, build: impl Fn(&reqwest::Client) -> RequestBuilder) -> Response {
        let first = self
            .with_auth(build(&self.http))
            .send()
            .await
            .expect("send request");
        if first.status() != StatusCode::UNAUTHORIZED {
            return first;
        }
        let challenge = first
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let Some(auth) = self.answer(&challenge).await else {
            return first;
        };
        *self.auth.lock().expect("auth lock") = Some(auth);
        self.with_auth(build(&self.http))
            .send()
            .await
            .expect("send request")
    }

    fn with_auth(&self, rb: RequestBuilder) -> RequestBuilder {
        match self.auth.lock().expect("auth lock").clone() {
            Some(a) => rb.header(header::AUTHORIZATION, a),
            None => rb,
        }
    }

    /// An Authorization header value answering a `WWW-Authenticate` challenge.
    async fn answer(&self, challenge: &str) -> Option<String> {
        use base64::Engine as _;
        if challenge.starts_with("Basic") {
            let (u, p) = self.creds.as_ref()?;
            let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            return Some(format!("Basic {enc}"));
        }
        let params = challenge.strip_prefix("Bearer ")?;
        let get = |key: &str| -> Option<String> {
            let start = params.find(&format!("{key}=\""))? + key.len() + 2;
            let end = params[start..].find('"')? + start;
            Some(params[start..end].to_string())
        };
        let realm = get("realm")?;
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = get("service") {
            query.push(("service", s));
        }
        if let Some(scope) = get("scope") {
            for s in scope.split(' ') {
                query.push(("scope", s.to_string()));
            }
        }
        let mut rb = self.http.get(&realm).query(&query);
        if let Some((u, p)) = &self.creds {
            rb = rb.basic_auth(u, Some(p));
        }
        let resp = rb.send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let v: serde_json::Value = resp.json().await.ok()?;
        let token = v["token"].as_str().or(v["access_token"].as_str())?;
        Some(format!("Bearer {token}"))
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    /// Whether the repository holds this blob (HEAD).
    pub async fn has_blob(&self, repo: &str, digest: &Digest) -> bool {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        self.send(|c| c.head(&url)).await.status() == StatusCode::OK
    }

    /// Upload a blob monolithically unless the repository already has it.
    pub async fn push_blob(&self, repo: &str, blob: &super::images::Blob) {
        if self.has_blob(repo, &blob.digest).await {
            return;
        }
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self
            .send(|c| c.post(&start).header(header::CONTENT_LENGTH, "0"))
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "start upload to {repo}: {}",
            resp.text().await.unwrap_or_default()
        );
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("upload Location")
            .to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self.url(&format!("{location}{sep}digest={}", blob.digest));
        let resp = self
            .send(|c| {
                let rb = c
                    .put(&put)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, blob.size.to_string());
                match &blob.data {
                    BlobData::Memory(b) => rb.body(b.clone()),
                    BlobData::File(p) => {
                        let file = std::fs::File::open(p).expect("open blob file");
                        let stream = tokio_util::io::ReaderStream::with_capacity(
                            tokio::fs::File::from_std(file),
                            1 << 20,
                        );
                        rb.body(reqwest::Body::wrap_stream(stream))
                    }
                }
            })
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "upload {} to {repo}: {}",
            blob.digest,
            resp.text().await.unwrap_or_default()
        );
    }

    /// PUT a manifest under a tag or its digest.
    pub async fn put_manifest(&self, repo: &str, reference: &str, m: &RawManifest) {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(|c| {
                c.put(&url)
                    .header(header::CONTENT_TYPE, &m.media_type)
                    .body(m.bytes.clone())
            })
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::CREATED,
            "put manifest {repo}:{reference}: {}",
            resp.text().await.unwrap_or_default()
        );
    }

    /// Push blobs, child manifests by digest, then the top manifest under `tag`.
    pub async fn push(&self, repo: &str, tag: &str, content: &impl Content) {
        for blob in content.blobs() {
            self.push_blob(repo, &blob).await;
        }
        let manifests = content.manifests();
        let (top, children) = manifests.split_last().expect("content has a manifest");
        for m in children {
            self.put_manifest(repo, &m.digest.to_string(), m).await;
        }
        self.put_manifest(repo, tag, top).await;
    }

    /// GET a manifest (full Accept list); None on 404.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Option<RawManifest> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send(|c| c.get(&url).header(header::ACCEPT, media::MANIFEST_ACCEPT))
            .await;
        if resp.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "get manifest {repo}:{reference}"
        );
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.expect("manifest body").to_vec();
        Some(RawManifest::new(bytes, ct.as_deref()).expect("valid manifest"))
    }

    /// GET a blob's bytes (status checked, digest not: tests compare themselves).
    pub async fn get_blob(&self, repo: &str, digest: &Digest) -> Bytes {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.send(|c| c.get(&url)).await;
        assert_eq!(resp.status(), StatusCode::OK, "get blob {repo}@{digest}");
        resp.bytes().await.expect("blob body")
    }

    /// The sorted tags of a repository (empty when it has none).
    pub async fn tags(&self, repo: &str) -> Vec<String> {
        let url = self.url(&format!("/v2/{repo}/tags/list"));
        let resp = self.send(|c| c.get(&url)).await;
        if resp.status() == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        let v: serde_json::Value = resp.json().await.expect("tags JSON");
        let mut tags: Vec<String> = v["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// A request with any method, authenticated like the others.
    pub async fn request(&self, method: Method, path: &str) -> Response {
        let url = self.url(path);
        self.send(|c| c.request(method.clone(), &url)).await
    }
}

/// Push `content` to `registry_url` as `repo:tag` with the raw client (fast seeding).
pub async fn push_raw(
    registry_url: &str,
    repo: &str,
    tag: &str,
    content: &impl Content,
    creds: Creds<'_>,
) {
    RawClient::new(registry_url, creds)
        .push(repo, tag, content)
        .await;
}
