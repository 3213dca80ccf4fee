//! HTTPS registries and the trust store. Every HTTP client of an airlock process shares one
//! TLS configuration whose platform roots are loaded on the first certificate to check
//! (`registry::tls`), not once per client at start-up: these tests hold that the roots are
//! still the platform's (`SSL_CERT_FILE` decides) and a certificate outside them is refused.

use super::support::airlock::{Workdir, config, seed_walkthrough, sources};
use super::support::registry::{Auth, TestRegistry};
use super::support::tls::self_signed_acceptor;

/// A TLS front for a real registry: TLS terminated with a certificate for 127.0.0.1 made by
/// openssl, bytes forwarded to the registry's plain-HTTP port.
struct TlsFront {
    port: u16,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    async fn start(backend: u16) -> TlsFront {
        let dir = tempfile::tempdir().unwrap();
        let acceptor = self_signed_acceptor(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) =
                        tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront { port, dir, task }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn cert(&self) -> String {
        self.dir.path().join("cert.pem").display().to_string()
    }
}

/// An upstream reached over HTTPS through a [`TlsFront`], the target over plain HTTP, and
/// a work directory declaring the walkthrough's images.
async fn https_upstream() -> (TestRegistry, TestRegistry, TlsFront, Workdir) {
    let upstream = TestRegistry::start(Auth::None).await;
    let target = TestRegistry::start(Auth::None).await;
    let images = seed_walkthrough(&upstream).await;
    let front = TlsFront::start(upstream.port()).await;
    let work = Workdir::new(&config(&front.url(), &target.url(), &sources(&images), ""));
    (upstream, target, front, work)
}

#[tokio::test]
async fn an_https_registry_whose_certificate_the_trust_store_holds_is_read() {
    let (_up, _target, front, work) = https_upstream().await;
    let run = work
        .run_env(
            &["plan", "--format", "json"],
            &[("SSL_CERT_FILE", &front.cert())],
        )
        .await
        .expect(0);
    let plan = run.json();
    let imports = plan.to_string().matches("\"import\"").count();
    assert!(
        imports > 0,
        "the plan read the upstream over HTTPS and found images to import:\n{}",
        run.stdout
    );
}

#[tokio::test]
async fn an_https_registry_whose_certificate_the_trust_store_lacks_is_refused() {
    let (_up, target, _front, work) = https_upstream().await;
    // A trust store holding another self-signed certificate, not the front's.
    let other = tempfile::tempdir().unwrap();
    let _ = self_signed_acceptor(other.path());
    let other_cert = other.path().join("cert.pem").display().to_string();
    for args in [vec!["plan"], vec!["apply", "--auto-approve"]] {
        let run = work.run_env(&args, &[("SSL_CERT_FILE", &other_cert)]).await;
        assert_ne!(run.code, 0, "{args:?} must fail:\n{}", run.stderr);
        assert!(
            run.stderr.to_lowercase().contains("certificate"),
            "{args:?}: the error names the certificate:\n{}",
            run.stderr
        );
    }
    // Nothing was written to the target.
    let writes: Vec<_> = target
        .requests()
        .into_iter()
        .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
        .collect();
    assert!(writes.is_empty(), "the target stays untouched: {writes:?}");
}
