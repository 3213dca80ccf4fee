//! Azure Container Registry support, tested without Azure: Azure cannot be reached from
//! here, so every test talks to local servers that speak the documented protocols — an App
//! Service managed-identity endpoint (`IDENTITY_ENDPOINT`, api-version 2019-08-01), ACR's
//! `/oauth2/exchange` and `/oauth2/token` in front of a REAL Distribution started with token
//! auth (tokens signed by the harness [`TokenServer`]), ARM `importImage` with its
//! long-running-operation headers, Resource Graph answering in the documented
//! subassessment shape (it does not evaluate the KQL: airlock's own row filter is what is
//! tested), the Defender plans (`Microsoft.Security/pricings`), and the OIDC endpoints of
//! GitHub Actions and Azure Pipelines. What these cannot prove: that Azure AD, ACR and ARM
//! answer exactly as documented (field names, status codes), which rows Defender writes and
//! when, role assignments, and sovereign-cloud endpoints.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::azure::arm::{Arm, Import, ImportSource, StaticToken};
use airlock::azure::defender;
use airlock::config::ArmResource;
use airlock::gate::scanners::Outcome;
use airlock::model::{Digest, Severity};
use airlock::registry::credentials::Secret;
use http_body_util::BodyExt;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::support::airlock::{Run, Workdir, digest_of};
use crate::support::client::push_raw;
use crate::support::images::walkthrough_images;
use crate::support::registry::{Auth, TestRegistry};
use crate::support::token::TokenServer;
use crate::support::{BoxError, HttpBody, ServerTask, full_body, spawn_server};

/// The ACR refresh token the local `/oauth2/exchange` hands out.
const REFRESH: &str = "acr-refresh-token-1";
/// The secret an App Service managed identity endpoint expects in `X-IDENTITY-HEADER`.
const IDENTITY_HEADER: &str = "test-identity-header";
/// The identity the local ACR issues registry tokens to.
const USER: &str = "azure-identity";
const ACR_RESOURCE: &str = "https://containerregistry.azure.net";
const ARM_RESOURCE: &str = "https://management.azure.com";

/// Azure environment variables a developer's shell may hold: removed from every run.
const AZURE_ENV: &[&str] = &[
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_TOKEN_CREDENTIALS",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IMDS_ENDPOINT",
    "AIRLOCK_ACR_REFRESH_TOKEN",
    "AIRLOCK_ARM_ENDPOINT",
    "AIRLOCK_ARM_SCOPE",
    "AIRLOCK_ACR_SCOPE",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "SYSTEM_OIDCREQUESTURI",
    "SYSTEM_ACCESSTOKEN",
    "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
    "AZURESUBSCRIPTION_CLIENT_ID",
    "AZURESUBSCRIPTION_TENANT_ID",
];

#[derive(Default)]
struct AzureState {
    /// `METHOD path` of every request.
    requests: Vec<String>,
    /// Resources managed-identity tokens were asked for.
    msi_resources: Vec<String>,
    exchanges: usize,
    /// Resource Graph: the rows answered, and the queries received.
    graph_rows: Vec<Value>,
    graph_queries: Vec<Value>,
    /// ARM importImage: the registry that stands for the ACR (`host:port`), and the request
    /// bodies received.
    acr_host: Option<String>,
    imports: Vec<Value>,
    /// ACR `/oauth2/token`: the scope set of each request (sorted, space-joined).
    token_scopes: Vec<String>,
    /// Defender plans (`Microsoft.Security/pricings/<plan>`) whose pricingTier is not
    /// Standard; every other plan answers Standard.
    plans_off: Vec<String>,
    /// OIDC assertions handed out: "github" or "pipelines", one per request.
    oidc_requests: Vec<&'static str>,
    /// Lifetime of the GitHub assertions (`exp`), seconds; 0: a fixed opaque value.
    assertion_ttl: u64,
    /// How long an importImage takes before it is answered.
    import_delay: Duration,
}

/// A local stand-in for the Azure endpoints airlock calls: managed identity (App Service
/// protocol), ACR's token exchange and token endpoint (issuing through a real
/// [`TokenServer`]'s key) and Resource Graph.
struct FakeAzure {
    port: u16,
    state: Arc<Mutex<AzureState>>,
    _task: ServerTask,
}

