//! Who may do what with the folders and files the install creates on Windows, decided as data
//! (one SDDL string per path) and evaluated by a model of Windows' access check.
//!
//! Why a model: the test bed is Wine, which keeps no access control lists (a descriptor set on
//! a file is reduced to its Unix mode bits) and runs every service as one user, so nothing
//! there can show what `NT SERVICE\ad-sync-agent` may do on a real server. The model follows
//! Microsoft's documentation, and its tests use the documentation's own cases:
//!
//! - the DACL is read in order; for each ACE that is not inherit-only and names a SID of the
//!   token, an allow grants the bits not already denied and a deny denies the bits not already
//!   granted ("How DACLs Control Access to an Object"; MAXIMUM_ALLOWED);
//! - generic rights map to the file object's specific rights (`FILE_GENERIC_READ` …,
//!   "File Security and Access Rights");
//! - a new object inherits from its parent's DACL unless its own is protected: ACEs with OI
//!   pass to files, with CI to folders, an OI-only ACE passes to a subfolder as inherit-only,
//!   NP stops at the first generation, IO keeps an ACE off the folder that holds it
//!   ("ACE Inheritance Rules");
//! - the owner implicitly holds READ_CONTROL and WRITE_DAC ("Owner of a securable object").
//!
//! A virtual service account's SID is `S-1-5-80-` followed by the SHA-1 of the service name
//! in upper case (UTF-16LE) as five little-endian 32-bit numbers.

use sha1::{Digest, Sha1};

pub const SYSTEM: &str = "S-1-5-18";
pub const ADMINISTRATORS: &str = "S-1-5-32-544";
pub const USERS: &str = "S-1-5-32-545";
pub const AUTHENTICATED_USERS: &str = "S-1-5-11";
pub const EVERYONE: &str = "S-1-1-0";
/// NT AUTHORITY\SERVICE: in the token of every service.
pub const SERVICE: &str = "S-1-5-6";

pub const DELETE: u32 = 0x0001_0000;
pub const READ_CONTROL: u32 = 0x0002_0000;
pub const WRITE_DAC: u32 = 0x0004_0000;
pub const WRITE_OWNER: u32 = 0x0008_0000;
pub const SYNCHRONIZE: u32 = 0x0010_0000;
/// On a file: read its data; on a folder: list it.
pub const FILE_READ_DATA: u32 = 0x0001;
/// On a file: write its data; on a folder: create a file in it.
pub const FILE_WRITE_DATA: u32 = 0x0002;
/// On a file: append; on a folder: create a subfolder.
pub const FILE_APPEND_DATA: u32 = 0x0004;
pub const FILE_READ_EA: u32 = 0x0008;
pub const FILE_WRITE_EA: u32 = 0x0010;
pub const FILE_EXECUTE: u32 = 0x0020;
/// On a folder: delete a child whatever the child's own DACL says.
pub const FILE_DELETE_CHILD: u32 = 0x0040;
pub const FILE_READ_ATTRIBUTES: u32 = 0x0080;
pub const FILE_WRITE_ATTRIBUTES: u32 = 0x0100;
pub const FILE_ALL_ACCESS: u32 = 0x001F_01FF;
pub const FILE_GENERIC_READ: u32 =
    READ_CONTROL | FILE_READ_DATA | FILE_READ_ATTRIBUTES | FILE_READ_EA | SYNCHRONIZE;
pub const FILE_GENERIC_WRITE: u32 = READ_CONTROL
    | FILE_WRITE_DATA
    | FILE_WRITE_ATTRIBUTES
    | FILE_WRITE_EA
    | FILE_APPEND_DATA
    | SYNCHRONIZE;
pub const FILE_GENERIC_EXECUTE: u32 =
    READ_CONTROL | FILE_READ_ATTRIBUTES | FILE_EXECUTE | SYNCHRONIZE;
/// icacls' "M" (modify): read, write, execute and delete, not change permissions or owner.
pub const MODIFY: u32 = FILE_GENERIC_READ | FILE_GENERIC_WRITE | FILE_GENERIC_EXECUTE | DELETE;
/// icacls' "RX".
pub const READ_EXECUTE: u32 = FILE_GENERIC_READ | FILE_GENERIC_EXECUTE;

const GENERIC_READ: u32 = 0x8000_0000;
const GENERIC_WRITE: u32 = 0x4000_0000;
const GENERIC_EXECUTE: u32 = 0x2000_0000;
const GENERIC_ALL: u32 = 0x1000_0000;

/// The SID of the virtual account `NT SERVICE\<name>`.
pub fn service_sid(name: &str) -> String {
    let utf16: Vec<u8> = name
        .to_uppercase()
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let hash = Sha1::digest(&utf16);
    let parts: Vec<String> = hash
        .chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]).to_string())
        .collect();
    format!("S-1-5-80-{}", parts.join("-"))
}

