//! A dead letter cut to fit SQS's message size, its reason kept whatever the body's size.

/// SQS's largest message, body and attributes together.
pub(super) const MAX_MESSAGE_BYTES: usize = 262_144;
/// The longest reason kept with a dead letter.
const MAX_REASON_BYTES: usize = 4_096;
/// Room kept for the attributes' names, types and the other values.
const ATTRIBUTES_ROOM: usize = 512;

/// The body and reason of a dead letter cut to fit a queue of `limit` bytes (body and attributes
/// together), each cut saying so in the reason.
pub(super) fn fit_dead_letter<'a>(body: &'a str, reason: &str, limit: usize) -> (&'a str, String) {
    let mut reason = if reason.len() > MAX_REASON_BYTES {
        format!(
            "{}… [reason cut to {MAX_REASON_BYTES} of {} bytes]",
            prefix(reason, MAX_REASON_BYTES),
            reason.len()
        )
    } else {
        reason.to_owned()
    };
    const NOTE_ROOM: usize = 96;
    let room = limit.saturating_sub(reason.len() + ATTRIBUTES_ROOM + NOTE_ROOM);
    if body.len() <= room {
        return (body, reason);
    }
    let kept = prefix(body, room);
    reason.push_str(&format!(
        " [body too large for the dead-letter queue: its first {} of {} bytes are kept]",
        kept.len(),
        body.len()
    ));
    (kept, reason)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_keeps_its_reason_whatever_the_size_of_its_body() {
        let (body, reason) = fit_dead_letter("small", "bad json", 1024);
        assert_eq!((body, reason.as_str()), ("small", "bad json"));
        let big = "é".repeat(2_000);
        let (body, reason) = fit_dead_letter(&big, "bad json", 1024);
        assert!(
            body.len() + reason.len() + ATTRIBUTES_ROOM <= 1024,
            "{}",
            body.len()
        );
        assert!(big.starts_with(body));
        assert!(reason.starts_with("bad json [body too large"), "{reason}");
        assert!(reason.contains("of 4000 bytes are kept"), "{reason}");
        let (_, reason) = fit_dead_letter("x", &"r".repeat(10_000), MAX_MESSAGE_BYTES);
        assert!(reason.len() < MAX_REASON_BYTES + 100);
        assert!(
            reason.contains("reason cut to 4096 of 10000 bytes"),
            "{reason}"
        );
    }
}
