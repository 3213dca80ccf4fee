use super::*;

#[test]
fn link_headers() {
    assert_eq!(
        next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
        Some("/v2/_catalog?last=b&n=2")
    );
    assert_eq!(
        next_link(r#"<https://x/a?p=1>; rel="prev", <https://x/a?p=3>; rel=next"#).as_deref(),
        Some("https://x/a?p=3")
    );
    assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    let base = Url::parse("http://127.0.0.1:5000/v2/_catalog?n=2").unwrap();
    assert_eq!(
        base.join("/v2/_catalog?last=b&n=2").unwrap().as_str(),
        "http://127.0.0.1:5000/v2/_catalog?last=b&n=2"
    );
}

#[test]
fn error_bodies_keep_the_registry_code() {
    let b = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
    assert_eq!(
        parse_error_body(b),
        Some(("MANIFEST_UNKNOWN".into(), "manifest unknown".into()))
    );
    assert_eq!(parse_error_body(b"404 page not found"), None);
}

#[test]
fn pages_end_on_a_repeated_url_and_are_bounded() {
    let u = |q: &str| Url::parse(&format!("https://r.example/v2/x/tags/list{q}")).unwrap();
    let mut p = Pages::new(&u(""));
    assert_eq!(
        p.next("r", "list", Some(u("?n=1"))).unwrap(),
        Some(u("?n=1"))
    );
    // Back to a page already read (itself, or the first): the listing ends.
    assert_eq!(p.next("r", "list", Some(u("?n=1"))).unwrap(), None);
    assert_eq!(p.next("r", "list", Some(u(""))).unwrap(), None);
    assert_eq!(p.next("r", "list", None).unwrap(), None);
    let mut p = Pages::new(&u(""));
    for i in 1..MAX_PAGES {
        assert!(
            p.next("r", "list", Some(u(&format!("?last={i}"))))
                .unwrap()
                .is_some()
        );
    }
    let e = p
        .next("r", "list", Some(u("?last=one-too-many")))
        .unwrap_err();
    assert!(e.to_string().contains("more than 10000 pages"), "{e}");
}

#[tokio::test]
async fn transport_errors_name_their_cause() {
    crate::registry::ensure_crypto_provider();
    // A port nobody listens on: bind, read the port, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v2/?secret=1"))
        .send()
        .await
        .unwrap_err();
    let cause = crate::registry::error::transport_cause(&e);
    assert!(cause.starts_with("connection refused"), "{cause}");
    assert!(!cause.contains("secret"), "{cause}");
}

#[test]
fn outcome_lines_name_the_request_and_never_the_query() {
    let url = Url::parse("https://r.example/v2/x/blobs/uploads/abc?_state=SECRET&sig=KEY").unwrap();
    let req = Request::new(Method::PUT, url.clone(), vec![], "upload");
    let answer = |status| Answer {
        status,
        headers: HeaderMap::new(),
        url: url.clone(),
        body: Bytes::from_static(b"{}"),
        response: None,
        _permit: None,
    };
    let sent = Body::Bytes(Bytes::from(vec![0; 2048]));
    let ms = Duration::from_millis(12);
    let line = outcome_line("acr", &req, &sent, &Ok(answer(StatusCode::CREATED)), ms);
    assert_eq!(
        line,
        "PUT `acr` /v2/x/blobs/uploads/abc → 201 Created, 2 B, sent 2.0 KiB, 12 ms"
    );
    let head = Request::new(Method::HEAD, url.clone(), vec![], "head");
    let line = outcome_line("acr", &head, &Body::None, &Ok(answer(StatusCode::OK)), ms);
    assert_eq!(
        line,
        "HEAD `acr` /v2/x/blobs/uploads/abc → 200 OK, 0 B, 12 ms"
    );
    let err = api_error_from(
        "acr",
        "head",
        StatusCode::TOO_MANY_REQUESTS,
        &HeaderMap::new(),
        br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
    );
    let line = outcome_line("acr", &head, &Body::None, &Err(err), ms);
    assert_eq!(
        line,
        "HEAD `acr` /v2/x/blobs/uploads/abc → 429 TOOMANYREQUESTS, 12 ms"
    );
}

#[test]
fn origins() {
    let a = Url::parse("https://r.example/v2/x").unwrap();
    assert!(same_origin(
        &a,
        &Url::parse("https://r.example:443/y").unwrap()
    ));
    assert!(!same_origin(
        &a,
        &Url::parse("https://blob.example/y").unwrap()
    ));
    assert!(!same_origin(&a, &Url::parse("http://r.example/y").unwrap()));
}