/// What a generic right means on a file or folder.
pub fn map_generic(mask: u32) -> u32 {
    let mut out = mask & !(GENERIC_READ | GENERIC_WRITE | GENERIC_EXECUTE | GENERIC_ALL);
    for (generic, specific) in [
        (GENERIC_READ, FILE_GENERIC_READ),
        (GENERIC_WRITE, FILE_GENERIC_WRITE),
        (GENERIC_EXECUTE, FILE_GENERIC_EXECUTE),
        (GENERIC_ALL, FILE_ALL_ACCESS),
    ] {
        if mask & generic != 0 {
            out |= specific;
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AceFlags {
    /// OI: files below inherit it.
    pub object_inherit: bool,
    /// CI: folders below inherit it.
    pub container_inherit: bool,
    /// IO: it applies only to what inherits it, not to the folder that holds it.
    pub inherit_only: bool,
    /// NP: only the first generation inherits it.
    pub no_propagate: bool,
    /// ID: it came from a parent.
    pub inherited: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ace {
    pub allow: bool,
    pub flags: AceFlags,
    pub mask: u32,
    pub sid: String,
}

/// A security descriptor as far as access to files goes: owner and DACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub owner: Option<String>,
    /// `P`: nothing is inherited from the parent.
    pub protected: bool,
    pub dacl: Vec<Ace>,
}

/// NT SERVICE\TrustedInstaller, which owns what Windows itself installs.
pub const TRUSTED_INSTALLER: &str =
    "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464";

/// SDDL's SID aliases this model knows (those Windows writes for the folders the install
/// makes and their parents).
const ALIASES: [(&str, &str); 14] = [
    ("SY", SYSTEM),
    ("BA", ADMINISTRATORS),
    ("BU", USERS),
    ("AU", AUTHENTICATED_USERS),
    ("WD", EVERYONE),
    ("SU", SERVICE),
    ("CO", "S-1-3-0"),
    ("CG", "S-1-3-1"),
    ("OW", "S-1-3-4"),
    ("IU", "S-1-5-4"),
    ("LS", "S-1-5-19"),
    ("NS", "S-1-5-20"),
    ("AC", "S-1-15-2-1"),
    ("PS", "S-1-5-10"),
];

fn sid_of(token: &str) -> Result<String, String> {
    if let Some((_, sid)) = ALIASES.iter().find(|(a, _)| *a == token) {
        return Ok((*sid).to_string());
    }
    if token.starts_with("S-1-") {
        return Ok(token.to_string());
    }
    Err(format!(
        "`{token}` is not a SID or a SID alias this model knows"
    ))
}

fn alias_of(sid: &str) -> String {
    ALIASES
        .iter()
        .find(|(_, s)| *s == sid)
        .map(|(a, _)| (*a).to_string())
        .unwrap_or_else(|| sid.to_string())
}

/// SDDL's two-letter rights that apply to files.
const RIGHTS: [(&str, u32); 12] = [
    ("FA", FILE_ALL_ACCESS),
    ("FR", FILE_GENERIC_READ),
    ("FW", FILE_GENERIC_WRITE),
    ("FX", FILE_GENERIC_EXECUTE),
    ("GA", GENERIC_ALL),
    ("GR", GENERIC_READ),
    ("GW", GENERIC_WRITE),
    ("GX", GENERIC_EXECUTE),
    ("SD", DELETE),
    ("RC", READ_CONTROL),
    ("WD", WRITE_DAC),
    ("WO", WRITE_OWNER),
];

fn rights_of(text: &str) -> Result<u32, String> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).map_err(|e| format!("`{text}`: {e}"));
    }
    if !text.len().is_multiple_of(2) {
        return Err(format!("`{text}` is not a list of two-letter rights"));
    }
    let mut mask = 0;
    for i in (0..text.len()).step_by(2) {
        let r = &text[i..i + 2];
        mask |= RIGHTS
            .iter()
            .find(|(a, _)| *a == r)
            .map(|(_, m)| *m)
            .ok_or_else(|| format!("`{r}` is not a file right this model knows"))?;
    }
    Ok(mask)
}

