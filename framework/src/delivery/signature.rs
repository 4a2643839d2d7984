//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{webhook-id}.{webhook-timestamp}.{body}">`, keyed by the secret's base64 part after `whsec_`.
//! While a rotated-out secret is still valid, the header carries one signature per secret,
//! separated by spaces.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

const PREFIX: &str = "whsec_";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a signing secret is `whsec_` followed by base64 of 24 to 64 bytes")]
    MalformedSecret,
    #[error("no signature of the header matches")]
    Mismatch,
    #[error("the timestamp {0} is too far from now")]
    Stale(i64),
}

/// A new random secret, `whsec_` + base64 of 32 bytes from the system's CSPRNG (through
/// `uuid`'s v4, 244 random bits).
pub fn generate_secret() -> Secret {
    let bytes: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|u| *u.as_bytes())
        .collect();
    Secret::new(format!("{PREFIX}{}", STANDARD.encode(bytes)))
}

fn key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    let encoded = secret.strip_prefix(PREFIX).unwrap_or(secret);
    let key = STANDARD
        .decode(encoded)
        .map_err(|_| SignatureError::MalformedSecret)?;
    if (24..=64).contains(&key.len()) {
        Ok(key)
    } else {
        Err(SignatureError::MalformedSecret)
    }
}

/// Checks that `secret` has the `whsec_` form.
pub fn validate_secret(secret: &str) -> Result<(), SignatureError> {
    key(secret).map(|_| ())
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).map_err(|_| SignatureError::MalformedSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// The `webhook-signature` header value: `v1,<sig>` for each secret, space-separated.
pub fn sign(
    secrets: &[String],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let mut parts = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let mac = mac(&key(secret)?, id, timestamp, body)?;
        parts.push(format!("v1,{}", STANDARD.encode(mac)));
    }
    Ok(parts.join(" "))
}

/// What a receiver does: accepts if any `v1` signature of the header matches `secret` and the
/// timestamp is within `tolerance_secs` of `now`.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: i64,
    now: i64,
    tolerance_secs: i64,
    body: &[u8],
    header: &str,
) -> Result<(), SignatureError> {
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale(timestamp));
    }
    let key = key(secret)?;
    for part in header.split(' ') {
        let Some(sig) = part.strip_prefix("v1,") else {
            continue;
        };
        let Ok(sig) = STANDARD.decode(sig) else {
            continue;
        };
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SignatureError::MalformedSecret)?;
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        if mac.verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let header = sign(
            &[secret.to_owned()],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
        )
        .expect("signs");
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            1614265330,
            300,
            body,
            &header,
        )
        .expect("verifies");
    }

    #[test]
    fn two_secrets_during_rotation_each_verify_and_tampering_fails() {
        let old = generate_secret();
        let new = generate_secret();
        let secrets = [new.expose().to_owned(), old.expose().to_owned()];
        let header = sign(&secrets, "id1", 100, b"body").expect("signs");
        assert_eq!(header.split(' ').count(), 2);
        verify(old.expose(), "id1", 100, 100, 300, b"body", &header).expect("old verifies");
        verify(new.expose(), "id1", 100, 100, 300, b"body", &header).expect("new verifies");
        let other = generate_secret();
        assert_eq!(
            verify(other.expose(), "id1", 100, 100, 300, b"body", &header),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(new.expose(), "id1", 100, 100, 300, b"bodY", &header),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(new.expose(), "id1", 100, 1000, 300, b"body", &header),
            Err(SignatureError::Stale(100))
        );
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(
            validate_secret("whsec_short"),
            Err(SignatureError::MalformedSecret)
        );
        assert_eq!(
            validate_secret("whsec_!!!"),
            Err(SignatureError::MalformedSecret)
        );
        assert!(validate_secret(generate_secret().expose()).is_ok());
    }
}
