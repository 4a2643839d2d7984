//! Credentials encrypted at rest: the keys of this process and the sealed form stored in
//! `integrations.credentials`.
//!
//! The current key comes from `TRIBUTARY_SECRET_KEY` (or the file named by
//! `TRIBUTARY_SECRET_KEY_FILE`): 32 bytes as 64 hex digits or base64. Keys being rotated out
//! stay readable through `TRIBUTARY_SECRET_KEY_PREVIOUS` (comma-separated). Credentials are
//! sealed with ChaCha20-Poly1305 (a random 96-bit nonce each), bound to their integration's id,
//! and stored with the id of their key:
//! `{"$encrypted": {"v": 1, "alg": "chacha20-poly1305", "kid": "…", "nonce": "…", "ciphertext": "…"}}`.
//! Without a key, credentials are stored as given (the worker refuses to start so unless told
//! to); stored plaintext stays readable and is sealed by `scripts/rotate-credentials-key`.

use std::fmt;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use uuid::Uuid;

/// The current key.
pub const KEY_ENV: &str = "TRIBUTARY_SECRET_KEY";
/// A file holding the current key (when `TRIBUTARY_SECRET_KEY` is not set).
pub const KEY_FILE_ENV: &str = "TRIBUTARY_SECRET_KEY_FILE";
/// Keys still accepted for reading, comma-separated (during a rotation).
pub const PREVIOUS_KEYS_ENV: &str = "TRIBUTARY_SECRET_KEY_PREVIOUS";
/// `1` lets the worker start without a key (credentials then stored in the clear).
pub const ALLOW_PLAINTEXT_ENV: &str = "TRIBUTARY_ALLOW_PLAINTEXT_CREDENTIALS";

const SEALED: &str = "$encrypted";
const ALG: &str = "chacha20-poly1305";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{origin} is not a key: expected 32 bytes as 64 hex digits or base64 \
         (`scripts/rotate-credentials-key --generate` makes one)"
    )]
    Malformed { origin: String },
    #[error("cannot read the key file {path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "the credentials of integration {integration_id} are sealed with key `{kid}`, which this \
         process does not have (set {KEY_ENV}, or list it in {PREVIOUS_KEYS_ENV})"
    )]
    UnknownKey { integration_id: Uuid, kid: String },
    #[error(
        "the credentials of integration {integration_id} do not open with key `{kid}`: \
         tampered with, or copied from another integration"
    )]
    Corrupt { integration_id: Uuid, kid: String },
    #[error(
        "the credentials of integration {integration_id} are sealed in a form this version does not know"
    )]
    UnknownForm { integration_id: Uuid },
    #[error(
        "no key to encrypt credentials with: set {KEY_ENV} or {KEY_FILE_ENV} \
         (`scripts/rotate-credentials-key --generate` makes a key), or set \
         {ALLOW_PLAINTEXT_ENV}=1 to store credentials in the clear"
    )]
    Missing,
    #[error("the secret key is unusable: {0}")]
    Unusable(String),
}

/// One 256-bit key and its id (the first 8 hex digits of its SHA-256).
struct Key {
    id: String,
    sealing: LessSafeKey,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| KeyError::Unusable("ChaCha20-Poly1305 refused the key".into()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let id = digest.as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            id,
            sealing: LessSafeKey::new(unbound),
        })
    }

    fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let malformed = || KeyError::Malformed {
            origin: origin.to_owned(),
        };
        let bytes: Vec<u8> = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| malformed())?
        } else {
            B64.decode(text).map_err(|_| malformed())?
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| malformed())?;
        Self::new(&bytes)
    }
}

