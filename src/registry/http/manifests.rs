//! Manifests by tag or digest, tag lists and the catalog.

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::Deserialize;

use super::transport::{Body, Pages, Request, announced_digest};
use super::{HttpRegistry, Inner, content_length, content_type, is_digest};
use crate::model::{Digest, RawManifest, media};
use crate::registry::auth;
use crate::registry::error::{RegistryError, Result};
use crate::registry::{Descriptor, PutManifest};

impl HttpRegistry {
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<Descriptor>> {
        let i = &self.inner;
        let what = format!("check manifest {repo}:{reference}");
        let url = i.url(&format!("{repo}/manifests/{reference}"))?;
        let req = Request::new(Method::HEAD, url, vec![auth::pull_scope(repo)], &what)
            .header(ACCEPT, media::MANIFEST_ACCEPT)
            .racy()
            .missing_is_none();
        let Some(head) = i.send(&req, &Body::None).await? else {
            return Ok(None);
        };
        let headers = head.headers;
        let digest = announced_digest(&headers).and_then(Result::ok);
        let media_type =
            content_type(&headers).filter(|ct| media::is_index(ct) || media::is_manifest(ct));
        let size = content_length(&headers);
        match (digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size)) if size > 0 => {
                if let Some(want) = is_digest(reference)
                    && want != digest
                {
                    return Err(RegistryError::DigestMismatch {
                        what: format!("manifest {repo}@{want} on `{}`", i.key),
                        expected: want,
                        actual: digest,
                    });
                }
                Ok(Some(Descriptor {
                    digest,
                    media_type,
                    size,
                }))
            }
            // Incomplete HEAD answer: read the manifest itself.
            _ => Ok(self
                .get_manifest(repo, reference)
                .await?
                .map(Descriptor::from)),
        }
    }

    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<Option<RawManifest>> {
        let i = &self.inner;
        if let Some(d) = is_digest(reference)
            && let Some(m) = i.cached_manifest(repo, &d)
        {
            return Ok(Some(m));
        }
        let what = format!("get manifest {repo}:{reference}");
        let url = i.url(&format!("{repo}/manifests/{reference}"))?;
        let req = Request::new(Method::GET, url, vec![auth::pull_scope(repo)], &what)
            .header(ACCEPT, media::MANIFEST_ACCEPT)
            .racy()
            .missing_is_none()
            .read(i.opts.max_manifest_size);
        let Some(got) = i.send(&req, &Body::None).await? else {
            return Ok(None);
        };
        let (headers, body) = (got.headers, got.body);
        let actual = Digest::of(&body);
        let label = format!("manifest {repo}:{reference} from `{}`", i.key);
        if let Some(want) = is_digest(reference)
            && want != actual
        {
            return Err(RegistryError::DigestMismatch {
                what: label,
                expected: want,
                actual,
            });
        }
        if let Some(announced) = announced_digest(&headers) {
            let announced = announced.map_err(|e| {
                RegistryError::invalid(&i.key, &what, format!("bad Docker-Content-Digest: {e}"))
            })?;
            if announced != actual {
                return Err(RegistryError::DigestMismatch {
                    what: label,
                    expected: announced,
                    actual,
                });
            }
        }
        let m = RawManifest::new(body.to_vec(), content_type(&headers).as_deref())
            .map_err(|e| RegistryError::invalid(&i.key, &what, e.to_string()))?;
        i.cache_manifest(repo, &m);
        Ok(Some(m))
    }

    /// Store `m` under `tag`, else under its digest ([`crate::registry::Registry::put_manifest`]
    /// checked a digest reference).
    pub async fn put_manifest(
        &self,
        repo: &str,
        m: &RawManifest,
        tag: Option<&str>,
    ) -> Result<PutManifest> {
        let i = &self.inner;
        let reference = tag.map_or_else(|| m.digest.to_string(), str::to_string);
        let what = format!("put manifest {repo}:{reference}");
        let url = i.url(&format!("{repo}/manifests/{reference}"))?;
        let body = Body::Bytes(Bytes::from(m.bytes.clone()));
        let req = Request::new(Method::PUT, url, vec![auth::push_scope(repo)], &what)
            .header(CONTENT_TYPE, &m.media_type);
        let headers = i.answer(&req, &body).await?.headers;
        i.check_stored(&headers, &m.digest, &format!("manifest {repo}:{reference}"))?;
        i.cache_manifest(repo, m);
        Ok(PutManifest {
            subject_indexed: headers.contains_key("oci-subject"),
        })
    }

    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<()> {
        let i = &self.inner;
        let what = format!("delete manifest {repo}@{digest}");
        i.evict_manifest(repo, digest);
        let url = i.url(&format!("{repo}/manifests/{digest}"))?;
        // Already gone (404): deleting is idempotent.
        let req = Request::new(Method::DELETE, url, vec![auth::delete_scope(repo)], &what)
            .missing_is_none();
        i.send(&req, &Body::None).await?;
        Ok(())
    }

    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        let i = &self.inner;
        let what = format!("list tags of {repo}");
        let url = i.url(&format!("{repo}/tags/list"))?;
        // A repository that does not exist (404, NAME_UNKNOWN) has no tags.
        i.list(url, vec![auth::pull_scope(repo)], &what, true, |body| {
            serde_json::from_slice::<Tags>(body)
                .map(|t| t.tags.unwrap_or_default())
                .map_err(|e| format!("bad tag list: {e}"))
        })
        .await
    }

    pub async fn catalog(&self) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Catalog {
            repositories: Option<Vec<String>>,
        }
        let i = &self.inner;
        let what = "list repositories (catalog)".to_string();
        let mut url = i.url("_catalog")?;
        url.query_pairs_mut().append_pair("n", "1000");
        i.list(
            url,
            vec![auth::CATALOG_SCOPE.to_string()],
            &what,
            false,
            |body| {
                serde_json::from_slice::<Catalog>(body)
                    .map(|c| c.repositories.unwrap_or_default())
                    .map_err(|e| format!("bad catalog: {e}"))
            },
        )
        .await
    }
}

impl Inner {
    /// A paged JSON listing of names (tags, repositories), page by page along `Link`,
    /// sorted and without duplicates. A 404 on any page is an empty listing when
    /// `missing_is_empty` (NAME_UNKNOWN), else an error.
    async fn list(
        &self,
        mut url: Url,
        scopes: Vec<String>,
        what: &str,
        missing_is_empty: bool,
        names: impl Fn(&[u8]) -> Result<Vec<String>, String>,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut pages = Pages::new(&url);
        loop {
            let page = self
                .get_page(&url, scopes.clone(), what, missing_is_empty)
                .await?;
            let Some((body, next)) = page else {
                return Ok(Vec::new());
            };
            out.extend(names(&body).map_err(|m| RegistryError::invalid(&self.key, what, m))?);
            match pages.next(&self.key, what, next)? {
                Some(n) => url = n,
                None => break,
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// One page of a paged JSON listing: body and the next page's URL. `None` on 404
    /// when `missing_is_empty` (NAME_UNKNOWN), else 404 is an error.
    async fn get_page(
        &self,
        url: &Url,
        scopes: Vec<String>,
        what: &str,
        missing_is_empty: bool,
    ) -> Result<Option<(Bytes, Option<Url>)>> {
        let mut req = Request::new(Method::GET, url.clone(), scopes, what)
            .header(ACCEPT, "application/json")
            .read(64 * 1024 * 1024);
        if missing_is_empty {
            req = req.missing_is_none();
        }
        Ok(self.send(&req, &Body::None).await?.map(|page| {
            let next = page.next_page();
            (page.body, next)
        }))
    }
}
