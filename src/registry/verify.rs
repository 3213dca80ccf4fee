//! Content verification while bytes stream: a `BlobStream` adapter that hashes every chunk,
//! checks the total length, and replaces the last chunk by `DigestMismatch` when the bytes
//! do not hash to the expected digest, so bad content never completes as `Ok`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest as _, Sha256};

use super::BlobStream;
use super::error::RegistryError;
use crate::model::Digest;

/// Wraps a stream of exactly `size` bytes that must hash to `expected`.
pub struct Verify {
    inner: BlobStream,
    expected: Digest,
    size: u64,
    received: u64,
    hasher: Sha256,
    registry: String,
    what: String,
    verified: bool,
    done: bool,
}

impl Verify {
    pub fn new(
        inner: BlobStream,
        expected: &Digest,
        size: u64,
        registry: &str,
        what: impl Into<String>,
    ) -> Verify {
        Verify {
            inner,
            expected: expected.clone(),
            size,
            received: 0,
            hasher: Sha256::new(),
            registry: registry.to_string(),
            what: what.into(),
            verified: false,
            done: false,
        }
    }

    fn check(&mut self) -> Result<(), RegistryError> {
        self.verified = true;
        let actual = Digest::from_sha256(&std::mem::take(&mut self.hasher).finalize());
        if actual != self.expected {
            return Err(RegistryError::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected.clone(),
                actual,
            });
        }
        Ok(())
    }

    fn fail(&mut self, e: RegistryError) -> Poll<Option<Result<Bytes, RegistryError>>> {
        self.done = true;
        Poll::Ready(Some(Err(e)))
    }
}

impl Stream for Verify {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    let len = chunk.len() as u64;
                    if this.received.checked_add(len).is_none_or(|n| n > this.size) {
                        let e = RegistryError::invalid(
                            &this.registry,
                            this.what.clone(),
                            format!("content is longer than its size {}", this.size),
                        );
                        return this.fail(e);
                    }
                    this.hasher.update(&chunk);
                    this.received += len;
                    if this.received == this.size
                        && let Err(e) = this.check()
                    {
                        return this.fail(e);
                    }
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Some(Err(e)) => return this.fail(e),
                None => {
                    this.done = true;
                    if this.received < this.size {
                        return Poll::Ready(Some(Err(RegistryError::Truncated {
                            registry: this.registry.clone(),
                            what: this.what.clone(),
                            expected: this.size,
                            received: this.received,
                        })));
                    }
                    if !this.verified
                        && let Err(e) = this.check()
                    {
                        return Poll::Ready(Some(Err(e)));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{StreamExt, TryStreamExt, stream};

    use super::*;

    fn src(parts: &[&'static [u8]]) -> BlobStream {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    async fn run(
        parts: &[&'static [u8]],
        expected: &Digest,
        size: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let chunks: Vec<Bytes> = Verify::new(src(parts), expected, size, "r", "blob")
            .try_collect()
            .await?;
        Ok(chunks.concat())
    }

    #[tokio::test]
    async fn passes_good_content() {
        let d = Digest::of(b"hello world");
        assert_eq!(
            run(&[b"hello ", b"world"], &d, 11).await.unwrap(),
            b"hello world"
        );
        assert_eq!(run(&[], &Digest::of(b""), 0).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn never_ok_for_bad_content() {
        let d = Digest::of(b"hello world");
        let mut s = Verify::new(src(&[b"hello ", b"WORLD"]), &d, 11, "r", "blob");
        assert_eq!(
            s.next().await.unwrap().unwrap(),
            Bytes::from_static(b"hello ")
        );
        assert!(matches!(
            s.next().await,
            Some(Err(RegistryError::DigestMismatch { .. }))
        ));
        assert!(s.next().await.is_none());
        assert!(matches!(
            run(&[b"hello"], &d, 11).await,
            Err(RegistryError::Truncated { received: 5, .. })
        ));
        assert!(matches!(
            run(&[b"hello world!"], &d, 11).await,
            Err(RegistryError::Invalid { .. })
        ));
        assert!(matches!(
            run(&[], &d, 0).await,
            Err(RegistryError::DigestMismatch { .. })
        ));
    }
}
