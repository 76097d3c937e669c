//! Secrets as their own type: a password or key can be handed around, but printing it, logging
//! it with `{:?}` or serialising it shows `[redacted]`. Reading the value is an explicit
//! `expose()` call at the one place that needs it (an LDAP bind, an HTTP header).

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Read from an answers file or a request as the plain string it is there.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(Secret::new)
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("Tr0ub4dor&3-distinct");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(
            serde_json::to_string(&s).ok().as_deref(),
            Some("\"[redacted]\"")
        );
        assert_eq!(s.expose(), "Tr0ub4dor&3-distinct");
    }
}