impl FakeAzure {
    async fn start(ts: Arc<TokenServer>) -> FakeAzure {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(AzureState::default()));
        let st = state.clone();
        let task = spawn_server(listener, move |req| {
            let st = st.clone();
            let ts = ts.clone();
            async move { handle(req, st, ts).await }
        });
        FakeAzure {
            port,
            state,
            _task: task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn realm(&self) -> String {
        format!("{}/oauth2/token", self.url())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, AzureState> {
        self.state.lock().unwrap()
    }
}

fn json_reply(status: StatusCode, body: Value) -> Response<HttpBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full_body(body.to_string()))
        .unwrap()
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn get<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
    f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<AzureState>>,
    ts: Arc<TokenServer>,
) -> Result<Response<HttpBody>, BoxError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = form(req.uri().query().unwrap_or("").as_bytes());
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let identity = header("x-identity-header");
    let req_host = header("host").unwrap_or_default();
    let bearer = header("authorization");
    let body = req.into_body().collect().await?.to_bytes();
    state
        .lock()
        .unwrap()
        .requests
        .push(format!("{method} {path}"));
    let unauthorized = |why: &str| {
        json_reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_grant", "error_description": why}),
        )
    };
    Ok(match path.as_str() {
        // App Service managed identity (api-version 2019-08-01).
        "/msi/token" => {
            if identity.as_deref() != Some(IDENTITY_HEADER) {
                return Ok(unauthorized("bad X-IDENTITY-HEADER"));
            }
            let resource = get(&query, "resource").unwrap_or_default().to_string();
            state.lock().unwrap().msi_resources.push(resource.clone());
            let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
            json_reply(
                StatusCode::OK,
                json!({"access_token": format!("aad:{resource}"), "expires_on": expires.to_string(),
                       "resource": resource, "token_type": "Bearer"}),
            )
        }
        // GitHub Actions' OIDC provider (ACTIONS_ID_TOKEN_REQUEST_URL).
        "/github/oidc" => {
            if bearer.as_deref() != Some("Bearer gh-request-token")
                || get(&query, "audience") != Some("api://AzureADTokenExchange")
            {
                return Ok(unauthorized("bad OIDC request"));
            }
            let ttl = {
                let mut st = state.lock().unwrap();
                st.oidc_requests.push("github");
                st.assertion_ttl
            };
            // A fixed value unless a lifetime is asked for (then a JWT with that `exp`).
            let value = if ttl == 0 {
                "eyJ.github.assertion".to_string()
            } else {
                assertion(ttl)
            };
            json_reply(StatusCode::OK, json!({"count": 1, "value": value}))
        }
        // Azure Pipelines' OIDC endpoint (SYSTEM_OIDCREQUESTURI, api-version 7.1).
        "/pipelines/oidc" => {
            if method != hyper::Method::POST
                || bearer.as_deref() != Some("Bearer system-access-token")
                || get(&query, "serviceConnectionId") != Some("connection-1")
                || get(&query, "api-version") != Some("7.1")
            {
                return Ok(unauthorized("bad OIDC request"));
            }
            state.lock().unwrap().oidc_requests.push("pipelines");
            json_reply(
                StatusCode::OK,
                json!({"oidcToken": "eyJ.pipelines.assertion"}),
            )
        }
        "/msi/denied" => json_reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Identity not found"}),
        ),
        // ACR: AAD access token → ACR refresh token.
        "/oauth2/exchange" => {
            let f = form(&body);
            if get(&f, "grant_type") != Some("access_token")
                || get(&f, "access_token") != Some(&format!("aad:{ACR_RESOURCE}"))
                || get(&f, "service").is_none()
            {
                return Ok(unauthorized("bad exchange"));
            }
            state.lock().unwrap().exchanges += 1;
            json_reply(StatusCode::OK, json!({"refresh_token": REFRESH}))
        }
        // ACR: refresh token → scoped access token (signed by the real token server's key).
        "/oauth2/token" => {
            let f = form(&body);
            if get(&f, "grant_type") != Some("refresh_token")
                || get(&f, "refresh_token") != Some(REFRESH)
            {
                return Ok(unauthorized("bad refresh token"));
            }
            let mut scopes: Vec<&str> = f
                .iter()
                .filter(|(n, _)| n == "scope")
                .flat_map(|(_, v)| v.split(' '))
                .collect();
            let token = ts.issue(Some(USER), &scopes);
            scopes.sort();
            state.lock().unwrap().token_scopes.push(scopes.join(" "));
            // As ACR answers: no expires_in; the lifetime is the JWT's `exp`.
            json_reply(StatusCode::OK, json!({"access_token": token}))
        }
        // Defender plans (Microsoft.Security/pricings, api-version 2024-01-01).
        p if method == hyper::Method::GET
            && p.contains("/providers/Microsoft.Security/pricings/") =>
        {
            let plan = p.rsplit('/').next().unwrap_or_default().to_string();
            let off = state.lock().unwrap().plans_off.contains(&plan);
            json_reply(
                StatusCode::OK,
                json!({"id": p, "name": plan, "type": "Microsoft.Security/pricings",
                       "properties": {"pricingTier": if off { "Free" } else { "Standard" },
                                      "extensions": [{"name": "ContainerRegistriesVulnerabilityAssessments",
                                                      "isEnabled": if off { "False" } else { "True" }}]}}),
            )
        }
        // ARM importImage (api-version 2025-04-01): a server-side copy into the ACR. The
        // local stand-in performs it with skopeo (registry tokens minted by the token
        // server), then answers 202 with an Azure-AsyncOperation that reports Succeeded.
        p if method == hyper::Method::POST && p.ends_with("/importImage") => {
            if bearer.as_deref() != Some(&format!("Bearer aad:{ARM_RESOURCE}")) {
                return Ok(json_reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": {"code": "AuthenticationFailed", "message": "bad token"}}),
                ));
            }
            let delay = state.lock().unwrap().import_delay;
            tokio::time::sleep(delay).await;
            let body: Value = serde_json::from_slice(&body)?;
            let acr = state
                .lock()
                .unwrap()
                .acr_host
                .clone()
                .expect("acr host set");
            state.lock().unwrap().imports.push(body.clone());
            let image = body["source"]["sourceImage"].as_str().unwrap_or_default();
            let (src_host, src_token) = match body["source"]["registryUri"].as_str() {
                Some(uri) => (uri.to_string(), None),
                None => {
                    let repo = image.split('@').next().unwrap_or_default();
                    let scope = format!("repository:{repo}:pull");
                    (acr.clone(), Some(ts.issue(Some(USER), &[scope.as_str()])))
                }
            };
            for target in body["targetTags"].as_array().cloned().unwrap_or_default() {
                let target = target.as_str().unwrap_or_default().to_string();
                let repo = target.split(':').next().unwrap_or_default();
                let scope = format!("repository:{repo}:pull,push");
                let dst_token = ts.issue(Some(USER), &[scope.as_str()]);
                let mut args = vec![
                    "copy".to_string(),
                    "--all".into(),
                    "--preserve-digests".into(),
                    "--insecure-policy".into(),
                    "--src-tls-verify=false".into(),
                    "--dest-tls-verify=false".into(),
                    format!("--dest-registry-token={dst_token}"),
                ];
                if let Some(t) = &src_token {
                    args.push(format!("--src-registry-token={t}"));
                }
                args.push(format!("docker://{src_host}/{image}"));
                args.push(format!("docker://{acr}/{target}"));
                let out = tokio::process::Command::new("skopeo")
                    .args(&args)
                    .output()
                    .await?;
                if !out.status.success() {
                    return Ok(json_reply(
                        StatusCode::BAD_REQUEST,
                        json!({"error": {"code": "InvalidParameters",
                               "message": String::from_utf8_lossy(&out.stderr)}}),
                    ));
                }
            }
            let mut reply = json_reply(StatusCode::ACCEPTED, json!({}));
            let op = format!("http://{}/operations/import-1", req_host);
            reply
                .headers_mut()
                .insert("azure-asyncoperation", op.parse().unwrap());
            reply
        }
        "/operations/import-1" => json_reply(StatusCode::OK, json!({"status": "Succeeded"})),
        "/providers/Microsoft.ResourceGraph/resources" => {
            if bearer.as_deref() != Some(&format!("Bearer aad:{ARM_RESOURCE}")) {
                return Ok(json_reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": {"code": "AuthenticationFailed", "message": "bad token"}}),
                ));
            }
            let q: Value = serde_json::from_slice(&body)?;
            let mut st = state.lock().unwrap();
            st.graph_queries.push(q);
            let rows = st.graph_rows.clone();
            json_reply(
                StatusCode::OK,
                json!({"totalRecords": rows.len(), "count": rows.len(),
                       "resultTruncated": "false", "data": rows}),
            )
        }
        _ => json_reply(
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "NotFound"}}),
        ),
    })
}

/// An upstream with two walkthrough images, a token-auth Distribution as the ACR, and the
/// local Azure endpoints in front of it.
struct Setup {
    upstream: TestRegistry,
    target: TestRegistry,
    azure: FakeAzure,
    _ts: Arc<TokenServer>,
    images: Vec<crate::support::images::WalkthroughImage>,
}

impl Setup {
    async fn start() -> Setup {
        let ts = Arc::new(TokenServer::start().await);
        ts.allow(Some(USER), "", &["pull", "push", "delete"]);
        let azure = FakeAzure::start(ts.clone()).await;
        let realm = azure.realm();
        let target = TestRegistry::start(Auth::TokenAt(&ts, &realm)).await;
        let upstream = TestRegistry::start(Auth::None).await;
        let images: Vec<_> = walkthrough_images().into_iter().take(2).collect();
        for w in &images {
            push_raw(&upstream.url(), w.path, w.tag, &w.content, None).await;
        }
        Setup {
            upstream,
            target,
            azure,
            _ts: ts,
            images,
        }
    }

    /// A configuration with the target as `acr` (`auth`), `extra` appended.
    fn config(&self, auth: &str, extra: &str) -> String {
        let sources: Vec<String> = self
            .images
            .iter()
            .map(|w| format!("{}/{}:{}", w.upstream_host, w.path, w.tag))
            .collect();
        crate::support::config::Config::new("acr")
            .mirror(&self.upstream.url())
            .registry(
                "acr",
                &format!(
                    "endpoint = \"{}\"\nauth = \"{auth}\"\nsubscription = \"00000000-1111-2222-3333-444444444444\"\nresource_group = \"rg-aks\"",
                    self.target.url()
                ),
            )
            .extra(extra)
            .images(&sources)
            .build()
    }

    /// Managed identity pointed at the local endpoint.
    fn msi_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "IDENTITY_ENDPOINT".into(),
                format!("{}/msi/token", self.azure.url()),
            ),
            ("IDENTITY_HEADER".into(), IDENTITY_HEADER.into()),
        ]
    }
}

