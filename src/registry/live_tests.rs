//! Tests against a real Distribution registry (`docker-registry`, Debian's package of
//! Distribution 2.8): each test starts its own on a free loopback port with a temporary
//! storage directory and kills it on drop. Skipped (with a note) when the binary is absent.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::json;

use super::*;
use crate::config::{AuthSpec, Endpoint, RegistrySpec, Transfer};

struct LiveRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for LiveRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/docker-registry");
    p.is_file().then_some(p)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(auth_yaml: &str) -> Option<LiveRegistry> {
    let Some(bin) = binary() else {
        eprintln!("docker-registry not installed: skipping live registry test");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    ensure_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(std::env::var("AIRLOCK_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .try_init();
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog: {{ level: error, accesslog: {{ disabled: true }} }}\n\
                 storage: {{ filesystem: {{ rootdirectory: {} }}, delete: {{ enabled: true }} }}\n\
                 http: {{ addr: 127.0.0.1:{port} }}\n{auth_yaml}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(&bin)
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{port}/v2/"))
                .send()
                .await
                && (r.status().is_success() || r.status() == 401)
            {
                return Some(LiveRegistry {
                    child,
                    port,
                    _dir: dir,
                });
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Port taken meanwhile, or a slow start: try another port.
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("docker-registry did not start");
}

fn spec(port: u16, auth: AuthSpec, max_concurrency: usize) -> RegistrySpec {
    RegistrySpec {
        key: "local".into(),
        endpoint: Endpoint::Url(format!("http://127.0.0.1:{port}")),
        auth,
        transfer: Transfer::Stream,
        max_concurrency,
        arm: None,
    }
}

fn chunks(b: &[u8], n: usize) -> BlobStream {
    let parts: Vec<Result<Bytes, RegistryError>> =
        b.chunks(n).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    stream::iter(parts).boxed()
}

fn image(config: &Digest, config_size: usize, layer: &Digest, layer_size: usize) -> RawManifest {
    let v = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config.to_string(), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": layer_size}],
    });
    RawManifest::new(serde_json::to_vec_pretty(&v).unwrap(), None).unwrap()
}

#[tokio::test]
async fn live_push_pull_tags_mount_delete() {
    let Some(live) = start("").await else { return };
    let r = Registry::from_spec(&spec(live.port, AuthSpec::Anonymous, 1)).unwrap();
    let repo = "quarantine/library/busybox";

    let config_bytes = Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#);
    let config = r.put_blob_bytes(repo, config_bytes.clone()).await.unwrap();
    let layer_bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let layer = Digest::of(&layer_bytes);
    r.put_blob(
        repo,
        &layer,
        layer_bytes.len() as u64,
        chunks(&layer_bytes, 7000),
    )
    .await
    .unwrap();
    assert_eq!(r.blob_exists(repo, &layer).await.unwrap(), Some(200_000));

    let m = image(&config, config_bytes.len(), &layer, layer_bytes.len());
    let put = r.put_manifest(repo, "1.0", &m).await.unwrap();
    assert!(!put.subject_indexed);
    let head = r.head_manifest(repo, "1.0").await.unwrap().unwrap();
    assert_eq!(head.digest, m.digest);
    assert_eq!(head.media_type, media::OCI_MANIFEST);
    assert_eq!(head.size, m.bytes.len() as u64);
    let got = r
        .get_manifest(repo, &m.digest.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, m);
    assert!(r.get_manifest(repo, "nope").await.unwrap().is_none());
    assert!(r.head_manifest("no/such", "1").await.unwrap().is_none());
    r.put_manifest(repo, "0.9", &m).await.unwrap();
    assert_eq!(r.list_tags(repo).await.unwrap(), vec!["0.9", "1.0"]);
    assert!(r.list_tags("no/such").await.unwrap().is_empty());

    // Stream a copy into another repository of the same registry with one permit.
    let blob = r.get_blob(repo, &layer).await.unwrap();
    assert_eq!(blob.size, 200_000);
    tokio::time::timeout(
        Duration::from_secs(20),
        r.put_blob("other/copy", &layer, blob.size, blob.stream),
    )
    .await
    .expect("no deadlock with max_concurrency = 1")
    .unwrap();
    assert_eq!(
        r.get_blob_bytes("other/copy", &layer, 1 << 20)
            .await
            .unwrap(),
        layer_bytes
    );
    assert!(r.get_blob_bytes(repo, &layer, 10).await.is_err());

    // Mounts: 201 for a known blob, declined (202, session cancelled) for an unknown one.
    assert!(
        r.mount_blob("live/library/busybox", &layer, repo)
            .await
            .unwrap()
    );
    assert!(
        r.mount_blob("live/library/busybox", &config, repo)
            .await
            .unwrap()
    );
    assert!(
        !r.mount_blob("live/library/busybox", &Digest::of(b"none"), repo)
            .await
            .unwrap()
    );
    r.put_manifest("live/library/busybox", "1.0", &m)
        .await
        .unwrap();

    assert_eq!(
        r.catalog().await.unwrap(),
        vec!["live/library/busybox", "other/copy", repo]
    );

    // A wrong digest never lands, and the error says so.
    let wrong = Digest::of(b"something else");
    let e = r
        .put_blob(repo, &wrong, 11, chunks(b"hello world", 4))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");
    assert_eq!(r.blob_exists(repo, &wrong).await.unwrap(), None);
    let e = r
        .put_blob(repo, &wrong, 20, chunks(b"hello world", 4))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Truncated { .. }), "{e}");

    // Delete by digest removes the tags; deleting again is fine.
    r.delete_manifest(repo, &m.digest).await.unwrap();
    assert!(r.head_manifest(repo, "1.0").await.unwrap().is_none());
    r.delete_manifest(repo, &m.digest).await.unwrap();
    let e = r.get_manifest(repo, "bad:tag").await.unwrap_err();
    assert!(matches!(e, RegistryError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("local"), "{e}");
}

#[tokio::test]
async fn live_chunked_upload_index_and_referrers() {
    let Some(live) = start("").await else { return };
    let opts = ClientOptions {
        chunk_threshold: 1000,
        chunk_size: 3000,
        ..ClientOptions::default()
    };
    let r = Registry::from_spec_with(&spec(live.port, AuthSpec::Anonymous, 4), &opts).unwrap();
    let repo = "q/app";
    let layer_bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 13) as u8).collect();
    let layer = Digest::of(&layer_bytes);
    r.put_blob(repo, &layer, 10_000, chunks(&layer_bytes, 999))
        .await
        .unwrap();
    let back: Vec<Bytes> = r
        .get_blob(repo, &layer)
        .await
        .unwrap()
        .stream
        .try_collect()
        .await
        .unwrap();
    assert_eq!(back.concat(), layer_bytes);
    let bad = Digest::of(b"x");
    let e = r
        .put_blob(repo, &bad, 10_000, chunks(&layer_bytes, 999))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e}");

    let config = r
        .put_blob_bytes(repo, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let child = image(&config, 2, &layer, 10_000);
    r.put_manifest(repo, &child.digest.to_string(), &child)
        .await
        .unwrap();
    let idx = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": child.digest.to_string(), "size": child.bytes.len(),
                       "platform": {"os": "linux", "architecture": "amd64"}}]
    });
    let index = RawManifest::new(serde_json::to_vec(&idx).unwrap(), None).unwrap();
    r.put_manifest(repo, "v1", &index).await.unwrap();
    let got = r.get_manifest(repo, "v1").await.unwrap().unwrap();
    assert_eq!(got.digest, index.digest);
    assert!(got.is_index());

    let verdict = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": media::VERDICT_ARTIFACT,
        "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::of(b"{}").to_string(), "size": 2},
        "layers": [{"mediaType": media::OCI_EMPTY, "digest": Digest::of(b"{}").to_string(), "size": 2}],
        "subject": {"mediaType": media::OCI_INDEX, "digest": index.digest.to_string(), "size": index.bytes.len()},
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
    });
    let verdict = RawManifest::new(serde_json::to_vec(&verdict).unwrap(), None).unwrap();
    r.push_referrer(repo, &verdict, &index.digest)
        .await
        .unwrap();
    r.push_referrer(repo, &verdict, &index.digest)
        .await
        .unwrap();
    let refs = r
        .referrers(repo, &index.digest, Some(media::VERDICT_ARTIFACT))
        .await
        .unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, verdict.digest);
    assert!(
        r.referrers(repo, &index.digest, Some("other/type"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn live_basic_auth() {
    // The right password is the value of HOME (an environment variable this process
    // surely has, so the test needs no set_var); bcrypt comes from crypt(3) via python.
    let Ok(password) = std::env::var("HOME") else {
        return;
    };
    let hash = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
            &password,
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|h| h.starts_with("$2"));
    let Some(hash) = hash else {
        eprintln!("no bcrypt available: skipping basic auth test");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("bob:{hash}\n")).unwrap();
    let auth = format!(
        "auth: {{ htpasswd: {{ realm: test-realm, path: {} }} }}\n",
        htpasswd.display()
    );
    let Some(live) = start(&auth).await else {
        return;
    };

    let anon = Registry::from_spec(&spec(live.port, AuthSpec::Anonymous, 2)).unwrap();
    let e = anon.list_tags("x").await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("password_env"), "{e}");

    let wrong = Registry::from_spec(&spec(
        live.port,
        AuthSpec::Basic {
            username: "bob".into(),
            password_env: "PATH".into(),
        },
        2,
    ))
    .unwrap();
    let e = wrong.list_tags("x").await.unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e}");
    assert!(!e.to_string().contains(&std::env::var("PATH").unwrap()));

    let right = Registry::from_spec(&spec(
        live.port,
        AuthSpec::Basic {
            username: "bob".into(),
            password_env: "HOME".into(),
        },
        2,
    ))
    .unwrap();
    assert!(right.list_tags("x").await.unwrap().is_empty());
    let d = right
        .put_blob_bytes("x", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(right.blob_exists("x", &d).await.unwrap(), Some(2));
    let dbg = format!("{right:?}");
    assert!(!dbg.contains(&password) || password.len() < 4, "{dbg}");
}

/// A scripted HTTP/1.1 server (one request per connection) for what Distribution's
/// filesystem storage never does: redirects to another origin and broken bodies.
mod scripted {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[derive(Default)]
    struct Seen {
        storage_auth: Vec<bool>,
        ranges: Vec<Option<String>>,
    }

    async fn read_head(s: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut b = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).await.unwrap_or(0) == 0 {
                break;
            }
            buf.push(b[0]);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[tokio::test]
    async fn redirect_drops_authorization_and_download_resumes() {
        ensure_crypto_provider();
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
        let digest = Digest::of(&content);
        let registry = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let storage = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rport = registry.local_addr().unwrap().port();
        let sport = storage.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));

        tokio::spawn(async move {
            loop {
                let (mut s, _) = registry.accept().await.unwrap();
                let head = read_head(&mut s).await;
                let resp = if header(&head, "authorization").is_none() {
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{sport}/storage/blob\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                };
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        let (seen2, content2) = (seen.clone(), content.clone());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = storage.accept().await.unwrap();
                let head = read_head(&mut s).await;
                let range = header(&head, "range").map(str::to_string);
                {
                    let mut g = seen2.lock().unwrap();
                    g.storage_auth
                        .push(header(&head, "authorization").is_some());
                    g.ranges.push(range.clone());
                }
                let n = content2.len();
                match range.and_then(|r| {
                    r.strip_prefix("bytes=")?
                        .strip_suffix('-')?
                        .parse::<usize>()
                        .ok()
                }) {
                    None => {
                        // Announce everything, send a third, then break the connection.
                        let h = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
                        );
                        let _ = s.write_all(h.as_bytes()).await;
                        let _ = s.write_all(&content2[..n / 3]).await;
                    }
                    Some(k) => {
                        let h = format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {k}-{}/{n}\r\nConnection: close\r\n\r\n",
                            n - k,
                            n - 1
                        );
                        let _ = s.write_all(h.as_bytes()).await;
                        let _ = s.write_all(&content2[k..]).await;
                    }
                }
                let _ = s.shutdown().await;
            }
        });

        let r = Registry::from_spec(&spec(
            rport,
            AuthSpec::Basic {
                username: "u".into(),
                password_env: "PATH".into(),
            },
            1,
        ))
        .unwrap();
        let blob = r.get_blob("a/b", &digest).await.unwrap();
        assert_eq!(blob.size, content.len() as u64);
        let got: Vec<Bytes> = blob.stream.try_collect().await.unwrap();
        assert_eq!(got.concat(), content);
        let g = seen.lock().unwrap();
        assert!(
            g.storage_auth.iter().all(|a| !a),
            "credentials followed the redirect"
        );
        assert_eq!(g.ranges[0], None);
        assert_eq!(
            g.ranges[1].as_deref(),
            Some(format!("bytes={}-", content.len() / 3).as_str())
        );
    }
}
