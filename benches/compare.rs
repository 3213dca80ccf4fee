//! Side-by-side benchmark: airlock (the release binary) against skopeo and against the raw
//! limit (curl), on one machine, in one run. Two real Docker Distribution registries on
//! loopback: an upstream seeded with the benchmark images, and a fresh target registry per
//! tool and run (so every run starts from empty repositories and nobody's earlier uploads).
//! Tools are timed alternately (airlock, skopeo, curl; the order reversed every other run)
//! and the medians compared. skopeo runs with an empty blob-info cache each time (as the
//! `nobody` user with a fresh HOME when run as root), so it never mounts from an earlier run.
//!
//! Run it with `scripts/bench` (installs the tools) or `cargo bench --bench compare`.
//! Knobs (environment): BENCH_RUNS (5), BENCH_LARGE_MIB (512), BENCH_HUGE_MIB (1024),
//! BENCH_SMALL (200), BENCH_NOOP (1000), BENCH_MAX_CONCURRENCY (airlock's per-registry bound,
//! default: airlock's default), BENCH_ONLY (comma list of large,small,walk,noop,huge),
//! BENCH_KEEP_LOGS (print registry request counts), BENCH_HOLD (seed the upstream, print its
//! URL and wait: for profiling by hand).
//!
//! No assertion here is a test: a missed target is printed as `miss`, never a panic.

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use airlock::model::{Digest, media};
use futures_util::{StreamExt, stream};
use reqwest::Method;

use support::client::RawClient;
use support::images::{Content, Format, ImageBuilder, TestImage, random_layer_blob};
use support::registry::{Auth, TestRegistry};

const NOBODY: u32 = 65534;

struct Knobs {
    runs: usize,
    large_mib: u64,
    huge_mib: u64,
    small: usize,
    noop: usize,
    max_concurrency: Option<usize>,
    only: Option<Vec<String>>,
}

impl Knobs {
    fn from_env() -> Knobs {
        let num = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Knobs {
            runs: num("BENCH_RUNS", 5) as usize,
            large_mib: num("BENCH_LARGE_MIB", 512),
            huge_mib: num("BENCH_HUGE_MIB", 1024),
            small: num("BENCH_SMALL", 200) as usize,
            noop: num("BENCH_NOOP", 1000) as usize,
            max_concurrency: std::env::var("BENCH_MAX_CONCURRENCY")
                .ok()
                .and_then(|v| v.parse().ok()),
            only: std::env::var("BENCH_ONLY")
                .ok()
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
        }
    }

    fn wants(&self, s: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|x| x == s))
    }
}

/// One timed process: wall time, peak RSS (KiB, airlock only), exit code and output.
struct Timed {
    wall: Duration,
    rss_kib: Option<u64>,
    code: i32,
    stdout: String,
    stderr: String,
}

