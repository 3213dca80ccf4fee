use base64::Engine;

use super::token::{ASSUMED_LIFETIME, basic_header, bearer_header, renew_margin, token_lifetime};
use super::*;

#[test]
fn parses_bearer_with_several_scopes() {
    let c = parse_challenges(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull repository:c:pull,push""#,
    );
    assert_eq!(
        c,
        vec![Challenge::Bearer {
            realm: "https://auth.docker.io/token".into(),
            service: Some("registry.docker.io".into()),
            scopes: vec![
                "repository:a/b:pull".into(),
                "repository:c:pull,push".into()
            ],
            error: None,
        }]
    );
}

#[test]
fn parses_error_basic_and_several_challenges() {
    let c = parse_challenges(
        r#"Bearer realm="http://127.0.0.1:1/token", service="svc", scope="repository:x:pull,push", error="insufficient_scope""#,
    );
    let Challenge::Bearer { error, scopes, .. } = &c[0] else {
        panic!("{c:?}")
    };
    assert_eq!(error.as_deref(), Some("insufficient_scope"));
    assert_eq!(scopes, &vec!["repository:x:pull,push".to_string()]);
    assert_eq!(
        parse_challenges(r#"Basic realm="test-realm""#),
        vec![Challenge::Basic]
    );
    let two = parse_challenges(r#"Basic realm="a, b", Bearer realm="https://x/t",service=s"#);
    assert_eq!(two.len(), 2, "{two:?}");
    assert_eq!(
        two[1],
        Challenge::Bearer {
            realm: "https://x/t".into(),
            service: Some("s".into()),
            scopes: vec![],
            error: None
        }
    );
    assert!(parse_challenges("Negotiate abc==").is_empty());
    assert_eq!(
        parse_challenges(r#"Bearer realm="q\"uote""#),
        vec![Challenge::Bearer {
            realm: "q\"uote".into(),
            service: None,
            scopes: vec![],
            error: None
        }]
    );
}

#[test]
fn scope_union_merges_actions() {
    let s = merge_scopes([
        "repository:a:pull",
        "repository:b:pull",
        "repository:a:push,pull",
        "registry:catalog:*",
    ]);
    assert_eq!(
        s,
        vec![
            "registry:catalog:*".to_string(),
            "repository:a:pull,push".to_string(),
            "repository:b:pull".to_string()
        ]
    );
}

#[tokio::test]
async fn credentials_never_go_to_a_plain_http_realm_of_an_https_registry() {
    crate::registry::ensure_crypto_provider();
    let auth = |endpoint: &str| {
        Authenticator::new(
            "r",
            "r.example",
            endpoint,
            // HOME is set in every test process: credentials exist.
            AuthSpec::Basic {
                username: "u".into(),
                password_env: "HOME".into(),
            },
            reqwest::Client::new(),
            RetryPolicy::none(),
            Duration::from_secs(1),
        )
    };
    let mut h = HeaderMap::new();
    h.insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="http://127.0.0.1:9/token",service="s""#),
    );
    let e = auth("https://r.example")
        .challenged(&h, &[pull_scope("a")], None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("refusing to send credentials"),
        "{e}"
    );
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
    // An http registry may have an http realm: the request is made (and fails here,
    // nothing listens on port 9), not refused.
    let e = auth("http://r.example")
        .challenged(&h, &[pull_scope("a")], None)
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("refusing"), "{e}");
}

#[test]
fn access_token_lifetimes_come_from_the_jwt_when_the_answer_has_none() {
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let jwt = |claims: &str| format!("{}.{}.sig", b64("{}"), b64(claims));
    // ACR: no expires_in, a 75-minute JWT.
    let acr = jwt(r#"{"iat":1000,"exp":5500}"#);
    assert_eq!(token_lifetime(None, &acr), Duration::from_secs(4500));
    // Both: the shorter.
    assert_eq!(token_lifetime(Some(300), &acr), Duration::from_secs(300));
    assert_eq!(token_lifetime(Some(9000), &acr), Duration::from_secs(4500));
    // Opaque or without exp: expires_in, else the assumed minute.
    assert_eq!(
        token_lifetime(Some(120), "opaque"),
        Duration::from_secs(120)
    );
    assert_eq!(token_lifetime(None, "opaque"), ASSUMED_LIFETIME);
    assert_eq!(token_lifetime(None, &jwt(r#"{"iat":1}"#)), ASSUMED_LIFETIME);
    // exp in the past or before iat: renew at once (1 s, never zero).
    assert_eq!(
        token_lifetime(None, &jwt(r#"{"iat":50,"exp":10}"#)),
        Duration::from_secs(1)
    );
    // Renewed a tenth early, at most five minutes early.
    assert_eq!(
        renew_margin(Duration::from_secs(4500)),
        Duration::from_secs(300)
    );
    assert_eq!(
        renew_margin(Duration::from_secs(300)),
        Duration::from_secs(30)
    );
}

#[test]
fn secrets_in_headers_are_sensitive() {
    let h = basic_header(&Credential::UsernamePassword {
        username: "u".into(),
        password: Secret::new("p"),
    })
    .unwrap();
    assert!(h.is_sensitive());
    assert_eq!(h.to_str().unwrap(), "Basic dTpw");
    assert!(bearer_header(&Secret::new("t")).is_sensitive());
}
