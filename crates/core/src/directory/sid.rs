//! Binary security identifiers (as `objectSid` and `tokenGroups` carry them) in `S-1-5-...` form.

/// `S-R-I-S1-S2-...` from the binary layout: revision, sub-authority count, 48-bit big-endian
/// identifier authority, then 32-bit little-endian sub-authorities.
pub fn to_string(bytes: &[u8]) -> Option<String> {
    let (&revision, rest) = bytes.split_first()?;
    let (&count, rest) = rest.split_first()?;
    if rest.len() != 6 + 4 * count as usize {
        return None;
    }
    let authority = rest[..6]
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut out = format!("S-{revision}-{authority}");
    for chunk in rest[6..].chunks_exact(4) {
        let sub = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        out.push_str(&format!("-{sub}"));
    }
    Some(out)
}

/// The binary layout of a `S-1-...` string (what a search filter matches `objectSid` with).
pub fn to_bytes(sid: &str) -> Option<Vec<u8>> {
    let mut parts = sid.strip_prefix("S-")?.split('-');
    let revision: u8 = parts.next()?.parse().ok()?;
    let authority: u64 = parts.next()?.parse().ok()?;
    let subs: Vec<u32> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if subs.len() > 15 || authority >= 1 << 48 {
        return None;
    }
    let mut out = vec![revision, subs.len() as u8];
    out.extend_from_slice(&authority.to_be_bytes()[2..]);
    for s in subs {
        out.extend_from_slice(&s.to_le_bytes());
    }
    Some(out)
}

/// The relative id (last sub-authority) and the domain part of a SID string.
pub fn split_rid(sid: &str) -> Option<(&str, u32)> {
    let (domain, rid) = sid.rsplit_once('-')?;
    Some((domain, rid.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_builtin_administrators_and_domain_sids() {
        // S-1-5-32-544
        let admins = [1u8, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 0x02, 0, 0];
        assert_eq!(to_string(&admins).as_deref(), Some("S-1-5-32-544"));
        let mut dom = vec![1u8, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0];
        for v in [1u32, 2, 3, 512] {
            dom.extend_from_slice(&v.to_le_bytes());
        }
        let s = to_string(&dom);
        assert_eq!(s.as_deref(), Some("S-1-5-21-1-2-3-512"));
        assert_eq!(
            split_rid("S-1-5-21-1-2-3-512"),
            Some(("S-1-5-21-1-2-3", 512))
        );
        assert_eq!(to_string(&[1, 2, 0]), None);
        assert_eq!(to_bytes("S-1-5-32-544").as_deref(), Some(admins.as_slice()));
        assert_eq!(to_bytes("S-1-5-21-1-2-3-512"), Some(dom));
        assert_eq!(to_bytes("S-1-x"), None);
    }
}