impl Descriptor {
    /// Reads `O:<sid>D:<flags>(ace)(ace)…` (group and SACL are not part of the model).
    pub fn parse(sddl: &str) -> Result<Descriptor, String> {
        let mut owner = None;
        let mut rest = sddl.trim();
        if let Some(after) = rest.strip_prefix("O:") {
            let end = after.find(':').map(|i| i - 1).unwrap_or(after.len());
            owner = Some(sid_of(&after[..end])?);
            rest = &after[end..];
        }
        if let Some(after) = rest.strip_prefix("G:") {
            let end = after.find(':').map(|i| i - 1).unwrap_or(after.len());
            rest = &after[end..];
        }
        let dacl = rest
            .strip_prefix("D:")
            .ok_or_else(|| format!("`{sddl}` has no DACL (D:)"))?;
        let open = dacl.find('(').unwrap_or(dacl.len());
        let flags = &dacl[..open];
        let protected = flags.contains('P');
        let mut aces = Vec::new();
        let mut body = &dacl[open..];
        while let Some(start) = body.strip_prefix('(') {
            let close = start
                .find(')')
                .ok_or_else(|| format!("an ACE in `{sddl}` is not closed"))?;
            let fields: Vec<&str> = start[..close].split(';').collect();
            if fields.len() != 6 {
                return Err(format!("`({})` is not an ACE", &start[..close]));
            }
            let allow = match fields[0] {
                "A" => true,
                "D" => false,
                other => return Err(format!("ACE type `{other}` is not allow (A) or deny (D)")),
            };
            let mut f = AceFlags::default();
            for i in (0..fields[1].len()).step_by(2) {
                match fields[1].get(i..i + 2) {
                    Some("OI") => f.object_inherit = true,
                    Some("CI") => f.container_inherit = true,
                    Some("IO") => f.inherit_only = true,
                    Some("NP") => f.no_propagate = true,
                    Some("ID") => f.inherited = true,
                    other => return Err(format!("ACE flag `{other:?}` is not known")),
                }
            }
            aces.push(Ace {
                allow,
                flags: f,
                mask: rights_of(fields[2])?,
                sid: sid_of(fields[5])?,
            });
            body = &start[close + 1..];
        }
        if !body.is_empty() {
            return Err(format!("`{body}` after the ACEs of `{sddl}`"));
        }
        Ok(Descriptor {
            owner,
            protected,
            dacl: aces,
        })
    }

    pub fn to_sddl(&self) -> String {
        let mut out = String::new();
        if let Some(o) = &self.owner {
            out.push_str(&format!("O:{}", alias_of(o)));
        }
        out.push_str("D:");
        if self.protected {
            out.push('P');
        }
        out.push_str("AI");
        for a in &self.dacl {
            let mut flags = String::new();
            for (on, f) in [
                (a.flags.object_inherit, "OI"),
                (a.flags.container_inherit, "CI"),
                (a.flags.inherit_only, "IO"),
                (a.flags.no_propagate, "NP"),
                (a.flags.inherited, "ID"),
            ] {
                if on {
                    flags.push_str(f);
                }
            }
            let rights = RIGHTS
                .iter()
                .find(|(_, m)| *m == a.mask)
                .map(|(r, _)| (*r).to_string())
                .unwrap_or_else(|| format!("0x{:x}", a.mask));
            out.push_str(&format!(
                "({};{flags};{rights};;;{})",
                if a.allow { "A" } else { "D" },
                alias_of(&a.sid)
            ));
        }
        out
    }
}

/// The ACEs a new child of a folder whose DACL is `parent` gets from it.
pub fn inherited_by(parent: &[Ace], child_is_folder: bool) -> Vec<Ace> {
    let mut out = Vec::new();
    for a in parent {
        let f = a.flags;
        let mut child = a.clone();
        child.flags = AceFlags {
            inherited: true,
            ..AceFlags::default()
        };
        if child_is_folder {
            if f.container_inherit {
                if !f.no_propagate {
                    child.flags.object_inherit = f.object_inherit;
                    child.flags.container_inherit = true;
                }
                out.push(child);
            } else if f.object_inherit && !f.no_propagate {
                // For the files of the subfolder only.
                child.flags.object_inherit = true;
                child.flags.inherit_only = true;
                out.push(child);
            }
        } else if f.object_inherit {
            out.push(child);
        }
    }
    out
}

/// The DACL an object ends up with: its own ACEs, then (unless protected) what its parent's
/// DACL passes on. `set` is `None` for an object created with no descriptor of its own.
pub fn effective_dacl(set: Option<&Descriptor>, parent: &[Ace], is_folder: bool) -> Vec<Ace> {
    let mut dacl: Vec<Ace> = set.map(|d| d.dacl.clone()).unwrap_or_default();
    if !set.is_some_and(|d| d.protected) {
        dacl.extend(inherited_by(parent, is_folder));
    }
    dacl
}

/// The most a token (its SIDs) is granted by a DACL, with what the owner holds implicitly.
pub fn access(dacl: &[Ace], owner: Option<&str>, token: &[&str]) -> u32 {
    let mut granted = 0u32;
    let mut denied = 0u32;
    if owner.is_some_and(|o| token.contains(&o)) {
        granted |= READ_CONTROL | WRITE_DAC;
    }
    for a in dacl {
        if a.flags.inherit_only || !token.contains(&a.sid.as_str()) {
            continue;
        }
        let m = map_generic(a.mask);
        if a.allow {
            granted |= m & !denied;
        } else {
            denied |= m & !granted;
        }
    }
    granted
}

