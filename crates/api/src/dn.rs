//! Distinguished names as an AD administrator types them.
//!
//! Owns parsing of the comma form (`CN=Users,DC=example,DC=com`) and the semicolon form
//! (`CN=Users;DC=example;DC=com`) with RFC 4514 escaping, the normalisations we apply (attribute
//! types upper-cased), the refusals (with the 1-based character position of the problem), and
//! rendering back to either form. Pure: no I/O, no LDAP. A comma or semicolon inside a value
//! must be escaped in both forms (`\,` `\;`), so a value survives a trip through either.
//!
//! Not here: whether the DN exists or lies in the bound domain (see `preflight`).

use std::fmt;

/// Which separator a DN was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Separator {
    Comma,
    Semicolon,
}

impl Separator {
    fn char(self) -> char {
        match self {
            Separator::Comma => ',',
            Separator::Semicolon => ';',
        }
    }
}

/// One relative distinguished name: an attribute type (upper case) and its unescaped value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rdn {
    pub attr: String,
    pub value: String,
}

/// A parsed DN. Values are stored unescaped; rendering escapes them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dn {
    rdns: Vec<Rdn>,
}

/// What a parse changed or noticed, for the person who typed the DN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub dn: Dn,
    pub separator: Separator,
    pub notes: Vec<String>,
}

/// Why a DN was refused, and where (1-based character position in the input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {position})")]
pub struct DnError {
    pub position: usize,
    pub message: String,
}

/// Attribute types a Root User container or a group DN may use in AD.
const CONTAINER_TYPES: [&str; 3] = ["CN", "OU", "DC"];

/// Characters that must be escaped inside a value on output. AD escapes `=` as well as the
/// RFC 4514 set, and we escape both separators so either form round-trips.
const ESCAPED_ON_OUTPUT: [char; 9] = [',', ';', '+', '"', '\\', '<', '>', '=', '#'];

impl Dn {
    /// Parses a DN in either form and applies the container rules of AD: only `CN`, `OU` and `DC`
    /// attribute types, at least one `DC` component, and the `DC` components last.
    pub fn parse_container(input: &str) -> Result<Parsed, DnError> {
        let parsed = Self::parse(input)?;
        parsed.dn.check_container_rules(input)?;
        Ok(parsed)
    }

    /// Parses a DN in either form. Attribute types are upper-cased (and a note says so when that
    /// changed anything); any syntactically valid attribute type is accepted.
    pub fn parse(input: &str) -> Result<Parsed, DnError> {
        Parser::new(input).parse()
    }

    pub fn rdns(&self) -> &[Rdn] {
        &self.rdns
    }

    /// The DNS domain named by the DC components: `DC=example,DC=com` gives `example.com`.
    pub fn domain(&self) -> Option<String> {
        let labels: Vec<String> = self
            .rdns
            .iter()
            .filter(|r| r.attr == "DC")
            .map(|r| r.value.to_lowercase())
            .collect();
        (!labels.is_empty()).then(|| labels.join("."))
    }

    /// The trailing DC components as their own DN (the domain's naming context).
    pub fn domain_dn(&self) -> Option<Dn> {
        let start = self.rdns.iter().position(|r| r.attr == "DC")?;
        Some(Dn {
            rdns: self.rdns[start..].to_vec(),
        })
    }

    /// The comma form, as LDAP servers and AD's own tools print it.
    pub fn to_comma_form(&self) -> String {
        self.render(Separator::Comma)
    }

    /// The semicolon form (`CN=Users;DC=example;DC=com`).
    pub fn to_semicolon_form(&self) -> String {
        self.render(Separator::Semicolon)
    }

