//! Running the airlock binary under test: a temporary work directory holding `airlock.toml`,
//! commands run as child processes (async, so in-process servers keep running), and their
//! exit code, stdout and stderr returned for assertions.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::client::push_raw;
use super::images::{Content, WalkthroughImage, walkthrough_images};
use super::registry::TestRegistry;

/// What a finished command printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panic with both streams unless the exit code is `code`.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A work directory with a configuration.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new(config: &str) -> Workdir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("airlock.toml"), config).expect("write config");
        Workdir { dir }
    }

    /// A work directory whose configuration ([`config`]) declares `images` from `upstream`,
    /// quarantine and live on `target` (URLs), nothing extra.
    pub fn declaring(upstream: &str, target: &str, images: &[WalkthroughImage]) -> Workdir {
        Workdir::new(&config(upstream, target, &sources(images), ""))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("airlock.toml")
    }

    pub fn set_config(&self, config: &str) {
        std::fs::write(self.config(), config).expect("write config");
    }

    /// Run `airlock -c airlock.toml ARGS…` to completion.
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[]).await
    }

    pub async fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = self.command(args, env).output().await.expect("run airlock");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The command, not started (for tests that signal it).
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
        cmd.current_dir(self.path())
            .arg("-c")
            .arg(self.config())
            .args(args)
            .env("NO_COLOR", "1")
            .env("DOCKER_CONFIG", self.path().join("no-docker-config"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }
}

/// A configuration mapping the public hosts `ghcr.io` and `docker.io` (mirror entries) to a
/// local upstream registry, with quarantine and live in `target`.
pub fn config(upstream: &str, target: &str, images: &[String], extra: &str) -> String {
    super::config::Config::new("target")
        .mirror(upstream)
        .anonymous("target", target)
        .extra(extra)
        .images(images)
        .build()
}

/// Push the walkthrough's six images into `upstream` under their paths; returns them.
pub async fn seed_walkthrough(upstream: &TestRegistry) -> Vec<WalkthroughImage> {
    let images = walkthrough_images();
    for w in &images {
        push_raw(&upstream.url(), w.path, w.tag, &w.content, None).await;
    }
    images
}

/// The source references of seeded walkthrough images, as written in configuration.
pub fn sources(images: &[WalkthroughImage]) -> Vec<String> {
    images
        .iter()
        .map(|w| format!("{}/{}:{}", w.upstream_host, w.path, w.tag))
        .collect()
}

/// The top digest of a walkthrough image.
pub fn digest_of(w: &WalkthroughImage) -> airlock::model::Digest {
    w.content.top().digest.clone()
}

/// An upstream holding the walkthrough's six images, an empty target for quarantine and
/// live, and a work directory whose configuration declares all six.
pub struct Walkthrough {
    pub upstream: TestRegistry,
    pub target: TestRegistry,
    pub images: Vec<WalkthroughImage>,
    pub w: Workdir,
}

impl Walkthrough {
    pub async fn start() -> Walkthrough {
        let upstream = TestRegistry::start(super::registry::Auth::None).await;
        let target = TestRegistry::start(super::registry::Auth::None).await;
        let images = seed_walkthrough(&upstream).await;
        let w = Workdir::declaring(&upstream.url(), &target.url(), &images);
        Walkthrough {
            upstream,
            target,
            images,
            w,
        }
    }
}

/// Whether a JSON plan (`plan --format json`) has the action `id`.
pub fn has_action(plan: &serde_json::Value, id: &str) -> bool {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == id)
}

/// An upstream holding the walkthrough's six images, reached through a fault proxy, and an
/// empty target: each test adds its faults to `proxy` and declares what it needs
/// ([`ProxiedWalkthrough::workdir`]).
pub struct ProxiedWalkthrough {
    pub upstream: TestRegistry,
    pub target: TestRegistry,
    pub images: Vec<WalkthroughImage>,
    pub proxy: super::proxy::FaultProxy,
}

impl ProxiedWalkthrough {
    pub async fn start() -> ProxiedWalkthrough {
        let upstream = TestRegistry::start(super::registry::Auth::None).await;
        let target = TestRegistry::start(super::registry::Auth::None).await;
        let images = seed_walkthrough(&upstream).await;
        let proxy = super::proxy::FaultProxy::start(&upstream.url()).await;
        ProxiedWalkthrough {
            upstream,
            target,
            images,
            proxy,
        }
    }

    /// A work directory declaring `images`, pulled through the proxy.
    pub fn workdir(&self, images: &[WalkthroughImage]) -> Workdir {
        Workdir::declaring(&self.proxy.url(), &self.target.url(), images)
    }
}

/// Someone with push rights moves `live/library/busybox:1.33.0` on `target` to another image
/// (built from `label`, returned), around the gate.
pub async fn move_live_busybox(target: &TestRegistry, label: &str) -> super::images::TestImage {
    let other = super::images::ImageBuilder::new(label).build();
    push_raw(
        &target.url(),
        "live/library/busybox",
        "1.33.0",
        &other,
        None,
    )
    .await;
    other
}