/// Samples of one measurement.
#[derive(Default, Clone)]
struct Samples(Vec<Duration>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }
    fn median(&self) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64()).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        })
    }
    fn list(&self) -> String {
        self.0
            .iter()
            .map(|d| format!("{:.3}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

// ---------------------------------------------------------------------------------------
// Images

struct Upstream {
    reg: TestRegistry,
    large: TestImage,
    huge: Option<TestImage>,
    walkthrough: Vec<support::images::WalkthroughImage>,
    _dir: tempfile::TempDir,
}

fn small_repo(i: usize) -> String {
    format!("bench/small-{i:04}")
}

async fn seed(k: &Knobs) -> Upstream {
    let reg = TestRegistry::start(Auth::None).await;
    let dir = tempfile::Builder::new()
        .prefix("airlock-bench-")
        .tempdir()
        .expect("temp dir");
    let client = RawClient::new(&reg.url(), None);
    let t = Instant::now();

    // The large image: 4 layers of incompressible data.
    let mut b = ImageBuilder::new("bench/large").label("org.opencontainers.image.source", "x");
    for n in 0..4u64 {
        let (blob, diff_id) = random_layer_blob(
            &dir.path().join(format!("large-{n}.tar")),
            (k.large_mib << 20) / 4,
            1000 + n,
            Format::Oci,
        );
        b = b.layer_blob(blob, diff_id);
    }
    let large = b.build();
    client.push("bench/large", "1.0", &large).await;

    // 1 GiB in one layer, for peak memory.
    let huge = if k.wants("huge") {
        let (blob, diff_id) = random_layer_blob(
            &dir.path().join("huge.tar"),
            k.huge_mib << 20,
            2000,
            Format::Oci,
        );
        let huge = ImageBuilder::new("bench/huge")
            .layer_blob(blob, diff_id)
            .build();
        client.push("bench/huge", "1.0", &huge).await;
        Some(huge)
    } else {
        None
    };

    // Small images: two layers each, one of four shared 1 MiB base layers and one small
    // unique layer. The bases are pushed once and mounted into every repository.
    let bases: Vec<(support::images::Blob, Digest)> = (0..4u64)
        .map(|n| {
            random_layer_blob(
                &dir.path().join(format!("base-{n}.tar")),
                (1 << 20) - 3 * 512,
                3000 + n,
                Format::Oci,
            )
        })
        .collect();
    for (blob, _) in &bases {
        client.push_blob("bench/base", blob).await;
    }
    let n_small = if k.wants("noop") {
        k.small.max(k.noop)
    } else {
        k.small
    };
    let smalls: Vec<TestImage> = (0..n_small)
        .map(|i| {
            let (base, diff_id) = bases[i % 4].clone();
            ImageBuilder::new(&small_repo(i))
                .layer_blob(base, diff_id)
                .layer_bytes(format!("small image {i}\n").into_bytes())
                .build()
        })
        .collect();
    let client = &client;
    stream::iter(smalls.iter().enumerate())
        .for_each_concurrent(16, |(i, img)| async move {
            let repo = small_repo(i);
            let base = &img.layers[0];
            let r = client
                .request(
                    Method::POST,
                    &format!(
                        "/v2/{repo}/blobs/uploads/?mount={}&from=bench/base",
                        base.digest
                    ),
                )
                .await;
            assert_eq!(r.status().as_u16(), 201, "mount base into {repo}");
            client.push_blob(&repo, &img.config_blob()).await;
            client.push_blob(&repo, &img.layers[1]).await;
            client.put_manifest(&repo, "1.0", &img.manifest).await;
        })
        .await;

    let walkthrough = support::airlock::seed_walkthrough(&reg).await;
    eprintln!(
        "bench: seeded upstream {} in {:.1}s ({} MiB large, {} small, walkthrough 6{})",
        reg.url(),
        t.elapsed().as_secs_f64(),
        k.large_mib,
        n_small,
        if huge.is_some() {
            format!(", {} MiB single layer", k.huge_mib)
        } else {
            String::new()
        }
    );
    warm_page_cache(&reg.data_dir());
    Upstream {
        reg,
        large,
        huge,
        walkthrough,
        _dir: dir,
    }
}

/// Read every stored file once so the first timed run does not pay for a cold disk.
fn warm_page_cache(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            warm_page_cache(&p);
        } else if let Ok(mut f) = std::fs::File::open(&p) {
            let _ = std::io::copy(&mut f, &mut std::io::sink());
        }
    }
}

// ---------------------------------------------------------------------------------------
// airlock

fn airlock_config(
    upstream: &str,
    target: &str,
    live_prefix: &str,
    max_concurrency: Option<usize>,
    images: &[String],
) -> String {
    let mc = max_concurrency
        .map(|n| format!("max_concurrency = {n}\n"))
        .unwrap_or_default();
    let mut s = String::new();
    for (key, url) in [
        ("\"ghcr.io\"", upstream),
        ("\"docker.io\"", upstream),
        ("target", target),
    ] {
        s.push_str(&format!(
            "[registries.{key}]\nendpoint = \"{url}\"\nauth = \"anonymous\"\n{mc}\n"
        ));
    }
    s.push_str(&format!(
        "[quarantine]\nregistry = \"target\"\nprefix = \"quarantine\"\n\n\
         [live]\nregistry = \"target\"\nprefix = \"{live_prefix}\"\n\n"
    ));
    // Signed records, as a gated apply writes them (issue 13): the key comes from the
    // environment `Airlock::run` sets, the public key from the file next to it.
    s.push_str(&format!(
        "[signing]\nkey = \"env://{SIGNING_ENV}\"\npublic_key = \"{}\"\n\n",
        signing_keys().1.display()
    ));
    for i in images {
        s.push_str(&format!("[[images]]\nsource = \"{i}\"\n\n"));
    }
    s
}

/// The environment variable holding the bench's signing key.
const SIGNING_ENV: &str = "AIRLOCK_BENCH_SIGNING_KEY";

/// The bench's P-256 key pair (made once with `openssl genpkey`): the PKCS#8 PEM private key
/// and the path of the public key.
fn signing_keys() -> &'static (String, PathBuf) {
    static KEYS: std::sync::OnceLock<(String, PathBuf)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("airlock-bench-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("key dir");
        let pem = support::records::openssl_keys(&dir);
        (pem, dir.join("airlock.pub"))
    })
}

