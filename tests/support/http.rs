//! A plain HTTP/1.1 `GET` for tests of the worker's health server (no client library: what a
//! kubelet probe sends).

#![allow(dead_code)]

fn request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n")
}

/// Status code and body of a whole response (0 when the status line is unreadable).
pub fn parse_response(response: &str) -> (u16, String) {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `GET path` on `addr`, blocking.
pub fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request(path).as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    parse_response(&response)
}

/// `GET path` on `addr`, async.
pub async fn get_async(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request(path).as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    parse_response(&response)
}
