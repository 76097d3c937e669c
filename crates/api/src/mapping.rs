//! Which AD attribute feeds which cloud field, in one table (`ROWS`), for AD as a source: users,
//! groups and contacts. The default map is the peers' (Entra Connect's, Okta's, Google Cloud
//! Directory Sync's): the username from `sAMAccountName`, the names, mail, phones, title,
//! department, company, employee ID and the manager as a reference; a group's name and
//! description; the objectGUID as every object's external id (not a row: it is never remapped).
//!
//! An administrator remaps a row to another AD attribute or switches it off, in the config's
//! `[mapping.user]`, `[mapping.group]` and `[mapping.contact]` (`title = "extensionAttribute1"`,
//! `mobile = false`). [`Mapping::from_config`] checks that: a field that is not a row, a
//! required row switched off, a name that is not an LDAP attribute name, and any secret
//! attribute ([`SECRET_ATTRIBUTES`]) are refused by name. What is read from AD
//! ([`Mapping::attributes`]) and what a record holds ([`Mapping::record`]) come from the map in
//! force, so adding an attribute is one row here.
//!
//! Whether each mapped attribute exists in the DC's schema and is readable by the service
//! account is the live check `mapping.attributes` (against the DC, not here).

use std::collections::BTreeMap;

/// Attributes that hold secrets or secret-derived data. None can be mapped or asked for: the
/// attribute list of every DirSync read and every `[mapping.*]` row is checked against it.
pub const SECRET_ATTRIBUTES: &[&str] = &[
    "unicodePwd",
    "dBCSPwd",
    "ntPwdHistory",
    "lmPwdHistory",
    "supplementalCredentials",
    "userPassword",
    "unixUserPassword",
    "clearTextPassword",
    "msDS-ManagedPassword",
    "ms-Mcs-AdmPwd",
    "msLAPS-Password",
    "msLAPS-EncryptedPassword",
    "msLAPS-EncryptedPasswordHistory",
    "msLAPS-EncryptedDSRMPassword",
    "msLAPS-EncryptedDSRMPasswordHistory",
    "msFVE-RecoveryPassword",
    "msFVE-KeyPackage",
    "msTPM-OwnerInformation",
    "msDS-KeyCredentialLink",
    "trustAuthIncoming",
    "trustAuthOutgoing",
    "initialAuthIncoming",
    "initialAuthOutgoing",
    "currentValue",
    "priorValue",
    "pekList",
];

/// Whether `attr` (with or without options such as `;range=`) is a secret attribute.
pub fn is_secret(attr: &str) -> bool {
    let base = attr.split(';').next().unwrap_or(attr);
    SECRET_ATTRIBUTES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(base))
}

/// The kind of AD object a row maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    User,
    Group,
    Contact,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::User, Kind::Group, Kind::Contact];

    /// The config section's name: `[mapping.user]`.
    pub fn section(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Contact => "contact",
        }
    }
}

/// One cloud field and where it comes from by default.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub kind: Kind,
    /// The cloud's field, as the API and the config name it.
    pub field: &'static str,
    /// The AD attribute read by default.
    pub ad: &'static str,
    /// Cannot be switched off (an object without it cannot exist in the cloud).
    pub required: bool,
    /// The value is a DN, sent as the referenced object's objectGUID (the manager).
    pub reference: bool,
    /// What the field is, for the wizard's mapping page and the docs.
    pub what: &'static str,
}

const fn row(
    kind: Kind,
    field: &'static str,
    ad: &'static str,
    required: bool,
    what: &'static str,
) -> Row {
    Row {
        kind,
        field,
        ad,
        required,
        reference: false,
        what,
    }
}

