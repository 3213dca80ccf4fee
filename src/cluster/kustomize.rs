//! `images --format kustomize`: a kustomize `images:` list that pins every way manifests write
//! a declared image's name to its live name and digest.
//!
//! kustomize (v5) matches an entry against a container image with the regular expression
//! `^<name>(:<tag>)?(@sha256:<digest>)?$` and then replaces the name and, with `digest`, the
//! tag and digest. It does not normalise names, so one entry is written per spelling:
//! `host/path` always, and for Docker Hub also `path`, `docker.io/…`, `index.docker.io/…`,
//! `registry-1.docker.io/…` and, for official images, the forms without `library/`.
//! A repository declared with more than one tag gets tag-qualified names
//! (`docker.io/library/busybox:1.36.1`) and digest-qualified ones (`…@sha256:<live digest>`)
//! instead, so that each version is pinned to its own digest and any other version of it is
//! left alone (and then denied by the admission policy), never pinned to the wrong one.

use std::collections::BTreeMap;

use super::LiveSet;
use crate::model::Reference;
use crate::model::reference::DOCKER_HUB;

/// One `images:` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub new_name: String,
    pub digest: String,
}

/// The spellings of a source repository that container runtimes resolve to it.
pub fn name_forms(source: &Reference) -> Vec<String> {
    let mut forms = vec![source.repository()];
    if source.host == DOCKER_HUB {
        let p = &source.path;
        forms.extend([
            p.clone(),
            format!("index.docker.io/{p}"),
            format!("registry-1.docker.io/{p}"),
        ]);
        if let Some(short) = p.strip_prefix("library/") {
            forms.extend([
                short.to_string(),
                format!("docker.io/{short}"),
                format!("index.docker.io/{short}"),
            ]);
        }
    }
    forms.sort();
    forms.dedup();
    forms
}

/// The entries for every image in live, sorted by name.
pub fn entries(set: &LiveSet) -> Vec<Entry> {
    // How many tags each source repository is declared with (in live or not).
    let mut declared: BTreeMap<String, usize> = BTreeMap::new();
    for i in &set.images {
        *declared.entry(i.source.repository()).or_default() += 1;
    }
    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    for (img, digest) in set.live() {
        let new_name = set.live_name(&img.repository);
        let several = declared[&img.source.repository()] > 1;
        for form in name_forms(&img.source) {
            let names = if several {
                let mut n = vec![format!("{form}:{}", img.tag), format!("{form}@{digest}")];
                if let Some(pin) = &img.source.digest
                    && pin != digest
                {
                    n.push(format!("{form}@{pin}"));
                }
                n
            } else {
                vec![form]
            };
            for name in names {
                out.insert(
                    name.clone(),
                    Entry {
                        name,
                        new_name: new_name.clone(),
                        digest: digest.to_string(),
                    },
                );
            }
        }
    }
    out.into_values().collect()
}

/// The kustomization fragment: `images:` and one entry per name.
pub fn render(set: &LiveSet) -> String {
    let entries = entries(set);
    if entries.is_empty() {
        return "images: []\n".to_string();
    }
    let mut s = String::from("images:\n");
    for e in entries {
        s.push_str(&format!(
            "  - name: {}\n    newName: {}\n    digest: {}\n",
            e.name, e.new_name, e.digest
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{LiveImage, LiveState, Missing};
    use crate::model::Digest;

    fn image(source: &str, state: LiveState) -> LiveImage {
        let source: Reference = source.parse().unwrap();
        LiveImage {
            repository: format!("live/{}", source.path),
            tag: source.tag.clone().unwrap(),
            source,
            state,
        }
    }

    fn set(images: Vec<LiveImage>) -> LiveSet {
        LiveSet {
            host: "acr.example.io".into(),
            prefix: "live".into(),
            images,
        }
    }

    #[test]
    fn docker_hub_official_images_get_every_spelling() {
        let d = Digest::of(b"busybox");
        let s = set(vec![image("busybox:1.33.0", LiveState::Live(d.clone()))]);
        let names: Vec<String> = entries(&s).into_iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "busybox",
                "docker.io/busybox",
                "docker.io/library/busybox",
                "index.docker.io/busybox",
                "index.docker.io/library/busybox",
                "library/busybox",
                "registry-1.docker.io/library/busybox",
            ]
        );
        for e in entries(&s) {
            assert_eq!(e.new_name, "acr.example.io/live/library/busybox");
            assert_eq!(e.digest, d.to_string());
        }
    }

    #[test]
    fn other_hosts_get_their_full_name_only() {
        let s = set(vec![image(
            "ghcr.io/fluxcd/source-controller:v0.6.3",
            LiveState::Live(Digest::of(b"x")),
        )]);
        let names: Vec<String> = entries(&s).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["ghcr.io/fluxcd/source-controller"]);
    }

    #[test]
    fn several_tags_of_one_repository_are_pinned_each_to_its_own_digest() {
        let (a, b) = (Digest::of(b"1.33.0"), Digest::of(b"1.36.1"));
        let s = set(vec![
            image(
                "docker.io/library/busybox:1.33.0",
                LiveState::Live(a.clone()),
            ),
            image(
                "docker.io/library/busybox:1.36.1",
                LiveState::Live(b.clone()),
            ),
        ]);
        let es = entries(&s);
        assert!(
            es.iter()
                .all(|e| e.name.contains(':') || e.name.contains('@'))
        );
        let find = |n: &str| es.iter().find(|e| e.name == n).unwrap().digest.clone();
        assert_eq!(find("busybox:1.33.0"), a.to_string());
        assert_eq!(find("busybox:1.36.1"), b.to_string());
        assert_eq!(find("docker.io/library/busybox:1.36.1"), b.to_string());
        assert_eq!(find(&format!("library/busybox@{b}")), b.to_string());
        assert_eq!(es.len(), 7 * 4);
    }

    #[test]
    fn an_image_not_in_live_gets_no_entry_and_keeps_its_siblings_tag_qualified() {
        let b = Digest::of(b"1.36.1");
        let s = set(vec![
            image(
                "busybox:1.33.0",
                LiveState::Missing(Missing::Blocked {
                    findings: vec![],
                    other_policy: false,
                }),
            ),
            image("busybox:1.36.1", LiveState::Live(b.clone())),
        ]);
        let es = entries(&s);
        assert!(es.iter().all(|e| e.digest == b.to_string()));
        assert!(es.iter().all(|e| !e.name.ends_with("1.33.0")));
        assert!(!es.iter().any(|e| e.name == "busybox"), "no untagged name");
        assert_eq!(s.missing_report().len(), 1);
        assert!(s.missing_report()[0].contains("blocked by the gate"));
    }

    #[test]
    fn renders_plain_yaml() {
        assert_eq!(render(&set(vec![])), "images: []\n");
        let d = Digest::of(b"x");
        let y = render(&set(vec![image(
            "ghcr.io/a/b:1",
            LiveState::Live(d.clone()),
        )]));
        assert_eq!(
            y,
            format!(
                "images:\n  - name: ghcr.io/a/b\n    newName: acr.example.io/live/a/b\n    digest: {d}\n"
            )
        );
    }
}
