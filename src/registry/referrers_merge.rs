//! Adding a referrer to its tag-schema index `sha256-<subject hex>` (registries without the
//! referrers API): the read-modify-write that converges under concurrent writers, and
//! [`Registry::push_referrer_checked`], which lets its caller re-check what the subject's
//! referrers are from the very read the entry is then merged into (one GET, not two).
//!
//! Convergence: Distribution has no conditional PUT, so a writer that read the index
//! before another's write and writes after it drops that entry. Every writer therefore
//! re-reads its index after a pause longer than a read-modify-write and merges again while
//! its entry is missing; that holds only while the read an entry is merged into is younger
//! than the pause when the index is written — which is why a check that may have taken time
//! (it read the listed manifests) is followed by a fresh read.

use serde_json::{Value, json};

use super::{
    REFERRERS_MERGE_ROUNDS, RawManifest, Referrer, Registry, RegistryError, jittered,
    referrer_descriptor, referrers_from_index,
};
use crate::model::{Digest, media};

/// What [`Registry::push_referrer_checked`] did.
#[derive(Debug)]
pub enum Pushed<T> {
    /// The check found the target already held: no index lists the pushed manifest (on a
    /// tag-schema registry it was stored by digest, unreferenced, like content an
    /// interrupted run leaves).
    Held(T),
    /// The manifest is listed. The subject's referrers as this push last saw them,
    /// the pushed manifest among them: on the tag schema, the index as re-read after the
    /// write (or as read, when it already listed it); with the referrers API, the listing
    /// the check read plus the pushed manifest.
    Listed(Vec<Referrer>),
}

impl Registry {
    /// Push `m` (a manifest whose `subject` is `subject`) as [`Registry::push_referrer`]
    /// does, after `check` has seen the subject's referrers as they are now: when it returns
    /// `Some`, nothing is added to any listing and that is returned as [`Pushed::Held`].
    ///
    /// On a registry known to keep the tag schema (a layout, or no referrers API), `m` is
    /// stored first (content before the index entry), then the index is read once under its
    /// lock, `check` sees what it lists, and the entry is merged into that same read — unless
    /// it listed anything (`check` may have read those manifests meanwhile): then it is
    /// read again before the merge. Elsewhere `check` sees the referrers listing (the API,
    /// probed if not known yet) before `m` is pushed, as a registry with the API lists it
    /// the moment it is stored.
    pub async fn push_referrer_checked<T>(
        &self,
        repo: &str,
        m: &RawManifest,
        subject: &Digest,
        check: impl AsyncFnOnce(&[Referrer]) -> Result<Option<T>, RegistryError>,
    ) -> Result<Pushed<T>, RegistryError> {
        let tag_schema = match self {
            Registry::Layout(_) => true,
            Registry::Http(h) => h.has_referrers_api() == Some(false),
        };
        let tag = subject.referrers_tag();
        let what = format!("update the referrers index {repo}:{tag}");
        if !tag_schema {
            let mut listed = self.referrers(repo, subject, None).await?;
            if let Some(held) = check(&listed).await? {
                return Ok(Pushed::Held(held));
            }
            self.push_referrer(repo, m, subject).await?;
            if !listed.iter().any(|r| r.digest == m.digest) {
                listed.extend(self.listing(&what, &as_index(vec![self.entry(&what, m)?]))?);
            }
            return Ok(Pushed::Listed(listed));
        }
        let put = self.put_manifest(repo, &m.digest.to_string(), m).await?;
        if put.subject_indexed {
            tracing::warn!(
                registry = self.key(),
                "the registry answered OCI-Subject but has no referrers API: keeping the \
                 referrers tag schema"
            );
        }
        let lock = self.referrers_lock(repo, &tag);
        let _guard = lock.lock().await;
        let current = self.get_manifest(repo, &tag).await?;
        let listed = self.listing(&what, &self.index_of(&what, current.as_ref())?)?;
        if let Some(held) = check(&listed).await? {
            return Ok(Pushed::Held(held));
        }
        let current = if listed.is_empty() {
            current
        } else {
            self.get_manifest(repo, &tag).await?
        };
        let index = self.merge_referrer(repo, m, &tag, current).await?;
        self.listing(&what, &index).map(Pushed::Listed)
    }

