//! Password changes travel sealed to the agent's own key (libsodium sealed boxes: X25519 and
//! XSalsa20-Poly1305, from RustCrypto's `crypto_box`), so the cloud's database, its logs and any
//! TLS-terminating proxy never see a password in the clear.
//!
//! The agent makes its key pair at enrollment and sends only the public half; the secret half
//! stays in the agent's secret store.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crypto_box::aead::OsRng;
use crypto_box::{PublicKey, SecretKey};

use crate::secret::Secret;

/// Why a key or a sealed password cannot be used. The texts are what the API and the logs say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("public_key is not base64")]
    KeyNotBase64,
    #[error("public_key has {0} bytes; an X25519 public key has 32")]
    KeyLength(usize),
    #[error("public_key is all zeros")]
    KeyZero,
    #[error("could not seal the password")]
    Seal,
    #[error("the agent's secret key is damaged; re-enroll the agent")]
    SecretKeyDamaged,
    #[error("the sealed password is not base64")]
    NotBase64,
    #[error("the sealed password was not sealed to this agent's key (or was altered)")]
    WrongKey,
    #[error("the sealed password is not UTF-8")]
    NotUtf8,
    #[error(
        "the sealed password is not bound to this user and change (it was moved from another one, or sealed by an older cloud); set the password again in the cloud"
    )]
    NotBound,
}

/// The agent's key pair. The secret half is a `Secret` in base64, ready for the secret store.
pub struct AgentKeyPair {
    pub public_key: String,
    pub secret_key: Secret,
}

pub fn generate_key_pair() -> AgentKeyPair {
    let secret = SecretKey::generate(&mut OsRng);
    AgentKeyPair {
        public_key: STANDARD.encode(secret.public_key().as_bytes()),
        secret_key: Secret::new(STANDARD.encode(secret.to_bytes())),
    }
}

/// Checks a public key as the enrollment request carries it.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], SealError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| SealError::KeyNotBase64)?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| SealError::KeyLength(b.len()))?;
    if key == [0u8; 32] {
        return Err(SealError::KeyZero);
    }
    Ok(key)
}

/// Seals `plaintext` to a 32-byte public key; base64 of the sealed box.
pub fn seal(public_key: &[u8; 32], plaintext: &[u8]) -> Result<String, SealError> {
    let pk = PublicKey::from(*public_key);
    pk.seal(&mut OsRng, plaintext)
        .map(|b| STANDARD.encode(b))
        .map_err(|_| SealError::Seal)
}

const BOUND_PREFIX: &str = "ad-sync-password:1\n";

/// What the cloud seals for a password change: the user's id and the change's seq with the
/// password, so an envelope cannot be replayed for another user or as another change.
pub fn bind_password(user_id: &str, seq: i64, password: &Secret) -> Secret {
    Secret::new(
        zeroize::Zeroizing::new(format!(
            "{BOUND_PREFIX}{user_id}\n{seq}\n{}",
            password.expose()
        ))
        .as_str(),
    )
}

/// The password from an opened envelope, if it was sealed for this user and this change.
pub fn unbind_password(opened: &Secret, user_id: &str, seq: i64) -> Result<Secret, SealError> {
    let rest = opened
        .expose()
        .strip_prefix(BOUND_PREFIX)
        .ok_or(SealError::NotBound)?;
    let mut parts = rest.splitn(3, '\n');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(s), Some(password))
            if id == user_id && s.parse::<i64>().ok() == Some(seq) =>
        {
            Ok(Secret::new(password))
        }
        _ => Err(SealError::NotBound),
    }
}

/// Opens a sealed password with the agent's secret key (base64).
pub fn open(secret_key: &Secret, sealed: &str) -> Result<Secret, SealError> {
    let sk_bytes: [u8; 32] = STANDARD
        .decode(secret_key.expose())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(SealError::SecretKeyDamaged)?;
    let boxed = STANDARD.decode(sealed).map_err(|_| SealError::NotBase64)?;
    let plain = SecretKey::from(sk_bytes)
        .unseal(&boxed)
        .map_err(|_| SealError::WrongKey)?;
    String::from_utf8(plain)
        .map(Secret::new)
        .map_err(|_| SealError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_password_opens_only_with_the_matching_key() {
        let pair = generate_key_pair();
        let other = generate_key_pair();
        let pk = parse_public_key(&pair.public_key).unwrap_or_else(|e| panic!("{e}"));
        let sealed = seal(&pk, "Pa55 wörd!".as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!sealed.contains("Pa55"));
        assert_eq!(
            open(&pair.secret_key, &sealed)
                .unwrap_or_else(|e| panic!("{e}"))
                .expose(),
            "Pa55 wörd!"
        );
        assert_eq!(
            open(&other.secret_key, &sealed).err(),
            Some(SealError::WrongKey)
        );
    }

    #[test]
    fn a_bound_password_opens_only_for_its_user_and_change() {
        let pw = Secret::new("Pa55\nwith a newline");
        let bound = bind_password("u-1", 7, &pw);
        assert_eq!(
            unbind_password(&bound, "u-1", 7)
                .unwrap_or_else(|e| panic!("{e}"))
                .expose(),
            "Pa55\nwith a newline"
        );
        for (id, seq) in [("u-2", 7), ("u-1", 8)] {
            assert_eq!(
                unbind_password(&bound, id, seq).err(),
                Some(SealError::NotBound)
            );
        }
        // An envelope of the raw password (an older cloud) is refused too.
        assert_eq!(
            unbind_password(&pw, "u-1", 7).err(),
            Some(SealError::NotBound)
        );
    }

    #[test]
    fn refuses_public_keys_of_the_wrong_shape() {
        assert_eq!(
            parse_public_key("not base64!"),
            Err(SealError::KeyNotBase64)
        );
        assert_eq!(
            parse_public_key(&STANDARD.encode([1u8; 16])),
            Err(SealError::KeyLength(16))
        );
        assert_eq!(
            parse_public_key(&STANDARD.encode([0u8; 32])),
            Err(SealError::KeyZero)
        );
    }
}