/// The default map. The wizard's mapping page, Review, `check` and docs/agent.md list these
/// rows; a test compares the docs' table with them.
pub const ROWS: &[Row] = &[
    row(
        Kind::User,
        "username",
        "sAMAccountName",
        true,
        "Sign-in name",
    ),
    row(
        Kind::User,
        "user_principal_name",
        "userPrincipalName",
        false,
        "User principal name",
    ),
    row(Kind::User, "given_name", "givenName", false, "First name"),
    row(Kind::User, "surname", "sn", false, "Last name"),
    row(
        Kind::User,
        "display_name",
        "displayName",
        false,
        "Display name",
    ),
    row(Kind::User, "email", "mail", false, "Email address"),
    row(Kind::User, "phone", "telephoneNumber", false, "Phone"),
    row(Kind::User, "mobile", "mobile", false, "Mobile phone"),
    row(Kind::User, "title", "title", false, "Job title"),
    row(Kind::User, "department", "department", false, "Department"),
    row(Kind::User, "company", "company", false, "Company"),
    row(
        Kind::User,
        "employee_id",
        "employeeID",
        false,
        "Employee ID",
    ),
    Row {
        kind: Kind::User,
        field: "manager",
        ad: "manager",
        required: false,
        reference: true,
        what: "Manager (the manager's own user, by objectGUID)",
    },
    row(Kind::Group, "name", "sAMAccountName", true, "Group name"),
    row(
        Kind::Group,
        "description",
        "description",
        false,
        "Description",
    ),
    row(
        Kind::Contact,
        "email",
        "mail",
        true,
        "Email address (contacts are matched on it)",
    ),
    row(
        Kind::Contact,
        "given_name",
        "givenName",
        false,
        "First name",
    ),
    row(Kind::Contact, "surname", "sn", false, "Last name"),
    row(
        Kind::Contact,
        "display_name",
        "displayName",
        false,
        "Display name",
    ),
    row(Kind::Contact, "phone", "telephoneNumber", false, "Phone"),
    row(Kind::Contact, "company", "company", false, "Company"),
];

/// The rows of one kind, in the table's order.
pub fn rows(kind: Kind) -> impl Iterator<Item = &'static Row> {
    ROWS.iter().filter(move |r| r.kind == kind)
}

/// One `[mapping.*]` value: another AD attribute, or `false` to switch the row off.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Setting {
    Attribute(String),
    Switch(bool),
}

/// The `[mapping]` section: per kind, field → setting. Absent fields keep the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, Setting>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group: BTreeMap<String, Setting>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub contact: BTreeMap<String, Setting>,
}

impl Config {
    fn of(&self, kind: Kind) -> &BTreeMap<String, Setting> {
        match kind {
            Kind::User => &self.user,
            Kind::Group => &self.group,
            Kind::Contact => &self.contact,
        }
    }
}

/// The map in force: for each row, the AD attribute it reads, or `None` when switched off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    in_force: Vec<(&'static Row, Option<String>)>,
}

impl Default for Mapping {
    fn default() -> Mapping {
        Mapping {
            in_force: ROWS.iter().map(|r| (r, Some(r.ad.to_string()))).collect(),
        }
    }
}

/// An LDAP attribute description's name (RFC 4512 `descr`): a letter, then letters, digits
/// and hyphens. Options (`;binary`) and OIDs are not taken.
fn is_attribute_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic())
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        && s.len() <= 64
}

impl Mapping {
    /// The default map with `config`'s changes. `Err` names the key, what is wrong and what
    /// to do; every wrong key is listed, not only the first.
    pub fn from_config(config: &Config) -> Result<Mapping, String> {
        let mut m = Mapping::default();
        let mut wrong = Vec::new();
        for kind in Kind::ALL {
            let section = kind.section();
            for (field, setting) in config.of(kind) {
                let key = format!("[mapping.{section}] {field}");
                let Some(slot) = m
                    .in_force
                    .iter_mut()
                    .find(|(r, _)| r.kind == kind && r.field == field)
                else {
                    let known: Vec<&str> = rows(kind).map(|r| r.field).collect();
                    wrong.push(format!(
                        "{key}: there is no such field; the fields are {}",
                        known.join(", ")
                    ));
                    continue;
                };
                match setting {
                    Setting::Switch(false) if slot.0.required => wrong.push(format!(
                        "{key} cannot be switched off: every {section} needs it; map it to another attribute instead"
                    )),
                    Setting::Switch(false) => slot.1 = None,
                    Setting::Switch(true) => wrong.push(format!(
                        "{key} = true means nothing: write the AD attribute's name to remap it, false to switch it off, or remove the line for the default ({})",
                        slot.0.ad
                    )),
                    Setting::Attribute(a) if is_secret(a) => wrong.push(format!(
                        "{key} = \"{a}\": a secret attribute is never read or sent to the cloud; map another attribute"
                    )),
                    Setting::Attribute(a) if !is_attribute_name(a) => wrong.push(format!(
                        "{key} = \"{a}\" is not an AD attribute name (a letter, then letters, digits and hyphens, like extensionAttribute1)"
                    )),
                    Setting::Attribute(a) => slot.1 = Some(a.clone()),
                }
            }
        }
        if wrong.is_empty() {
            Ok(m)
        } else {
            Err(wrong.join("; "))
        }
    }