    /// Add `m`'s entry to the tag-schema index `tag`, `current` being the index as just read
    /// under its lock (None: there is none), write it, then re-read after a pause and merge
    /// again while the entry is missing (see the module documentation). The index as last
    /// read or written, listing `m`.
    pub(super) async fn merge_referrer(
        &self,
        repo: &str,
        m: &RawManifest,
        tag: &str,
        current: Option<RawManifest>,
    ) -> Result<Value, RegistryError> {
        let what = format!("update the referrers index {repo}:{tag}");
        let entry = self.entry(&what, m)?;
        let digest = m.digest.to_string();
        let mut index = self.index_of(&what, current.as_ref())?;
        if lists(self.manifests(&what, &mut index)?, &digest) {
            return Ok(index);
        }
        self.manifests(&what, &mut index)?.push(entry.clone());
        self.put_referrers_index(repo, tag, &mut index, digest.as_str())
            .await?;
        // Another process (a second apply) may have read the index before this write and
        // written its own version after it, dropping this entry: re-read after a pause
        // longer than such a read-modify-write, and merge again while the entry is missing.
        for _ in 0..REFERRERS_MERGE_ROUNDS {
            tokio::time::sleep(jittered(std::time::Duration::from_millis(100))).await;
            let current = self.get_manifest(repo, tag).await?;
            let mut index = self.index_of(&what, current.as_ref())?;
            if lists(self.manifests(&what, &mut index)?, &digest) {
                return Ok(index);
            }
            tracing::info!("{what}: another writer replaced it; merging again");
            self.manifests(&what, &mut index)?.push(entry.clone());
            self.put_referrers_index(repo, tag, &mut index, digest.as_str())
                .await?;
        }
        Err(RegistryError::invalid(
            self.key(),
            &what,
            format!(
                "other writers kept replacing the index ({REFERRERS_MERGE_ROUNDS} merges); \
                 run apply again"
            ),
        ))
    }

    /// The index `current` holds as JSON (an empty one when there is none); a tag holding
    /// anything but an index is an error.
    fn index_of(&self, what: &str, current: Option<&RawManifest>) -> Result<Value, RegistryError> {
        match current {
            Some(c) if !c.is_index() => Err(RegistryError::invalid(
                self.key(),
                what,
                format!("the tag holds a {}, not an index", c.media_type),
            )),
            Some(c) => serde_json::from_slice::<Value>(&c.bytes)
                .map_err(|e| RegistryError::invalid(self.key(), what, e.to_string())),
            None => Ok(as_index(Vec::new())),
        }
    }

    /// The `manifests` list of `index` (created when absent).
    fn manifests<'v>(
        &self,
        what: &str,
        index: &'v mut Value,
    ) -> Result<&'v mut Vec<Value>, RegistryError> {
        index
            .as_object_mut()
            .map(|o| o.entry("manifests").or_insert_with(|| json!([])))
            .and_then(|v| v.as_array_mut())
            .ok_or_else(|| {
                RegistryError::invalid(self.key(), what, "the index has no manifests list")
            })
    }

    /// `m`'s entry in a tag-schema index.
    fn entry(&self, what: &str, m: &RawManifest) -> Result<Value, RegistryError> {
        referrer_descriptor(m).map_err(|e| RegistryError::invalid(self.key(), what, e))
    }

    /// The referrers `index` lists, once each.
    fn listing(&self, what: &str, index: &Value) -> Result<Vec<Referrer>, RegistryError> {
        let bytes = serde_json::to_vec(index).expect("json");
        let all = referrers_from_index(&bytes)
            .map_err(|e| RegistryError::invalid(self.key(), what, e))?;
        let mut seen = std::collections::HashSet::new();
        Ok(all
            .into_iter()
            .filter(|r| seen.insert(r.digest.clone()))
            .collect())
    }
}

/// An OCI index of `manifests`.
fn as_index(manifests: Vec<Value>) -> Value {
    json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests})
}

