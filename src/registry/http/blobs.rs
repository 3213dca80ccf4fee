//! Blob existence, small blobs read whole (cached), and cross-repository mounts.

use bytes::Bytes;
use futures_util::TryStreamExt;
use reqwest::header::CONTENT_LENGTH;
use reqwest::{Method, StatusCode, Url};

use super::transport::{Body, Request};
use super::upload::closing_put;
use super::{HttpRegistry, Inner, content_length};
use crate::model::Digest;
use crate::registry::auth;
use crate::registry::error::{RegistryError, Result};

impl HttpRegistry {
    pub async fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let i = &self.inner;
        let what = format!("check blob {repo}@{digest}");
        let url = i.url(&format!("{repo}/blobs/{digest}"))?;
        let req = Request::new(Method::HEAD, url, vec![auth::pull_scope(repo)], &what)
            .racy()
            .missing_is_none();
        Ok(i.send(&req, &Body::None)
            .await?
            .map(|head| content_length(&head.headers).unwrap_or(0)))
    }

    pub async fn get_blob_bytes(&self, repo: &str, digest: &Digest, max: u64) -> Result<Vec<u8>> {
        if let Some(b) = self.inner.cached_blob(repo, digest, max) {
            return Ok(b);
        }
        let what = format!("get blob {repo}@{digest}");
        let bytes = self
            .inner
            .retry(&what, || async {
                let blob = self.get_blob(repo, digest).await?;
                if blob.size > max {
                    return Err(RegistryError::invalid(
                        &self.inner.key,
                        &what,
                        format!("blob is {} bytes, more than the {max} expected", blob.size),
                    ));
                }
                let chunks: Vec<Bytes> = blob.stream.try_collect().await?;
                Ok(chunks.concat())
            })
            .await?;
        self.inner
            .cache_blob(repo, digest, &Bytes::copy_from_slice(&bytes));
        Ok(bytes)
    }

    pub async fn mount_blob(&self, repo: &str, digest: &Digest, from_repo: &str) -> Result<bool> {
        let i = &self.inner;
        let what = format!("mount blob {digest} from {from_repo} into {repo}");
        let scopes = vec![auth::push_scope(repo), auth::pull_scope(from_repo)];
        let Some(location) = i.mount(repo, digest, from_repo, scopes, &what).await? else {
            return Ok(true);
        };
        // Not mounted: the registry opened an upload session instead; close it.
        i.cancel_upload(repo, &location).await;
        Ok(false)
    }

    /// Make a small in-memory blob present in `repo` in at most two requests: a
    /// cross-repository mount from `from` (which may be `repo` itself, asking "do you hold
    /// it?"); when the registry declines (202, it opened an upload session), the bytes go up
    /// through that session in one monolithic PUT. True when mounted (the content was
    /// there), false when uploaded. Replayable: retried as a whole on transient errors.
    pub async fn mount_or_put_bytes(&self, repo: &str, from: &str, bytes: Bytes) -> Result<bool> {
        let i = &self.inner;
        let digest = crate::model::Digest::of(&bytes);
        let what = format!("upload blob {repo}@{digest}");
        let mounted = i
            .retry(&what, || async {
                let mut scopes = vec![auth::push_scope(repo)];
                if from != repo {
                    scopes.push(auth::pull_scope(from));
                }
                let Some(location) = i.mount(repo, &digest, from, scopes, &what).await? else {
                    return Ok(true);
                };
                // Not mounted: the session the registry opened takes the bytes.
                let put = closing_put(location.clone(), repo, &digest, &what);
                let answer = i.answer(&put, &Body::Bytes(bytes.clone())).await?;
                if answer.status.is_success() {
                    i.check_stored(&answer.headers, &digest, &what)?;
                    return Ok(false);
                }
                let e = i.refused(&what, answer).await;
                i.cancel_upload(repo, &location).await;
                Err(e)
            })
            .await?;
        i.cache_blob(repo, &digest, &bytes);
        Ok(mounted)
    }
}

impl Inner {
    /// Ask for a cross-repository mount of `digest` from `from` into `repo`: `None` when
    /// mounted (201), else the upload session the registry opened instead (202).
    async fn mount(
        &self,
        repo: &str,
        digest: &Digest,
        from: &str,
        scopes: Vec<String>,
        what: &str,
    ) -> Result<Option<Url>> {
        let mut url = self.url(&format!("{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let req = Request::new(Method::POST, url, scopes, what)
            .header(CONTENT_LENGTH, "0")
            .accept(|s| matches!(s, StatusCode::CREATED | StatusCode::ACCEPTED));
        let answer = self.answer(&req, &Body::None).await?;
        if answer.status == StatusCode::CREATED {
            return Ok(None);
        }
        self.location(&answer, what).map(Some)
    }
}