/// A mask in the words of Explorer's Security tab and icacls.
pub fn words(mask: u32) -> &'static str {
    let has = |m: u32| mask & m == m;
    if has(FILE_ALL_ACCESS) {
        "full control"
    } else if has(MODIFY) {
        "modify"
    } else if has(FILE_GENERIC_READ)
        && mask & (FILE_WRITE_DATA | FILE_APPEND_DATA | DELETE | WRITE_DAC | WRITE_OWNER) == 0
    {
        "read"
    } else if mask & (FILE_READ_DATA | FILE_WRITE_DATA | FILE_APPEND_DATA | DELETE) == 0 {
        "none"
    } else {
        "special"
    }
}

/// A folder or file the install creates on Windows, and the descriptor it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathAccess {
    pub path: std::path::PathBuf,
    pub is_folder: bool,
    /// `None`: nothing of its own, it inherits from its folder.
    pub sddl: Option<String>,
}

/// SYSTEM and Administrators: full control, inherited by everything below.
const OWNERS: &str = "(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

/// The descriptors of what the install creates, in creation order (a folder before what is in
/// it), for the service `service` (its virtual account is what the service runs as):
///
/// - the program folder: the service and every user may read and run the programs;
/// - `%ProgramData%\ad-sync`: the service may read the files in it (the config, the CA
///   copies, the enrollment) and list it, and create or change nothing;
/// - `state` and `logs`: the service may create, change and delete files there;
/// - `secrets`: the service may read them, nothing else;
/// - the config file: what its folder gives.
///
/// Each folder's DACL is protected (nothing inherited from `Program Files` or `ProgramData`,
/// whose defaults let every user read and create) and owned by Administrators.
pub fn plan(layout: &crate::install::layout::Layout, service: &str) -> Vec<PathAccess> {
    let svc = service_sid(service);
    let folder = |path: &std::path::Path, aces: String| PathAccess {
        path: path.to_path_buf(),
        is_folder: true,
        sddl: Some(format!("O:BAD:PAI{OWNERS}{aces}")),
    };
    let mut out = vec![
        folder(
            &layout.program_dir,
            format!("(A;OICI;0x{READ_EXECUTE:x};;;BU)(A;OICI;0x{READ_EXECUTE:x};;;{svc})"),
        ),
        folder(
            &layout.config_dir,
            format!("(A;;0x{READ_EXECUTE:x};;;{svc})(A;OI;0x{FILE_GENERIC_READ:x};;;{svc})"),
        ),
    ];
    for dir in [&layout.state_dir, &layout.log_dir] {
        out.push(folder(dir, format!("(A;OICI;0x{MODIFY:x};;;{svc})")));
    }
    out.push(folder(
        &layout.secrets_dir,
        format!("(A;OICI;0x{FILE_GENERIC_READ:x};;;{svc})"),
    ));
    out.push(PathAccess {
        path: layout.config.clone(),
        is_folder: false,
        sddl: None,
    });
    out
}

/// Who may own a folder or file of the agent's: Administrators, SYSTEM, TrustedInstaller. An
/// owner may always rewrite the DACL, so any other owner could give itself the secrets.
pub const TRUSTED_OWNERS: [&str; 3] = [ADMINISTRATORS, SYSTEM, TRUSTED_INSTALLER];

/// Rights over a file or folder that let an account change what the agent reads.
pub const WRITE_RIGHTS: u32 =
    FILE_WRITE_DATA | FILE_APPEND_DATA | WRITE_DAC | WRITE_OWNER | DELETE | FILE_DELETE_CHILD;

fn owner_ok(path: &std::path::Path, d: &Descriptor, what: &str) -> Result<(), String> {
    match d.owner.as_deref() {
        Some(o) if TRUSTED_OWNERS.contains(&o) => Ok(()),
        Some(o) => Err(format!(
            "{} {what} owned by {o}, not by Administrators or SYSTEM: whoever owns it can change who may read and write it, so a folder someone else made first could hand them the agent's secrets or its configuration. Check what is in it, remove it, and run the setup again as Administrator",
            path.display()
        )),
        None => Err(format!(
            "{} {what} without an owner; remove it and run the setup again as Administrator",
            path.display()
        )),
    }
}

/// Whether a folder that exists before the install may become one of the agent's: only when
/// Administrators, SYSTEM or TrustedInstaller own it. Its DACL is then replaced (protected), so
/// its old ACEs do not matter; its owner would.
pub fn judge_existing(path: &std::path::Path, sddl: &str) -> Result<(), String> {
    let d = Descriptor::parse(sddl).map_err(|e| {
        format!(
            "{} exists, and who may use it cannot be read ({e}); remove it and run the setup again",
            path.display()
        )
    })?;
    owner_ok(path, &d, "exists, but is")
}

/// What the agent checks at start on Windows (as it checks modes on Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// agent.toml: nobody but SYSTEM and Administrators may change it.
    Config,
    /// The secrets folder: nobody else may read or change it.
    Secrets,
    /// The state folder: nobody else may change it.
    State,
}