    /// Each row of `kind` with the attribute it reads now (`None`: off).
    pub fn rows(&self, kind: Kind) -> impl Iterator<Item = (&'static Row, Option<&str>)> {
        self.in_force
            .iter()
            .filter(move |(r, _)| r.kind == kind)
            .map(|(r, a)| (*r, a.as_deref()))
    }

    /// What to read from AD for `kind`: the objectGUID (the external id) and every mapped
    /// attribute, once each. Never a secret attribute (`from_config` refuses them).
    pub fn attributes(&self, kind: Kind) -> Vec<&str> {
        let mut out = vec!["objectGUID"];
        for (_, a) in self.rows(kind) {
            if let Some(a) = a
                && !out.iter().any(|o| o.eq_ignore_ascii_case(a))
            {
                out.push(a);
            }
        }
        out
    }

    /// The cloud fields of one object from its AD values (attribute names in any case), for
    /// the rows of `kind` that are on: a field whose attribute has no value is absent; a
    /// multi-valued attribute gives its first value. References stay DNs here; the caller
    /// resolves them to objectGUIDs.
    pub fn record(
        &self,
        kind: Kind,
        values: &BTreeMap<String, Vec<String>>,
    ) -> BTreeMap<&'static str, String> {
        let mut out = BTreeMap::new();
        for (row, attr) in self.rows(kind) {
            let Some(attr) = attr else { continue };
            let value = values
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                .and_then(|(_, v)| v.first());
            if let Some(v) = value {
                out.insert(row.field, v.clone());
            }
        }
        out
    }

    /// The rows that differ from the default, as Review and `check` list them:
    /// `user.title ← extensionAttribute1`, `user.mobile: off`.
    pub fn changes(&self) -> Vec<String> {
        self.in_force
            .iter()
            .filter(|(r, a)| a.as_deref() != Some(r.ad))
            .map(|(r, a)| match a {
                Some(a) => format!("{}.{} ← {a} (default {})", r.kind.section(), r.field, r.ad),
                None => format!("{}.{}: off (default {})", r.kind.section(), r.field, r.ad),
            })
            .collect()
    }
}