/// Run airlock with only the Azure environment given here (and PATH replaced when asked).
pub(crate) async fn run(w: &Workdir, args: &[&str], env: &[(String, String)]) -> Run {
    let mut cmd = w.command(args, &[]);
    for k in AZURE_ENV {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run airlock");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `auth = "azure"` end to end against local servers speaking ACR's documented token flow
/// in front of a real token-auth Distribution: a managed-identity AAD token (App Service
/// protocol) is exchanged at `/oauth2/exchange` for a refresh token, which buys scoped
/// access tokens at `/oauth2/token`; `plan` reads and `apply` pushes with them, exchanging
/// once per registry (the refresh token is cached). Not proven here: Azure AD's and ACR's
/// real answers.
#[tokio::test(flavor = "multi_thread")]
async fn azure_auth_exchanges_an_aad_token_and_reads_and_writes_a_token_registry() {
    let s = Setup::start().await;
    let w = Workdir::new(&s.config("azure", ""));
    let env = s.msi_env();
    let plan = run(&w, &["plan", "--format", "json"], &env).await.expect(0);
    let actions = plan.json()["actions"].as_array().unwrap().len();
    assert_eq!(actions, 6, "{}", plan.stdout);
    assert_eq!(s.azure.state().exchanges, 1);
    assert_eq!(
        s.azure.state().msi_resources,
        vec![ACR_RESOURCE.to_string()]
    );

    let applied = run(&w, &["apply", "--auto-approve"], &env).await.expect(0);
    assert!(applied.stdout.contains("6 done"), "{}", applied.stdout);
    for img in &s.images {
        let live = format!("live/{}", img.path_tag());
        assert_eq!(live_digest(&s, &live).await, digest_of(img), "{live}");
    }
    // Secrets never reach the output.
    for out in [&plan.stdout, &plan.stderr, &applied.stdout, &applied.stderr] {
        assert!(!out.contains(REFRESH) && !out.contains("aad:"), "{out}");
    }
}

/// A tag's digest read from the target with a token issued directly by the token server
/// (an independent path: no exchange, no airlock code).
async fn live_digest(s: &Setup, reference: &str) -> Digest {
    let (repo, tag) = reference.rsplit_once(':').unwrap();
    let token = s
        ._ts
        .issue(Some(USER), &[&format!("repository:{repo}:pull")]);
    let resp = crate::support::http_client()
        .head(format!("{}/v2/{repo}/manifests/{tag}", s.target.url()))
        .bearer_auth(token)
        .header(
            "accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.list.v2+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{reference}");
    resp.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// An ACR refresh token given in `AIRLOCK_ACR_REFRESH_TOKEN` is used directly (no Azure AD,
/// no exchange), and `az acr login`'s docker config entry (`identitytoken` with the null
/// GUID user) works with `auth = "docker"`. Local ACR token endpoint, real Distribution.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_token_from_env_or_docker_config_needs_no_azure_ad() {
    let s = Setup::start().await;
    let w = Workdir::new(&s.config("azure", ""));
    let env = vec![("AIRLOCK_ACR_REFRESH_TOKEN".to_string(), REFRESH.to_string())];
    run(&w, &["plan"], &env).await.expect(0);
    assert_eq!(s.azure.state().exchanges, 0);
    assert!(s.azure.state().msi_resources.is_empty());

    // `az acr login -n <r>` writes this entry.
    let docker = w.path().join("no-docker-config");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        json!({"auths": {s.target.host(): {
            "auth": base64_encode("00000000-0000-0000-0000-000000000000:"),
            "identitytoken": REFRESH}}})
        .to_string(),
    )
    .unwrap();
    w.set_config(&s.config("docker", ""));
    run(&w, &["plan"], &[]).await.expect(0);
    assert_eq!(s.azure.state().exchanges, 0);
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The credential chain's order, driven by the environment as in production: Azure
/// Pipelines and GitHub Actions credentials each get an assertion from their local OIDC
/// stand-in (pipelines first), then, like workload identity and client secret, fail at the
/// authority (a local TCP listener that is not an Azure AD); managed identity (a local App Service-protocol endpoint) then
/// yields the token and the Azure CLI is never needed. With managed identity failing too and
/// no `az` on PATH, the error lists all four, in order, with why each failed.
#[tokio::test(flavor = "multi_thread")]
async fn the_credential_chain_tries_in_order_and_lists_every_failure() {
    let s = Setup::start().await;
    let w = Workdir::new(&s.config("azure", ""));
    // An "authority" that accepts connections and closes them: AAD requests fail there.
    let authority = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority_port = authority.local_addr().unwrap().port();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let _authority = tokio::spawn(async move {
        while let Ok((sock, _)) = authority.accept().await {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(sock);
        }
    });
    let token_file = w.path().join("federated-token");
    std::fs::write(&token_file, "eyJ.federated.token").unwrap();
    let empty_path = w.path().join("empty-path");
    std::fs::create_dir_all(&empty_path).unwrap();
    let base = vec![
        (
            "AZURE_AUTHORITY_HOST".to_string(),
            format!("https://127.0.0.1:{authority_port}"),
        ),
        (
            "AZURE_TENANT_ID".into(),
            "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
        ),
        (
            "AZURE_CLIENT_ID".into(),
            "11111111-2222-3333-4444-555555555555".into(),
        ),
        (
            "AZURE_FEDERATED_TOKEN_FILE".into(),
            token_file.display().to_string(),
        ),
        ("AZURE_CLIENT_SECRET".into(), "client-secret-value".into()),
        ("PATH".into(), empty_path.display().to_string()),
    ];

    // The pipeline credentials come first: each asks its OIDC endpoint for an assertion
    // (then fails at the authority).
    let mut base = base;
    base.extend([
        (
            "ACTIONS_ID_TOKEN_REQUEST_URL".to_string(),
            format!("{}/github/oidc?api-version=2.0", s.azure.url()),
        ),
        (
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
            "gh-request-token".into(),
        ),
        (
            "SYSTEM_OIDCREQUESTURI".into(),
            format!("{}/pipelines/oidc", s.azure.url()),
        ),
        ("SYSTEM_ACCESSTOKEN".into(), "system-access-token".into()),
        (
            "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID".into(),
            "connection-1".into(),
        ),
    ]);
    let mut ok = base.clone();
    ok.extend(s.msi_env());
    let planned = run(&w, &["plan"], &ok).await.expect(0);
    {
        let asked = s.azure.state().oidc_requests.clone();
        assert!(
            asked.contains(&"pipelines") && asked.contains(&"github"),
            "{asked:?}"
        );
        assert_eq!(asked[0], "pipelines", "{asked:?}");
    }
    for secret in [
        "gh-request-token",
        "system-access-token",
        "eyJ.github.assertion",
        "eyJ.pipelines.assertion",
    ] {
        assert!(!planned.stderr.contains(secret) && !planned.stdout.contains(secret));
    }
    assert!(
        hits.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "workload identity and client secret were tried first"
    );
    assert_eq!(
        s.azure.state().msi_resources,
        vec![ACR_RESOURCE.to_string()]
    );

    let mut failing = base.clone();
    failing.push((
        "IDENTITY_ENDPOINT".into(),
        format!("{}/msi/denied", s.azure.url()),
    ));
    failing.push(("IDENTITY_HEADER".into(), IDENTITY_HEADER.into()));
    let r = run(&w, &["plan"], &failing).await.expect(1);
    let names = [
        "AzurePipelinesCredential",
        "GitHubActionsCredential",
        "WorkloadIdentityCredential",
        "ClientSecretCredential",
        "ManagedIdentityCredential",
        "AzureCliCredential",
    ];
    let at: Vec<usize> = names
        .iter()
        .map(|n| {
            r.stderr
                .find(&format!("- {n}: "))
                .unwrap_or_else(|| panic!("{n} missing:\n{}", r.stderr))
        })
        .collect();
    assert!(at.windows(2).all(|p| p[0] < p[1]), "{}", r.stderr);
    assert!(
        r.stderr.contains("Identity not found") || r.stderr.contains("not been assigned"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("client-secret-value"), "{}", r.stderr);
    assert!(!r.stderr.contains("eyJ.federated.token"), "{}", r.stderr);
    for secret in [
        "gh-request-token",
        "system-access-token",
        "eyJ.github.assertion",
        "eyJ.pipelines.assertion",
    ] {
        assert!(!r.stderr.contains(secret), "{}", r.stderr);
    }
}

/// The defender scanner end to end against a local Resource Graph answering in the
/// documented subassessment shape (with an ARM token from the local managed identity):
/// no rows → the verdict is pending and apply promotes nothing (exit 3); the next plan scans
/// again; once a row reports a low-severity CVE for the digest, the verdict passes with that
/// finding and the image is promoted. Defender's real scan timing is not modelled.
#[tokio::test(flavor = "multi_thread")]
async fn defender_results_gate_promotion_and_pending_rescans() {
    let s = Setup::start().await;
    let extra = "[gate]\nscanners = [\"policy\", \"defender\"]\n\n[scanners.defender]\nformat = \"defender\"\n";
    let w = Workdir::new(&s.config("azure", extra));
    let mut env = s.msi_env();
    env.push(("AIRLOCK_ARM_ENDPOINT".into(), s.azure.url()));

    let first = run(&w, &["apply", "--auto-approve"], &env).await;
    assert_eq!(first.code, 3, "{}\n{}", first.stdout, first.stderr);
    assert!(first.stdout.contains("pending"), "{}", first.stdout);
    {
        let st = s.azure.state();
        let q = &st.graph_queries[0];
        assert_eq!(
            q["subscriptions"][0],
            "00000000-1111-2222-3333-444444444444"
        );
        let kql = q["query"].as_str().unwrap();
        assert!(kql.contains(MDVM_REGISTRY), "{kql}");
        assert!(kql.contains(SETUP_REGISTRY_ID), "{kql}");
        assert!(
            kql.contains(&digest_of(&s.images[0]).to_string())
                || kql.contains(&digest_of(&s.images[1]).to_string()),
            "{kql}"
        );
        assert!(kql.contains(&s.target.host()), "{kql}");
        assert!(st.msi_resources.contains(&ARM_RESOURCE.to_string()));
    }
    let plan = run(&w, &["plan", "--format", "json"], &env)
        .await
        .expect(0)
        .json();
    let scans = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "scan")
        .count();
    assert_eq!(scans, 2, "a pending verdict is scanned again: {plan:#}");

    // One Low CVE on the single-platform image; every platform image of the index needs
    // its own rows (here: clean, matched by resourceDetails.id).
    let mut rows = vec![documented_row(
        &digest_of(&s.images[0]).to_string(),
        &s.target.host(),
        "Low",
    )];
    for d in platform_digests(&s.images[1]) {
        rows.push(healthy_row(
            SETUP_REGISTRY_ID,
            "quarantine/x",
            &d.to_string(),
        ));
    }
    s.azure.state().graph_rows = rows;
    let second = run(&w, &["apply", "--auto-approve"], &env).await.expect(0);
    assert!(
        second.stdout.contains("1 finding(s) below high"),
        "{}",
        second.stdout
    );
    for img in &s.images {
        let live = format!("live/{}", img.path_tag());
        assert_eq!(live_digest(&s, &live).await, digest_of(img));
    }
}

/// One subassessment row as the Defender for Cloud documentation shows it (Defender
/// Vulnerability Management, `AzureContainerRegistryVulnerability`).
fn documented_row(digest: &str, host: &str, severity: &str) -> Value {
    row_for(SETUP_REGISTRY_ID, digest, host, severity)
}

/// The ARM id of the registry `Setup` configures (resource name: the endpoint host's first
/// label).
const SETUP_REGISTRY_ID: &str = "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-aks/providers/Microsoft.ContainerRegistry/registries/127";

/// Defender for Cloud's assessment keys: MDVM registry images (the one airlock reads), MDVM
/// running containers, and the retired Qualys registry assessment.
const MDVM_REGISTRY: &str = "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5";
const MDVM_RUNTIME: &str = "c609cf0f-71ab-41e9-a3c6-9a1f7fe1b8d5";
const QUALYS_REGISTRY: &str = "dbd0cb49-b563-45e7-9724-889e799fa648";

/// A documented MDVM registry-image row (Unhealthy, one CVE) for a digest in a registry.
fn row_for(registry_id: &str, digest: &str, host: &str, severity: &str) -> Value {
    json!({
        "id": format!("{registry_id}/providers/Microsoft.Security/assessments/{MDVM_REGISTRY}/subassessments/{}-1", &digest[7..19]),
        "properties": {
            "id": "CVE-2022-42969",
            "additionalData": {
                "assessedResourceType": "AzureContainerRegistryVulnerability",
                "vulnerabilityDetails": {"severity": severity, "cveId": "CVE-2022-42969"},
                "artifactDetails": {"repositoryName": "quarantine/x", "registryHost": host,
                                     "artifactType": "ContainerImage", "digest": digest, "tags": ["1"]},
                "softwareDetails": {"category": "Language", "fixedVersion": "", "version": "1.11.0.0",
                                     "vendor": "py", "packageName": "py", "fixStatus": "FixAvailable"},
                "cvssV30Score": 7.5
            },
            "displayName": "CVE-2022-42969",
            "description": "This vulnerability affects the following vendors: Pytest, Suse, Microsoft, Py.",
            "status": {"severity": severity, "code": "Unhealthy"}
        }
    })
}

/// A Healthy MDVM row that names the image only by `resourceDetails.id`, as Microsoft's
/// "healthy images" query reads them (no artifactDetails).
fn healthy_row(registry_id: &str, repo: &str, digest: &str) -> Value {
    json!({
        "id": format!("{registry_id}/providers/Microsoft.Security/assessments/{MDVM_REGISTRY}/subassessments/h-{}", &digest[7..19]),
        "properties": {
            "id": "",
            "status": {"code": "Healthy", "severity": "Low"},
            "resourceDetails": {"source": "Azure",
                                "id": format!("{registry_id}/repositories/{repo}/images/{digest}")},
            "additionalData": {"assessedResourceType": "AzureContainerRegistryVulnerability"}
        }
    })
}

/// The same CVE row under another assessment key (runtime, Qualys).
fn row_under(key: &str, digest: &str, host: &str) -> Value {
    let mut r = row_for(SETUP_REGISTRY_ID, digest, host, "Critical");
    let id = r["id"].as_str().unwrap().replace(MDVM_REGISTRY, key);
    r["id"] = json!(id);
    r
}

/// Pure mapping of recorded rows in the documented shape: only MDVM registry-image rows of
/// this registry about these digests count (runtime and Qualys rows and other registries'
/// rows are ignored); Healthy rows matched by `resourceDetails.id` cover their platform; an
/// Exempt/NotApplicable row is an exempted finding; a platform without rows is pending until
/// max_pending, then a blocking `AIRLOCK-SCANNER-NOT-SCANNED` finding. No Azure involved.
#[test]
fn defender_rows_map_per_platform_with_exemptions_and_max_pending() {
    use airlock::records::CoverageStatus;
    let host = "acraks0001.azurecr.io";
    let arm = ArmResource {
        subscription: "00000000-1111-2222-3333-444444444444".into(),
        resource_group: "rg-aks".into(),
        name: "acraks0001".into(),
        import_timeout: Duration::from_secs(60),
    };
    let rid = arm.id();
    let scope = defender::Scope {
        registry: &arm,
        host,
    };
    let top = Digest::of(b"index");
    let amd = Digest::of(b"amd64");
    let arm64 = Digest::of(b"arm64");
    let mut platforms = std::collections::BTreeMap::new();
    platforms.insert(amd.clone(), Some("linux/amd64".to_string()));
    platforms.insert(arm64.clone(), Some("linux/arm64".to_string()));
    let digests = defender::ImageDigests {
        top: top.clone(),
        platforms,
    };
    let now = time::OffsetDateTime::now_utc();
    let fresh = defender::Clock {
        now,
        pending_since: now,
        max_pending: Duration::from_secs(3600),
    };
    let mut exempt = row_for(&rid, &amd.to_string(), host, "Critical");
    exempt["properties"]["status"] = json!({"code": "NotApplicable", "cause": "Exempt", "description": "Risk accepted", "severity": "High"});
    exempt["properties"]["additionalData"]["vulnerabilityDetails"]["cveId"] =
        json!("CVE-2024-0001");
    let other_registry = row_for(
        "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-aks/providers/Microsoft.ContainerRegistry/registries/other",
        &amd.to_string(),
        host,
        "Critical",
    );
    let mut wrong_host = row_for(&rid, &amd.to_string(), "elsewhere.azurecr.io", "Critical");
    wrong_host["properties"]["id"] = json!("CVE-WRONG-HOST");
    let rows = vec![
        healthy_row(&rid, "quarantine/x", &amd.to_string()),
        row_for(&rid, &amd.to_string(), host, "Low"),
        exempt,
        row_under(MDVM_RUNTIME, &amd.to_string(), host),
        row_under(QUALYS_REGISTRY, &arm64.to_string(), host),
        other_registry,
        wrong_host,
    ];
    let Outcome::PerPlatform {
        findings,
        coverage,
        version,
    } = defender::outcome("defender", &scope, &digests, &rows, &fresh)
    else {
        panic!("per-platform results")
    };
    assert!(version.unwrap().contains("Defender"));
    let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["CVE-2022-42969", "CVE-2024-0001"],
        "{findings:#?}"
    );
    let cve = &findings[0];
    assert_eq!(cve.severity, Severity::Low);
    assert_eq!(cve.package.as_deref(), Some("py"));
    assert_eq!(cve.installed_version.as_deref(), Some("1.11.0.0"));
    assert_eq!(cve.fixed_version, None, "an empty fixedVersion is no fix");
    assert_eq!(cve.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(cve.allowed_by, None);
    let ex = findings[1].allowed_by.as_deref().unwrap();
    assert!(
        ex.contains("exempted in Microsoft Defender for Cloud") && ex.contains("Risk accepted"),
        "{ex}"
    );
    // amd64 scanned; arm64 only has a Qualys row, which does not count: pending.
    let status: Vec<_> = coverage
        .iter()
        .map(|c| (c.platform.clone().unwrap(), c.status))
        .collect();
    assert!(
        status.contains(&("linux/amd64".into(), CoverageStatus::Scanned)),
        "{status:?}"
    );
    assert!(
        status.contains(&("linux/arm64".into(), CoverageStatus::Pending)),
        "{status:?}"
    );

    // Past max_pending the unscanned platform is a blocking finding, never clean.
    let late = defender::Clock {
        now,
        pending_since: now - time::Duration::hours(2),
        max_pending: Duration::from_secs(3600),
    };
    let Outcome::PerPlatform {
        findings, coverage, ..
    } = defender::outcome("defender", &scope, &digests, &rows, &late)
    else {
        panic!()
    };
    let ns = findings
        .iter()
        .find(|f| f.id == defender::NOT_SCANNED)
        .unwrap();
    assert_eq!(ns.severity, Severity::Critical);
    assert_eq!(ns.platform.as_deref(), Some("linux/arm64"));
    assert!(ns.message.contains("max_pending (1h)"), "{}", ns.message);
    assert!(
        coverage
            .iter()
            .any(|c| c.status == CoverageStatus::NotScanned)
    );

    // Rows on the index digest itself are findings but cover no platform.
    let only_top = vec![healthy_row(&rid, "quarantine/x", &top.to_string())];
    let Outcome::PerPlatform { coverage, .. } =
        defender::outcome("defender", &scope, &digests, &only_top, &fresh)
    else {
        panic!()
    };
    assert!(coverage.iter().all(|c| c.status == CoverageStatus::Pending));
}

/// A scripted ARM endpoint: each request gets the next canned answer for its path prefix.
struct ScriptedArm {
    url: String,
    log: Log,
    _task: ServerTask,
}

/// Method, path and JSON body of each request, in order.
type Log = Arc<Mutex<Vec<(String, String, Option<Value>)>>>;

type Script = Arc<dyn Fn(&str, &str, usize, &str) -> Response<HttpBody> + Send + Sync>;

async fn scripted_arm(script: Script) -> ScriptedArm {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let l = log.clone();
    let base = url.clone();
    let task = spawn_server(listener, move |req: Request<hyper::body::Incoming>| {
        let l = l.clone();
        let script = script.clone();
        let base = base.clone();
        async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            assert_eq!(
                req.headers()["authorization"].to_str().unwrap(),
                "Bearer arm-token"
            );
            let body = req.into_body().collect().await?.to_bytes();
            let n = {
                let mut log = l.lock().unwrap();
                log.push((
                    method.clone(),
                    path.clone(),
                    serde_json::from_slice(&body).ok(),
                ));
                log.iter()
                    .filter(|(m, p, _)| *m == method && *p == path)
                    .count()
            };
            Ok::<_, BoxError>(script(&method, &path, n, &base))
        }
    });
    ScriptedArm {
        url,
        log,
        _task: task,
    }
}

fn registry_resource() -> ArmResource {
    ArmResource {
        subscription: "sub".into(),
        resource_group: "rg".into(),
        name: "acraks0001".into(),
        import_timeout: Duration::from_secs(30),
    }
}

fn import_busybox(force: bool) -> Import {
    Import {
        source: ImportSource::Registry {
            uri: "docker.io".into(),
            image: "library/busybox@sha256:abc".into(),
            credentials: Some(("bot".into(), Secret::new("hub-password"))),
        },
        target_tags: vec!["quarantine/library/busybox:1.33.0".into()],
        force,
    }
}

/// busybox imported into the ACR of [`registry_resource`] through `client` (`force`: mode
/// Force), waiting at most `timeout`.
async fn import_via(
    client: &Arm,
    force: bool,
    timeout: Duration,
) -> Result<(), airlock::registry::RegistryError> {
    client
        .import_image("acr", &registry_resource(), &import_busybox(force), timeout)
        .await
}

fn arm_client(url: &str) -> Arm {
    let mut arm = Arm::new(url, Arc::new(StaticToken(Secret::new("arm-token")))).unwrap();
    arm.poll_interval = Duration::from_millis(50);
    arm
}

fn reply(status: u16, headers: &[(&str, String)], body: Value) -> Response<HttpBody> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.header("content-type", "application/json")
        .body(full_body(body.to_string()))
        .unwrap()
}