/// Whether `manifests` has an entry for `digest`.
fn lists(manifests: &[Value], digest: &str) -> bool {
    manifests
        .iter()
        .any(|e| e.get("digest").and_then(|d| d.as_str()) == Some(digest))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::{AuthSpec, Endpoint, RegistrySpec, Transfer};

    fn layout(dir: &std::path::Path) -> Registry {
        Registry::from_spec(&RegistrySpec {
            key: "local".into(),
            endpoint: Endpoint::Layout(dir.to_path_buf()),
            auth: AuthSpec::Anonymous,
            transfer: Transfer::Stream,
            max_concurrency: 2,
            timeouts: Default::default(),
            arm: None,
        })
        .unwrap()
    }

    fn referrer(subject: &Digest, n: u32) -> RawManifest {
        verdict_referrer(subject, json!({"n": n.to_string()}))
    }

    /// A verdict-typed referrer manifest of `subject` with `annotations` (unit-test fixture).
    pub(in crate::registry) fn verdict_referrer(
        subject: &Digest,
        annotations: Value,
    ) -> RawManifest {
        let body = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "artifactType": media::VERDICT_ARTIFACT,
            "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::of(b"{}").to_string(), "size": 2},
            "layers": [],
            "subject": {"mediaType": media::OCI_MANIFEST, "digest": subject.to_string(), "size": 1},
            "annotations": annotations
        });
        RawManifest::new(serde_json::to_vec(&body).unwrap(), None).unwrap()
    }

    fn digests(listed: &[Referrer]) -> Vec<Digest> {
        listed.iter().map(|r| r.digest.clone()).collect()
    }

    #[tokio::test]
    async fn the_check_sees_the_listing_the_entry_is_merged_into_and_can_hold() {
        let dir = tempfile::tempdir().unwrap();
        let r = layout(dir.path());
        let subject = Digest::of(b"subject");
        let (one, two) = (referrer(&subject, 1), referrer(&subject, 2));

        // Nothing listed yet: the check sees nothing; the listing returned has the entry.
        let pushed = r
            .push_referrer_checked("q/x", &one, &subject, async |listed| {
                assert!(listed.is_empty());
                Ok::<Option<()>, RegistryError>(None)
            })
            .await
            .unwrap();
        let Pushed::Listed(listed) = pushed else {
            panic!("{pushed:?}")
        };
        assert_eq!(digests(&listed), vec![one.digest.clone()]);

        // The check sees the first and holds: the second is stored but listed nowhere.
        let pushed = r
            .push_referrer_checked("q/x", &two, &subject, async |listed| {
                Ok(Some(digests(listed)))
            })
            .await
            .unwrap();
        let Pushed::Held(seen) = pushed else {
            panic!("{pushed:?}")
        };
        assert_eq!(seen, vec![one.digest.clone()]);
        let now = r.referrers("q/x", &subject, None).await.unwrap();
        assert_eq!(digests(&now), vec![one.digest.clone()]);
        assert!(
            r.get_manifest("q/x", &two.digest.to_string())
                .await
                .unwrap()
                .is_some(),
            "content before its index entry"
        );

        // A check that lets it through (after a listing: read again, then merged).
        let pushed = r
            .push_referrer_checked("q/x", &two, &subject, async |_| {
                Ok::<Option<()>, RegistryError>(None)
            })
            .await
            .unwrap();
        let Pushed::Listed(listed) = pushed else {
            panic!("{pushed:?}")
        };
        assert_eq!(
            digests(&listed),
            vec![one.digest.clone(), two.digest.clone()]
        );
        // Pushed again: already listed, listed once.
        let again = r
            .push_referrer_checked("q/x", &two, &subject, async |_| {
                Ok::<Option<()>, RegistryError>(None)
            })
            .await
            .unwrap();
        let Pushed::Listed(listed) = again else {
            panic!("{again:?}")
        };
        assert_eq!(
            digests(&listed),
            vec![one.digest.clone(), two.digest.clone()]
        );
    }

    #[tokio::test]
    async fn a_check_error_writes_no_entry() {
        let dir = tempfile::tempdir().unwrap();
        let r = layout(dir.path());
        let subject = Digest::of(b"subject");
        let one = referrer(&subject, 1);
        let e = r
            .push_referrer_checked("q/x", &one, &subject, async |_| {
                Err::<Option<()>, _>(RegistryError::invalid("local", "check", "refused"))
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
        assert!(r.referrers("q/x", &subject, None).await.unwrap().is_empty());
    }
}
