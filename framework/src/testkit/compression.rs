//! Compressed answers for fake platforms: Stack Exchange gzips every answer, whatever the client
//! asked, and a client must read them.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::Reply;

impl Reply {
    /// This answer's body gzip-compressed, with `Content-Encoding: gzip`.
    pub fn gzipped(mut self) -> Self {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        let compressed = encoder
            .write_all(&self.body)
            .and_then(|()| encoder.finish());
        match compressed {
            Ok(bytes) => {
                self.body = bytes;
                self.headers
                    .retain(|(name, _)| !name.eq_ignore_ascii_case("content-encoding"));
                self.headers
                    .push(("Content-Encoding".into(), "gzip".into()));
            }
            // writing to a Vec does not fail; should it, the answer stays uncompressed
            Err(e) => tracing::warn!(error = %e, "could not gzip a fake answer"),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::{Value, json};

    use super::*;
    use crate::http::{HttpClient, HttpConfig};
    use crate::testkit::FakeServer;

    #[tokio::test]
    async fn the_client_reads_gzipped_answers_and_asks_for_them() {
        let server = FakeServer::start().await.unwrap();
        let body = json!({"items": [{"id": 1}], "quota_max": 300, "quota_remaining": 299});
        server.route("/questions", [Reply::json(&body).gzipped()]);
        let client = HttpClient::new(HttpConfig::new(server.base_url())).unwrap();
        let answer = client
            .get_json::<Value>("/questions", &[], None)
            .await
            .unwrap();
        assert_eq!(answer.body, body);
        assert_eq!(
            answer.rate_limit.remaining,
            Some(299.0),
            "the quota surfaced"
        );
        let request = &server.requests()[0];
        assert!(
            request
                .header("accept-encoding")
                .is_some_and(|v| v.contains("gzip")),
            "{request:?}"
        );
    }
}