const IMPORT_PATH: &str = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acraks0001/importImage";

/// ARM importImage as a long-running operation against a local server speaking ARM's
/// documented LRO protocol: 202 with `Azure-AsyncOperation`, polled (InProgress twice) until
/// Succeeded; the documented request body with mode NoForce and the source credentials.
#[tokio::test]
async fn arm_import_polls_azure_async_operation_until_succeeded() {
    let arm = scripted_arm(Arc::new(|method, path, n, base| match (method, path) {
        ("POST", IMPORT_PATH) => reply(
            202,
            &[
                ("Azure-AsyncOperation", format!("{base}/operations/1")),
                ("Retry-After", "0".into()),
            ],
            json!({}),
        ),
        ("GET", "/operations/1") if n < 3 => reply(200, &[], json!({"status": "InProgress"})),
        ("GET", "/operations/1") => reply(200, &[], json!({"status": "Succeeded"})),
        _ => reply(404, &[], json!({})),
    }))
    .await;
    import_via(&arm_client(&arm.url), false, Duration::from_secs(10))
        .await
        .unwrap();
    let log = arm.log.lock().unwrap();
    assert_eq!(log.len(), 4, "{log:?}");
    let body = log[0].2.clone().unwrap();
    assert_eq!(body["mode"], "NoForce");
    assert_eq!(body["source"]["registryUri"], "docker.io");
    assert_eq!(body["source"]["credentials"]["username"], "bot");
    assert_eq!(body["targetTags"][0], "quarantine/library/busybox:1.33.0");
    assert!(log[0].1.ends_with("/importImage"));
}

