//! Blob uploads: upload sessions (started, finished, cancelled, and all still open when
//! an apply is interrupted), monolithic and chunked, from a stream or from bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};

use super::transport::{Answer, Body, Request, Watched};
use super::{HttpRegistry, Inner, OCTET_STREAM, header_str};
use crate::model::Digest;
use crate::registry::auth;
use crate::registry::error::{RegistryError, Result};
use crate::registry::{Blob, BlobStream};

impl HttpRegistry {
    /// Upload a blob whose stream verifies itself (see `Registry::put_verified_blob`).
    pub async fn put_blob(&self, repo: &str, digest: &Digest, blob: Blob) -> Result<()> {
        self.put_blob_from(repo, digest, async { Ok(blob) }).await
    }

    /// Upload the self-verifying blob `source` opens (a download from another registry),
    /// starting the upload session while `source` waits for its first answer: the two
    /// round trips overlap instead of adding up. A failed `source` wins over a failed start
    /// (it is the cause), and a session it leaves open is cancelled.
    pub async fn put_blob_from(
        &self,
        repo: &str,
        digest: &Digest,
        source: impl std::future::Future<Output = Result<Blob>>,
    ) -> Result<()> {
        let i = &self.inner;
        let what = format!("upload blob {repo}@{digest}");
        let (started, opened) = futures_util::join!(i.start_upload(repo, &what), source);
        let (location, min_chunk, blob) = match (started, opened) {
            (Ok((location, min)), Ok(blob)) => (location, min, blob),
            (Ok((location, _)), Err(e)) => {
                i.cancel_upload(repo, &location).await;
                return Err(e);
            }
            (Err(_), Err(e)) | (Err(e), Ok(_)) => return Err(e),
        };
        let Blob {
            size,
            stream: verified,
        } = blob;
        i.open_uploads
            .lock()
            .expect("open uploads lock")
            .push((repo.to_string(), location.clone()));
        let chunked = size > i.opts.chunk_threshold || i.prefer_chunked.load(Ordering::Relaxed);
        let result = if chunked {
            i.upload_chunked(repo, digest, location.clone(), verified, min_chunk, &what)
                .await
        } else {
            i.upload_monolithic(repo, digest, size, location.clone(), verified, &what)
                .await
        };
        if let Err(e) = &result {
            tracing::debug!(registry = %i.key, "upload of {digest} failed ({e}); cancelling the session");
            i.cancel_upload(repo, &location).await;
        }
        i.open_uploads
            .lock()
            .expect("open uploads lock")
            .retain(|(_, l)| l != &location);
        result
    }

    /// DELETE every upload session whose transfer was dropped before it finished (an
    /// interrupted apply). Returns how many were cancelled.
    pub async fn abort_open_uploads(&self) -> usize {
        let open: Vec<(String, Url)> =
            std::mem::take(&mut *self.inner.open_uploads.lock().expect("open uploads lock"));
        for (repo, location) in &open {
            self.inner.cancel_upload(repo, location).await;
        }
        open.len()
    }

    pub async fn put_blob_bytes(&self, repo: &str, bytes: Bytes) -> Result<Digest> {
        let i = &self.inner;
        let digest = Digest::of(&bytes);
        let what = format!("upload blob {repo}@{digest}");
        i.retry(&what, || async {
            let (location, _) = i.start_upload(repo, &what).await?;
            let req = closing_put(location.clone(), repo, &digest, &what);
            let answer = i.answer(&req, &Body::Bytes(bytes.clone())).await?;
            if answer.status.is_success() {
                return Ok(());
            }
            let e = i.refused(&what, answer).await;
            i.cancel_upload(repo, &location).await;
            Err(e)
        })
        .await?;
        i.cache_blob(repo, &digest, &bytes);
        Ok(digest)
    }
}

/// The PUT that closes an upload session with the blob's digest (and its body, or the
/// last of it). Sent once, every status an answer: the caller judges it (`finish_put`), so
/// a refused upload can cancel its session.
pub(super) fn closing_put<'a>(
    location: Url,
    repo: &str,
    digest: &Digest,
    what: &'a str,
) -> Request<'a> {
    let mut url = location;
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    Request::new(Method::PUT, url, vec![auth::push_scope(repo)], what)
        .header(CONTENT_TYPE, OCTET_STREAM)
        .accept(|_| true)
        .once()
}

