//! Connect keys: the one-time keys that enroll an agent with the cloud.
//!
//! Format: `ADS1-` then 32 Crockford base32 characters in groups of four, spelling 20 bytes:
//! 16 random bytes (128 bits) and a 4-byte checksum (the start of SHA-256 over a label and the
//! random bytes). The checksum catches a mistyped, truncated or mangled key offline, before any
//! network call. Parsing forgives what pasting does: spaces, dashes, line breaks, lower case, and
//! Crockford's look-alikes (`O` for `0`, `I`/`L` for `1`).
//!
//! The key is a `Secret`: it is shown in full once, when issued; everywhere else `redacted()`.
//! The cloud stores only `hash()`.

use crate::secret::Secret;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "ADS1";
const RANDOM_BYTES: usize = 16;
const CHECK_BYTES: usize = 4;
const CHARS: usize = 32; // (16 + 4) bytes * 8 / 5 bits
const ALPHABET: base32::Alphabet = base32::Alphabet::Crockford;

/// A connect key that passed the offline checks.
#[derive(Clone)]
pub struct ConnectKey {
    random: [u8; RANDOM_BYTES],
    text: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("the connect key is empty; paste the key shown in the cloud console")]
    Empty,
    #[error(
        "`{found}` at character {position} cannot be part of a connect key (keys use 0-9 and A-Z without I, L, O, U); check for a stray character"
    )]
    BadCharacter { position: usize, found: char },
    #[error(
        "the connect key has {found} of its {expected} characters: it looks truncated; copy the whole key again"
    )]
    TooShort { found: usize, expected: usize },
    #[error(
        "the connect key has {found} characters, {expected} expected: something extra was pasted with it; copy the key alone"
    )]
    TooLong { found: usize, expected: usize },
    #[error(
        "the connect key's checksum does not match: a character is mistyped; copy the key again rather than typing it"
    )]
    Checksum,
}

fn checksum(random: &[u8]) -> [u8; CHECK_BYTES] {
    let digest = Sha256::new()
        .chain_update(b"ad-sync connect key v1\0")
        .chain_update(random)
        .finalize();
    let mut out = [0u8; CHECK_BYTES];
    out.copy_from_slice(&digest[..CHECK_BYTES]);
    out
}

