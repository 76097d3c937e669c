//! Security descriptors as AD returns them in `nTSecurityDescriptor` (the self-relative binary
//! form of MS-DTYP 2.4.6), and which of their access control entries hand power over the
//! object: the rights that let a trustee replicate secrets, take ownership, rewrite the DACL,
//! reset passwords or choose a group's members. Pure; the reads are in `directory::tier0`.
//!
//! Written here rather than taken from a crate: the binary form is four fixed layouts (header,
//! ACL, ACE, SID), the crates that parse it (`sddl`, `windows-sddl`) are single-author 0.0/0.1
//! releases, and what matters is the power table below, which is ours either way.

use super::sid;

/// SE_DACL_PRESENT: without it (or with no DACL) the object grants everyone everything.
const SE_DACL_PRESENT: u16 = 0x0004;
/// ACCESS_ALLOWED_OBJECT_ACE flags: which GUIDs follow.
const OBJECT_TYPE_PRESENT: u32 = 0x1;
const INHERITED_OBJECT_TYPE_PRESENT: u32 = 0x2;

/// The LDAP_SERVER_SD_FLAGS control asks for the owner and the DACL only (a SACL needs a
/// privilege the service account does not have, and without the control AD returns nothing).
pub const SD_FLAGS_OID: &str = "1.2.840.113556.1.4.801";
/// BER `SEQUENCE { INTEGER 5 }`: OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION.
pub const SD_FLAGS_OWNER_DACL: [u8; 5] = [0x30, 0x03, 0x02, 0x01, 0x05];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ace {
    /// An allow entry (deny entries are kept but never reduce what is counted: fail closed).
    pub allow: bool,
    pub flags: u8,
    pub mask: u32,
    /// The right, property or property set an object ACE is about (`None`: all of them).
    pub object_type: Option<[u8; 16]>,
    pub sid: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sd {
    pub owner: Option<String>,
    /// `None`: no DACL (a NULL DACL), which grants everyone full control.
    pub dacl: Option<Vec<Ace>>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("cut short at byte {at}"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("cut short at byte {at}"))
}

fn guid_at(b: &[u8], at: usize) -> Result<[u8; 16], String> {
    b.get(at..at + 16)
        .and_then(|s| <[u8; 16]>::try_from(s).ok())
        .ok_or_else(|| format!("cut short at byte {at}"))
}

/// The SID at `at` (its length follows from its sub-authority count).
fn sid_at(b: &[u8], at: usize) -> Result<String, String> {
    let count = *b
        .get(at + 1)
        .ok_or_else(|| format!("cut short at byte {at}"))? as usize;
    b.get(at..at + 8 + 4 * count)
        .and_then(sid::to_string)
        .ok_or_else(|| format!("no SID at byte {at}"))
}

/// BER `SEQUENCE { INTEGER 4 }`: DACL_SECURITY_INFORMATION alone (what an account without
/// the right to read owners may still be given).
pub const SD_FLAGS_DACL: [u8; 5] = [0x30, 0x03, 0x02, 0x01, 0x04];

/// `ACTRL_DS_LIST`: list the object's children.
pub const LIST_CHILDREN: u32 = 0x0000_0004;
/// `ACTRL_DS_READ_PROP`: read its properties.
pub const READ_PROP: u32 = 0x0000_0010;
const GENERIC_READ: u32 = 0x8000_0000;
const INHERIT_ONLY: u8 = 0x08;

/// Whether `sd` lets an account holding `sids` (its own, its groups', and the well-known ones
/// every logged-on account has) both list an object's children and read their properties: what
/// DirSync with object security needs on Deleted Objects to return deletions. Explicit and
/// inherited ACEs alike, not inherit-only ones; an ACE about one property set only is not
/// enough. Fails closed: a deny ACE for any of the SIDs on either right, or a descriptor that
/// could not be read (`None`), is a no. A NULL DACL grants everything.
pub fn lists_and_reads(sd: Option<&Sd>, sids: &[String]) -> bool {
    let Some(sd) = sd else {
        return false;
    };
    let Some(dacl) = &sd.dacl else {
        return true;
    };
    let mine = |a: &&Ace| a.flags & INHERIT_ONLY == 0 && sids.iter().any(|s| s == &a.sid);
    let rights = |a: &Ace| {
        let m = if a.mask & (GENERIC_READ | mask::GENERIC_ALL) != 0 {
            LIST_CHILDREN | READ_PROP
        } else {
            a.mask
        };
        m & (LIST_CHILDREN | READ_PROP)
    };
    if dacl.iter().filter(mine).any(|a| !a.allow && rights(a) != 0) {
        return false;
    }
    let granted = dacl
        .iter()
        .filter(mine)
        .filter(|a| a.allow && a.object_type.is_none())
        .fold(0, |m, a| m | rights(a));
    granted == LIST_CHILDREN | READ_PROP
}

/// Parses a self-relative security descriptor. `Err` says where it is malformed.
pub fn parse(b: &[u8]) -> Result<Sd, String> {
    if b.first() != Some(&1) {
        return Err("not a revision 1 security descriptor".into());
    }
    let control = u16_at(b, 2)?;
    let owner_at = u32_at(b, 4)? as usize;
    let dacl_at = u32_at(b, 16)? as usize;
    let owner = if owner_at == 0 {
        None
    } else {
        Some(sid_at(b, owner_at)?)
    };
    if control & SE_DACL_PRESENT == 0 || dacl_at == 0 {
        return Ok(Sd { owner, dacl: None });
    }
    let count = u16_at(b, dacl_at + 4)? as usize;
    let mut aces = Vec::with_capacity(count.min(1024));
    let mut at = dacl_at + 8;
    for _ in 0..count {
        let kind = *b.get(at).ok_or_else(|| format!("cut short at byte {at}"))?;
        let flags = *b
            .get(at + 1)
            .ok_or_else(|| format!("cut short at byte {at}"))?;
        let size = u16_at(b, at + 2)? as usize;
        if size < 8 {
            return Err(format!("an ACE of {size} bytes at byte {at}"));
        }
        let mask = u32_at(b, at + 4)?;
        // 0/1: allowed/denied; 5/6: their object forms; 9/10 and 11/12: the callback forms
        // (conditional ACEs), counted as if their condition held.
        let (allow, object) = match kind {
            0x00 | 0x09 => (true, false),
            0x01 | 0x0A => (false, false),
            0x05 | 0x0B => (true, true),
            0x06 | 0x0C => (false, true),
            _ => {
                at += size;
                continue;
            }
        };
        let (object_type, sid) = if object {
            let oflags = u32_at(b, at + 8)?;
            let mut p = at + 12;
            let object_type = if oflags & OBJECT_TYPE_PRESENT != 0 {
                let g = guid_at(b, p)?;
                p += 16;
                Some(g)
            } else {
                None
            };
            if oflags & INHERITED_OBJECT_TYPE_PRESENT != 0 {
                p += 16;
            }
            (object_type, sid_at(b, p)?)
        } else {
            (None, sid_at(b, at + 8)?)
        };
        aces.push(Ace {
            allow,
            flags,
            mask,
            object_type,
            sid,
        });
        at += size;
    }
    Ok(Sd {
        owner,
        dacl: Some(aces),
    })
}

/// A right over an object that gives power in the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Power {
    /// Owner of the object: may always rewrite its DACL.
    Owner,
    GenericAll,
    GenericWrite,
    WriteDacl,
    WriteOwner,
    /// Every extended right (replication and reset-password among them).
    AllExtendedRights,
    ReplicateChanges,
    ReplicateChangesAll,
    ReplicateFilteredSet,
    ResetPassword,
    /// Write every property (member, gPLink, scripts...).
    WriteAllProperties,
    WriteMember,
    WriteGpLink,
    /// msDS-KeyCredentialLink: logon as the object (shadow credentials).
    WriteKeyCredential,
    /// msDS-AllowedToActOnBehalfOfOtherIdentity: delegation to the object.
    WriteDelegation,
}

