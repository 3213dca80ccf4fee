//! Real, deterministic test images built in Rust: tar layers (sorted entries, fixed mtimes,
//! root owner) gzip-compressed, image configs whose `rootfs.diff_ids` are the sha256 of the
//! uncompressed tars, OCI or Docker v2 manifests, two-platform indexes, and big incompressible
//! layers streamed from a seeded PRNG to a file. Also the OCI-layout writer and the six
//! images of the walkthrough the project grew from.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use airlock::model::{Digest, RawManifest, media};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// 2021-01-01T00:00:00Z, the mtime of every tar entry and the default `created`.
pub const FIXED_MTIME: u64 = 1_609_459_200;
pub const DEFAULT_CREATED: &str = "2021-01-01T00:00:00Z";

/// Manifest flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

impl Format {
    pub fn manifest_type(self) -> &'static str {
        match self {
            Format::Oci => media::OCI_MANIFEST,
            Format::Docker => media::DOCKER_MANIFEST,
        }
    }
    pub fn index_type(self) -> &'static str {
        match self {
            Format::Oci => media::OCI_INDEX,
            Format::Docker => media::DOCKER_LIST,
        }
    }
    pub fn config_type(self) -> &'static str {
        match self {
            Format::Oci => media::OCI_CONFIG,
            Format::Docker => media::DOCKER_CONFIG,
        }
    }
    pub fn gzip_layer_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_LAYER_GZIP,
            Format::Docker => DOCKER_LAYER_GZIP,
        }
    }
    pub fn tar_layer_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_LAYER_TAR,
            Format::Docker => DOCKER_LAYER_TAR,
        }
    }
}

/// Where a blob's bytes are.
#[derive(Clone, Debug)]
pub enum BlobData {
    Memory(Bytes),
    /// A file on disk (big layers), read in a stream when pushed.
    File(PathBuf),
}

/// One blob (config or layer) of a test image.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub data: BlobData,
}

impl Blob {
    pub fn memory(media_type: &str, bytes: impl Into<Bytes>) -> Blob {
        let bytes = bytes.into();
        Blob {
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            media_type: media_type.to_string(),
            data: BlobData::Memory(bytes),
        }
    }

    /// The whole content (reads the file for file blobs).
    pub fn bytes(&self) -> Bytes {
        match &self.data {
            BlobData::Memory(b) => b.clone(),
            BlobData::File(p) => Bytes::from(std::fs::read(p).expect("read blob file")),
        }
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest.to_string(), "size": self.size})
    }
}

/// A built single-platform image.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub name: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    pub format: Format,
    pub manifest: RawManifest,
    /// Config digest and bytes.
    pub config: (Digest, Vec<u8>),
    pub layers: Vec<Blob>,
}

impl TestImage {
    pub fn config_blob(&self) -> Blob {
        Blob::memory(self.format.config_type(), self.config.1.clone())
    }

    /// Sum of the compressed layer sizes.
    pub fn layers_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// The config as JSON.
    pub fn config_json(&self) -> Value {
        serde_json::from_slice(&self.config.1).expect("config is JSON")
    }
}

/// Builds a [`TestImage`]. With no layer given, one default layer of a few files that name
/// the image and its platform (so different names or platforms give different digests).
pub struct ImageBuilder {
    name: String,
    layers: Vec<LayerSpec>,
    user: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    env: Vec<String>,
    created: String,
    platform: String,
    format: Format,
}

enum LayerSpec {
    Files(Vec<(String, Vec<u8>)>),
    Tar(Vec<u8>),
    Prebuilt { blob: Blob, diff_id: Digest },
}

impl ImageBuilder {
    pub fn new(name: &str) -> ImageBuilder {
        ImageBuilder {
            name: name.to_string(),
            layers: Vec::new(),
            user: String::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            created: DEFAULT_CREATED.to_string(),
            platform: "linux/amd64".to_string(),
            format: Format::Oci,
        }
    }

