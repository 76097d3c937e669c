//! The DN parser under property tests and random input, and `validate-dn` end to end. Pure: no
//! domain controller needed.

use ad_sync::dn::{Dn, Separator};
use proptest::prelude::*;
use std::process::Command;

fn validate_dn(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ad-sync-setup"))
        .arg("validate-dn")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ad-sync-setup: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_dn_json_for_a_valid_dn() {
    let (code, out, _) = validate_dn(&["ou=Staff;DC=example;DC=com", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["valid"], true);
    assert_eq!(v["dn"], "OU=Staff,DC=example,DC=com");
    assert_eq!(v["semicolon"], "OU=Staff;DC=example;DC=com");
    assert_eq!(v["domain"], "example.com");
    assert_eq!(v["warnings"][0], "`ou` upper-cased to `OU`");
}

#[test]
fn validate_dn_json_for_an_invalid_dn() {
    let (code, out, _) = validate_dn(&["CN=Users;;DC=example;DC=com", "--json"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["valid"], false);
    assert_eq!(v["position"], 10);
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("empty component"))
    );
}

#[test]
fn validate_dn_text_points_at_the_problem() {
    let (code, _, err) = validate_dn(&["CN=Users; DC=example;DC=com"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Root User container `CN=Users; DC=example;DC=com`: space after `;`"),
        "{err}"
    );
    assert!(err.contains("\n           ^"), "{err}");
    let (code, out, _) = validate_dn(&["CN=Users,DC=example,DC=com"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("semicolon form: CN=Users;DC=example;DC=com"));
}

/// Any value, including separators, escape characters, edge spaces and non-ASCII.
fn value() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            proptest::char::range('a', 'z'),
            Just(','),
            Just(';'),
            Just('+'),
            Just('"'),
            Just('\\'),
            Just('<'),
            Just('>'),
            Just('='),
            Just('#'),
            Just(' '),
            Just('é'),
            Just('Ü'),
            Just('日'),
            Just('\u{1}'),
        ],
        1..12,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn dn() -> impl Strategy<Value = Dn> {
    (
        proptest::collection::vec((prop_oneof![Just("CN"), Just("OU")], value()), 0..4),
        proptest::collection::vec("[a-z][a-z0-9-]{0,8}", 1..4),
    )
        .prop_map(|(rdns, dcs)| {
            let mut text = String::new();
            let mut first = true;
            let mut push = |attr: &str, v: &str| {
                if !first {
                    text.push(',');
                }
                first = false;
                text.push_str(attr);
                text.push('=');
                // Escape every byte as hex: the parser must decode it back exactly.
                for b in v.as_bytes() {
                    text.push_str(&format!("\\{b:02X}"));
                }
            };
            for (a, v) in &rdns {
                push(a, v);
            }
            for d in &dcs {
                push("DC", d);
            }
            match Dn::parse_container(&text) {
                Ok(p) => p.dn,
                Err(e) => panic!("generated DN {text:?} refused: {e}"),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn comma_and_semicolon_forms_round_trip(d in dn()) {
        let comma = Dn::parse_container(&d.to_comma_form());
        prop_assert!(comma.is_ok(), "{:?}", comma);
        prop_assert_eq!(comma.map(|p| p.dn), Ok(d.clone()));
        let semi = Dn::parse_container(&d.to_semicolon_form());
        if d.rdns().len() > 1 {
            prop_assert_eq!(semi.as_ref().map(|p| p.separator), Ok(Separator::Semicolon));
        }
        prop_assert_eq!(semi.map(|p| p.dn), Ok(d));
    }

    #[test]
    fn parser_never_panics_on_arbitrary_text(s in "\\PC{0,80}") {
        let _ = Dn::parse(&s);
        let _ = Dn::parse_container(&s);
    }

    #[test]
    fn parser_never_panics_on_dn_shaped_noise(s in "[A-Za-z=,;+\\\\#\" <>0-9a-f\u{e9}]{0,60}") {
        if let Err(e) = Dn::parse_container(&s) {
            prop_assert!(e.position >= 1 && e.position <= s.chars().count().max(1));
        }
    }
}

/// A large deterministic random sweep on top of proptest: one million mutated DNs.
#[test]
fn a_million_mutated_dns_never_panic_and_positions_stay_in_range() {
    let seeds = [
        "CN=Users;DC=example;DC=com",
        r"OU=Smith\, John;OU=Zürich;DC=example;DC=com",
        "CN=#0C055573657273,DC=example,DC=com",
        r"CN=\ a\ ,DC=x",
    ];
    let alphabet: Vec<char> = r#"=,;+\#"<> aZ09fé"#.chars().collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..1_000_000u32 {
        let mut chars: Vec<char> = seeds[i as usize % seeds.len()].chars().collect();
        for _ in 0..(1 + next() % 4) {
            let pos = (next() as usize) % (chars.len() + 1);
            match next() % 3 {
                0 if pos < chars.len() => {
                    chars.remove(pos);
                }
                1 if pos < chars.len() => chars[pos] = alphabet[(next() as usize) % alphabet.len()],
                _ => chars.insert(pos, alphabet[(next() as usize) % alphabet.len()]),
            }
        }
        let text: String = chars.iter().collect();
        match Dn::parse_container(&text) {
            Ok(p) => {
                // Whatever is accepted renders to text that parses to the same DN.
                let again = Dn::parse_container(&p.dn.to_semicolon_form()).map(|q| q.dn);
                assert_eq!(again, Ok(p.dn), "{text:?}");
            }
            Err(e) => assert!(
                e.position >= 1 && e.position <= text.chars().count().max(1),
                "{text:?}: position {} out of range",
                e.position
            ),
        }
    }
}