/// Whether an installed path still keeps out everyone but SYSTEM, Administrators and the
/// service: its owner, and what its DACL gives an ordinary account (the model's access check
/// on the DACL as Windows reports it, inherited ACEs included).
pub fn judge_installed(path: &std::path::Path, kind: Installed, sddl: &str) -> Result<(), String> {
    let d = Descriptor::parse(sddl)
        .map_err(|e| format!("{}: who may use it cannot be read ({e})", path.display()))?;
    owner_ok(path, &d, "is")?;
    let forbidden = match kind {
        Installed::Config | Installed::State => WRITE_RIGHTS,
        Installed::Secrets => WRITE_RIGHTS | FILE_READ_DATA,
    };
    let got = access(&d.dacl, None, &SOME_USER) & forbidden;
    if got != 0 {
        return Err(format!(
            "{}: accounts other than SYSTEM, Administrators and the service may {} it ({}), so it is not used. Run `ad-sync-setup` again as Administrator to reset who may use it",
            path.display(),
            if got & FILE_READ_DATA != 0 {
                "read"
            } else {
                "change"
            },
            words(got)
        ));
    }
    Ok(())
}

/// One row of what `install --dry-run --json` prints under `access`: a path, the descriptor
/// it gets, and what that gives each kind of account, in words, as the model evaluates it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Statement {
    pub path: String,
    /// `None`: it inherits from its folder (and on Linux, where modes decide).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sddl: Option<String>,
    /// Linux: the mode and its owner (`0700 root`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The service's own account (NT SERVICE\<name>; on Linux its dynamic user).
    pub service: &'static str,
    pub system: &'static str,
    pub administrators: &'static str,
    /// Any other account (Users, Authenticated Users, Everyone).
    pub users: &'static str,
}

/// What Windows gives the folders the plan's folders are made in (`Program Files`,
/// `ProgramData`): every user reads, and in ProgramData creates files and folders. The plan's
/// protected DACLs must keep that out; the model starts from it.
pub const WINDOWS_PARENT: &str =
    "O:SYD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)(A;CI;0x116;;;BU)";

/// Each path's DACL as Windows ends up with it, in the plan's order: its own descriptor and
/// what its folder (one of the plan's, or else a folder with `WINDOWS_PARENT`) passes on.
pub fn dacls(plan: &[PathAccess]) -> Result<Vec<(std::path::PathBuf, Vec<Ace>)>, String> {
    let outside = Descriptor::parse(WINDOWS_PARENT)?.dacl;
    let mut out: Vec<(std::path::PathBuf, Vec<Ace>)> = Vec::new();
    for p in plan {
        let parent = out
            .iter()
            .find(|(d, _)| Some(d.as_path()) == p.path.parent())
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| outside.clone());
        let own = p.sddl.as_deref().map(Descriptor::parse).transpose()?;
        out.push((
            p.path.clone(),
            effective_dacl(own.as_ref(), &parent, p.is_folder),
        ));
    }
    Ok(out)
}

/// The token of an ordinary account: what no file of the agent's may open to.
const SOME_USER: [&str; 4] = ["S-1-5-21-0-0-0-1001", AUTHENTICATED_USERS, USERS, EVERYONE];

