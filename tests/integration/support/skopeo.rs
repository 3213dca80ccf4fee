//! skopeo as an independent client to cross-check what airlock (or the harness) wrote:
//! raw manifests and their digests, and copies in and out of registries and OCI layouts.
//! Async (tokio::process) so a token server or proxy running in the test's runtime keeps
//! serving while skopeo talks to it.

use std::path::Path;

use airlock::model::{Digest, media};

use super::client::Creds;
use super::images::{Content, write_oci_layout, write_skopeo_dir};

/// Run skopeo with these arguments; panic with its stderr when it fails.
pub async fn skopeo(args: &[String]) -> Vec<u8> {
    super::ensure_tools();
    let out = tokio::process::Command::new("skopeo")
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run skopeo ({e}); install it with: {}",
                super::INSTALL_HINT
            )
        });
    assert!(
        out.status.success(),
        "skopeo {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The raw manifest bytes of `docker://host/image` (`image` is `repo:tag` or `repo@digest`).
pub async fn skopeo_raw(host: &str, image: &str) -> Vec<u8> {
    skopeo_raw_as(host, image, None).await
}

/// [`skopeo_raw`] with credentials.
pub async fn skopeo_raw_as(host: &str, image: &str, creds: Creds<'_>) -> Vec<u8> {
    let mut args: Vec<String> = vec![
        "inspect".into(),
        "--raw".into(),
        "--tls-verify=false".into(),
    ];
    args.extend(creds_args("--creds", creds));
    args.push(format!("docker://{host}/{image}"));
    skopeo(&args).await
}

/// The digest of the manifest `image` names (sha256 of the raw bytes skopeo fetched).
pub async fn skopeo_digest(host: &str, image: &str) -> Digest {
    Digest::of(&skopeo_raw(host, image).await)
}

/// [`skopeo_digest`] with credentials.
pub async fn skopeo_digest_as(host: &str, image: &str, creds: Creds<'_>) -> Digest {
    Digest::of(&skopeo_raw_as(host, image, creds).await)
}

/// `skopeo copy --all --preserve-digests` between two transports references (`docker://…`,
/// `oci:DIR:tag`), TLS verification off on both sides.
pub async fn skopeo_copy(src: &str, dst: &str, src_creds: Creds<'_>, dst_creds: Creds<'_>) {
    let mut args: Vec<String> = vec![
        "--insecure-policy".into(),
        "copy".into(),
        "--all".into(),
        "--preserve-digests".into(),
        "--src-tls-verify=false".into(),
        "--dest-tls-verify=false".into(),
    ];
    args.extend(creds_args("--src-creds", src_creds));
    args.extend(creds_args("--dest-creds", dst_creds));
    args.push(src.into());
    args.push(dst.into());
    skopeo(&args).await;
}

/// Push the OCI layout at `dir` (tag `layout_tag`) to `docker://host/image` with skopeo.
pub async fn skopeo_copy_to(dir: &Path, layout_tag: &str, host: &str, image: &str) {
    skopeo_copy(
        &format!("oci:{}:{layout_tag}", dir.display()),
        &format!("docker://{host}/{image}"),
        None,
        None,
    )
    .await;
}

/// Push `content` to `docker://host/image` with skopeo, through an OCI layout for OCI
/// content and a `dir:` directory for Docker content (skopeo's `oci:` reader takes only OCI
/// media types). Digests are preserved.
pub async fn skopeo_push(content: &impl Content, host: &str, image: &str, creds: Creds<'_>) {
    let tmp = tempfile::tempdir().expect("create skopeo source dir");
    let top = content.top();
    let src = if top.media_type == media::OCI_INDEX || top.media_type == media::OCI_MANIFEST {
        write_oci_layout(tmp.path(), "src", content);
        format!("oci:{}:src", tmp.path().display())
    } else {
        write_skopeo_dir(tmp.path(), content);
        format!("dir:{}", tmp.path().display())
    };
    skopeo_copy(&src, &format!("docker://{host}/{image}"), None, creds).await;
}

fn creds_args(flag: &str, creds: Creds<'_>) -> Vec<String> {
    match creds {
        Some((u, p)) => vec![format!("{flag}={u}:{p}")],
        None => Vec::new(),
    }
}