impl ConnectKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<ConnectKey, getrandom::Error> {
        let mut random = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut random)?;
        Ok(Self::from_random(random))
    }

    fn from_random(random: [u8; RANDOM_BYTES]) -> ConnectKey {
        let mut bytes = random.to_vec();
        bytes.extend_from_slice(&checksum(&random));
        let body = base32::encode(ALPHABET, &bytes);
        let groups: Vec<&str> = (0..CHARS)
            .step_by(4)
            .map(|i| &body[i..(i + 4).min(body.len())])
            .collect();
        ConnectKey {
            random,
            text: Secret::new(format!("{PREFIX}-{}", groups.join("-"))),
        }
    }

    /// Checks a key as pasted: format and checksum, offline.
    pub fn parse(input: &str) -> Result<ConnectKey, KeyFormatError> {
        // Characters kept, with their 1-based position in the input for error messages.
        let mut kept: Vec<(usize, char)> = input
            .chars()
            .enumerate()
            .filter(|(_, c)| !c.is_whitespace() && *c != '-')
            .map(|(i, c)| (i + 1, c.to_ascii_uppercase()))
            .collect();
        if kept.is_empty() {
            return Err(KeyFormatError::Empty);
        }
        // Crockford's look-alikes first, so a prefix typed as `ADSl` is still the prefix.
        for (_, c) in kept.iter_mut() {
            *c = match *c {
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            };
        }
        // A bare 32-character body may itself start with `ADS1`; strip the prefix only when
        // the input is not exactly a bare body.
        let starts_with_prefix = kept.len() != CHARS
            && kept.len() >= PREFIX.len()
            && kept.iter().zip(PREFIX.chars()).all(|((_, c), p)| *c == p);
        if starts_with_prefix {
            kept.drain(..PREFIX.len());
        }
        let mut body = String::with_capacity(CHARS);
        for (position, c) in &kept {
            if !(c.is_ascii_digit() || (c.is_ascii_uppercase() && *c != 'U')) {
                return Err(KeyFormatError::BadCharacter {
                    position: *position,
                    found: input.chars().nth(position - 1).unwrap_or(*c),
                });
            }
            body.push(*c);
        }
        if body.len() < CHARS {
            return Err(KeyFormatError::TooShort {
                found: body.len(),
                expected: CHARS,
            });
        }
        if body.len() > CHARS {
            return Err(KeyFormatError::TooLong {
                found: body.len(),
                expected: CHARS,
            });
        }
        let bytes = base32::decode(ALPHABET, &body).ok_or(KeyFormatError::Checksum)?;
        if bytes.len() != RANDOM_BYTES + CHECK_BYTES {
            return Err(KeyFormatError::Checksum);
        }
        let (random, check) = bytes.split_at(RANDOM_BYTES);
        if check != checksum(random) {
            return Err(KeyFormatError::Checksum);
        }
        let mut r = [0u8; RANDOM_BYTES];
        r.copy_from_slice(random);
        // Re-render canonically, whatever the paste looked like.
        Ok(Self::from_random(r))
    }

    /// The canonical text (`ADS1-XXXX-...`), for the one place that sends it.
    pub fn secret(&self) -> &Secret {
        &self.text
    }

    /// What may be shown or logged: the prefix and the last four characters.
    pub fn redacted(&self) -> String {
        let text = self.text.expose();
        let tail = &text[text.len().saturating_sub(4)..];
        format!("{PREFIX}-…-{tail}")
    }

    /// What the cloud stores: SHA-256 of the random part, hex. The key has 128 random bits,
    /// so no salt or slow hash is needed to make the stored value useless to a thief.
    pub fn hash(&self) -> String {
        Sha256::digest(self.random)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl std::fmt::Debug for ConnectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectKey({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ConnectKey {
        ConnectKey::generate().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn generated_keys_parse_back_and_differ() {
        let a = key();
        let b = key();
        assert_ne!(a.hash(), b.hash());
        let text = a.secret().expose().to_string();
        assert!(
            text.starts_with("ADS1-") && text.len() == 5 + 32 + 7,
            "{text}"
        );
        let again = ConnectKey::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.hash(), a.hash());
    }

    #[test]
    fn forgives_what_pasting_does() {
        let a = key();
        let text = a.secret().expose().to_string();
        let body = text.trim_start_matches("ADS1-").replace('-', "");
        let variants = [
            text.to_lowercase(),
            format!("  {text}\r\n"),
            body.clone(),
            format!("{} {}\n{}", &text[..14], &text[14..30], &text[30..]),
            text.replace('0', "O").replace('1', "l"),
        ];
        for v in variants {
            let parsed = ConnectKey::parse(&v).unwrap_or_else(|e| panic!("{v:?}: {e}"));
            assert_eq!(parsed.hash(), a.hash(), "{v:?}");
            assert_eq!(parsed.secret().expose(), text);
        }
    }

    #[test]
    fn catches_every_single_character_typo_and_truncation_offline() {
        let a = key();
        let text = a.secret().expose().to_string();
        let alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        for (i, c) in text.char_indices().skip(5).filter(|(_, c)| *c != '-') {
            for r in alphabet.chars().filter(|r| *r != c) {
                let mut typo = text.clone();
                typo.replace_range(i..i + 1, &r.to_string());
                assert!(ConnectKey::parse(&typo).is_err(), "{typo} accepted");
            }
        }
        assert!(matches!(
            ConnectKey::parse(&text[..text.len() - 3]),
            Err(KeyFormatError::TooShort { .. })
        ));
        assert!(matches!(
            ConnectKey::parse(&format!("{text}7")),
            Err(KeyFormatError::TooLong { .. })
        ));
        assert!(matches!(
            ConnectKey::parse(&format!("{}U{}", &text[..6], &text[7..])),
            Err(KeyFormatError::BadCharacter {
                position: 7,
                found: 'U'
            })
        ));
        assert_eq!(
            ConnectKey::parse(" - \n").map(|_| ()),
            Err(KeyFormatError::Empty)
        );
    }

    #[test]
    fn never_shows_the_key_except_on_purpose() {
        let a = key();
        let text = a.secret().expose().to_string();
        let shown = format!("{a:?} {} {}", a.redacted(), a.secret());
        assert!(!shown.contains(&text[5..20]), "{shown}");
        assert!(a.redacted().ends_with(&text[text.len() - 4..]));
    }
}