/// The default map as the Markdown table docs/agent.md shows (a test keeps them the same).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| object | cloud field | AD attribute (default) | can be switched off | what it is |\n|---|---|---|---|---|\n",
    );
    for r in ROWS {
        out.push_str(&format!(
            "| {} | `{}` | `{}` | {} | {} |\n",
            r.kind.section(),
            r.field,
            r.ad,
            if r.required { "no" } else { "yes" },
            r.what
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/agent.md shows the table itself, row for row.
    #[test]
    fn the_agent_doc_shows_the_table() {
        let doc = include_str!("../../../docs/agent.md");
        let table = markdown_table();
        assert!(
            doc.contains(&table),
            "docs/agent.md lacks the mapping table as the code has it:\n{table}"
        );
    }

    fn config(text: &str) -> Result<Mapping, String> {
        #[derive(serde::Deserialize)]
        struct Top {
            mapping: Config,
        }
        let top: Top = toml::from_str(text).map_err(|e| e.to_string())?;
        Mapping::from_config(&top.mapping)
    }

    #[test]
    fn the_default_map_reads_the_peers_attributes_and_the_guid() {
        let m = Mapping::default();
        assert_eq!(
            m.attributes(Kind::User),
            [
                "objectGUID",
                "sAMAccountName",
                "userPrincipalName",
                "givenName",
                "sn",
                "displayName",
                "mail",
                "telephoneNumber",
                "mobile",
                "title",
                "department",
                "company",
                "employeeID",
                "manager"
            ]
        );
        assert_eq!(
            m.attributes(Kind::Group),
            ["objectGUID", "sAMAccountName", "description"]
        );
        assert!(m.changes().is_empty());
        // One row per field and kind.
        for kind in Kind::ALL {
            let mut fields: Vec<&str> = rows(kind).map(|r| r.field).collect();
            let n = fields.len();
            fields.sort();
            fields.dedup();
            assert_eq!(fields.len(), n, "{kind:?} has a field twice");
            assert!(
                rows(kind).any(|r| r.required),
                "{kind:?} needs a required row"
            );
        }
    }

    #[test]
    fn remapped_and_switched_off_rows_change_what_is_read_and_sent() {
        let m = config(
            "[mapping.user]\ntitle = \"extensionAttribute1\"\nmobile = false\n[mapping.group]\ndescription = \"info\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let attrs = m.attributes(Kind::User);
        assert!(attrs.contains(&"extensionAttribute1"));
        assert!(!attrs.contains(&"mobile") && !attrs.contains(&"title"));
        assert_eq!(
            m.attributes(Kind::Group),
            ["objectGUID", "sAMAccountName", "info"]
        );
        let values: BTreeMap<String, Vec<String>> = [
            ("SAMACCOUNTNAME", "ann"),
            ("extensionattribute1", "Engineer"),
            ("mobile", "+1 555 0100"),
            ("title", "not read"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
        .collect();
        let r = m.record(Kind::User, &values);
        assert_eq!(r.get("username").map(String::as_str), Some("ann"));
        assert_eq!(r.get("title").map(String::as_str), Some("Engineer"));
        assert!(
            !r.contains_key("mobile"),
            "a switched-off row sends nothing"
        );
        assert!(!r.contains_key("email"), "no value, no field");
        assert_eq!(
            m.changes(),
            [
                "user.mobile: off (default mobile)",
                "user.title ← extensionAttribute1 (default title)",
                "group.description ← info (default description)",
            ]
        );
    }

    #[test]
    fn wrong_keys_are_refused_by_name_all_at_once() {
        let cases = [
            (
                "[mapping.user]\nusername = false",
                "[mapping.user] username cannot be switched off",
            ),
            (
                "[mapping.user]\nshoe_size = \"x\"",
                "[mapping.user] shoe_size: there is no such field; the fields are username, user_principal_name",
            ),
            (
                "[mapping.user]\ntitle = true",
                "[mapping.user] title = true means nothing",
            ),
            (
                "[mapping.user]\ntitle = \"my title\"",
                "is not an AD attribute name",
            ),
            (
                "[mapping.user]\ntitle = \"1.2.840.113556.1.4.90\"",
                "is not an AD attribute name",
            ),
            (
                "[mapping.contact]\nemail = false",
                "[mapping.contact] email cannot be switched off",
            ),
            (
                "[mapping.computer]\nname = \"cn\"",
                "unknown field `computer`",
            ),
        ];
        for (text, want) in cases {
            let e = config(text).err().unwrap_or_default();
            assert!(e.contains(want), "{text}: {e}");
        }
        let e = config("[mapping.user]\nusername = false\nshoe_size = \"x\"")
            .err()
            .unwrap_or_default();
        assert!(e.contains("username") && e.contains("shoe_size"), "{e}");
    }

    /// The agent never asks AD for a secret attribute: every one of the table's, in any case
    /// and under any field, is refused, so none can reach `attributes`.
    #[test]
    fn no_secret_attribute_can_be_mapped() {
        for secret in SECRET_ATTRIBUTES {
            for spelled in [secret.to_string(), secret.to_ascii_lowercase()] {
                for kind in Kind::ALL {
                    for row in rows(kind) {
                        let mut c = Config::default();
                        let section = match kind {
                            Kind::User => &mut c.user,
                            Kind::Group => &mut c.group,
                            Kind::Contact => &mut c.contact,
                        };
                        section.insert(row.field.into(), Setting::Attribute(spelled.clone()));
                        let e = Mapping::from_config(&c).err().unwrap_or_default();
                        assert!(e.contains("a secret attribute is never read"), "{e}");
                    }
                }
            }
        }
        for kind in Kind::ALL {
            assert!(
                Mapping::default()
                    .attributes(kind)
                    .iter()
                    .all(|a| !is_secret(a)),
                "{kind:?}"
            );
        }
    }
}
