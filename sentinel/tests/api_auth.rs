//! Optional Basic auth (`WEB_AUTH=user:password`): the dashboard, its files and the API need the
//! credentials; `/api/health` and `/metrics` are exempt when configured so; no malformed header
//! gets anything but a 401.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test (or benchmark) stops at the first thing that is not as it must be"
)]

mod api_support;

use api_support::{GET_ROUTES, reference_fixture_with, request, send};
use axum::{
    Router,
    body::Body,
    http::{HeaderValue, Method, Request, StatusCode, header},
};
use base64::Engine as _;
use sentinel::api::auth::Auth;

const EXEMPT: [&str; 2] = ["/api/health", "/metrics"];

fn router() -> (api_support::Env, Router) {
    let env = reference_fixture_with(Some(Auth {
        credentials: "admin:pw".into(),
        exempt: EXEMPT.iter().map(|s| (*s).to_owned()).collect(),
    }));
    let router = env.router();
    (env, router)
}

fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

fn is_exempt(path: &str) -> bool {
    EXEMPT.contains(&path)
}

/// Asserts a 401 with the challenge and a JSON error.
fn assert_challenged(r: &api_support::Reply, what: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"NetTraffic-Sentinel\", charset=\"UTF-8\""),
        "{what}"
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    assert_eq!(
        r.text(),
        "{\"error\":\"authentication required\"}\n",
        "{what}"
    );
    // Security headers on the challenge too.
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
}

#[tokio::test]
async fn everything_but_the_exemptions_needs_credentials() {
    let (_env, router) = router();
    let mut paths: Vec<&str> = GET_ROUTES.to_vec();
    // Unknown paths too: no path enumeration without credentials.
    paths.extend(["/api/nope", "/static/nope.js", "/static/index.html"]);
    for path in paths {
        let r = send(&router, request(Method::GET, path, &[])).await;
        if is_exempt(path) {
            assert_eq!(r.status, StatusCode::OK, "{path} is exempt");
        } else {
            assert_challenged(&r, path);
        }
        // HEAD and other methods as well.
        for method in [Method::HEAD, Method::POST] {
            let r = send(&router, request(method.clone(), path, &[])).await;
            if is_exempt(path) {
                assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            } else {
                assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let (_env, router) = router();
    for wrong in [
        basic("admin:wrong"),
        basic("admin:pw "),
        basic("admin:p"),
        basic("Admin:pw"),
        basic("admin"),
        basic("admin:pw:extra"),
        basic(""),
        basic(":"),
        basic("admin:pwadmin:pw"),
        "Bearer admin:pw".to_owned(),
        "Digest username=\"admin\"".to_owned(),
        "admin:pw".to_owned(),
        base64::engine::general_purpose::STANDARD.encode("admin:pw"),
    ] {
        for path in ["/", "/api/summary", "/static/js/app.js", "/api/status"] {
            let r = send(
                &router,
                request(Method::GET, path, &[("authorization", &wrong)]),
            )
            .await;
            assert_challenged(&r, &format!("{path} with {wrong:?}"));
        }
        // Exempt paths do not care.
        for path in EXEMPT {
            let r = send(
                &router,
                request(Method::GET, path, &[("authorization", &wrong)]),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{path} with {wrong:?}");
        }
    }
}

#[tokio::test]
async fn the_right_credentials_open_everything() {
    let (_env, router) = router();
    let right = basic("admin:pw");
    for path in GET_ROUTES {
        let r = send(
            &router,
            request(Method::GET, path, &[("authorization", &right)]),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let r = send(
            &router,
            request(Method::HEAD, path, &[("authorization", &right)]),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "HEAD {path}");
    }
    // The scheme is case-insensitive (RFC 9110 11.1); surrounding spaces are tolerated.
    let token = base64::engine::general_purpose::STANDARD.encode("admin:pw");
    for value in [
        format!("basic {token}"),
        format!("BASIC {token}"),
        format!("Basic  {token}"),
        format!("Basic {token} "),
    ] {
        let r = send(
            &router,
            request(Method::GET, "/api/summary", &[("authorization", &value)]),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{value:?}");
    }
    // Credentials with non-ASCII characters (charset="UTF-8" in the challenge).
    let env = reference_fixture_with(Some(Auth {
        credentials: "管理员:密码 ü".into(),
        exempt: Vec::new(),
    }));
    let r = send(
        &env.router(),
        request(
            Method::GET,
            "/api/summary",
            &[("authorization", &basic("管理员:密码 ü"))],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // Without exemptions, health needs credentials too.
    let r = send(&env.router(), request(Method::GET, "/api/health", &[])).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_authorization_headers_never_fail_the_server() {
    let (_env, router) = router();
    let long = "A".repeat(16 * 1024);
    let texts: Vec<String> = vec![
        String::new(),
        "Basic".into(),
        "Basic ".into(),
        "Basic !!!!".into(),
        "Basic =".into(),
        "Basic YWRtaW46cHc".into(),
        "Basic YWRtaW46cHc=extra".into(),
        "Basic YWRtaW46cHc=YWRtaW46cHc=".into(),
        "Basic YW Rt aW46 cHc=".into(),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe, b':', 0x80])
        ),
        format!("Basic {long}"),
        long.clone(),
        "Basic\tYWRtaW46cHc=".into(),
        "Basic YWRtaW46cHc=, Basic YWRtaW46cHc=".into(),
    ];
    let mut values: Vec<HeaderValue> = texts
        .iter()
        .map(|t| HeaderValue::from_str(t).expect("header value"))
        .collect();
    // Bytes that are not ASCII or not UTF-8 (obs-text is legal in a header value).
    values.push(HeaderValue::from_bytes(b"Basic \xff\xfe").expect("header value"));
    values.push(HeaderValue::from_bytes("Basic 管理员".as_bytes()).expect("header value"));
    for value in values {
        for path in ["/", "/api/summary", "/static/js/app.js", "/api/health"] {
            let mut req = Request::builder()
                .method(Method::GET)
                .uri(path)
                .body(Body::empty())
                .expect("request");
            req.headers_mut()
                .insert(header::AUTHORIZATION, value.clone());
            let r = send(&router, req).await;
            if is_exempt(path) {
                assert_eq!(r.status, StatusCode::OK, "{path} {value:?}");
            } else {
                assert_challenged(&r, &format!("{path} {value:?}"));
            }
        }
    }
    // Two Authorization headers, one right: refused (the first is read; no guessing).
    let mut req = Request::builder()
        .uri("/api/summary")
        .body(Body::empty())
        .expect("request");
    req.headers_mut().append(
        header::AUTHORIZATION,
        HeaderValue::from_static("Basic d3Jvbmc6d3Jvbmc="),
    );
    req.headers_mut().append(
        header::AUTHORIZATION,
        HeaderValue::from_str(&basic("admin:pw")).expect("value"),
    );
    let r = send(&router, req).await;
    assert!(r.status.is_client_error(), "{}", r.status);
}
