//! `/metrics`, `/healthz` and `/readyz` over plain HTTP/1.1 (hyper).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::debug;

use crate::metrics;

/// What the HTTP endpoints read.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// Metrics registry served at `/metrics`.
    pub registry: Arc<Registry>,
    /// Set once the API server and the CRDs answer (leadership is not required).
    pub ready: Arc<AtomicBool>,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Status, content type and body for `method` `path`.
pub fn respond(
    state: &HttpState,
    method: &Method,
    path: &str,
) -> (StatusCode, &'static str, String) {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        );
    }
    match path {
        "/metrics" => match metrics::encode(&state.registry) {
            Ok(body) => (StatusCode::OK, OPENMETRICS, body),
            Err(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "encoding metrics failed\n".into(),
            ),
        },
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            if state.ready.load(Ordering::Acquire) {
                (StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready\n".into(),
                )
            }
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

async fn handle(
    state: HttpState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = respond(&state, req.method(), req.uri().path());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    Ok(response)
}

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: HttpState) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, error = %err, "http connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn state() -> (HttpState, Metrics) {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        (
            HttpState {
                registry: Arc::new(registry),
                ready: Arc::new(AtomicBool::new(false)),
            },
            metrics,
        )
    }

    #[test]
    fn routes() {
        let (s, metrics) = state();
        metrics.reconcile_started("TrainingRun");
        assert_eq!(respond(&s, &Method::GET, "/healthz").0, StatusCode::OK);
        assert_eq!(
            respond(&s, &Method::GET, "/readyz").0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        s.ready.store(true, Ordering::Release);
        assert_eq!(respond(&s, &Method::GET, "/readyz").0, StatusCode::OK);
        assert_eq!(respond(&s, &Method::GET, "/nope").0, StatusCode::NOT_FOUND);
        assert_eq!(
            respond(&s, &Method::POST, "/metrics").0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let (code, ctype, body) = respond(&s, &Method::GET, "/metrics");
        assert_eq!((code, ctype), (StatusCode::OK, OPENMETRICS));
        assert!(
            body.contains("subnet_operator_reconciles_total{kind=\"TrainingRun\"} 1"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn serves_http_on_a_socket() {
        let (s, metrics) = state();
        metrics.reconcile_failed("ValidatorSet", "api_500");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, s));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        server.abort();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(
            response.contains("subnet_operator_reconcile_failures_total{kind=\"ValidatorSet\",error=\"api_500\"} 1"),
            "{response}"
        );
    }
}
