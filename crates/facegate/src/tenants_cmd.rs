//! `facegate tenants list`: whether the running server has the tenants of
//! the config file in force, asked of its `/readyz` (which reports the
//! fingerprint of its appKeys, never keys).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use facegate_server::tenants::app_keys_digest;

/// One line about the server listening on `listen` (the config's
/// `listen`) and the file's `app_keys`.
pub fn server_status(listen: &str, app_keys: &[String]) -> String {
    // A wildcard bind is reached on loopback.
    let addr = listen
        .replace("0.0.0.0:", "127.0.0.1:")
        .replace("[::]:", "[::1]:");
    let Some(ready) = readyz(&addr) else {
        return format!("No server answers at {addr}; the file's tenants apply when one starts.");
    };
    let tenants = &ready["tenants"];
    let generation = tenants["generation"].as_u64().unwrap_or(0);
    if tenants["digest"].as_str() == Some(&app_keys_digest(app_keys.iter().map(String::as_str))) {
        format!("The server at {addr} has these tenants in force (tenant generation {generation}).")
    } else {
        format!(
            "The server at {addr} has a different tenant set in force (generation {generation}): \
             a change is put in force within 2 s unless the file is invalid (see the server log)."
        )
    }
}

/// `GET /readyz` of `addr` as JSON, or `None` when nothing answers.
fn readyz(addr: &str) -> Option<serde_json::Value> {
    let timeout = Duration::from_secs(2);
    let sock = addr.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body.trim()).ok()
}
