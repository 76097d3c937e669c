//! objectGUIDs as text: AD's string form (the first three fields byte-swapped), parsed in
//! either case with or without braces, and the one form the cloud stores and compares.

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex (either case) as bytes; `None` when it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The objectGUID in its usual string form (what `<GUID=...>` takes).
pub fn guid_string(g: &[u8]) -> String {
    if g.len() != 16 {
        return hex(g);
    }
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}-{}",
        g[3],
        g[2],
        g[1],
        g[0],
        g[5],
        g[4],
        g[7],
        g[6],
        hex(&g[8..10]),
        hex(&g[10..16])
    )
}

/// The objectGUID's bytes from its string form, in either case, with or without braces
/// (`None` when it is not one).
pub fn parse_guid_string(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    if s.len() != 36
        || s.chars()
            .enumerate()
            .any(|(i, c)| (c == '-') != matches!(i, 8 | 13 | 18 | 23))
    {
        return None;
    }
    let h = unhex(&s.replace('-', ""))?;
    if h.len() != 16 {
        return None;
    }
    let mut g = h.clone();
    g[0..4].copy_from_slice(&[h[3], h[2], h[1], h[0]]);
    g[4..6].copy_from_slice(&[h[5], h[4]]);
    g[6..8].copy_from_slice(&[h[7], h[6]]);
    Some(g)
}

/// A GUID string in the one form links are kept and compared in (lower case, no braces);
/// `None` when it is not a GUID. What the cloud's API edge stores.
pub fn normalize_guid_string(s: &str) -> Option<String> {
    parse_guid_string(s).map(|g| guid_string(&g))
}