/// The keys of this process: the current one seals, every one opens.
pub struct Keyring {
    current: Option<Key>,
    previous: Vec<Key>,
    /// Set when the environment named a key that could not be used: every seal and open fails
    /// with it (credentials are never silently written in the clear).
    broken: Option<KeyError>,
    rng: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current_key_id())
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// No key: credentials are stored as given.
    pub fn plaintext() -> Self {
        Self {
            current: None,
            previous: Vec::new(),
            broken: None,
            rng: SystemRandom::new(),
        }
    }

    /// Seals with `current`; opens with it and every one of `previous`.
    pub fn new(current: &str, previous: &[&str]) -> Result<Self, KeyError> {
        let mut ring = Self::plaintext();
        ring.current = Some(Key::parse(current, "the current key")?);
        for (i, key) in previous.iter().enumerate() {
            ring.previous
                .push(Key::parse(key, &format!("previous key #{}", i + 1))?);
        }
        Ok(ring)
    }

    /// The keys the environment names ([`KEY_ENV`] or [`KEY_FILE_ENV`], and
    /// [`PREVIOUS_KEYS_ENV`]); without any, a plaintext keyring.
    pub fn from_env() -> Result<Self, KeyError> {
        let current = match std::env::var(KEY_ENV).ok().filter(|k| !k.trim().is_empty()) {
            Some(key) => Some(key),
            None => match std::env::var(KEY_FILE_ENV).ok().filter(|p| !p.is_empty()) {
                Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| KeyError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?),
                None => None,
            },
        };
        let previous = std::env::var(PREVIOUS_KEYS_ENV).unwrap_or_default();
        let previous: Vec<&str> = previous
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        match current {
            Some(key) => Self::new(&key, &previous),
            None if previous.is_empty() => Ok(Self::plaintext()),
            None => Err(KeyError::Unusable(format!(
                "{PREVIOUS_KEYS_ENV} is set but no current key ({KEY_ENV} or {KEY_FILE_ENV})"
            ))),
        }
    }

    /// A fresh random key, as 64 hex digits.
    pub fn generate_key() -> String {
        let mut bytes = [0u8; 32];
        // the system's RNG failing is not something to go on from
        #[allow(clippy::expect_used)]
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random number generator failed");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The id of the key that seals, if any.
    pub fn current_key_id(&self) -> Option<&str> {
        self.current.as_ref().map(|k| k.id.as_str())
    }

    pub fn is_plaintext(&self) -> bool {
        self.current.is_none() && self.broken.is_none()
    }

    /// The stored form of an integration's credentials: sealed with the current key, or as given
    /// without one. Empty credentials are stored as `{}`.
    pub fn seal(&self, integration_id: Uuid, credentials: &Value) -> Result<Value, KeyError> {
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        let empty = match credentials {
            Value::Null => true,
            Value::Object(map) => map.is_empty(),
            _ => false,
        };
        let Some(key) = &self.current else {
            return Ok(credentials.clone());
        };
        if empty {
            return Ok(json!({}));
        }
        let mut nonce = [0u8; aead::NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| KeyError::Unusable("the system random number generator failed".into()))?;
        let mut data = serde_json::to_vec(credentials)
            .map_err(|e| KeyError::Unusable(format!("credentials do not serialize: {e}")))?;
        key.sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(integration_id)),
                &mut data,
            )
            .map_err(|_| KeyError::Unusable("sealing failed".into()))?;
        Ok(json!({ SEALED: {
            "v": 1,
            "alg": ALG,
            "kid": key.id,
            "nonce": B64.encode(nonce),
            "ciphertext": B64.encode(&data),
        }}))
    }

    /// The credentials a stored value holds: opened with the key it names, or as stored when it
    /// was stored in the clear.
    pub fn open(&self, integration_id: Uuid, stored: &Value) -> Result<Value, KeyError> {
        let Some(sealed) = stored.get(SEALED) else {
            return Ok(stored.clone());
        };
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        let unknown = || KeyError::UnknownForm { integration_id };
        if sealed.get("v") != Some(&json!(1)) || sealed.get("alg") != Some(&json!(ALG)) {
            return Err(unknown());
        }
        let field = |name: &str| sealed.get(name).and_then(Value::as_str).ok_or_else(unknown);
        let kid = field("kid")?;
        let key = self
            .current
            .iter()
            .chain(&self.previous)
            .find(|k| k.id == kid)
            .ok_or_else(|| KeyError::UnknownKey {
                integration_id,
                kid: kid.to_owned(),
            })?;
        let corrupt = || KeyError::Corrupt {
            integration_id,
            kid: kid.to_owned(),
        };
        let nonce: [u8; aead::NONCE_LEN] = B64
            .decode(field("nonce")?)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(corrupt)?;
        let mut data = B64.decode(field("ciphertext")?).map_err(|_| corrupt())?;
        let plain = key
            .sealing
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(integration_id)),
                &mut data,
            )
            .map_err(|_| corrupt())?;
        serde_json::from_slice(plain).map_err(|_| corrupt())
    }

    /// The id of the key a stored value is sealed with (`None`: stored in the clear).
    pub fn sealed_with(stored: &Value) -> Option<&str> {
        stored.get(SEALED)?.get("kid")?.as_str()
    }
}

