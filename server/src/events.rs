//! Observable events of the server, defined in one place.

use std::net::SocketAddr;

pub fn listening(addr: SocketAddr) {
    tracing::info!(%addr, "admin API and dashboard listening");
}

pub fn request_failed(error: &dyn std::error::Error) {
    let mut chain = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    tracing::error!(error = %chain.join(": "), "request failed");
}

pub fn metrics_failed(error: &dyn std::error::Error) {
    tracing::warn!(error = %error, "sampling metrics failed");
}