impl Power {
    pub fn words(self) -> &'static str {
        match self {
            Power::Owner => "is the owner of",
            Power::GenericAll => "holds full control (GenericAll) on",
            Power::GenericWrite => "holds GenericWrite on",
            Power::WriteDacl => "may change the permissions (WriteDACL) of",
            Power::WriteOwner => "may take ownership (WriteOwner) of",
            Power::AllExtendedRights => "holds all extended rights on",
            Power::ReplicateChanges => "holds Replicating Directory Changes on",
            Power::ReplicateChangesAll => "holds Replicating Directory Changes All on",
            Power::ReplicateFilteredSet => "holds Replicating Directory Changes In Filtered Set on",
            Power::ResetPassword => "may reset passwords under",
            Power::WriteAllProperties => "may write every property of",
            Power::WriteMember => "may change group members under",
            Power::WriteGpLink => "may link group policies to",
            Power::WriteKeyCredential => "may write msDS-KeyCredentialLink under",
            Power::WriteDelegation => "may write delegation rights under",
        }
    }
}

/// A GUID in its string form (as MS-ADTS lists rights and attributes) in the binary layout.
const fn guid(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

/// Access mask bits (MS-ADTS 5.1.3.2 and MS-DTYP 2.4.3).
pub mod mask {
    pub const CREATE_CHILD: u32 = 0x0000_0001;
    pub const SELF_WRITE: u32 = 0x0000_0008;
    pub const WRITE_PROP: u32 = 0x0000_0020;
    pub const CONTROL_ACCESS: u32 = 0x0000_0100;
    pub const READ_CONTROL: u32 = 0x0002_0000;
    pub const WRITE_DAC: u32 = 0x0004_0000;
    pub const WRITE_OWNER: u32 = 0x0008_0000;
    /// GENERIC_ALL as AD stores it once mapped: every specific right plus the standard ones.
    pub const FULL_CONTROL: u32 = 0x000F_01FF;
    pub const GENERIC_ALL: u32 = 0x1000_0000;
    pub const GENERIC_WRITE: u32 = 0x4000_0000;
}

/// The extended rights and properties that give power, one row each: (mask bit, object type,
/// power). One table: `powers` reads it and the tests go through it.
pub const OBJECT_RIGHTS: &[(u32, [u8; 16], Power)] = &[
    (
        mask::CONTROL_ACCESS,
        guid(
            0x1131_f6aa,
            0x9c07,
            0x11d1,
            [0xf7, 0x9f, 0x00, 0xc0, 0x4f, 0xc2, 0xdc, 0xd2],
        ),
        Power::ReplicateChanges,
    ),
    (
        mask::CONTROL_ACCESS,
        guid(
            0x1131_f6ad,
            0x9c07,
            0x11d1,
            [0xf7, 0x9f, 0x00, 0xc0, 0x4f, 0xc2, 0xdc, 0xd2],
        ),
        Power::ReplicateChangesAll,
    ),
    (
        mask::CONTROL_ACCESS,
        guid(
            0x89e9_5b76,
            0x444d,
            0x4c62,
            [0x99, 0x1a, 0x0f, 0xac, 0xbe, 0xda, 0x64, 0x0c],
        ),
        Power::ReplicateFilteredSet,
    ),
    (
        mask::CONTROL_ACCESS,
        guid(
            0x0029_9570,
            0x246d,
            0x11d0,
            [0xa7, 0x68, 0x00, 0xaa, 0x00, 0x6e, 0x05, 0x29],
        ),
        Power::ResetPassword,
    ),
    (
        mask::WRITE_PROP,
        guid(
            0xbf96_79c0,
            0x0de6,
            0x11d0,
            [0xa2, 0x85, 0x00, 0xaa, 0x00, 0x30, 0x49, 0xe2],
        ),
        Power::WriteMember,
    ),
    (
        mask::SELF_WRITE,
        guid(
            0xbf96_79c0,
            0x0de6,
            0x11d0,
            [0xa2, 0x85, 0x00, 0xaa, 0x00, 0x30, 0x49, 0xe2],
        ),
        Power::WriteMember,
    ),
    (
        mask::WRITE_PROP,
        guid(
            0xf30e_3bbe,
            0x9ff0,
            0x11d1,
            [0xb6, 0x03, 0x00, 0x00, 0xf8, 0x03, 0x67, 0xc1],
        ),
        Power::WriteGpLink,
    ),
    (
        mask::WRITE_PROP,
        guid(
            0x5b47_d60f,
            0x6090,
            0x40b2,
            [0x9f, 0x37, 0x2a, 0x4d, 0xe8, 0x8f, 0x30, 0x63],
        ),
        Power::WriteKeyCredential,
    ),
    (
        mask::WRITE_PROP,
        guid(
            0x3f78_c3e5,
            0xf79a,
            0x46bd,
            [0xa0, 0xb8, 0x9d, 0x18, 0x11, 0x6d, 0xdc, 0x79],
        ),
        Power::WriteDelegation,
    ),
];

/// What one allow entry grants that gives power (empty for a deny entry or a harmless right:
/// read, list, create children, an extended right not in `OBJECT_RIGHTS`). Inherit-only
/// entries count too: they grant the right over the objects below, Tier 0 ones among them.
pub fn powers(ace: &Ace) -> Vec<Power> {
    if !ace.allow {
        return Vec::new();
    }
    let m = ace.mask;
    let mut out = Vec::new();
    if m & mask::GENERIC_ALL != 0 || m & mask::FULL_CONTROL == mask::FULL_CONTROL {
        out.push(Power::GenericAll);
    }
    if m & mask::GENERIC_WRITE != 0 {
        out.push(Power::GenericWrite);
    }
    if m & mask::WRITE_DAC != 0 {
        out.push(Power::WriteDacl);
    }
    if m & mask::WRITE_OWNER != 0 {
        out.push(Power::WriteOwner);
    }
    match ace.object_type {
        None => {
            if m & mask::CONTROL_ACCESS != 0 {
                out.push(Power::AllExtendedRights);
            }
            if m & mask::WRITE_PROP != 0 {
                out.push(Power::WriteAllProperties);
            }
            if m & mask::SELF_WRITE != 0 {
                // A validated write to every attribute that has one: member among them.
                out.push(Power::WriteMember);
            }
        }
        Some(t) => {
            for (bit, g, p) in OBJECT_RIGHTS {
                if m & bit != 0 && *g == t && !out.contains(p) {
                    out.push(*p);
                }
            }
        }
    }
    out
}

/// SIDs that stand for no account of their own in an ACL: the object's creator, the object
/// itself (PRINCIPAL SELF), the local system and the domain controllers (whose accounts end in
/// `$` and are refused as such).
pub const PLACEHOLDER_SIDS: &[&str] = &[
    "S-1-3-0", "S-1-3-1", "S-1-3-2", "S-1-3-3", "S-1-5-10", "S-1-5-18", "S-1-5-9",
];

/// SIDs that stand for (nearly) every account: a power held by one of them makes every
/// account of the domain privileged. The domain RIDs (Domain Users 513, Domain Guests 514,
/// Domain Computers 515) are matched by `is_everyone` with the domain's SID.
const EVERYONE_SIDS: &[&str] = &[
    "S-1-1-0",
    "S-1-5-7",
    "S-1-5-11",
    "S-1-5-2",
    "S-1-5-4",
    "S-1-5-32-545",
    "S-1-5-32-546",
    "S-1-5-32-554",
];
const EVERYONE_RIDS: &[u32] = &[513, 514, 515];

pub fn is_placeholder(sid: &str) -> bool {
    PLACEHOLDER_SIDS.contains(&sid)
}

/// Whether `sid` stands for every account of the domain `domain_sid`.
pub fn is_everyone(sid: &str, domain_sid: Option<&str>) -> bool {
    EVERYONE_SIDS.contains(&sid)
        || sid::split_rid(sid)
            .is_some_and(|(d, r)| domain_sid == Some(d) && EVERYONE_RIDS.contains(&r))
}

/// Who holds power over an object with this descriptor: (trustee SID, power), the owner
/// included, placeholders left out, each pair once. A missing DACL grants everyone everything
/// (`S-1-1-0`, GenericAll).
pub fn grants(sd: &Sd) -> Vec<(String, Power)> {
    let mut out: Vec<(String, Power)> = Vec::new();
    let mut push = |sid: &str, p: Power| {
        if !is_placeholder(sid) && !out.iter().any(|(s, q)| s == sid && *q == p) {
            out.push((sid.to_string(), p));
        }
    };
    if let Some(o) = &sd.owner {
        push(o, Power::Owner);
    }
    match &sd.dacl {
        None => push("S-1-1-0", Power::GenericAll),
        Some(aces) => {
            for ace in aces {
                for p in powers(ace) {
                    push(&ace.sid, p);
                }
            }
        }
    }
    out
}

#[cfg(test)]
pub mod build {
    //! Security descriptors built the way AD stores them, for the tests here and in `tier0`.
    use super::*;

    /// The mask bit and object type of a power's row in `OBJECT_RIGHTS`.
    pub fn right(p: Power) -> (u32, [u8; 16]) {
        OBJECT_RIGHTS
            .iter()
            .find(|(_, _, q)| *q == p)
            .map(|(b, g, _)| (*b, *g))
            .unwrap_or_else(|| panic!("{p:?} is in the table"))
    }

    pub fn sid_bytes(s: &str) -> Vec<u8> {
        sid::to_bytes(s).unwrap_or_else(|| panic!("{s} is not a SID"))
    }

    /// An allow (or deny) entry; `object`: the object type of an object ACE.
    pub fn ace(allow: bool, flags: u8, mask: u32, object: Option<[u8; 16]>, sid: &str) -> Vec<u8> {
        let s = sid_bytes(sid);
        let mut body = mask.to_le_bytes().to_vec();
        let kind = match (allow, object) {
            (true, None) => 0u8,
            (false, None) => 1,
            (true, Some(_)) => 5,
            (false, Some(_)) => 6,
        };
        if let Some(g) = object {
            body.extend_from_slice(&OBJECT_TYPE_PRESENT.to_le_bytes());
            body.extend_from_slice(&g);
        }
        body.extend_from_slice(&s);
        let size = (4 + body.len()) as u16;
        let mut out = vec![kind, flags];
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// A self-relative descriptor with this owner and DACL (`None`: no DACL).
    pub fn sd(owner: &str, aces: Option<&[Vec<u8>]>) -> Vec<u8> {
        let owner = sid_bytes(owner);
        let mut out = vec![1u8, 0];
        let control: u16 = 0x8000 | if aces.is_some() { SE_DACL_PRESENT } else { 0 };
        out.extend_from_slice(&control.to_le_bytes());
        let owner_at = 20u32;
        let dacl_at = if aces.is_some() {
            20 + owner.len() as u32
        } else {
            0
        };
        for v in [owner_at, 0, 0, dacl_at] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&owner);
        if let Some(aces) = aces {
            let body: Vec<u8> = aces.concat();
            out.extend_from_slice(&[4, 0]);
            out.extend_from_slice(&((8 + body.len()) as u16).to_le_bytes());
            out.extend_from_slice(&(aces.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    const HELPDESK: &str = "S-1-5-21-1-2-3-1105";

    /// Deleted Objects' DACL as Windows sets it (SYSTEM, Administrators), as Samba's test
    /// grant leaves it, and the shapes in between: only LC and RP together, for one of the
    /// account's SIDs, on the object itself, undenied, let DirSync show deletions.
    #[test]
    fn listing_deleted_objects_needs_list_and_read_for_one_of_the_accounts_sids() {
        use build::{ace, sd};
        let me = "S-1-5-21-1-2-3-1105";
        let sids = vec![
            me.to_string(),
            "S-1-5-21-1-2-3-513".into(),
            "S-1-5-11".into(),
        ];
        let lc_rp = LIST_CHILDREN | READ_PROP;
        let windows_default = [
            ace(true, 0, mask::FULL_CONTROL, None, "S-1-5-18"),
            ace(true, 0, lc_rp, None, "S-1-5-32-544"),
        ];
        let prop_set = [0x42; 16];
        // (what, the DACL's ACEs, None for a NULL DACL; whether DirSync would show deletions)
        type Case = (&'static str, Option<Vec<Vec<u8>>>, bool);
        let cases: Vec<Case> = vec![
            (
                "Windows' default: SYSTEM and Administrators only",
                Some(windows_default.to_vec()),
                false,
            ),
            (
                "granted to the account (dsacls /G ACCOUNT:LCRP)",
                Some(
                    [
                        windows_default.to_vec(),
                        vec![ace(true, 0, lc_rp, None, me)],
                    ]
                    .concat(),
                ),
                true,
            ),
            (
                "granted to a group it is in",
                Some(vec![ace(true, 0, lc_rp, None, "S-1-5-21-1-2-3-513")]),
                true,
            ),
            (
                "granted to Authenticated Users",
                Some(vec![ace(true, 0, lc_rp, None, "S-1-5-11")]),
                true,
            ),
            (
                "list without read",
                Some(vec![ace(true, 0, LIST_CHILDREN, None, me)]),
                false,
            ),
            (
                "list and read in two ACEs",
                Some(vec![
                    ace(true, 0, LIST_CHILDREN, None, me),
                    ace(true, 0, READ_PROP, None, "S-1-5-11"),
                ]),
                true,
            ),
            (
                "generic read",
                Some(vec![ace(true, 0, 0x8000_0000, None, me)]),
                true,
            ),
            (
                "read of one property set only",
                Some(vec![ace(true, 0, lc_rp, Some(prop_set), me)]),
                false,
            ),
            (
                "inherit-only: for the children, not the container",
                Some(vec![ace(true, 0x08, lc_rp, None, me)]),
                false,
            ),
            (
                "granted, then denied to a group it is in",
                Some(vec![
                    ace(true, 0, lc_rp, None, me),
                    ace(false, 0, READ_PROP, None, "S-1-5-21-1-2-3-513"),
                ]),
                false,
            ),
            (
                "granted to someone else",
                Some(vec![ace(true, 0, lc_rp, None, "S-1-5-21-1-2-3-9999")]),
                false,
            ),
            ("a NULL DACL", None, true),
        ];
        for (what, aces, want) in cases {
            let bytes = sd("S-1-5-18", aces.as_deref());
            let parsed = parse(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(lists_and_reads(Some(&parsed), &sids), want, "{what}");
        }
        assert!(
            !lists_and_reads(None, &sids),
            "a DACL it may not read is a no"
        );
    }

    #[test]
    fn each_entry_is_read_for_the_power_it_gives() {
        let (cr, repl_all) = right(Power::ReplicateChangesAll);
        let (_, reset) = right(Power::ResetPassword);
        let (wp, member) = right(Power::WriteMember);
        // An extended right AD grants Authenticated Users on the domain head by default
        // (Unexpire-Password, ccc2dc7d-a6ad-4a7a-8846-c04e3cc53501): no power.
        let unexpire = guid(
            0xccc2_dc7d,
            0xa6ad,
            0x4a7a,
            [0x88, 0x46, 0xc0, 0x4e, 0x3c, 0xc5, 0x35, 0x01],
        );
        type Case = (&'static str, Vec<u8>, Vec<Power>);
        let cases: Vec<Case> = vec![
            (
                "full control as AD stores it",
                ace(true, 0, mask::FULL_CONTROL, None, HELPDESK),
                vec![
                    Power::GenericAll,
                    Power::WriteDacl,
                    Power::WriteOwner,
                    Power::AllExtendedRights,
                    Power::WriteAllProperties,
                    Power::WriteMember,
                ],
            ),
            (
                "GenericWrite as AD stores it (read control, write property, self)",
                ace(true, 0, 0x0002_0028, None, HELPDESK),
                vec![Power::WriteAllProperties, Power::WriteMember],
            ),
            (
                "WriteDACL alone",
                ace(true, 0, mask::WRITE_DAC, None, HELPDESK),
                vec![Power::WriteDacl],
            ),
            (
                "Get-Changes-All",
                ace(true, 0, cr, Some(repl_all), HELPDESK),
                vec![Power::ReplicateChangesAll],
            ),
            (
                "reset password, inherited to the users below (inherit-only still counts)",
                ace(true, 0x0A, cr, Some(reset), HELPDESK),
                vec![Power::ResetPassword],
            ),
            (
                "write member",
                ace(true, 0x02, wp, Some(member), HELPDESK),
                vec![Power::WriteMember],
            ),
            (
                "an extended right that gives no power",
                ace(true, 0, cr, Some(unexpire), HELPDESK),
                vec![],
            ),
            (
                "read everything",
                ace(true, 0, 0x0002_0094, None, HELPDESK),
                vec![],
            ),
            (
                "a deny entry never counts",
                ace(false, 0, mask::FULL_CONTROL, None, HELPDESK),
                vec![],
            ),
            (
                "reset password's bit with the member GUID is not reset password",
                ace(true, 0, cr, Some(member), HELPDESK),
                vec![],
            ),
        ];
        for (name, bytes, want) in cases {
            let sd = parse(&sd("S-1-5-32-544", Some(&[bytes])))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let aces = sd.dacl.unwrap_or_default();
            assert_eq!(aces.len(), 1, "{name}");
            assert_eq!(powers(&aces[0]), want, "{name}");
        }
    }

    #[test]
    fn grants_name_the_owner_skip_placeholders_and_a_missing_dacl_is_everyone() {
        let (cr, repl) = right(Power::ReplicateChanges);
        let bytes = sd(
            "S-1-5-21-1-2-3-512",
            Some(&[
                ace(true, 0, mask::FULL_CONTROL, None, "S-1-5-18"),
                ace(true, 0, mask::WRITE_DAC, None, "S-1-3-0"),
                ace(true, 0, cr, Some(repl), HELPDESK),
                ace(true, 0, cr, Some(repl), HELPDESK),
            ]),
        );
        let g = grants(&parse(&bytes).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            g,
            vec![
                ("S-1-5-21-1-2-3-512".to_string(), Power::Owner),
                (HELPDESK.to_string(), Power::ReplicateChanges),
            ]
        );
        let open = parse(&sd("S-1-5-32-544", None)).unwrap_or_else(|e| panic!("{e}"));
        assert!(grants(&open).contains(&("S-1-1-0".to_string(), Power::GenericAll)));
        assert!(is_everyone("S-1-5-11", None));
        assert!(is_everyone("S-1-5-21-1-2-3-513", Some("S-1-5-21-1-2-3")));
        assert!(!is_everyone("S-1-5-21-9-9-9-513", Some("S-1-5-21-1-2-3")));
    }

    #[test]
    fn malformed_descriptors_are_errors_never_panics() {
        let good = sd(
            "S-1-5-32-544",
            Some(&[ace(true, 0, mask::WRITE_DAC, None, HELPDESK)]),
        );
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        assert!(parse(&good[..good.len() - 3]).is_err());
        assert!(parse(&[2, 0, 0, 0]).is_err());
        let mut zero = good.clone();
        // An ACE claiming 0 bytes would loop for ever.
        let at = 20 + sid_bytes("S-1-5-32-544").len() + 8 + 2;
        zero[at] = 0;
        zero[at + 1] = 0;
        assert!(parse(&zero).is_err());
    }
}