    /// A layer holding one file, `data/layer-<n>.bin`, with these bytes.
    pub fn layer_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        let n = self.layers.len();
        self.layers.push(LayerSpec::Files(vec![(
            format!("data/layer-{n}.bin"),
            bytes.into(),
        )]));
        self
    }

    /// A layer with these files (paths relative, without a leading `/`).
    pub fn layer_files(mut self, files: &[(&str, &[u8])]) -> Self {
        self.layers.push(LayerSpec::Files(
            files
                .iter()
                .map(|(p, b)| (p.trim_start_matches('/').to_string(), b.to_vec()))
                .collect(),
        ));
        self
    }

    /// A layer from an uncompressed tar (gzip-compressed here).
    pub fn layer_tar(mut self, tar: Vec<u8>) -> Self {
        self.layers.push(LayerSpec::Tar(tar));
        self
    }

    /// A prebuilt layer blob (e.g. from [`random_layer_blob`]) with its diff_id.
    pub fn layer_blob(mut self, blob: Blob, diff_id: Digest) -> Self {
        self.layers.push(LayerSpec::Prebuilt { blob, diff_id });
        self
    }

    /// `config.User` ("" and "root" and "0" are root).
    pub fn user(mut self, user: &str) -> Self {
        self.user = user.to_string();
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.to_string(), v.to_string());
        self
    }

    /// A manifest annotation.
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.annotations.insert(k.to_string(), v.to_string());
        self
    }

    pub fn env(mut self, kv: &str) -> Self {
        self.env.push(kv.to_string());
        self
    }

    /// RFC 3339 creation time.
    pub fn created(mut self, rfc3339: &str) -> Self {
        self.created = rfc3339.to_string();
        self
    }

    /// `os/arch[/variant]`, e.g. "linux/arm64" or "linux/arm/v7".
    pub fn platform(mut self, platform: &str) -> Self {
        self.platform = platform.to_string();
        self
    }

    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Shorthand for `.format(Format::Docker)`.
    pub fn docker(self) -> Self {
        self.format(Format::Docker)
    }

    pub fn build(self) -> TestImage {
        let format = self.format;
        let mut specs = self.layers;
        if specs.is_empty() {
            specs.push(LayerSpec::Files(default_files(&self.name, &self.platform)));
        }
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for spec in specs {
            let (blob, diff_id) = match spec {
                LayerSpec::Files(files) => gzip_layer(format, &tar_of(&files)),
                LayerSpec::Tar(tar) => gzip_layer(format, &tar),
                LayerSpec::Prebuilt { blob, diff_id } => (blob, diff_id),
            };
            layers.push(blob);
            diff_ids.push(diff_id.to_string());
        }
        let (os, arch, variant) = split_platform(&self.platform);
        let mut config = json!({
            "architecture": arch,
            "os": os,
            "created": self.created,
            "config": {
                "User": self.user,
                "Env": self.env,
                "Cmd": ["/bin/hello"],
                "Labels": self.labels,
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": self.created, "created_by": format!("airlock test image {}", self.name)}],
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let config_bytes = serde_json::to_vec(&config).expect("serialise config");
        let config_digest = Digest::of(&config_bytes);
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": format.manifest_type(),
            "config": {"mediaType": format.config_type(), "digest": config_digest.to_string(), "size": config_bytes.len()},
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        if !self.annotations.is_empty() {
            manifest["annotations"] = json!(self.annotations);
        }
        let bytes = serde_json::to_vec(&manifest).expect("serialise manifest");
        TestImage {
            name: self.name,
            platform: self.platform,
            format,
            manifest: RawManifest::new(bytes, None).expect("valid manifest"),
            config: (config_digest, config_bytes),
            layers,
        }
    }
}

/// A built multi-platform index and its images.
#[derive(Clone, Debug)]
pub struct TestIndex {
    pub index: RawManifest,
    pub images: Vec<TestImage>,
}

impl TestIndex {
    /// An index of these images (OCI index, or a Docker manifest list when the first image is
    /// Docker), each child with its platform.
    pub fn new(images: Vec<TestImage>) -> TestIndex {
        let format = images.first().map(|i| i.format).unwrap_or(Format::Oci);
        let manifests: Vec<Value> = images
            .iter()
            .map(|img| {
                let (os, arch, variant) = split_platform(&img.platform);
                let mut platform = json!({"architecture": arch, "os": os});
                if let Some(v) = variant {
                    platform["variant"] = json!(v);
                }
                json!({
                    "mediaType": img.manifest.media_type,
                    "digest": img.manifest.digest.to_string(),
                    "size": img.manifest.bytes.len(),
                    "platform": platform,
                })
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": format.index_type(),
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).expect("serialise index");
        TestIndex {
            index: RawManifest::new(bytes, None).expect("valid index"),
            images,
        }
    }

    /// linux/amd64 + linux/arm64 images of `name` in this format.
    pub fn two_platform(name: &str, format: Format) -> TestIndex {
        TestIndex::new(
            ["linux/amd64", "linux/arm64"]
                .iter()
                .map(|p| ImageBuilder::new(name).platform(p).format(format).build())
                .collect(),
        )
    }
}

/// Something pushable: blobs, child manifests, and a top manifest to tag.
pub trait Content {
    /// The manifest a tag points at.
    fn top(&self) -> &RawManifest;
    /// Every manifest, children first, the top one last.
    fn manifests(&self) -> Vec<&RawManifest>;
    /// Every blob once (configs and layers).
    fn blobs(&self) -> Vec<Blob>;
}

impl Content for TestImage {
    fn top(&self) -> &RawManifest {
        &self.manifest
    }
    fn manifests(&self) -> Vec<&RawManifest> {
        vec![&self.manifest]
    }
    fn blobs(&self) -> Vec<Blob> {
        let mut out = vec![self.config_blob()];
        out.extend(self.layers.iter().cloned());
        out
    }
}

impl Content for TestIndex {
    fn top(&self) -> &RawManifest {
        &self.index
    }
    fn manifests(&self) -> Vec<&RawManifest> {
        let mut out: Vec<&RawManifest> = self.images.iter().map(|i| &i.manifest).collect();
        out.push(&self.index);
        out
    }
    fn blobs(&self) -> Vec<Blob> {
        let mut seen = BTreeSet::new();
        self.images
            .iter()
            .flat_map(|i| i.blobs())
            .filter(|b| seen.insert(b.digest.clone()))
            .collect()
    }
}

/// An image or an index.
#[derive(Clone, Debug)]
pub enum TestContent {
    Image(TestImage),
    Index(TestIndex),
}

impl Content for TestContent {
    fn top(&self) -> &RawManifest {
        match self {
            TestContent::Image(i) => i.top(),
            TestContent::Index(i) => i.top(),
        }
    }
    fn manifests(&self) -> Vec<&RawManifest> {
        match self {
            TestContent::Image(i) => i.manifests(),
            TestContent::Index(i) => i.manifests(),
        }
    }
    fn blobs(&self) -> Vec<Blob> {
        match self {
            TestContent::Image(i) => i.blobs(),
            TestContent::Index(i) => i.blobs(),
        }
    }
}

/// One of the walkthrough's images: its upstream host and path, tag and content.
#[derive(Clone, Debug)]
pub struct WalkthroughImage {
    /// "ghcr.io" or "docker.io".
    pub upstream_host: &'static str,
    /// e.g. "fluxcd/kustomize-controller".
    pub path: &'static str,
    pub tag: &'static str,
    pub content: TestContent,
}

impl WalkthroughImage {
    /// `path:tag`.
    pub fn path_tag(&self) -> String {
        format!("{}:{}", self.path, self.tag)
    }
}

/// The six images the walkthrough imports, small (a few KiB each), in its order:
/// kustomize-controller (OCI, non-root), source-controller (OCI index linux/amd64 + arm64,
/// non-root), falco (Docker, root), busybox (Docker, root), kured (Docker, root), envoy-alpine
/// (Docker, user 101). The flux images carry `org.opencontainers.image.source`.
pub fn walkthrough_images() -> Vec<WalkthroughImage> {
    let flux = |name: &str, platform: &str| {
        ImageBuilder::new(&format!("fluxcd/{name}:v0.6.3"))
            .platform(platform)
            .user("65534:65534")
            .label(
                "org.opencontainers.image.source",
                &format!("https://github.com/fluxcd/{name}"),
            )
            .created("2021-01-19T10:00:00Z")
            .build()
    };
    let docker = |name: &str, user: &str, created: &str| {
        ImageBuilder::new(name)
            .docker()
            .user(user)
            .created(created)
            .build()
    };
    vec![
        WalkthroughImage {
            upstream_host: "ghcr.io",
            path: "fluxcd/kustomize-controller",
            tag: "v0.6.3",
            content: TestContent::Image(flux("kustomize-controller", "linux/amd64")),
        },
        WalkthroughImage {
            upstream_host: "ghcr.io",
            path: "fluxcd/source-controller",
            tag: "v0.6.3",
            content: TestContent::Index(TestIndex::new(vec![
                flux("source-controller", "linux/amd64"),
                flux("source-controller", "linux/arm64"),
            ])),
        },
        WalkthroughImage {
            upstream_host: "docker.io",
            path: "falcosecurity/falco",
            tag: "0.26.2",
            content: TestContent::Image(docker(
                "falcosecurity/falco:0.26.2",
                "",
                "2020-10-01T00:00:00Z",
            )),
        },
        WalkthroughImage {
            upstream_host: "docker.io",
            path: "library/busybox",
            tag: "1.33.0",
            content: TestContent::Image(docker(
                "library/busybox:1.33.0",
                "",
                "2021-01-12T00:00:00Z",
            )),
        },
        WalkthroughImage {
            upstream_host: "docker.io",
            path: "weaveworks/kured",
            tag: "1.6.1",
            content: TestContent::Image(docker(
                "weaveworks/kured:1.6.1",
                "root",
                "2021-01-05T00:00:00Z",
            )),
        },
        WalkthroughImage {
            upstream_host: "docker.io",
            path: "envoyproxy/envoy-alpine",
            tag: "v1.15.0",
            content: TestContent::Image(docker(
                "envoyproxy/envoy-alpine:v1.15.0",
                "101",
                "2020-07-07T00:00:00Z",
            )),
        },
    ]
}

fn default_files(name: &str, platform: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "bin/hello".into(),
            format!("#!/bin/sh\necho 'hello from {name} ({platform})'\n").into_bytes(),
        ),
        (
            "etc/airlock-test/image".into(),
            format!("name={name}\nplatform={platform}\n").into_bytes(),
        ),
        (
            "usr/share/doc/airlock-test/README".into(),
            b"A test image built by the airlock integration harness.\n".to_vec(),
        ),
    ]
}

/// A deterministic uncompressed tar of these files: parent directories included, entries
/// sorted, mtime [`FIXED_MTIME`], owner 0:0, mode 0755 for `bin/` files and dirs, else 0644.
pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut entries: BTreeMap<String, Option<&[u8]>> = BTreeMap::new();
    for (path, data) in files {
        let path = path.trim_start_matches('/');
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            entries.insert(format!("{}/", p.display()), None);
            parent = p.parent();
        }
        entries.insert(path.to_string(), Some(data));
    }
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(FIXED_MTIME);
        h.set_uid(0);
        h.set_gid(0);
        match data {
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, &path, std::io::empty())
                    .expect("tar dir");
            }
            Some(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(if path.starts_with("bin/") {
                    0o755
                } else {
                    0o644
                });
                h.set_size(data.len() as u64);
                b.append_data(&mut h, &path, data).expect("tar file");
            }
        }
    }
    b.into_inner().expect("finish tar")
}