/// What `plan` gives each account on each path; for a folder, on the files in it.
pub fn statement(
    layout: &crate::install::layout::Layout,
    service: &str,
) -> Result<Vec<Statement>, String> {
    let svc = service_sid(service);
    let service_token: [&str; 5] = [&svc, SERVICE, AUTHENTICATED_USERS, USERS, EVERYONE];
    let planned = plan(layout, service);
    let evaluated = dacls(&planned)?;
    Ok(planned
        .into_iter()
        .zip(evaluated)
        .map(|(p, (_, dacl))| {
            // For a folder, what a file in it gets: what the service and the others may do
            // with the state, the logs, the secrets.
            let files = if p.is_folder {
                inherited_by(&dacl, false)
            } else {
                dacl
            };
            let say = |token: &[&str]| words(access(&files, None, token));
            Statement {
                path: p.path.display().to_string(),
                service: say(&service_token),
                system: say(&[SYSTEM]),
                administrators: say(&[ADMINISTRATORS]),
                users: say(&SOME_USER),
                sddl: p.sddl,
                mode: None,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_service_accounts_sid_is_the_one_windows_gives() {
        // `sc showsid TrustedInstaller` on every Windows since Vista.
        assert_eq!(
            service_sid("TrustedInstaller"),
            "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
        );
        assert_eq!(
            service_sid("trustedinstaller"),
            service_sid("TrustedInstaller")
        );
    }

    #[test]
    fn generic_rights_map_as_for_files() {
        assert_eq!(map_generic(GENERIC_READ), FILE_GENERIC_READ);
        assert_eq!(map_generic(GENERIC_ALL), FILE_ALL_ACCESS);
        assert_eq!(
            map_generic(GENERIC_READ | GENERIC_EXECUTE),
            READ_EXECUTE,
            "icacls' RX"
        );
        // icacls prints these masks for its letters (M, RX, R, W).
        assert_eq!(MODIFY, 0x0013_01BF);
        assert_eq!(READ_EXECUTE, 0x0012_00A9);
        assert_eq!(FILE_GENERIC_READ, 0x0012_0089);
        assert_eq!(FILE_GENERIC_WRITE, 0x0012_0116);
    }

    #[test]
    fn sddl_reads_and_writes_back() {
        let text = "O:BAD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1301bf;;;S-1-5-80-1-2-3-4-5)(D;;FW;;;WD)";
        let d = Descriptor::parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.owner.as_deref(), Some(ADMINISTRATORS));
        assert!(d.protected);
        assert_eq!(d.dacl.len(), 4);
        assert!(d.dacl[0].flags.object_inherit && d.dacl[0].flags.container_inherit);
        assert_eq!(d.dacl[2].mask, MODIFY);
        assert!(!d.dacl[3].allow);
        assert_eq!(d.to_sddl(), text);
        assert_eq!(
            Descriptor::parse(&d.to_sddl()).map(|e| e == d),
            Ok(true),
            "round trip"
        );
        for bad in [
            "O:BA",
            "D:(A;;FA;;;SY",
            "D:(X;;FA;;;SY)",
            "D:(A;;ZZ;;;SY)",
            "D:(A;;FA;;;XX)",
        ] {
            assert!(Descriptor::parse(bad).is_err(), "{bad}");
        }
    }

    /// Microsoft's "How DACLs Control Access to an Object": Andrew is denied by the first ACE
    /// whatever the group ACE allows; Jane gets read and write from two ACEs; order matters.
    #[test]
    fn the_access_check_reads_the_dacl_in_order() {
        let andrew = "S-1-5-21-1-1-1-1101";
        let jane = "S-1-5-21-1-1-1-1102";
        let group_a = "S-1-5-21-1-1-1-2001";
        let ace = |allow, mask, sid: &str| Ace {
            allow,
            flags: AceFlags::default(),
            mask,
            sid: sid.into(),
        };
        let dacl = vec![
            ace(false, FILE_ALL_ACCESS, andrew),
            ace(true, FILE_WRITE_DATA, group_a),
            ace(true, FILE_GENERIC_READ, EVERYONE),
        ];
        assert_eq!(access(&dacl, None, &[andrew, group_a, EVERYONE]), 0);
        let got = access(&dacl, None, &[jane, group_a, EVERYONE]);
        assert_eq!(got, FILE_WRITE_DATA | FILE_GENERIC_READ);
        // A deny after the allow comes too late for what was granted.
        let late = vec![
            ace(true, FILE_GENERIC_READ, EVERYONE),
            ace(false, FILE_ALL_ACCESS, jane),
        ];
        assert_eq!(access(&late, None, &[jane, EVERYONE]), FILE_GENERIC_READ);
        // The owner may always read and change the DACL.
        assert_eq!(access(&[], Some(jane), &[jane]), READ_CONTROL | WRITE_DAC);
        // Inherit-only ACEs do not apply to the folder that holds them.
        let io = vec![Ace {
            flags: AceFlags {
                inherit_only: true,
                object_inherit: true,
                ..AceFlags::default()
            },
            ..ace(true, FILE_ALL_ACCESS, jane)
        }];
        assert_eq!(access(&io, None, &[jane]), 0);
    }

    /// "ACE Inheritance Rules": what a subfolder and a file of a folder get, per flag.
    #[test]
    fn inheritance_follows_the_flags() {
        let with = |flags: &str| {
            Descriptor::parse(&format!("D:(A;{flags};FA;;;SY)"))
                .unwrap_or_else(|e| panic!("{e}"))
                .dacl
        };
        // (flags on the parent, what a subfolder gets, what a file gets) in SDDL.
        let cases = [
            ("OICI", "D:AI(A;OICIID;FA;;;SY)", "D:AI(A;ID;FA;;;SY)"),
            ("CI", "D:AI(A;CIID;FA;;;SY)", "D:AI"),
            ("OI", "D:AI(A;OIIOID;FA;;;SY)", "D:AI(A;ID;FA;;;SY)"),
            ("OICINP", "D:AI(A;ID;FA;;;SY)", "D:AI(A;ID;FA;;;SY)"),
            ("OINP", "D:AI", "D:AI(A;ID;FA;;;SY)"),
            ("OICIIO", "D:AI(A;OICIID;FA;;;SY)", "D:AI(A;ID;FA;;;SY)"),
            ("", "D:AI", "D:AI"),
        ];
        for (flags, folder, file) in cases {
            let show = |dacl: Vec<Ace>| {
                Descriptor {
                    owner: None,
                    protected: false,
                    dacl,
                }
                .to_sddl()
            };
            assert_eq!(
                show(inherited_by(&with(flags), true)),
                folder,
                "{flags}: folder"
            );
            assert_eq!(
                show(inherited_by(&with(flags), false)),
                file,
                "{flags}: file"
            );
        }
        // A protected child keeps only its own ACEs.
        let own = Descriptor::parse("D:P(A;;FR;;;BU)").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(effective_dacl(Some(&own), &with("OICI"), false), own.dacl);
    }

    #[test]
    fn words_are_explorers() {
        assert_eq!(words(FILE_ALL_ACCESS), "full control");
        assert_eq!(words(MODIFY), "modify");
        assert_eq!(words(READ_EXECUTE), "read");
        assert_eq!(words(FILE_GENERIC_READ), "read");
        assert_eq!(words(0), "none");
        assert_eq!(words(READ_CONTROL | WRITE_DAC), "none");
        assert_eq!(words(FILE_WRITE_DATA), "special");
    }

    /// The outcome the plan must give, proven on the descriptors it makes: the service writes
    /// its state and logs and reads its config and secrets, and nothing else; SYSTEM and
    /// Administrators have full control; no other account reads a secret or the config.
    #[test]
    fn the_plans_descriptors_give_the_service_what_it_needs_and_no_one_else_the_secrets() {
        use crate::install::layout::Layout;
        use std::path::{Path, PathBuf};
        let data = PathBuf::from(r"C:\ProgramData\ad-sync");
        let layout = Layout {
            prefix: None,
            config: data.join("agent.toml"),
            secrets_dir: data.join("secrets"),
            enrollment: data.join("enrollment.toml"),
            config_dir: data.clone(),
            agent_exe: PathBuf::from(r"C:\Program Files\ad-sync\ad-sync-agent.exe"),
            program_dir: PathBuf::from(r"C:\Program Files\ad-sync"),
            state_dir: data.join("state"),
            log_dir: data.join("logs"),
            unit: None,
        };
        let plan = plan(&layout, "ad-sync-agent");
        // Each path's DACL, from Windows' defaults for the parents (every user reads, and in
        // ProgramData creates): the protected DACLs must keep that out.
        let dacls = dacls(&plan).unwrap_or_else(|e| panic!("{e}"));
        let dacl_of = |path: &Path| {
            dacls
                .iter()
                .find(|(d, _)| d == path)
                .map(|(_, a)| a.clone())
                .unwrap_or_else(|| panic!("{} is not in the plan", path.display()))
        };
        // A file the service or the install creates later in a folder of the plan.
        let file_in = |dir: &Path| inherited_by(&dacl_of(dir), false);

        let svc_sid = service_sid("ad-sync-agent");
        let service: &[&str] = &[&svc_sid, SERVICE, AUTHENTICATED_USERS, USERS, EVERYONE];
        let user: &[&str] = &SOME_USER;
        let may =
            |dacl: &[Ace], token: &[&str], right: u32| access(dacl, None, token) & right == right;

        let state = file_in(&layout.state_dir);
        let log = file_in(&layout.log_dir);
        let secret = file_in(&layout.secrets_dir);
        let config = dacl_of(&layout.config);
        let ca_copy = file_in(&layout.config_dir);
        let program = file_in(&layout.program_dir);

        // The service.
        for dir in [&layout.state_dir, &layout.log_dir] {
            assert!(
                may(&dacl_of(dir), service, FILE_WRITE_DATA),
                "creates files in {}",
                dir.display()
            );
        }
        for f in [&state, &log] {
            assert!(may(
                f,
                service,
                FILE_GENERIC_READ | FILE_GENERIC_WRITE | DELETE
            ));
        }
        for f in [&config, &secret, &ca_copy] {
            assert!(may(f, service, FILE_READ_DATA));
            assert!(!may(f, service, FILE_WRITE_DATA) && !may(f, service, DELETE));
        }
        for dir in [&layout.config_dir, &layout.secrets_dir, &layout.program_dir] {
            assert!(
                !may(&dacl_of(dir), service, FILE_WRITE_DATA),
                "{}",
                dir.display()
            );
            assert!(
                !may(&dacl_of(dir), service, FILE_DELETE_CHILD),
                "{}",
                dir.display()
            );
        }
        assert!(may(&program, service, READ_EXECUTE) && !may(&program, service, FILE_WRITE_DATA));

        // SYSTEM and Administrators.
        for who in [SYSTEM, ADMINISTRATORS] {
            for (path, dacl) in &dacls {
                assert!(
                    may(dacl, &[who], FILE_ALL_ACCESS),
                    "{who} on {}",
                    path.display()
                );
            }
            for f in [&state, &log, &secret, &config, &ca_copy, &program] {
                assert!(may(f, &[who], FILE_ALL_ACCESS));
            }
        }

        // Anyone else: the programs, and nothing of the rest.
        for f in [&secret, &config, &ca_copy, &state, &log] {
            assert_eq!(words(access(f, None, user)), "none");
        }
        for dir in [
            &layout.config_dir,
            &layout.secrets_dir,
            &layout.state_dir,
            &layout.log_dir,
        ] {
            assert_eq!(
                words(access(&dacl_of(dir), None, user)),
                "none",
                "{}",
                dir.display()
            );
        }
        assert_eq!(words(access(&program, None, user)), "read");

        // In words, as the dry run prints them.
        assert_eq!(words(access(&state, None, service)), "modify");
        assert_eq!(words(access(&secret, None, service)), "read");
        assert_eq!(words(access(&config, None, service)), "read");
        let said = statement(&layout, "ad-sync-agent").unwrap_or_else(|e| panic!("{e}"));
        let row = |p: &Path| {
            said.iter()
                .find(|r| r.path == p.display().to_string())
                .cloned()
                .unwrap_or_else(|| panic!("{} not stated", p.display()))
        };
        for (path, service, users) in [
            (&layout.program_dir, "read", "read"),
            (&layout.config_dir, "read", "none"),
            (&layout.state_dir, "modify", "none"),
            (&layout.log_dir, "modify", "none"),
            (&layout.secrets_dir, "read", "none"),
            (&layout.config, "read", "none"),
        ] {
            let r = row(path);
            assert_eq!((r.service, r.users), (service, users), "{}", path.display());
            assert_eq!(
                (r.system, r.administrators),
                ("full control", "full control")
            );
        }
    }

    #[test]
    fn squatted_or_loosened_folders_are_refused_as_windows_would_let_them_be_used() {
        let p = std::path::Path::new(r"C:\ProgramData\ad-sync");
        let svc = service_sid("ad-sync-agent");
        // A folder an elevated administrator, SYSTEM or the system made may be taken over.
        for owner in ["BA", "SY", TRUSTED_INSTALLER] {
            let sddl =
                format!("O:{owner}D:AI(A;OICI;FA;;;SY)(A;OICIID;0x1200a9;;;BU)(A;CIID;0x116;;;BU)");
            assert_eq!(judge_existing(p, &sddl), Ok(()), "{owner}");
        }
        // One an ordinary user made first (ProgramData lets every user create folders): its
        // owner could rewrite its DACL whatever the install sets.
        let squatted =
            "O:S-1-5-21-1-2-3-1001D:AI(A;OICI;FA;;;S-1-5-21-1-2-3-1001)(A;OICIID;FA;;;SY)";
        let why = judge_existing(p, squatted).err().unwrap_or_default();
        assert!(
            why.contains("S-1-5-21-1-2-3-1001") && why.contains("remove it"),
            "{why}"
        );

        // At start: the descriptors the install sets pass.
        let planned = |aces: &str| format!("O:BAD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA){aces}");
        let config_dir = planned(&format!(
            "(A;;0x{READ_EXECUTE:x};;;{svc})(A;OI;0x{FILE_GENERIC_READ:x};;;{svc})"
        ));
        let config_file =
            format!("O:BAD:AI(A;ID;FA;;;SY)(A;ID;FA;;;BA)(A;ID;0x{FILE_GENERIC_READ:x};;;{svc})");
        let secrets = planned(&format!("(A;OICI;0x{FILE_GENERIC_READ:x};;;{svc})"));
        let state = planned(&format!("(A;OICI;0x{MODIFY:x};;;{svc})"));
        type Case<'a> = (&'a str, Installed, String, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "the config as installed",
                Installed::Config,
                config_file.clone(),
                None,
            ),
            (
                "the config folder as installed",
                Installed::Config,
                config_dir,
                None,
            ),
            (
                "the secrets as installed",
                Installed::Secrets,
                secrets,
                None,
            ),
            ("the state as installed", Installed::State, state, None),
            (
                "a config Users may change",
                Installed::Config,
                format!("{config_file}(A;;0x{FILE_GENERIC_WRITE:x};;;BU)"),
                Some("change"),
            ),
            (
                "secrets Everyone may read",
                Installed::Secrets,
                "O:BAD:PAI(A;OICI;FA;;;SY)(A;OICI;FR;;;WD)".into(),
                Some("read"),
            ),
            (
                "a state folder owned by a user",
                Installed::State,
                "O:S-1-5-21-1-2-3-1001D:PAI(A;OICI;FA;;;SY)".into(),
                Some("owned by S-1-5-21-1-2-3-1001"),
            ),
            (
                "a config an ordinary account may re-permission",
                Installed::Config,
                format!("{config_file}(A;;WD;;;AU)"),
                Some("change"),
            ),
            (
                "a denied read before an allow keeps secrets private",
                Installed::Secrets,
                "O:SYD:PAI(D;;FA;;;WD)(A;;FA;;;WD)(A;;FA;;;SY)".into(),
                None,
            ),
            (
                "an alias the model does not know is refused, not guessed",
                Installed::Config,
                "O:BAD:PAI(A;;FA;;;ZZ)".into(),
                Some("cannot be read"),
            ),
        ];
        for (name, kind, sddl, want) in cases {
            let r = judge_installed(p, kind, &sddl);
            match want {
                None => assert_eq!(r, Ok(()), "{name}: {sddl}"),
                Some(w) => assert!(
                    r.as_ref().err().is_some_and(|e| e.contains(w)),
                    "{name}: {r:?}"
                ),
            }
        }
    }
}
