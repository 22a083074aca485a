//! `/metrics`: label values stay bounded whatever clients send.

use actix_web::http::Method;
use actix_web::test::TestRequest;

use super::fixtures::*;
use crate::metrics::method_label;

#[test]
fn standard_methods_are_their_own_label_and_any_other_is_other() {
    for (method, label) in [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::TRACE, "OTHER"),
        (Method::CONNECT, "OTHER"),
        (Method::from_bytes(b"PROPFIND").unwrap(), "OTHER"),
        (Method::from_bytes(b"get").unwrap(), "OTHER"),
        (Method::from_bytes(&[b'X'; 300]).unwrap(), "OTHER"),
    ] {
        assert_eq!(method_label(&method), label, "{method}");
    }
}

#[actix_web::test]
async fn invented_methods_share_one_series() {
    let state = Mocks::default().state();
    let metrics = state.metrics.clone();
    for i in 0..20 {
        let method = Method::from_bytes(format!("X{i:03}{}", "M".repeat(100)).as_bytes()).unwrap();
        let (status, _, _) = send(
            state.clone(),
            TestRequest::default().method(method).uri("/healthz"),
        )
        .await;
        assert_eq!(status, 405);
    }
    let (status, _, _) = send(state.clone(), TestRequest::get().uri("/healthz")).await;
    assert_eq!(status, 200);

    let text = metrics.render();
    assert!(
        !text.contains("X000"),
        "an invented method is a label:\n{text}"
    );
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("agentidp_http_requests_total{"))
        .collect();
    assert!(
        series.iter().any(|l| l.contains(r#"method="OTHER""#)
            && l.contains(r#"status="405""#)
            && l.ends_with(" 20")),
        "{series:#?}"
    );
    assert!(
        series
            .iter()
            .any(|l| l.contains(r#"method="GET""#) && l.contains(r#"status="200""#)),
        "{series:#?}"
    );
    assert_eq!(series.len(), 2, "{series:#?}");
}