impl Inner {
    /// POST an upload session; its Location and the registry's minimum chunk length.
    pub(super) async fn start_upload(&self, repo: &str, what: &str) -> Result<(Url, u64)> {
        let url = self.url(&format!("{repo}/blobs/uploads/"))?;
        let req = Request::new(Method::POST, url, vec![auth::push_scope(repo)], what)
            .header(CONTENT_LENGTH, "0");
        let answer = self.answer(&req, &Body::None).await?;
        if answer.status != StatusCode::ACCEPTED {
            return Err(RegistryError::invalid(
                self.key.as_str(),
                what,
                format!("upload start answered {} instead of 202", answer.status),
            ));
        }
        let min = header_str(&answer.headers, "oci-chunk-min-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((self.location(&answer, what)?, min))
    }

    /// Best effort: DELETE an upload session nobody will finish.
    pub(super) async fn cancel_upload(&self, repo: &str, location: &Url) {
        let what = format!("cancel an upload to {repo}");
        let req = Request::new(
            Method::DELETE,
            location.clone(),
            vec![auth::push_scope(repo)],
            &what,
        )
        .accept(|_| true)
        .once();
        match self.answer(&req, &Body::None).await {
            Ok(a) if a.status.is_success() || a.status == StatusCode::NOT_FOUND => {}
            Ok(a) => {
                tracing::debug!(registry = %self.key, status = a.status.as_u16(), "upload cancel refused")
            }
            Err(e) => tracing::debug!(registry = %self.key, "upload cancel failed: {e}"),
        }
    }

    /// The answer to the PUT that closes an upload: the stored digest must be the one
    /// written; a 413 to a monolithic upload switches this registry to chunks.
    async fn finish_put(
        &self,
        answer: Answer,
        digest: &Digest,
        what: &str,
        chunked: bool,
    ) -> Result<()> {
        if answer.status.is_success() {
            return self.check_stored(&answer.headers, digest, what);
        }
        if !chunked && answer.status == StatusCode::PAYLOAD_TOO_LARGE {
            // Upload in chunks from now on; the caller's retry takes that path.
            self.prefer_chunked.store(true, Ordering::Relaxed);
        }
        Err(self.refused(what, answer).await)
    }

    async fn upload_monolithic(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        location: Url,
        verified: BlobStream,
        what: &str,
    ) -> Result<()> {
        let failure: Arc<Mutex<Option<RegistryError>>> = Arc::new(Mutex::new(None));
        let progress = Arc::new(AtomicU64::new(0));
        let waiting = Arc::new(AtomicBool::new(false));
        let (f, p) = (failure.clone(), progress.clone());
        let verified = Watched {
            inner: verified,
            waiting: waiting.clone(),
        };
        let body_stream = verified.map(move |r| match r {
            Ok(b) => {
                p.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(b)
            }
            Err(e) => {
                let msg = e.to_string();
                *f.lock().expect("failure lock") = Some(e);
                Err(std::io::Error::other(msg))
            }
        });
        let req = closing_put(location, repo, digest, what);
        let body = Body::Stream(
            Mutex::new(Some(reqwest::Body::wrap_stream(body_stream))),
            size,
            progress,
            waiting,
        );
        let sent = self.answer(&req, &body).await;
        // An error of the source stream (or its verification) is the real cause.
        if let Some(e) = failure.lock().expect("failure lock").take() {
            return Err(e);
        }
        self.finish_put(sent?, digest, what, false).await
    }

    async fn upload_chunked(
        &self,
        repo: &str,
        digest: &Digest,
        mut location: Url,
        mut verified: BlobStream,
        min_chunk: u64,
        what: &str,
    ) -> Result<()> {
        let chunk_size = self.opts.chunk_size.max(min_chunk).max(1) as usize;
        let mut offset: u64 = 0;
        let mut buf = BytesMut::with_capacity(chunk_size);
        let mut ended = false;
        while !ended {
            while buf.len() < chunk_size {
                match verified.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => return Err(e),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            if buf.is_empty() {
                break;
            }
            let chunk = buf.split().freeze();
            let end = offset + chunk.len() as u64 - 1;
            let req = Request::new(
                Method::PATCH,
                location.clone(),
                vec![auth::push_scope(repo)],
                what,
            )
            .header(CONTENT_TYPE, OCTET_STREAM)
            .header(CONTENT_RANGE, &format!("{offset}-{end}"))
            .accept(|s| s == StatusCode::ACCEPTED)
            .once();
            let answer = self.answer(&req, &Body::Bytes(chunk.clone())).await?;
            // Always continue at the newest Location: the old one is stale.
            location = self.location(&answer, what)?;
            offset = end + 1;
        }
        let req = closing_put(location, repo, digest, what);
        let sent = self.answer(&req, &Body::Bytes(Bytes::new())).await?;
        self.finish_put(sent, digest, what, true).await
    }
}