/// Local ARM server: an operation that ends Failed surfaces ARM's error code and message;
/// the `Location` form (202 until done) is followed too.
#[tokio::test]
async fn arm_import_failure_surfaces_the_error_code_and_location_polling_works() {
    let arm = scripted_arm(Arc::new(|method, path, n, base| match (method, path) {
        ("POST", IMPORT_PATH) if n == 1 => reply(
            202,
            &[("Azure-AsyncOperation", format!("{base}/operations/2"))],
            json!({}),
        ),
        ("GET", "/operations/2") => reply(
            200,
            &[],
            json!({"status": "Failed", "error": {"code": "InvalidImageReference",
                   "message": "The source image library/busybox@sha256:abc was not found"}}),
        ),
        ("POST", IMPORT_PATH) => reply(
            202,
            &[("Location", format!("{base}/locations/3"))],
            json!({}),
        ),
        ("GET", "/locations/3") if n < 2 => reply(202, &[("Retry-After", "0".into())], json!({})),
        ("GET", "/locations/3") => reply(200, &[], json!({})),
        _ => reply(404, &[], json!({})),
    }))
    .await;
    let client = arm_client(&arm.url);
    let e = import_via(&client, true, Duration::from_secs(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("InvalidImageReference"), "{e}");
    assert!(e.contains("was not found"), "{e}");
    assert!(e.contains("acr"), "{e}");
    assert!(!e.contains("hub-password"), "{e}");
    assert_eq!(
        arm.log.lock().unwrap()[0].2.as_ref().unwrap()["mode"],
        "Force"
    );
    import_via(&client, false, Duration::from_secs(10))
        .await
        .unwrap();
}

/// Local ARM server throttling: 429 with `Retry-After: 1` is waited out, then the import
/// is accepted (200, done at once).
#[tokio::test]
async fn arm_import_waits_out_throttling() {
    let arm = scripted_arm(Arc::new(|method, path, n, _| match (method, path) {
        ("POST", IMPORT_PATH) if n == 1 => reply(
            429,
            &[("Retry-After", "1".into())],
            json!({"error": {"code": "TooManyRequests", "message": "throttled"}}),
        ),
        ("POST", IMPORT_PATH) => reply(200, &[], json!({})),
        _ => reply(404, &[], json!({})),
    }))
    .await;
    let started = Instant::now();
    import_via(&arm_client(&arm.url), false, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(arm.log.lock().unwrap().len(), 2);
}

/// Local ARM server whose operation never finishes: the import fails with a clear message
/// once the configured bound (`import_timeout`) has passed, not before and not much after.
#[tokio::test]
async fn arm_import_that_never_finishes_times_out_clearly() {
    let arm = scripted_arm(Arc::new(|method, path, _, base| match (method, path) {
        ("POST", IMPORT_PATH) => reply(
            202,
            &[("Azure-AsyncOperation", format!("{base}/operations/4"))],
            json!({}),
        ),
        ("GET", "/operations/4") => reply(200, &[], json!({"status": "InProgress"})),
        _ => reply(404, &[], json!({})),
    }))
    .await;
    let started = Instant::now();
    let e = import_via(&arm_client(&arm.url), false, Duration::from_secs(1))
        .await
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    assert!(e.contains("did not finish within 1s"), "{e}");
    assert!(e.contains("import_timeout"), "{e}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

/// The AKS baseline example uses `auth = "azure"` and `transfer = "acr-import"` and
/// validates.
#[test]
fn the_aks_baseline_example_validates() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aks-baseline/airlock.toml");
    let d = airlock::config::load(&path, time::OffsetDateTime::now_utc().date())
        .unwrap_or_else(|e| panic!("{e}"));
    let acr = d.registry("acr");
    assert_eq!(acr.auth, airlock::config::AuthSpec::Azure);
    assert_eq!(acr.transfer, airlock::config::Transfer::AcrImport);
    assert_eq!(acr.arm.as_ref().unwrap().name, "acraks0001");
}

/// `transfer = "acr-import"` end to end: imports (upstream → quarantine) and promotions
/// (quarantine → live) are ARM importImage calls against a local stand-in for ARM that
/// performs the documented server-side copy with skopeo into a REAL token-auth Distribution
/// playing the ACR; airlock reads the tags back, scans, and records verdicts and promotions
/// through the registry API. Not proven here: ARM's and ACR's real behaviour.
#[tokio::test(flavor = "multi_thread")]
async fn acr_import_imports_and_promotes_server_side() {
    let s = Setup::start().await;
    s._ts.allow_catalog(Some(USER)); // audit lists the live repositories
    s.azure.state().acr_host = Some(s.target.host());
    let w = Workdir::new(&s.config("azure", "").replace(
        "resource_group = \"rg-aks\"",
        "resource_group = \"rg-aks\"\ntransfer = \"acr-import\"",
    ));
    let mut env = s.msi_env();
    env.push(("AIRLOCK_ARM_ENDPOINT".into(), s.azure.url()));
    let run1 = run(&w, &["apply", "--auto-approve"], &env).await.expect(0);
    assert!(
        run1.stdout.contains("server-side ARM importImage"),
        "{}",
        run1.stdout
    );
    for img in &s.images {
        assert_eq!(
            live_digest(&s, &format!("live/{}", img.path_tag())).await,
            digest_of(img)
        );
    }
    let imports = s.azure.state().imports.clone();
    assert_eq!(imports.len(), 4, "{imports:#?}");
    // Upstream → quarantine by registryUri and digest; quarantine → live by resource id.
    for body in &imports {
        let target = body["targetTags"][0].as_str().unwrap();
        if target.starts_with("quarantine/") {
            assert_eq!(body["source"]["registryUri"], s.upstream.host());
        } else {
            assert!(target.starts_with("live/"), "{body}");
            let id = body["source"]["resourceId"].as_str().unwrap();
            assert!(
                id.ends_with("/providers/Microsoft.ContainerRegistry/registries/127"),
                "{id}"
            );
        }
        assert!(
            body["source"]["sourceImage"]
                .as_str()
                .unwrap()
                .contains("@sha256:")
        );
        assert_eq!(body["mode"], "NoForce");
    }
    run(&w, &["plan", "--detailed-exitcode"], &env)
        .await
        .expect(0);
    run(&w, &["audit"], &env).await.expect(0);
}

/// The platform images of a walkthrough image: an index's children, or the image itself.
fn platform_digests(w: &crate::support::images::WalkthroughImage) -> Vec<Digest> {
    use crate::support::images::Content;
    let all = w.content.manifests();
    if all.len() == 1 {
        return vec![all[0].digest.clone()];
    }
    all[..all.len() - 1]
        .iter()
        .map(|m| m.digest.clone())
        .collect()
}

const DEFENDER_GATE: &str =
    "[gate]\nscanners = [\"policy\", \"defender\"]\n\n[scanners.defender]\nformat = \"defender\"\n";

/// Local Resource Graph answering Healthy rows that name each platform image only by
/// `resourceDetails.id`, plus runtime and Qualys rows with a Critical CVE for the same
/// digests: the Healthy rows cover every platform and the other assessments are ignored, so
/// both images pass and are promoted. The verdict records per-platform coverage.
#[tokio::test(flavor = "multi_thread")]
async fn defender_healthy_rows_by_resource_id_pass_and_other_assessments_are_ignored() {
    let s = Setup::start().await;
    let w = Workdir::new(&s.config("azure", DEFENDER_GATE));
    let mut env = s.msi_env();
    env.push(("AIRLOCK_ARM_ENDPOINT".into(), s.azure.url()));
    let host = s.target.host();
    let mut rows = Vec::new();
    for img in &s.images {
        for d in platform_digests(img) {
            rows.push(healthy_row(
                SETUP_REGISTRY_ID,
                "quarantine/x",
                &d.to_string(),
            ));
            rows.push(row_under(MDVM_RUNTIME, &d.to_string(), &host));
            rows.push(row_under(QUALYS_REGISTRY, &d.to_string(), &host));
        }
    }
    s.azure.state().graph_rows = rows;
    let applied = run(&w, &["apply", "--auto-approve"], &env).await.expect(0);
    assert!(
        applied.stdout.contains("pass (0 finding(s)"),
        "{}",
        applied.stdout
    );
    for img in &s.images {
        let live = format!("live/{}", img.path_tag());
        assert_eq!(live_digest(&s, &live).await, digest_of(img));
    }
    // The pre-flight read the Containers plan once.
    let st = s.azure.state();
    let plan_reads = st
        .requests
        .iter()
        .filter(|r| r.contains("/providers/Microsoft.Security/pricings/Containers"))
        .count();
    assert_eq!(plan_reads, 1, "{:?}", st.requests);
}

/// An index with one platform image scanned and the other without rows stays pending (not
/// clean, nothing promoted); with `max_pending = "1s"` the next apply after it has passed
/// fails the image closed with `AIRLOCK-SCANNER-NOT-SCANNED` naming the platform.
#[tokio::test(flavor = "multi_thread")]
async fn defender_unscanned_platform_is_pending_then_fails_after_max_pending() {
    let s = Setup::start().await;
    let gate = format!("{DEFENDER_GATE}max_pending = \"1s\"\n");
    let mut w_cfg = s.config("azure", &gate);
    // Only the index.
    let first = format!(
        "[[images]]\nsource = \"{}/{}:{}\"\n\n",
        s.images[0].upstream_host, s.images[0].path, s.images[0].tag
    );
    w_cfg = w_cfg.replace(&first, "");
    let w = Workdir::new(&w_cfg);
    let mut env = s.msi_env();
    env.push(("AIRLOCK_ARM_ENDPOINT".into(), s.azure.url()));
    let index = &s.images[1];
    let children = platform_digests(index);
    assert_eq!(children.len(), 2);
    s.azure.state().graph_rows = vec![healthy_row(
        SETUP_REGISTRY_ID,
        "quarantine/x",
        &children[0].to_string(),
    )];
    let pending = run(&w, &["apply", "--auto-approve"], &env).await;
    assert_eq!(pending.code, 3, "{}\n{}", pending.stdout, pending.stderr);
    assert!(pending.stdout.contains("pending"), "{}", pending.stdout);
    // The verdict records which platform image Defender covered.
    let q_repo = format!("quarantine/{}", index.path);
    let docs = verdict_documents(&s, &q_repo, &digest_of(index)).await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["decision"], "pending");
    let coverage = defender_coverage(&docs[0]);
    assert_eq!(coverage.len(), 2, "{:#}", docs[0]);
    assert!(
        coverage.contains(&(children[0].to_string(), "scanned".to_string())),
        "{coverage:?}"
    );
    assert!(
        coverage.contains(&(children[1].to_string(), "pending".to_string())),
        "{coverage:?}"
    );
    // Well past max_pending (1s) since the pending verdict.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failed = run(&w, &["apply", "--auto-approve"], &env).await;
    assert_ne!(failed.code, 0, "{}\n{}", failed.stdout, failed.stderr);
    assert!(
        failed.stdout.contains("AIRLOCK-SCANNER-NOT-SCANNED"),
        "{}\n{}",
        failed.stdout,
        failed.stderr
    );
    let docs = verdict_documents(&s, &q_repo, &digest_of(index)).await;
    let fail = docs
        .iter()
        .find(|d| d["decision"] == "fail")
        .expect("a failing verdict");
    let coverage = defender_coverage(fail);
    assert!(
        coverage.contains(&(children[1].to_string(), "not-scanned".to_string())),
        "{coverage:?}"
    );
    // Never promoted.
    let token = s._ts.issue(
        Some(USER),
        &[&format!("repository:live/{}:pull", index.path)],
    );
    let resp = crate::support::http_client()
        .head(format!(
            "{}/v2/live/{}/manifests/{}",
            s.target.url(),
            index.path,
            index.tag
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// Without Defender for Containers (nor Defender CSPM) on the subscription, the pre-flight
/// check fails the scan with what to enable; nothing is promoted.
#[tokio::test(flavor = "multi_thread")]
async fn defender_preflight_names_the_plan_to_enable() {
    let s = Setup::start().await;
    s.azure.state().plans_off = vec!["Containers".into(), "CloudPosture".into()];
    let w = Workdir::new(&s.config("azure", DEFENDER_GATE));
    let mut env = s.msi_env();
    env.push(("AIRLOCK_ARM_ENDPOINT".into(), s.azure.url()));
    let r = run(&w, &["apply", "--auto-approve"], &env).await;
    assert_ne!(r.code, 0);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(out.contains("Defender for Containers"), "{out}");
    assert!(out.contains("pricingTier Free"), "{out}");
    assert!(
        s.azure.state().graph_queries.is_empty(),
        "no query once the plan is known off"
    );
}

/// ACR access tokens carry their lifetime only as the JWT `exp` (about 75 minutes here, no
/// `expires_in`): one apply asks `/oauth2/token` once per scope set, never again for the
/// same set within the token's lifetime.
#[tokio::test(flavor = "multi_thread")]
async fn acr_tokens_are_requested_once_per_scope_set() {
    let s = Setup::start().await;
    s._ts.set_ttl(75 * 60);
    let w = Workdir::new(&s.config("azure", ""));
    run(&w, &["apply", "--auto-approve"], &s.msi_env())
        .await
        .expect(0);
    let scopes = s.azure.state().token_scopes.clone();
    assert!(scopes.len() >= 2, "{scopes:#?}");
    let distinct: std::collections::BTreeSet<_> = scopes.iter().collect();
    assert_eq!(
        distinct.len(),
        scopes.len(),
        "a scope set was asked twice: {scopes:#?}"
    );
}

/// `transfer = "acr-import"` with an upstream index of 51 manifests: `plan` refuses it before
/// anything is submitted to ARM, naming the limit and the fix.
#[tokio::test(flavor = "multi_thread")]
async fn acr_import_refuses_a_51_manifest_index_at_plan_time() {
    use crate::support::images::{ImageBuilder, TestIndex};
    let s = Setup::start().await;
    let many = TestIndex::new(
        (0..51)
            .map(|i| {
                ImageBuilder::new(&format!("many-{i}"))
                    .platform(&format!("linux/arch{i}"))
                    .build()
            })
            .collect(),
    );
    push_raw(&s.upstream.url(), "library/many", "1", &many, None).await;
    let cfg = s.config("azure", "").replace(
        "resource_group = \"rg-aks\"",
        "resource_group = \"rg-aks\"\ntransfer = \"acr-import\"",
    ) + "[[images]]\nsource = \"docker.io/library/many:1\"\n";
    let w = Workdir::new(&cfg);
    let mut env = s.msi_env();
    env.push(("AIRLOCK_ARM_ENDPOINT".into(), s.azure.url()));
    let r = run(&w, &["plan"], &env).await.expect(1);
    assert!(r.stderr.contains("51 manifests"), "{}", r.stderr);
    assert!(r.stderr.contains("at most 50"), "{}", r.stderr);
    assert!(r.stderr.contains("transfer = \"stream\""), "{}", r.stderr);
    assert!(s.azure.state().imports.is_empty());
}

/// `transfer = "acr-import"` from an Azure source registry without subscription (an ACR in
/// another tenant): each upstream import carries an ACR refresh token for the source as
/// `source.credentials` (null-GUID user). When no token can be had for the source (its
/// `/oauth2/exchange` refuses), the import fails before ARM is called, saying what to do.
#[tokio::test(flavor = "multi_thread")]
async fn acr_import_from_another_tenant_sends_source_credentials_or_says_why_not() {
    let s = Setup::start().await;
    s.azure.state().acr_host = Some(s.target.host());
    let cfg = s
        .config("azure", "")
        .replace("auth = \"anonymous\"", "auth = \"azure\"")
        .replace(
            "resource_group = \"rg-aks\"",
            "resource_group = \"rg-aks\"\ntransfer = \"acr-import\"",
        );
    let w = Workdir::new(&cfg);

    // No token for the source: the upstream has no /oauth2/exchange.
    let mut env = s.msi_env();
    env.push(("AIRLOCK_ARM_ENDPOINT".into(), s.azure.url()));
    let r = run(&w, &["apply", "--auto-approve"], &env).await;
    assert_ne!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(out.contains("importImage needs credentials"), "{out}");
    assert!(s.azure.state().imports.is_empty(), "ARM was not called");

    // With a refresh token for it, every upstream import carries it.
    env.push(("AIRLOCK_ACR_REFRESH_TOKEN".into(), REFRESH.into()));
    run(&w, &["apply", "--auto-approve"], &env).await.expect(0);
    let imports = s.azure.state().imports.clone();
    let upstream: Vec<&Value> = imports
        .iter()
        .filter(|b| b["source"]["registryUri"].is_string())
        .collect();
    assert_eq!(upstream.len(), 2, "{imports:#?}");
    for b in upstream {
        assert_eq!(
            b["source"]["credentials"]["username"],
            "00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(b["source"]["credentials"]["password"], REFRESH);
    }
}

/// The verdict documents recorded for `digest` in `repo` of the target, read with tokens
/// issued directly (the referrers tag schema: Distribution has no referrers API).
async fn verdict_documents(s: &Setup, repo: &str, digest: &Digest) -> Vec<Value> {
    let token = s
        ._ts
        .issue(Some(USER), &[&format!("repository:{repo}:pull")]);
    let get = |path: String| {
        crate::support::http_client()
            .get(format!("{}/v2/{repo}/{path}", s.target.url()))
            .bearer_auth(token.clone())
            .header(
                "accept",
                "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
            )
            .send()
    };
    let tag = digest.to_string().replace(':', "-");
    let resp = get(format!("manifests/{tag}")).await.unwrap();
    if resp.status() == 404 {
        return Vec::new();
    }
    let index: Value = resp.json().await.unwrap();
    let mut out = Vec::new();
    for m in index["manifests"].as_array().cloned().unwrap_or_default() {
        if m["annotations"][airlock::records::ANN_PREDICATE] != airlock::records::VERDICT_PREDICATE
        {
            continue;
        }
        let manifest: Value = get(format!("manifests/{}", m["digest"].as_str().unwrap()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let layer = manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let bytes = get(format!("blobs/{layer}"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let doc = airlock::records::decode::<airlock::records::VerdictDocument>(
            manifest["artifactType"].as_str(),
            manifest["layers"][0]["mediaType"]
                .as_str()
                .unwrap_or_default(),
            &bytes,
        )
        .document
        .expect("a verdict statement");
        out.push(serde_json::to_value(doc).unwrap());
    }
    out
}

/// `(digest, status)` of the defender scanner's coverage in a verdict document.
fn defender_coverage(doc: &Value) -> Vec<(String, String)> {
    doc["scanners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "defender")
        .and_then(|r| r["coverage"].as_array())
        .map(|c| {
            c.iter()
                .map(|e| {
                    (
                        e["digest"].as_str().unwrap().to_string(),
                        e["status"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A GitHub-style OIDC assertion: a JWT-shaped token whose claims say it expires in `ttl`
/// seconds (the audience and issuer Entra ID would check are not modelled).
fn assertion(ttl: u64) -> String {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() as u64 + ttl;
    format!(
        "eyJ.{}.sig",
        base64_url(&json!({"aud": "api://AzureADTokenExchange", "exp": exp}).to_string())
    )
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[derive(Default)]
struct EntraState {
    /// Token requests answered, and those refused for a stale assertion (AADSTS700024).
    requests: usize,
    refused: usize,
}

/// Entra ID's token endpoint (`POST /{tenant}/oauth2/v2.0/token`, client-assertion grant)
/// over TLS — azure_identity only talks to an https authority — with a certificate for
/// 127.0.0.1 made by openssl, which the airlock process trusts through `SSL_CERT_FILE`.
/// An assertion past its `exp` is refused with AADSTS700024, as Entra ID does; access
/// tokens live one second, so every use needs a new one (and a new assertion).
struct TlsEntra {
    port: u16,
    dir: tempfile::TempDir,
    state: Arc<Mutex<EntraState>>,
    _task: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl TlsEntra {
    async fn start() -> TlsEntra {
        let dir = tempfile::tempdir().unwrap();
        let acceptor = crate::support::tls::self_signed_acceptor(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(EntraState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| entra(req, st.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsEntra {
            port,
            dir,
            state,
            _task: AbortOnDrop(task),
        }
    }

    fn authority(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn cert(&self) -> String {
        self.dir.path().join("cert.pem").display().to_string()
    }
}

async fn entra(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<EntraState>>,
) -> Result<Response<HttpBody>, BoxError> {
    use base64::Engine as _;
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let f = form(&body);
    if !path.ends_with("/oauth2/v2.0/token")
        || get(&f, "grant_type") != Some("client_credentials")
        || get(&f, "client_assertion_type")
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return Ok(json_reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request"}),
        ));
    }
    let exp = get(&f, "client_assertion")
        .and_then(|a| a.split('.').nth(1))
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|c| c["exp"].as_i64())
        .unwrap_or(0);
    let mut st = state.lock().unwrap();
    st.requests += 1;
    if exp <= time::OffsetDateTime::now_utc().unix_timestamp() {
        st.refused += 1;
        return Ok(json_reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_client",
                   "error_description": "AADSTS700024: Client assertion is not within its valid time range."}),
        ));
    }
    let resource = get(&f, "scope")
        .unwrap_or_default()
        .trim_end_matches("/.default")
        .to_string();
    Ok(json_reply(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": 1, "ext_expires_in": 1,
               "access_token": format!("aad:{resource}")}),
    ))
}

/// A long apply for the two tests below: the Azure stand-ins with ACR on the target, an
/// importImage that takes 2.5 s, a TLS Entra ID, and a work directory promoting with
/// `transfer = "acr-import"`.
struct LongApply {
    s: Setup,
    entra: TlsEntra,
    w: Workdir,
}

impl LongApply {
    /// `assertion_ttl`: how long the stand-in's GitHub OIDC assertions live (seconds).
    async fn start(assertion_ttl: Option<u64>) -> LongApply {
        let s = Setup::start().await;
        s._ts.allow_catalog(Some(USER));
        let entra = TlsEntra::start().await;
        {
            let mut st = s.azure.state();
            st.acr_host = Some(s.target.host());
            if let Some(ttl) = assertion_ttl {
                st.assertion_ttl = ttl;
            }
            st.import_delay = Duration::from_millis(2500);
        }
        let w = Workdir::new(&s.config("azure", "").replace(
            "resource_group = \"rg-aks\"",
            "resource_group = \"rg-aks\"\ntransfer = \"acr-import\"",
        ));
        LongApply { s, entra, w }
    }

    /// `airlock apply` with the federated credential `credential` (its own variables in
    /// `extra`) against this Entra ID and ARM.
    async fn apply(&self, credential: &str, extra: Vec<(&str, String)>) -> Run {
        let mut env: Vec<(String, String)> = vec![
            ("AZURE_TOKEN_CREDENTIALS".into(), credential.into()),
            (
                "AZURE_TENANT_ID".into(),
                "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
            ),
            (
                "AZURE_CLIENT_ID".into(),
                "11111111-2222-3333-4444-555555555555".into(),
            ),
            ("AZURE_AUTHORITY_HOST".into(), self.entra.authority()),
            ("SSL_CERT_FILE".into(), self.entra.cert()),
            ("AIRLOCK_ARM_ENDPOINT".into(), self.s.azure.url()),
        ];
        env.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
        run(&self.w, &["apply", "--auto-approve"], &env).await
    }
}

/// GitHub Actions end to end through the airlock binary: assertions live two seconds
/// (five minutes on GitHub) and ARM importImage takes longer than that, so the promotions
/// need Entra ID tokens after the first assertions have expired. Each token request gets a
/// fresh assertion from the OIDC endpoint: the apply succeeds and Entra ID refuses none.
#[tokio::test(flavor = "multi_thread")]
async fn github_actions_assertions_stay_fresh_through_a_long_apply() {
    let long = LongApply::start(Some(2)).await;
    let (s, entra) = (&long.s, &long.entra);
    let applied = long
        .apply(
            "GitHubActionsCredential",
            vec![
                (
                    "ACTIONS_ID_TOKEN_REQUEST_URL",
                    format!("{}/github/oidc?api-version=2.0", s.azure.url()),
                ),
                ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "gh-request-token".into()),
            ],
        )
        .await;
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    for img in &s.images {
        let live = format!("live/{}", img.path_tag());
        assert_eq!(live_digest(s, &live).await, digest_of(img));
    }
    let (requests, refused) = {
        let st = entra.state.lock().unwrap();
        (st.requests, st.refused)
    };
    let assertions = s.azure.state().oidc_requests.len();
    assert_eq!(refused, 0, "a stale assertion reached Entra ID");
    // One token for the ACR exchange and one per importImage call (4), at least.
    assert!(requests >= 5, "{requests}");
    assert_eq!(
        assertions, requests,
        "one fresh assertion per token request"
    );
}

/// The control for the test above, and the failure the README's old CI examples had: the
/// same long apply with one assertion written to `AZURE_FEDERATED_TOKEN_FILE` up front
/// (workload identity re-reads it only every ten minutes) reaches Entra ID stale and fails
/// with AADSTS700024.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_file_written_once_goes_stale_during_a_long_apply() {
    let long = LongApply::start(None).await;
    let file = long.w.path().join("federated-token");
    std::fs::write(&file, assertion(2)).unwrap();
    let applied = long
        .apply(
            "WorkloadIdentityCredential",
            vec![("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string())],
        )
        .await;
    assert_ne!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    let out = format!("{}{}", applied.stdout, applied.stderr);
    assert!(out.contains("AADSTS700024"), "{out}");
    assert!(long.entra.state.lock().unwrap().refused > 0);
}
