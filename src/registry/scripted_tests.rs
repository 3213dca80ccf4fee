//! Our client's redirect and resume handling against a scripted in-process HTTP/1.1 server
//! (one request per connection), for what Distribution's filesystem storage never does:
//! redirects to another origin and bodies that break mid-way. Registry behaviour itself is
//! tested against real registries in `tests/integration/registry_client.rs`.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::config::{AuthSpec, Endpoint, RegistrySpec, Transfer};

fn spec(port: u16, auth: AuthSpec, max_concurrency: usize) -> RegistrySpec {
    RegistrySpec {
        key: "local".into(),
        endpoint: Endpoint::Url(format!("http://127.0.0.1:{port}")),
        auth,
        transfer: Transfer::Stream,
        max_concurrency,
        timeouts: Default::default(),
        arm: None,
    }
}

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