/// gzip a tar: the layer blob and its diff_id (sha256 of the uncompressed tar).
pub fn gzip_layer(format: Format, tar: &[u8]) -> (Blob, Digest) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(tar).expect("gzip layer");
    let compressed = gz.finish().expect("finish gzip");
    (
        Blob::memory(format.gzip_layer_type(), compressed),
        Digest::of(tar),
    )
}

/// Write an uncompressed tar layer holding one file (`data/random-<seed>.bin`) of `size`
/// bytes from a ChaCha8 PRNG seeded with `seed` (incompressible, deterministic), streamed to `path`
/// so big layers never sit in memory. Returns the blob digest and size; for an uncompressed
/// layer the diff_id is the same digest.
pub fn write_random_layer(path: &Path, size: u64, seed: u64) -> (Digest, u64) {
    let file = std::fs::File::create(path).expect("create random layer");
    let mut out = HashingWriter {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: 0,
    };
    let mut h = tar::Header::new_ustar();
    h.set_path(format!("data/random-{seed}.bin"))
        .expect("tar path");
    h.set_mtime(FIXED_MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_cksum();
    out.write_all(h.as_bytes()).expect("write tar header");
    let mut rng =
        <rand_chacha::ChaCha8Rng as rand_chacha::rand_core::SeedableRng>::seed_from_u64(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rand_chacha::rand_core::RngCore::fill_bytes(&mut rng, &mut buf[..n]);
        out.write_all(&buf[..n]).expect("write random data");
        left -= n as u64;
    }
    let pad = (512 - (size % 512) as usize) % 512;
    out.write_all(&vec![0u8; pad + 1024])
        .expect("write tar trailer");
    out.inner.flush().expect("flush random layer");
    (Digest::from_sha256(&out.hasher.finalize()), out.written)
}

/// [`write_random_layer`] as a layer [`Blob`] and its diff_id, for [`ImageBuilder::layer_blob`].
pub fn random_layer_blob(path: &Path, size: u64, seed: u64, format: Format) -> (Blob, Digest) {
    let (digest, len) = write_random_layer(path, size, seed);
    (
        Blob {
            digest: digest.clone(),
            size: len,
            media_type: format.tar_layer_type().to_string(),
            data: BlobData::File(path.to_path_buf()),
        },
        digest,
    )
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `os/arch[/variant]` split.
pub fn split_platform(p: &str) -> (String, String, Option<String>) {
    let mut parts = p.split('/');
    let os = parts.next().unwrap_or("linux").to_string();
    let arch = parts.next().unwrap_or("amd64").to_string();
    (os, arch, parts.next().map(str::to_string))
}

/// Write `content` into an OCI image layout at `dir` (created if needed) under `tag`; a
/// layout that already holds other tags keeps them.
pub fn write_oci_layout(dir: &Path, tag: &str, content: &impl Content) {
    let blobs_dir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs_dir).expect("create layout blobs dir");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
    for blob in content.blobs() {
        let target = blobs_dir.join(blob.digest.hex());
        match &blob.data {
            BlobData::Memory(b) => std::fs::write(&target, b).expect("write layout blob"),
            BlobData::File(p) => {
                std::fs::copy(p, &target).expect("copy layout blob");
            }
        }
    }
    for m in content.manifests() {
        std::fs::write(blobs_dir.join(m.digest.hex()), &m.bytes).expect("write layout manifest");
    }
    let index_path = dir.join("index.json");
    let mut index: Value = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({"schemaVersion": 2, "manifests": []}));
    let top = content.top();
    let list = index["manifests"]
        .as_array_mut()
        .expect("layout index has manifests");
    list.retain(|d| d["annotations"]["org.opencontainers.image.ref.name"] != tag);
    list.push(json!({
        "mediaType": top.media_type,
        "digest": top.digest.to_string(),
        "size": top.bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    std::fs::write(
        &index_path,
        serde_json::to_vec(&index).expect("serialise layout index"),
    )
    .expect("write layout index.json");
}

/// Write `content` as a skopeo `dir:` directory (`manifest.json` for the top manifest,
/// `<hex>.manifest.json` for an index's children, blobs by hex digest). Unlike an OCI layout
/// it carries Docker media types too, which skopeo's `oci:` reader refuses.
pub fn write_skopeo_dir(dir: &Path, content: &impl Content) {
    std::fs::create_dir_all(dir).expect("create dir layout");
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n")
        .expect("write dir version");
    for blob in content.blobs() {
        let target = dir.join(blob.digest.hex());
        match &blob.data {
            BlobData::Memory(b) => std::fs::write(&target, b).expect("write dir blob"),
            BlobData::File(p) => {
                std::fs::copy(p, &target).expect("copy dir blob");
            }
        }
    }
    let top = content.top();
    for m in content.manifests() {
        let name = if m.digest == top.digest {
            "manifest.json".to_string()
        } else {
            format!("{}.manifest.json", m.digest.hex())
        };
        std::fs::write(dir.join(name), &m.bytes).expect("write dir manifest");
    }
}