struct Airlock {
    dir: tempfile::TempDir,
}

impl Airlock {
    fn new() -> Airlock {
        Airlock {
            dir: tempfile::Builder::new()
                .prefix("airlock-bench-run-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// Run `airlock -c <config> ARGS` under `/usr/bin/time` (peak RSS).
    async fn run(&self, config: &str, args: &[&str]) -> Timed {
        let cfg = self.dir.path().join("airlock.toml");
        std::fs::write(&cfg, config).expect("write config");
        let rss = self.dir.path().join("rss");
        let mut cmd = tokio::process::Command::new("/usr/bin/time");
        cmd.arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&rss)
            .arg(env!("CARGO_BIN_EXE_airlock"))
            .arg("-c")
            .arg(&cfg)
            .args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("DOCKER_CONFIG", self.dir.path().join("no-docker-config"))
            .env(SIGNING_ENV, &signing_keys().0)
            .env_remove("RUST_LOG");
        let t = timed(cmd).await;
        let rss_kib = std::fs::read_to_string(&rss)
            .ok()
            .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()));
        Timed { rss_kib, ..t }
    }
}

async fn timed(mut cmd: tokio::process::Command) -> Timed {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let out = cmd.output().await.expect("run a benchmark command");
    let wall = start.elapsed();
    Timed {
        wall,
        rss_kib: None,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check(what: &str, t: &Timed, codes: &[i32]) {
    assert!(
        codes.contains(&t.code),
        "{what}: exit {} (wanted {codes:?})\n--- stdout\n{}\n--- stderr\n{}",
        t.code,
        tail(&t.stdout),
        tail(&t.stderr)
    );
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// skopeo, with an empty blob-info cache every time

async fn skopeo(args: &[String]) -> Timed {
    let home = tempfile::Builder::new()
        .prefix("airlock-bench-skopeo-")
        .tempdir()
        .expect("temp dir");
    let as_root = unsafe_euid_is_root();
    let mut cmd = if as_root {
        std::os::unix::fs::chown(home.path(), Some(NOBODY), Some(NOBODY)).expect("chown");
        let mut c = tokio::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "skopeo"]);
        c
    } else {
        tokio::process::Command::new("skopeo")
    };
    cmd.args(args)
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("XDG_RUNTIME_DIR", home.path().join("run"))
        .current_dir(home.path());
    let t = timed(cmd).await;
    check(&format!("skopeo {}", args.join(" ")), &t, &[0]);
    t
}

/// Whether this process runs as root (skopeo's cache would then be the shared system one).
fn unsafe_euid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn skopeo_copy_args(src: &str, dst: &str) -> Vec<String> {
    [
        "--insecure-policy",
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        src,
        dst,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `skopeo sync` of these `repo:tag` images from `upstream_host` into `dest` (a
/// `host/prefix` docker destination).
async fn skopeo_sync(upstream_host: &str, images: &[(String, String)], dest: &str) -> Timed {
    let yaml_dir = tempfile::tempdir().expect("temp dir");
    let mut yaml = format!("{upstream_host}:\n  tls-verify: false\n  images:\n");
    for (repo, tag) in images {
        yaml.push_str(&format!("    {repo}: [\"{tag}\"]\n"));
    }
    let file = yaml_dir.path().join("sync.yaml");
    std::fs::write(&file, yaml).expect("write sync yaml");
    let _ = std::fs::set_permissions(
        yaml_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    );
    let _ = std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let args: Vec<String> = [
        "--insecure-policy",
        "sync",
        "--all",
        "--preserve-digests",
        "--src",
        "yaml",
        "--dest",
        "docker",
        "--dest-tls-verify=false",
        file.to_str().expect("utf-8 path"),
        dest,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    skopeo(&args).await
}

// ---------------------------------------------------------------------------------------
// The raw limit: curl

/// GET|PUT every blob of `img` (4 at a time), then PUT its manifest: the least any client
/// can do to copy it between two registries.
async fn curl_copy(upstream: &str, src_repo: &str, target: &str, dst_repo: &str, img: &TestImage) {
    let blobs = img.blobs();
    let script = r#"set -eo pipefail
loc=$(curl -sf -o /dev/null -w '%header{location}' -X POST -H 'Content-Length: 0' "$T/v2/$DST/blobs/uploads/")
case "$loc" in /*) loc="$T$loc";; esac
curl -sf "$U/v2/$SRC/blobs/$D" | curl -sf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -H "Content-Length: $N" -T - "$loc&digest=$D""#;
    let results: Vec<Timed> = stream::iter(blobs.iter())
        .map(|b| {
            let mut cmd = tokio::process::Command::new("bash");
            cmd.arg("-c")
                .arg(script)
                .env("U", upstream)
                .env("T", target)
                .env("SRC", src_repo)
                .env("DST", dst_repo)
                .env("D", b.digest.to_string())
                .env("N", b.size.to_string());
            timed(cmd)
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for r in &results {
        check("curl GET|PUT", r, &[0]);
    }
    curl_put_manifest(
        target,
        dst_repo,
        "1.0",
        &img.manifest.bytes,
        &img.manifest.media_type,
    )
    .await;
}

async fn curl_put_manifest(target: &str, repo: &str, tag: &str, bytes: &[u8], media_type: &str) {
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(f.path(), bytes).expect("write manifest");
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sf", "-o", "/dev/null", "-X", "PUT", "-H"])
        .arg(format!("Content-Type: {media_type}"))
        .arg("--data-binary")
        .arg(format!("@{}", f.path().display()))
        .arg(format!("{target}/v2/{repo}/manifests/{tag}"));
    let t = timed(cmd).await;
    check("curl PUT manifest", &t, &[0]);
}

/// Cross-repository mounts of every blob (one curl, in parallel), then the manifest PUT.
async fn curl_mount_promote(target: &str, from: &str, to: &str, img: &TestImage) {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-s", "--parallel", "-w", "%{http_code}\n"]);
    for b in img.blobs() {
        cmd.args(["-o", "/dev/null", "-X", "POST", "-H", "Content-Length: 0"])
            .arg(format!(
                "{target}/v2/{to}/blobs/uploads/?mount={}&from={from}",
                b.digest
            ));
    }
    let t = timed(cmd).await;
    check("curl mount", &t, &[0]);
    assert!(
        t.stdout.lines().all(|l| l == "201"),
        "curl mounts: {}",
        t.stdout
    );
    curl_put_manifest(
        target,
        to,
        "1.0",
        &img.manifest.bytes,
        &img.manifest.media_type,
    )
    .await;
}

/// One curl HEADing every `repo:tag` in parallel.
async fn curl_heads(target: &str, refs: &[String]) -> Timed {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-s", "--parallel", "-I", "-w", "%{http_code}\n", "-H"])
        .arg(format!("Accept: {}", media::MANIFEST_ACCEPT));
    for r in refs {
        let (repo, tag) = r.split_once(':').expect("repo:tag");
        cmd.args(["-o", "/dev/null"])
            .arg(format!("{target}/v2/{repo}/manifests/{tag}"));
    }
    let t = timed(cmd).await;
    check("curl HEADs", &t, &[0]);
    assert!(
        t.stdout.lines().filter(|l| *l == "200").count() == refs.len(),
        "curl HEADs: not all 200"
    );
    t
}

// ---------------------------------------------------------------------------------------
// Checks on what the registry saw

/// Blob upload requests (the PUT that completes an upload, and PATCH chunks) into `repo`
/// for any of `digests`.
fn blob_uploads_into(reg: &TestRegistry, repo: &str, digests: &[Digest]) -> usize {
    let prefix = format!("/v2/{repo}/blobs/uploads/");
    reg.requests()
        .iter()
        .filter(|e| {
            e.path.starts_with(&prefix)
                && (e.method == "PATCH"
                    || (e.method == "PUT"
                        && digests.iter().any(|d| {
                            e.path.contains(&d.to_string())
                                || e.path.contains(&d.to_string().replace(':', "%3A"))
                        })))
        })
        .count()
}

// ---------------------------------------------------------------------------------------
// The table

struct Row {
    scenario: String,
    airlock: Samples,
    skopeo: Samples,
    raw: Samples,
    target: String,
    verdict: Option<bool>,
    note: String,
}

fn secs(s: Option<f64>) -> String {
    s.map(|v| format!("{v:.3} s")).unwrap_or_else(|| "—".into())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| scenario | airlock | skopeo | raw (curl) | airlock / skopeo | airlock / raw | target | result |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for r in rows {
        let (a, s, w) = (r.airlock.median(), r.skopeo.median(), r.raw.median());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            secs(a),
            secs(s),
            secs(w),
            ratio(a, s),
            ratio(a, w),
            r.target,
            match r.verdict {
                Some(true) => "pass",
                Some(false) => "**miss**",
                None => "—",
            }
        );
    }
    println!();
    println!("Medians of the samples below (seconds, in run order):");
    println!();
    for r in rows {
        println!("- {}:", r.scenario);
        for (who, s) in [
            ("airlock", &r.airlock),
            ("skopeo", &r.skopeo),
            ("raw", &r.raw),
        ] {
            if !s.0.is_empty() {
                println!("  - {who}: {}", s.list());
            }
        }
        if !r.note.is_empty() {
            println!("  - {}", r.note);
        }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':').map(|(_, v)| v.trim().to_string()))
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<u64>().ok())
            })
        })
        .map(|k| format!("{:.1} GiB", k as f64 / (1 << 20) as f64))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{} CPU(s), {cpu}, {mem} RAM, kernel {}, load average at start {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

// ---------------------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let k = Knobs::from_env();
    support::ensure_tools();
    for tool in ["curl", "/usr/bin/time"] {
        assert!(
            Path::new(tool).exists() || which(tool),
            "the benchmark needs `{tool}`: run scripts/bench, which installs it"
        );
    }
    println!("airlock benchmark: {}", machine());
    println!(
        "binary {}, {} runs, max_concurrency {}",
        env!("CARGO_BIN_EXE_airlock"),
        k.runs,
        k.max_concurrency
            .map(|n| n.to_string())
            .unwrap_or_else(|| "default (8)".into())
    );
    let up = seed(&k).await;
    if std::env::var_os("BENCH_HOLD").is_some() {
        // For profiling by hand: keep the seeded upstream running.
        println!(
            "upstream {} (BENCH_HOLD: waiting; Ctrl-C to stop)",
            up.reg.url()
        );
        let _ = tokio::signal::ctrl_c().await;
        return;
    }
    let uurl = up.reg.url();
    let uhost = up.reg.host();
    let mc = k.max_concurrency;

    let large_src = vec!["docker.io/bench/large:1.0".to_string()];
    let small_srcs: Vec<String> = (0..k.small)
        .map(|i| format!("docker.io/{}:1.0", small_repo(i)))
        .collect();
    let small_pairs: Vec<(String, String)> = (0..k.small)
        .map(|i| (small_repo(i), "1.0".to_string()))
        .collect();
    let walk_srcs = support::airlock::sources(&up.walkthrough);
    let walk_pairs: Vec<(String, String)> = up
        .walkthrough
        .iter()
        .map(|w| (w.path.to_string(), w.tag.to_string()))
        .collect();
    let large_digests: Vec<Digest> = up.large.blobs().iter().map(|b| b.digest.clone()).collect();

    let mut import = (Samples::default(), Samples::default(), Samples::default());
    let mut promote = (Samples::default(), Samples::default(), Samples::default());
    let mut promote_bytes_moved = 0usize;
    let mut small = (Samples::default(), Samples::default());
    let mut walk = (Samples::default(), Samples::default());
    let mut noop = (Samples::default(), Samples::default());
    let mut rss_large = 0u64;
    let mut rss_small = 0u64;
    // Target-registry requests of each small-image apply / sync (from its access log).
    let mut small_requests: (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());

    for run in 0..k.runs {
        let mut order = ["airlock", "skopeo", "raw"];
        if run % 2 == 1 {
            order.reverse();
        }
        eprintln!("bench: run {}/{} ({})", run + 1, k.runs, order.join(", "));
        for who in order {
            let target = TestRegistry::start(Auth::None).await;
            let turl = target.url();
            let thost = target.host();
            match who {
                "airlock" => {
                    let a = Airlock::new();
                    if k.wants("large") {
                        // import + scan + mount-promote: more than skopeo's import.
                        let cfg = airlock_config(&uurl, &turl, "live", mc, &large_src);
                        let t = a.run(&cfg, &["apply", "--auto-approve"]).await;
                        check("airlock apply (large)", &t, &[0]);
                        import.0.push(t.wall);
                        rss_large = rss_large.max(t.rss_kib.unwrap_or(0));
                        // Promote only: a new live prefix, the verdict is current.
                        let cfg = airlock_config(&uurl, &turl, "live2", mc, &large_src);
                        let t = a.run(&cfg, &["apply", "--auto-approve"]).await;
                        check("airlock promote (large)", &t, &[0]);
                        assert!(
                            t.stdout
                                .contains("Plan: 0 to import, 0 to scan, 1 to promote"),
                            "the promote run did more than promote:\n{}",
                            t.stdout
                        );
                        promote.0.push(t.wall);
                        promote_bytes_moved +=
                            blob_uploads_into(&target, "live2/bench/large", &large_digests);
                    }
                    if k.wants("small") {
                        let cfg = airlock_config(&uurl, &turl, "live", mc, &small_srcs);
                        let before = target.requests().len();
                        let t = a.run(&cfg, &["apply", "--auto-approve"]).await;
                        check("airlock apply (small)", &t, &[0]);
                        small.0.push(t.wall);
                        small_requests
                            .0
                            .push(settled_requests(&target).await - before);
                        rss_small = rss_small.max(t.rss_kib.unwrap_or(0));
                        // The no-op plan, alternating with one curl HEADing every live tag.
                        let refs: Vec<String> = (0..k.small)
                            .map(|i| format!("live/{}:1.0", small_repo(i)))
                            .collect();
                        for rep in 0..2 {
                            let plan = async {
                                let t = a.run(&cfg, &["plan", "--detailed-exitcode"]).await;
                                check("airlock no-op plan (small)", &t, &[0]);
                                noop.0.push(t.wall);
                            };
                            if rep % 2 == run % 2 {
                                plan.await;
                                noop.1.push(curl_heads(&turl, &refs).await.wall);
                            } else {
                                noop.1.push(curl_heads(&turl, &refs).await.wall);
                                plan.await;
                            }
                        }
                    }
                    if k.wants("walk") {
                        let cfg = airlock_config(&uurl, &turl, "live", mc, &walk_srcs);
                        let t = a.run(&cfg, &["apply", "--auto-approve"]).await;
                        check("airlock apply (walkthrough)", &t, &[0]);
                        walk.0.push(t.wall);
                    }
                }
                "skopeo" => {
                    if k.wants("large") {
                        let t = skopeo(&skopeo_copy_args(
                            &format!("docker://{uhost}/bench/large:1.0"),
                            &format!("docker://{thost}/quarantine/bench/large:1.0"),
                        ))
                        .await;
                        import.1.push(t.wall);
                        let t = skopeo(&skopeo_copy_args(
                            &format!("docker://{thost}/quarantine/bench/large:1.0"),
                            &format!("docker://{thost}/live/bench/large:1.0"),
                        ))
                        .await;
                        promote.1.push(t.wall);
                    }
                    if k.wants("small") {
                        let before = target.requests().len();
                        let t =
                            skopeo_sync(&uhost, &small_pairs, &format!("{thost}/quarantine")).await;
                        small.1.push(t.wall);
                        small_requests
                            .1
                            .push(settled_requests(&target).await - before);
                    }
                    if k.wants("walk") {
                        let t =
                            skopeo_sync(&uhost, &walk_pairs, &format!("{thost}/quarantine")).await;
                        walk.1.push(t.wall);
                    }
                }
                _ => {
                    if k.wants("large") {
                        let t = Instant::now();
                        curl_copy(
                            &uurl,
                            "bench/large",
                            &turl,
                            "quarantine/bench/large",
                            &up.large,
                        )
                        .await;
                        import.2.push(t.elapsed());
                        let t = Instant::now();
                        curl_mount_promote(
                            &turl,
                            "quarantine/bench/large",
                            "live/bench/large",
                            &up.large,
                        )
                        .await;
                        promote.2.push(t.elapsed());
                    }
                }
            }
            if std::env::var_os("BENCH_KEEP_LOGS").is_some() {
                let reqs = target.requests();
                let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
                for r in &reqs {
                    *by.entry(r.method.as_str()).or_default() += 1;
                }
                eprintln!("bench:   {who}: target saw {by:?}");
            }
        }
    }

    // No-op plan of many images: applied once (timed for information), then planned.
    let mut noop_big = Samples::default();
    let mut noop_big_apply = Samples::default();
    let mut noop_big_heads = Samples::default();
    if k.wants("noop") {
        let target = TestRegistry::start(Auth::None).await;
        let a = Airlock::new();
        let srcs: Vec<String> = (0..k.noop)
            .map(|i| format!("docker.io/{}:1.0", small_repo(i)))
            .collect();
        let cfg = airlock_config(&uurl, &target.url(), "live", mc, &srcs);
        let t = a.run(&cfg, &["apply", "--auto-approve"]).await;
        check("airlock apply (noop setup)", &t, &[0]);
        noop_big_apply.push(t.wall);
        let refs: Vec<String> = (0..k.noop)
            .map(|i| format!("live/{}:1.0", small_repo(i)))
            .collect();
        for _ in 0..k.runs {
            let t = a.run(&cfg, &["plan", "--detailed-exitcode"]).await;
            check("airlock no-op plan (many)", &t, &[0]);
            noop_big.push(t.wall);
            noop_big_heads.push(curl_heads(&target.url(), &refs).await.wall);
        }
    }

    // Peak memory importing one big single-layer image.
    let mut huge_rss = None;
    let mut huge_time = Samples::default();
    let mut huge_skopeo = Samples::default();
    if let Some(huge) = &up.huge {
        let target = TestRegistry::start(Auth::None).await;
        let a = Airlock::new();
        let cfg = airlock_config(
            &uurl,
            &target.url(),
            "live",
            mc,
            &["docker.io/bench/huge:1.0".to_string()],
        );
        let t = a.run(&cfg, &["apply", "--auto-approve"]).await;
        check("airlock apply (huge)", &t, &[0]);
        huge_rss = t.rss_kib;
        huge_time.push(t.wall);
        let t = skopeo(&skopeo_copy_args(
            &format!("docker://{uhost}/bench/huge:1.0"),
            &format!("docker://{}/skopeo/bench/huge:1.0", target.host()),
        ))
        .await;
        huge_skopeo.push(t.wall);
        let _ = huge;
    }

    // The table.
    let mut rows = Vec::new();
    let mib = |kib: u64| kib as f64 / 1024.0;
    if k.wants("large") {
        let (a, s, w) = (import.0.median(), import.1.median(), import.2.median());
        let ok = a.zip(s).map(|(a, s)| a <= 0.9 * s);
        let ok2 = a.zip(w).map(|(a, w)| a <= w);
        rows.push(Row {
            scenario: format!(
                "import {} MiB image (4 layers) upstream → quarantine (airlock: whole apply incl. scan + promote)",
                k.large_mib
            ),
            airlock: import.0.clone(),
            skopeo: import.1.clone(),
            raw: import.2.clone(),
            target: "≤ 0.9× skopeo; ≤ 1.0× curl GET|PUT ×4 (no slower than a plain copy)".into(),
            verdict: ok.zip(ok2).map(|(a, b)| a && b),
            note: format!(
                "≤ 0.9× skopeo: {}; ≤ 1.0× raw: {}; airlock peak RSS {:.1} MiB",
                pass(ok),
                pass(ok2),
                mib(rss_large)
            ),
        });
        let (a, w) = (promote.0.median(), promote.2.median());
        let ok = a
            .zip(w)
            .map(|(a, w)| a <= 2.0 * w && promote_bytes_moved == 0);
        rows.push(Row {
            scenario: format!(
                "promote {} MiB image quarantine → live, same registry (airlock: whole apply; skopeo cold; raw: curl mount ×5 + PUT)",
                k.large_mib
            ),
            airlock: promote.0.clone(),
            skopeo: promote.1.clone(),
            raw: promote.2.clone(),
            target: "no blob bytes moved; ≤ 2× curl mount-and-put".into(),
            verdict: ok,
            note: format!(
                "image blob uploads into live by airlock (all runs): {promote_bytes_moved}"
            ),
        });
    }
    if k.wants("small") {
        let (a, s) = (small.0.median(), small.1.median());
        let per_image = |v: &[usize]| {
            v.iter()
                .map(|n| format!("{:.1}", *n as f64 / k.small as f64))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let airlock_per_image = small_requests
            .0
            .iter()
            .map(|n| *n as f64 / k.small as f64)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        let fast = a.zip(s).map(|(a, s)| a <= 0.5 * s);
        let few = airlock_per_image.map(|r| r <= 20.0);
        rows.push(Row {
            scenario: format!(
                "apply {} small images (airlock: import + policy scan + promote + signed records; skopeo: sync = import only)",
                k.small
            ),
            airlock: small.0.clone(),
            skopeo: small.1.clone(),
            raw: Samples::default(),
            target: "≤ 20 target requests/image; ≤ 0.5× skopeo sync".into(),
            verdict: fast.zip(few).map(|(a, b)| a && b),
            note: format!(
                "target-registry requests per image, each run: airlock {} (≤ 20: {}), skopeo sync {}; \
                 ≤ 0.5× skopeo sync: {}; airlock peak RSS {:.1} MiB",
                per_image(&small_requests.0),
                pass(few),
                per_image(&small_requests.1),
                pass(fast),
                mib(rss_small)
            ),
        });
        let (a, w) = (noop.0.median(), noop.1.median());
        rows.push(Row {
            scenario: format!(
                "no-op plan of {} images (raw: {} HEADs, one curl --parallel)",
                k.small, k.small
            ),
            airlock: noop.0.clone(),
            skopeo: Samples::default(),
            raw: noop.1.clone(),
            target: "≤ 4× curl".into(),
            verdict: a.zip(w).map(|(a, w)| a <= 4.0 * w),
            note: String::new(),
        });
    }
    if k.wants("noop") {
        rows.push(Row {
            scenario: format!(
                "no-op plan of {} images (raw: {} HEADs, one curl --parallel)",
                k.noop, k.noop
            ),
            airlock: noop_big.clone(),
            skopeo: Samples::default(),
            raw: noop_big_heads.clone(),
            target: "≤ 2.5 s".into(),
            verdict: noop_big.median().map(|a| a <= 2.5),
            note: format!(
                "setup: airlock apply of the {} images took {} (once)",
                k.noop,
                secs(noop_big_apply.median())
            ),
        });
    }
    if k.wants("walk") {
        rows.push(Row {
            scenario: "apply the walkthrough's 6 images (skopeo: sync --all, import only)".into(),
            airlock: walk.0.clone(),
            skopeo: walk.1.clone(),
            raw: Samples::default(),
            target: "—".into(),
            verdict: None,
            note: String::new(),
        });
    }
    if up.huge.is_some() {
        let rss = huge_rss.unwrap_or(u64::MAX);
        rows.push(Row {
            scenario: format!(
                "peak RSS importing a {} MiB single-layer image: {:.1} MiB (times: whole apply / skopeo copy, once)",
                k.huge_mib,
                mib(rss)
            ),
            airlock: huge_time,
            skopeo: huge_skopeo,
            raw: Samples::default(),
            target: "< 100 MiB RSS".into(),
            verdict: Some(rss < 100 * 1024),
            note: String::new(),
        });
    }
    print_table(&rows);
}

/// The target registry's request count once its access log stops growing (it is written as
/// requests finish; a tool exiting may leave the last lines a moment behind).
async fn settled_requests(target: &TestRegistry) -> usize {
    let mut n = target.requests().len();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = target.requests().len();
        if m == n {
            return n;
        }
        n = m;
    }
}

fn pass(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "pass",
        Some(false) => "miss",
        None => "—",
    }
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d: PathBuf| d.join(tool).is_file()))
}