fn aad(integration_id: Uuid) -> Vec<u8> {
    format!("tributary-credentials:v1:{integration_id}").into_bytes()
}

static KEYRING: OnceLock<Keyring> = OnceLock::new();

/// The keyring of this process: the one [`install`]ed, else the environment's. A key named in
/// the environment that cannot be used makes every seal and open fail with the reason.
pub fn current() -> &'static Keyring {
    KEYRING.get_or_init(|| {
        Keyring::from_env().unwrap_or_else(|e| {
            let mut ring = Keyring::plaintext();
            ring.broken = Some(e);
            ring
        })
    })
}

/// Makes `keyring` this process's keyring; false if one was already in use.
pub fn install(keyring: Keyring) -> bool {
    KEYRING.set(keyring).is_ok()
}

/// Loads the environment's keys into this process's keyring (binaries call this at start, so a
/// malformed key stops them with its reason). Returns the keyring in use.
pub fn init_from_env() -> Result<&'static Keyring, KeyError> {
    let ring = Keyring::from_env()?;
    install(ring);
    Ok(current())
}

/// Whether the environment allows running without a key ([`ALLOW_PLAINTEXT_ENV`] = `1`).
pub fn plaintext_allowed() -> bool {
    std::env::var(ALLOW_PLAINTEXT_ENV).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

/// What a long-running service requires: a key, unless running in the clear was allowed.
pub fn require_key(keyring: &Keyring, plaintext_allowed: bool) -> Result<(), KeyError> {
    if keyring.is_plaintext() && !plaintext_allowed {
        Err(KeyError::Missing)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_credentials_open_only_for_their_integration_and_key() {
        let key = Keyring::generate_key();
        let ring = Keyring::new(&key, &[]).unwrap();
        let id = Uuid::new_v4();
        let creds = json!({"token": "ghp_supersecret"});
        let sealed = ring.seal(id, &creds).unwrap();
        assert!(!sealed.to_string().contains("supersecret"));
        assert_eq!(Keyring::sealed_with(&sealed), ring.current_key_id());
        assert_eq!(ring.open(id, &sealed).unwrap(), creds);
        assert!(matches!(
            ring.open(Uuid::new_v4(), &sealed),
            Err(KeyError::Corrupt { .. })
        ));
        let other = Keyring::new(&Keyring::generate_key(), &[]).unwrap();
        assert!(matches!(
            other.open(id, &sealed),
            Err(KeyError::UnknownKey { .. })
        ));
        let rotated = Keyring::new(&Keyring::generate_key(), &[&key]).unwrap();
        assert_eq!(rotated.open(id, &sealed).unwrap(), creds);
        assert_eq!(rotated.open(id, &creds).unwrap(), creds, "plaintext reads");
        assert_eq!(
            Keyring::plaintext().seal(id, &creds).unwrap(),
            creds,
            "no key: as given"
        );
    }

    #[test]
    fn a_service_needs_a_key_unless_plaintext_is_allowed() {
        let err = require_key(&Keyring::plaintext(), false).unwrap_err();
        assert!(err.to_string().contains(ALLOW_PLAINTEXT_ENV), "{err}");
        assert!(require_key(&Keyring::plaintext(), true).is_ok());
        let ring = Keyring::new(&Keyring::generate_key(), &[]).unwrap();
        assert!(require_key(&ring, false).is_ok());
    }

    #[test]
    fn keys_are_hex_or_base64_of_32_bytes() {
        let hex = "00".repeat(32);
        assert!(Keyring::new(&hex, &[]).is_ok());
        assert!(Keyring::new(&B64.encode([7u8; 32]), &[]).is_ok());
        assert!(matches!(
            Keyring::new("short", &[]),
            Err(KeyError::Malformed { .. })
        ));
        assert!(Keyring::new(&B64.encode([7u8; 16]), &[]).is_err());
    }
}
