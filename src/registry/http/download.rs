//! Blob downloads: a verified stream that resumes with `Range` after a transient break.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{Method, Response, StatusCode};

use super::transport::{Body, Request};
use super::{HttpRegistry, Inner, content_length, header_str};
use crate::model::Digest;
use crate::registry::auth;
use crate::registry::error::{RegistryError, Result};
use crate::registry::verify::Verify;
use crate::registry::{Blob, BlobStream};

const MAX_RESUMES: u32 = 3;

impl HttpRegistry {
    pub async fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Blob> {
        let i = &self.inner;
        let what = format!("get blob {repo}@{digest}");
        let resp = i.blob_response(repo, digest, 0, false, &what).await?;
        let size = match content_length(resp.headers()) {
            Some(n) => n,
            None => self.blob_exists(repo, digest).await?.ok_or_else(|| {
                RegistryError::invalid(&i.key, &what, "the registry sent no Content-Length")
            })?,
        };
        let body = resp.bytes_stream().boxed();
        let raw = download_stream(self.inner.clone(), repo, digest, size, body);
        let stream = Verify::new(
            raw,
            digest,
            size,
            &i.key,
            format!("blob {repo}@{digest} from `{}`", i.key),
        )
        .boxed();
        Ok(Blob { size, stream })
    }
}

impl Inner {
    /// GET a blob from `offset` (Range when > 0). 200/206 only; anything else an error.
    /// The body streams without the permit. A `resume` of a broken download takes no
    /// permit and is sent once (the download counts its resumes); the first GET is
    /// retried like any replayable request.
    async fn blob_response(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
        resume: bool,
        what: &str,
    ) -> Result<Response> {
        let url = self.url(&format!("{repo}/blobs/{digest}"))?;
        let mut req = Request::new(Method::GET, url, vec![auth::pull_scope(repo)], what);
        if resume {
            req = req.without_permit().once();
        }
        if offset > 0 {
            req = req.header(RANGE, &format!("bytes={offset}-"));
        }
        let answer = self.answer(&req, &Body::None).await?;
        answer
            .response
            .ok_or_else(|| RegistryError::invalid(&self.key, what, "no body"))
    }
}

/// A download body that resumes with `Range` after a transient break (at most
/// `MAX_RESUMES` times), without taking a permit, and with an idle timeout per chunk.
fn download_stream(
    inner: Arc<Inner>,
    repo: &str,
    digest: &Digest,
    size: u64,
    body: futures_util::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>,
) -> BlobStream {
    struct State {
        inner: Arc<Inner>,
        repo: String,
        digest: Digest,
        size: u64,
        body: futures_util::stream::BoxStream<'static, Result<Bytes, reqwest::Error>>,
        received: u64,
        skip: u64,
        resumes: u32,
    }
    let state = State {
        inner,
        repo: repo.to_string(),
        digest: digest.clone(),
        size,
        body,
        received: 0,
        skip: 0,
        resumes: 0,
    };
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut s = state?;
        let what = format!("get blob {}@{}", s.repo, s.digest);
        loop {
            if s.received >= s.size {
                // Let the connection finish cleanly; anything beyond `size` is ignored
                // here and the verifier has already seen exactly `size` bytes.
                return None;
            }
            let next = tokio::time::timeout(s.inner.stall, s.body.next()).await;
            let err = match next {
                Ok(Some(Ok(mut chunk))) => {
                    if s.skip > 0 {
                        let n = s.skip.min(chunk.len() as u64) as usize;
                        chunk = chunk.slice(n..);
                        s.skip -= n as u64;
                    }
                    if chunk.is_empty() {
                        continue;
                    }
                    let room = s.size - s.received;
                    if chunk.len() as u64 > room {
                        chunk = chunk.slice(..room as usize);
                    }
                    s.received += chunk.len() as u64;
                    return Some((Ok(chunk), Some(s)));
                }
                Ok(Some(Err(e))) => s.inner.transport(&what, e),
                Ok(None) => RegistryError::Truncated {
                    registry: s.inner.key.clone(),
                    what: what.clone(),
                    expected: s.size,
                    received: s.received,
                },
                Err(_) => RegistryError::Timeout {
                    registry: s.inner.key.clone(),
                    what: what.clone(),
                    after: s.inner.stall,
                },
            };
            if s.resumes >= MAX_RESUMES || !err.is_transient() {
                return Some((Err(err), None));
            }
            s.resumes += 1;
            tracing::debug!(registry = %s.inner.key, "{err}; resuming at byte {}", s.received);
            match s
                .inner
                .blob_response(&s.repo, &s.digest, s.received, true, &what)
                .await
            {
                Ok(resp) => {
                    let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
                    let start = header_str(resp.headers(), CONTENT_RANGE.as_str())
                        .and_then(|v| v.strip_prefix("bytes "))
                        .and_then(|v| v.split('-').next())
                        .and_then(|v| v.parse::<u64>().ok());
                    s.skip = match (partial, start) {
                        (true, Some(st)) if st <= s.received => s.received - st,
                        (true, _) => {
                            return Some((
                                Err(RegistryError::invalid(
                                    &s.inner.key,
                                    &what,
                                    "unexpected Content-Range when resuming",
                                )),
                                None,
                            ));
                        }
                        // A 200 restarts from byte 0: skip what was already passed on.
                        (false, _) => s.received,
                    };
                    s.body = resp.bytes_stream().boxed();
                }
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
    .boxed()
}
