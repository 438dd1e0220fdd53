//! A minimal HTTP/1.1 GET for tests that read `/metrics`, `/readiness` and `/healthz`:
//! `(status, body)`, with status 0 when the server cannot be reached.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` from `addr`.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_with_accept(addr, path, "*/*").await
}

/// GET `path` from `addr` with an `Accept` header.
pub async fn get_with_accept(addr: SocketAddr, path: &str, accept: &str) -> (u16, String) {
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