    pub fn render(&self, sep: Separator) -> String {
        let mut out = String::new();
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                out.push(sep.char());
            }
            out.push_str(&rdn.attr);
            out.push('=');
            escape_value(&rdn.value, &mut out);
        }
        out
    }

    /// The DN one level up (`None` for a one-part DN).
    pub fn parent(&self) -> Option<Dn> {
        (self.rdns.len() > 1).then(|| Dn {
            rdns: self.rdns[1..].to_vec(),
        })
    }

    /// A DN one level below this one, like `CN=<value>,<self>`.
    pub fn child(&self, attr: &str, value: &str) -> Dn {
        let mut rdns = vec![Rdn {
            attr: attr.to_ascii_uppercase(),
            value: value.to_string(),
        }];
        rdns.extend(self.rdns.iter().cloned());
        Dn { rdns }
    }

    /// The first RDN's value, unescaped (the CN of `CN=x,OU=y`).
    pub fn first_value(&self) -> Option<&str> {
        self.rdns.first().map(|r| r.value.as_str())
    }

    /// AD compares DNs without regard to case; so do we.
    pub fn same_as(&self, other: &Dn) -> bool {
        self.rdns.len() == other.rdns.len() && self.ends_with(other)
    }

    /// True when `suffix` is this DN or one of its ancestors.
    pub fn ends_with(&self, suffix: &Dn) -> bool {
        if suffix.rdns.len() > self.rdns.len() {
            return false;
        }
        let offset = self.rdns.len() - suffix.rdns.len();
        self.rdns[offset..]
            .iter()
            .zip(&suffix.rdns)
            .all(|(a, b)| a.attr == b.attr && a.value.to_lowercase() == b.value.to_lowercase())
    }

    fn check_container_rules(&self, input: &str) -> Result<(), DnError> {
        let starts = rdn_start_positions(input);
        for (i, rdn) in self.rdns.iter().enumerate() {
            if !CONTAINER_TYPES.contains(&rdn.attr.as_str()) {
                return Err(DnError {
                    position: starts.get(i).copied().unwrap_or(1),
                    message: format!(
                        "`{}` is not an attribute type AD uses for containers; use CN, OU or DC",
                        rdn.attr
                    ),
                });
            }
        }
        let Some(first_dc) = self.rdns.iter().position(|r| r.attr == "DC") else {
            return Err(DnError {
                position: input.chars().count().max(1),
                message: "there is no DC component, so the domain is unknown; end the DN with the \
                          domain, e.g. `DC=example;DC=com`"
                    .into(),
            });
        };
        if let Some(bad) = self.rdns[first_dc..].iter().position(|r| r.attr != "DC") {
            let idx = first_dc + bad;
            return Err(DnError {
                position: starts.get(idx).copied().unwrap_or(1),
                message: format!(
                    "`{}={}` comes after a DC component; the DC components (the domain) must come last",
                    self.rdns[idx].attr, self.rdns[idx].value
                ),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_comma_form())
    }
}

/// An RDN value escaped for writing into a DN (`CN=` + this).
pub fn escape_rdn_value(value: &str) -> String {
    let mut out = String::new();
    escape_value(value, &mut out);
    out
}

fn escape_value(value: &str, out: &mut String) {
    let count = value.chars().count();
    for (i, c) in value.chars().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i + 1 == count);
        if edge_space || ESCAPED_ON_OUTPUT.contains(&c) {
            out.push('\\');
            out.push(c);
        } else if (c as u32) < 0x20 || c == '\u{7f}' {
            out.push_str(&format!("\\{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
}

/// 1-based character positions where each RDN starts, found by a light scan that honours
/// escapes. Only used to point at an RDN in an error after a successful parse.
fn rdn_start_positions(input: &str) -> Vec<usize> {
    let mut starts = vec![1];
    let mut escaped = false;
    for (i, c) in input.chars().enumerate() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' || c == ';' {
            starts.push(i + 2);
        }
    }
    starts
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    separator: Option<Separator>,
    notes: Vec<String>,
}

impl Parser {
    fn new(input: &str) -> Self {
        Parser {
            chars: input.chars().collect(),
            pos: 0,
            separator: None,
            notes: Vec::new(),
        }
    }

    fn err<T>(&self, at: usize, message: impl Into<String>) -> Result<T, DnError> {
        Err(DnError {
            position: at + 1,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn parse(mut self) -> Result<Parsed, DnError> {
        if self.chars.is_empty() || self.chars.iter().all(|c| c.is_whitespace()) {
            return self.err(
                0,
                "the DN is empty; enter it like `CN=Users;DC=example;DC=com`",
            );
        }
        if self.chars[0].is_whitespace() {
            return self.err(0, "the DN starts with a space; remove it");
        }
        let mut rdns = Vec::new();
        loop {
            rdns.push(self.parse_rdn()?);
            match self.peek() {
                None => break,
                Some(c @ (',' | ';')) => {
                    let sep = if c == ',' {
                        Separator::Comma
                    } else {
                        Separator::Semicolon
                    };
                    match self.separator {
                        None => self.separator = Some(sep),
                        Some(s) if s != sep => {
                            return self.err(
                                self.pos,
                                format!(
                                    "`{c}` mixes separators; use `{}` throughout, and write `\\{c}` \
                                     if the character is part of a name",
                                    s.char()
                                ),
                            );
                        }
                        Some(_) => {}
                    }
                    self.pos += 1;
                    match self.peek() {
                        None => {
                            return self.err(
                                self.pos - 1,
                                format!("the DN ends with a separator `{c}`; remove it"),
                            );
                        }
                        Some(n) if n.is_whitespace() => {
                            return self.err(
                                self.pos,
                                format!("space after `{c}`; remove the spaces around separators"),
                            );
                        }
                        Some(',' | ';') => {
                            return self.err(
                                self.pos,
                                "empty component between two separators; remove one separator",
                            );
                        }
                        _ => {}
                    }
                }
                Some('+') => {
                    return self.err(
                        self.pos,
                        "`+` joins a multi-valued RDN, which AD does not use; if `+` is part of \
                         the name, write it as `\\+`",
                    );
                }
                Some(other) => {
                    return self.err(self.pos, format!("unexpected `{other}`"));
                }
            }
        }
        Ok(Parsed {
            dn: Dn { rdns },
            separator: self.separator.unwrap_or(Separator::Comma),
            notes: self.notes,
        })
    }

    fn parse_rdn(&mut self) -> Result<Rdn, DnError> {
        let start = self.pos;
        if matches!(self.peek(), Some(',' | ';')) {
            return self.err(
                start,
                "empty component: a separator with nothing before it; remove it",
            );
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                self.pos += 1;
            } else {
                break;
            }
        }
        let typed: String = self.chars[start..self.pos].iter().collect();
        match self.peek() {
            Some('=') if !typed.is_empty() => {}
            Some(c) if c.is_whitespace() => {
                return self.err(
                    self.pos,
                    "space before `=`; write the component without spaces, like `OU=Staff`",
                );
            }
            Some('=') => {
                return self.err(
                    start,
                    "missing attribute type before `=`; write it like `OU=Staff`",
                );
            }
            None if typed.is_empty() => {
                return self.err(start, "empty component; remove the extra separator");
            }
            _ => {
                return self.err(
                    start,
                    format!(
                        "`{}` is not `type=value`; write each component like `OU=Staff`",
                        self.chars[start..]
                            .iter()
                            .take_while(|c| !matches!(c, ',' | ';'))
                            .collect::<String>()
                    ),
                );
            }
        }
        self.validate_type(&typed, start)?;
        let attr = typed.to_ascii_uppercase();
        if attr != typed {
            self.notes
                .push(format!("`{typed}` upper-cased to `{attr}`"));
        }
        self.pos += 1; // '='
        let value = self.parse_value()?;
        Ok(Rdn { attr, value })
    }

    fn validate_type(&self, typed: &str, start: usize) -> Result<(), DnError> {
        let first = typed.chars().next().unwrap_or(' ');
        let is_oid = first.is_ascii_digit()
            && typed.split('.').all(|p| {
                !p.is_empty()
                    && p.chars().all(|c| c.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0'))
            });
        let is_keystring = first.is_ascii_alphabetic()
            && typed.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if is_oid || is_keystring {
            Ok(())
        } else {
            self.err(
                start,
                format!("`{typed}` is not a valid attribute type; use CN, OU or DC"),
            )
        }
    }

    fn parse_value(&mut self) -> Result<String, DnError> {
        let value_start = self.pos;
        match self.peek() {
            None | Some(',' | ';' | '+') => {
                return self.err(
                    value_start.saturating_sub(1),
                    "the value after `=` is empty; give the name, like `OU=Staff`",
                );
            }
            Some(c) if c.is_whitespace() => {
                return self.err(
                    value_start,
                    "space after `=`; remove it, or write `\\ ` if the name really starts with a space",
                );
            }
            Some('#') => return self.parse_hex_value(),
            _ => {}
        }
        let mut bytes: Vec<u8> = Vec::new();
        // Position of the last character that was not an escaped one: an unescaped trailing
        // space is refused, an escaped one is kept.
        let mut last_unescaped_space: Option<usize> = None;
        while let Some(c) = self.peek() {
            match c {
                ',' | ';' | '+' => break,
                '\\' => {
                    let at = self.pos;
                    self.pos += 1;
                    match self.peek() {
                        Some(e @ (',' | ';' | '+' | '"' | '\\' | '<' | '>' | '=' | '#' | ' ')) => {
                            let mut buf = [0u8; 4];
                            bytes.extend_from_slice(e.encode_utf8(&mut buf).as_bytes());
                            self.pos += 1;
                        }
                        Some(h1) if h1.is_ascii_hexdigit() => {
                            match self.chars.get(self.pos + 1) {
                                Some(h2) if h2.is_ascii_hexdigit() => {
                                    let hex: String = [h1, *h2].iter().collect();
                                    // Both are hex digits, so this cannot fail.
                                    bytes.push(u8::from_str_radix(&hex, 16).unwrap_or(0));
                                    self.pos += 2;
                                }
                                _ => {
                                    return self.err(
                                        at,
                                        "`\\` must be followed by two hex digits (like `\\2C`) or \
                                         by one of , ; + \" \\ < > = # and space",
                                    );
                                }
                            }
                        }
                        None => {
                            return self.err(
                                at,
                                "the DN ends with a lone `\\`; escape it as `\\\\` or remove it",
                            );
                        }
                        Some(other) => {
                            return self.err(
                                at,
                                format!(
                                    "`\\{other}` is not an escape; only , ; + \" \\ < > = # space \
                                     and hex pairs like `\\2C` may follow `\\`"
                                ),
                            );
                        }
                    }
                    last_unescaped_space = None;
                }
                '"' | '<' | '>' => {
                    return self.err(
                        self.pos,
                        format!("`{c}` must be escaped inside a name; write `\\{c}`"),
                    );
                }
                '\0' => return self.err(self.pos, "a NUL character cannot be part of a DN"),
                _ => {
                    if c.is_whitespace() {
                        if last_unescaped_space.is_none() {
                            last_unescaped_space = Some(self.pos);
                        }
                    } else {
                        last_unescaped_space = None;
                    }
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    self.pos += 1;
                }
            }
        }
        if let Some(space_at) = last_unescaped_space {
            let msg = if self.peek().is_some() {
                "space before a separator; remove the spaces around separators"
            } else {
                "the DN ends with a space; remove it, or write `\\ ` if the name really ends with one"
            };
            return self.err(space_at, msg);
        }
        String::from_utf8(bytes).or_else(|_| {
            self.err(
                value_start,
                "the hex escapes in this value are not valid UTF-8; AD names are Unicode, so escape \
                 the UTF-8 bytes of each character (é is `\\C3\\A9`)",
            )
        })
    }

    /// `#` followed by the hex of a BER-encoded string value (RFC 4514 section 2.4).
    fn parse_hex_value(&mut self) -> Result<String, DnError> {
        let start = self.pos;
        self.pos += 1;
        let hex_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
            self.pos += 1;
        }
        let hex: String = self.chars[hex_start..self.pos].iter().collect();
        let hint =
            "a value starting with `#` is hex-encoded BER; write `\\#` if `#` is part of the name";
        if !matches!(self.peek(), None | Some(',' | ';' | '+'))
            || hex.is_empty()
            || !hex.len().is_multiple_of(2)
        {
            return self.err(start, hint);
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
            .collect();
        // Tag (OCTET STRING, UTF8String, PrintableString, IA5String), short-form length, content.
        match bytes.as_slice() {
            [0x04 | 0x0c | 0x13 | 0x16, len, content @ ..]
                if *len as usize == content.len() && *len < 0x80 =>
            {
                match String::from_utf8(content.to_vec()) {
                    Ok(s) if !s.is_empty() => Ok(s),
                    _ => self.err(start, hint),
                }
            }
            _ => self.err(start, hint),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> Parsed {
        match Dn::parse_container(input) {
            Ok(p) => p,
            Err(e) => panic!("{input:?} refused: {e}"),
        }
    }

    fn refused(input: &str) -> DnError {
        match Dn::parse_container(input) {
            Ok(p) => panic!("{input:?} accepted as {}", p.dn),
            Err(e) => e,
        }
    }

    #[test]
    fn semicolon_and_comma_forms_are_the_same_dn() {
        let a = ok("CN=Users;DC=example;DC=com");
        let b = ok("CN=Users,DC=example,DC=com");
        assert_eq!(a.dn, b.dn);
        assert_eq!(a.separator, Separator::Semicolon);
        assert_eq!(a.dn.to_comma_form(), "CN=Users,DC=example,DC=com");
        assert_eq!(b.dn.to_semicolon_form(), "CN=Users;DC=example;DC=com");
        assert_eq!(a.dn.domain().as_deref(), Some("example.com"));
    }

    #[test]
    fn upper_cases_attribute_types_and_says_so() {
        let p = ok("ou=Staff;dc=Example;DC=com");
        assert_eq!(p.dn.to_semicolon_form(), "OU=Staff;DC=Example;DC=com");
        assert_eq!(
            p.notes,
            vec!["`ou` upper-cased to `OU`", "`dc` upper-cased to `DC`"]
        );
        assert_eq!(p.dn.domain().as_deref(), Some("example.com"));
    }

    #[test]
    fn escaped_comma_and_semicolon_survive_both_forms() {
        let p = ok(r"OU=Smith\, John\; Sales;DC=example;DC=com");
        assert_eq!(p.dn.rdns()[0].value, "Smith, John; Sales");
        let comma = p.dn.to_comma_form();
        assert_eq!(comma, r"OU=Smith\, John\; Sales,DC=example,DC=com");
        assert_eq!(ok(&comma).dn, p.dn);
        assert_eq!(ok(&p.dn.to_semicolon_form()).dn, p.dn);
    }

    #[test]
    fn decodes_every_rfc4514_escape_and_hex_pairs() {
        let p = ok(r#"CN=a\+b\"c\\d\<e\>f\=g\#h\2Ci\C3\A9;DC=example;DC=com"#);
        assert_eq!(p.dn.rdns()[0].value, "a+b\"c\\d<e>f=g#h,ié");
        let p = ok(r"CN=\#lead\ and trail\ ;DC=example;DC=com");
        assert_eq!(p.dn.rdns()[0].value, "#lead and trail ");
        assert_eq!(
            p.dn.to_comma_form(),
            r"CN=\#lead and trail\ ,DC=example,DC=com"
        );
        let p = ok(r"CN=\ lead;DC=example;DC=com");
        assert_eq!(p.dn.rdns()[0].value, " lead");
    }

    #[test]
    fn decodes_hex_string_values() {
        // #0C05 = UTF8String of 5 bytes "Users".
        let p = ok("CN=#0C055573657273,DC=example,DC=com");
        assert_eq!(p.dn.rdns()[0].value, "Users");
        assert_eq!(refused("CN=#zz,DC=example,DC=com").position, 4);
    }

    #[test]
    fn keeps_non_ascii_values() {
        let p = ok("OU=Bénéficiaires;OU=Zürich;DC=example;DC=com");
        assert_eq!(p.dn.rdns()[0].value, "Bénéficiaires");
        assert_eq!(
            p.dn.to_semicolon_form(),
            "OU=Bénéficiaires;OU=Zürich;DC=example;DC=com"
        );
    }

    #[test]
    fn refusals_carry_positions() {
        let cases: &[(&str, usize, &str)] = &[
            ("CN=Users; DC=example;DC=com", 10, "space after"),
            ("CN=Users ;DC=example;DC=com", 9, "space before a separator"),
            ("CN=Users;;DC=example;DC=com", 10, "empty component"),
            ("CN=Users;DC=example;DC=com;", 27, "ends with a separator"),
            ("CN=Users,DC=example;DC=com", 20, "mixes separators"),
            ("CN =Users;DC=example;DC=com", 3, "space before `=`"),
            ("CN= Users;DC=example;DC=com", 4, "space after `=`"),
            ("CN=;DC=example;DC=com", 3, "empty"),
            ("CN=Users;OU=Staff", 17, "no DC component"),
            (
                "O=Corp;DC=example;DC=com",
                1,
                "not an attribute type AD uses",
            ),
            ("DC=example;OU=x;DC=com", 12, "must come last"),
            ("CN=a+OU=b;DC=example;DC=com", 5, "multi-valued"),
            ("CN=a\"b;DC=example;DC=com", 5, "must be escaped"),
            ("CN=a\\qb;DC=example;DC=com", 5, "not an escape"),
            ("CN=a\\C3;DC=example;DC=com", 4, "not valid UTF-8"),
            ("Users;DC=example;DC=com", 1, "not `type=value`"),
            ("", 1, "empty"),
            (" CN=Users;DC=example;DC=com", 1, "starts with a space"),
            ("CN=Users;DC=example;DC=com ", 27, "ends with a space"),
        ];
        for (input, position, words) in cases {
            let e = refused(input);
            assert!(
                e.message.contains(words),
                "{input:?}: expected {words:?} in {:?}",
                e.message
            );
            assert_eq!(e.position, *position, "{input:?}: {}", e.message);
        }
    }

    #[test]
    fn compares_without_case_and_finds_suffixes() {
        let a = ok("CN=Users;DC=Example;DC=COM").dn;
        let b = ok("cn=users,dc=example,dc=com").dn;
        assert!(a.same_as(&b));
        let domain = ok("DC=example,DC=com").dn;
        assert!(a.ends_with(&domain));
        assert!(!domain.ends_with(&a));
        assert!(!a.ends_with(&ok("DC=other,DC=com").dn));
        assert!(a.domain_dn().is_some_and(|d| d.same_as(&domain)));
    }
}
