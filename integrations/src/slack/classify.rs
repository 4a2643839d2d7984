//! Slack answers most errors with `200 OK` and `{"ok": false, "error": "…"}`: read through the
//! toolkit's body classifier, so that its rate limits block the token like any other.

use tributary::http::{Answer, BodyClassifier, Verdict};

pub(super) const CLASSIFIER: BodyClassifier = BodyClassifier::new("slack", classify);

fn classify(answer: &Answer<'_>) -> Option<Verdict> {
    let json = answer.json()?;
    if json.get("ok")?.as_bool()? {
        return None;
    }
    let error = json
        .get("error")
        .and_then(|e| e.as_str())
        .unwrap_or("unknown_error");
    Some(verdict(error))
}

/// What each documented error means for the run.
fn verdict(error: &str) -> Verdict {
    match error {
        "ratelimited" | "rate_limited" => {
            Verdict::rate_limited(None, format!("{error}: Slack's limit for this method"))
        }
        "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "token_expired"
        | "no_permission" | "org_login_required" | "ekm_access_denied" => Verdict::fatal(format!(
            "{error}: Slack refused the bot token; give a valid bot token (xoxb-…) of this \
             workspace"
        )),
        "missing_scope" | "not_allowed_token_type" => Verdict::fatal(format!(
            "{error}: the bot token lacks a scope this integration needs (channels:read, \
             channels:history, users:read)"
        )),
        "not_in_channel" => Verdict::fatal(
            "not_in_channel: the bot is not a member of this channel; invite it (`/invite \
             @bot`) or remove the channel from the settings",
        ),
        "channel_not_found" => Verdict::fatal(
            "channel_not_found: no such channel, or the bot cannot see it; check the channel \
             ids in the settings",
        ),
        // a user that does not exist is an answer, not a failure: the member keeps its id
        "user_not_found" | "user_not_visible" => Verdict::Success,
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            Verdict::retryable(format!("{error}: Slack failed to answer"))
        }
        other => Verdict::fatal(format!("{other}: Slack refused the request")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn of(body: &str) -> Option<Verdict> {
        let headers = HeaderMap::new();
        CLASSIFIER.verdict(&Answer {
            status: StatusCode::OK,
            headers: &headers,
            body: body.as_bytes(),
        })
    }

    #[test]
    fn ok_false_is_classified_by_its_error() {
        assert_eq!(of(r#"{"ok": true, "messages": []}"#), None);
        assert_eq!(of("<html>"), None, "not JSON: left to the standard reading");
        assert!(matches!(
            of(r#"{"ok": false, "error": "ratelimited"}"#),
            Some(Verdict::RateLimited { wait: None, .. })
        ));
        for fatal in [
            "invalid_auth",
            "not_in_channel",
            "channel_not_found",
            "missing_scope",
            "weird",
        ] {
            let verdict = of(&format!(r#"{{"ok": false, "error": "{fatal}"}}"#));
            let Some(Verdict::Fatal(message)) = verdict else {
                panic!("{fatal}: {verdict:?}");
            };
            assert!(message.starts_with(fatal), "{message}");
        }
        assert!(matches!(
            of(r#"{"ok": false, "error": "internal_error"}"#),
            Some(Verdict::Retryable(_))
        ));
        assert_eq!(
            of(r#"{"ok": false, "error": "user_not_found"}"#),
            Some(Verdict::Success)
        );
        assert!(matches!(of(r#"{"ok": false}"#), Some(Verdict::Fatal(_))));
    }
}
