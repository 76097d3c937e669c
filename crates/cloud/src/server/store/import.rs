//! Importing AD into the cloud (`POST /v1/import`), the names the preview reads with a connect
//! key (`POST /v1/keys/directory`), and the admin listings of users and groups with their links.
//!
//! An import links each cloud object to its AD object in the agent's domain, by objectGUID: a
//! link is unique per domain both ways, so an AD object is imported once however often the
//! import runs (a re-run, or a run after a crash mid-import, answers `already`).

use super::keys::{find_key, unusable_key};
use super::*;
use ad_sync_api::api::{
    AdLink, DirectoryEntry, DirectoryResponse, ImportGroup, ImportItem, ImportMembership,
    ImportOutcome, ImportRequest, ImportResponse, ImportUser, MAX_DIRECTORY_NAMES,
};
use ad_sync_api::guid::parse_guid_string;
use std::collections::HashMap;

/// A user or group as the admin listing shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    pub id: String,
    pub name: String,
    /// Users only: the whole state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    pub links: Vec<AdLink>,
    /// Groups only: direct members by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Who is its authority: `cloud`, or `ad` (AD as a source).
    pub source: String,
    /// A mirror's copy (`source` `mirror`): the domain instance whose AD it comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirrored_from: Option<String>,
    /// When AD deleted it (kept, a user suspended, until the retention ends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
    /// The mapped fields beyond the object's own (a user's title, department, …; a group's
    /// description).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

fn item(kind: &str, name: &str, guid: &str, outcome: ImportOutcome, message: String) -> ImportItem {
    ImportItem {
        kind: kind.into(),
        name: name.into(),
        guid: guid.into(),
        outcome,
        message,
    }
}

/// The cloud object linked to `guid` in the domain, if any.
pub(super) fn linked(tx: &Connection, domain_id: i64, guid: &str) -> db::Result<Option<String>> {
    tx.prepare_cached("SELECT object_id FROM links WHERE domain_id = ?1 AND guid = ?2")?
        .query_row(params![domain_id, guid], |r| r.get(0))
        .optional()
}

/// A cloud object's current name by id (a user's or a group's).
fn name_of(tx: &Connection, id: &str) -> db::Result<Option<String>> {
    tx.prepare_cached(
        "SELECT username FROM users WHERE id = ?1 UNION ALL SELECT name FROM groups WHERE id = ?1",
    )?
    .query_row([id], |r| r.get(0))
    .optional()
}

fn link_in_domain(tx: &Connection, domain_id: i64, object_id: &str) -> db::Result<Option<String>> {
    tx.query_row(
        "SELECT guid FROM links WHERE domain_id = ?1 AND object_id = ?2",
        params![domain_id, object_id],
        |r| r.get(0),
    )
    .optional()
}

pub(super) fn add_link(
    tx: &Connection,
    agent: &AgentAuth,
    object_id: &str,
    guid: &str,
    now: i64,
) -> db::Result<()> {
    tx.prepare_cached(
        "INSERT INTO links (object_id, domain_id, guid, agent_id, at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        object_id,
        agent.domain_id,
        guid,
        agent.agent_id,
        now
    ])?;
    Ok(())
}

fn user_by_id(tx: &Connection, id: &str) -> db::Result<Option<User>> {
    let name: Option<(i64, String)> = tx
        .query_row(
            "SELECT domain_id, username FROM users WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    name.map(|(d, n)| load_user(tx, d, &n)).transpose()
}

fn group_by_id(tx: &Connection, id: &str) -> db::Result<Option<Group>> {
    let name: Option<String> = tx
        .query_row("SELECT name FROM groups WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    Ok(match name {
        Some(n) => Some(Group {
            links: links_of(tx, id)?,
            id: id.into(),
            name: n,
        }),
        None => None,
    })
}

/// Why the cloud refuses to hold this AD user, in words that say what to change in AD.
pub(super) fn user_refusal(u: &ImportUser) -> Option<String> {
    if let Err(e) = validate_username(&u.username) {
        return Some(format!("{e}; rename the AD account to import it"));
    }
    for (attr, value) in [("givenName", &u.given_name), ("sn (surname)", &u.surname)] {
        if value.trim().is_empty() {
            return Some(format!(
                "it has no {attr}, which the cloud requires; set it in AD, then import again (with AD as a source, it is sent again with that change)"
            ));
        }
        if value.chars().count() > 64 {
            return Some(format!("its {attr} is longer than 64 characters"));
        }
        if let Some(why) = name_problem(value) {
            return Some(format!("its {attr} {why}"));
        }
    }
    if let Some(e) = &u.email
        && validate_email(e).is_err()
    {
        return Some(format!(
            "its mail `{e}` is not an e-mail address; correct or clear it in AD, then import again (with AD as a source, it is sent again with that change)"
        ));
    }
    if u.display_name
        .as_ref()
        .is_some_and(|d| d.chars().count() > 256)
    {
        return Some("its displayName is longer than 256 characters".into());
    }
    None
}

impl Store {
    /// Imports one request's AD objects for the agent's domain, in one transaction (a dry run
    /// rolls it back). Each item is answered; a refused item changes nothing and the rest go on.
    pub fn import(
        &self,
        agent: &AgentAuth,
        req: &ImportRequest,
        now: i64,
    ) -> Result<ImportResponse, ApiError> {
        self.transact(!req.dry_run, |tx| {
        // Links are what the agent takes over AD objects by: only the agent that applies the
        // changes may make them (run the import on the primary's server).
        super::require_primary(
            tx,
            agent,
            "alone may import AD into the cloud: run `ad-sync-agent import` on that agent's server",
        )?;
        let mut items = Vec::with_capacity(req.len());
        for u in &req.users {
            items.push(import_user(tx, agent, u, now)?);
        }
        for g in &req.groups {
            items.push(import_group(tx, agent, g, now)?);
        }
        for m in &req.memberships {
            items.push(import_membership(tx, agent, m)?);
        }
        Ok(ImportResponse { items })
        })
    }

    /// The cloud's user and group names with their links, for a valid, unused connect key
    /// (which this never consumes).
    pub fn directory(&self, key: &ConnectKey, now: i64) -> Result<DirectoryResponse, ApiError> {
        let conn = self.lock();
        let Some((_, domain_id, row, _)) = find_key(&conn, &key.hash())? else {
            return Err(ApiError::new(
                ErrorCode::KeyUnknown,
                "this cloud did not issue that key (or it was issued by another cloud); check the cloud URL, or issue a new key",
            ));
        };
        let state = row.state(now);
        if state != KeyState::Valid {
            return Err(unusable_key(state, &row));
        }
        let limit = MAX_DIRECTORY_NAMES as i64 + 1;
        let entries = |sql: &str| -> db::Result<Vec<DirectoryEntry>> {
            conn.prepare(sql)?
                .query_map(params![limit, domain_id], |r| {
                    let source: String = r.get(2)?;
                    Ok(DirectoryEntry {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        links: Vec::new(),
                        source: if source == "ad" {
                            source
                        } else {
                            String::new()
                        },
                    })
                })?
                .collect()
        };
        // Only the key's domain instance: the preview of one domain shows none of another's.
        let mut users = entries(
            "SELECT id, username, source FROM users WHERE domain_id = ?2 ORDER BY username LIMIT ?1",
        )?;
        let mut groups = entries(
            "SELECT id, name, source FROM groups WHERE domain_id = ?2 ORDER BY name LIMIT ?1",
        )?;
        let truncated = users.len() > MAX_DIRECTORY_NAMES || groups.len() > MAX_DIRECTORY_NAMES;
        users.truncate(MAX_DIRECTORY_NAMES);
        groups.truncate(MAX_DIRECTORY_NAMES);
        let mut links: HashMap<String, Vec<AdLink>> = HashMap::new();
        let mut stmt = conn.prepare(
            "SELECT l.object_id, d.dn, l.guid FROM links l JOIN domains d ON d.id = l.domain_id
             WHERE l.domain_id = ?1",
        )?;
        for r in stmt.query_map([domain_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                AdLink {
                    domain: r.get(1)?,
                    guid: r.get(2)?,
                },
            ))
        })? {
            let (id, link) = r?;
            links.entry(id).or_default().push(link);
        }
        for e in users.iter_mut().chain(groups.iter_mut()) {
            e.links = links.remove(&e.id).unwrap_or_default();
        }
        Ok(DirectoryResponse {
            domain: row.domain,
            users,
            groups,
            truncated,
        })
    }

    /// Every user, by name, with its links (`ad-sync-cloud user list`).
    pub fn user_list(&self, domain: i64) -> Result<Vec<Listed>, AdminError> {
        self.admin_tx(|tx| {
            let names: Vec<String> = tx
                .prepare("SELECT username FROM users WHERE domain_id = ?1 ORDER BY username")?
                .query_map([domain], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                let u = load_user(tx, domain, &n)?;
                let (source, deleted_at, attributes, mirrored_from): (
                    String,
                    Option<i64>,
                    Option<String>,
                    Option<String>,
                ) = tx
                    .prepare_cached(
                        "SELECT u.source, u.deleted_at, u.attributes, d.dn FROM users u LEFT JOIN domains d ON d.id = u.mirror_from WHERE u.id = ?1",
                    )?
                    .query_row([&u.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                out.push(Listed {
                    id: u.id.clone(),
                    name: u.username.clone(),
                    links: u.links.clone(),
                    user: Some(u),
                    members: Vec::new(),
                    source,
                    mirrored_from,
                    deleted_at,
                    attributes: attributes
                        .and_then(|a| serde_json::from_str(&a).ok())
                        .unwrap_or_default(),
                });
            }
            Ok(out)
        })
    }

    /// Every group, by name, with its links and direct members (`ad-sync-cloud group list`).
    pub fn group_list(&self, domain: i64) -> Result<Vec<Listed>, AdminError> {
        self.admin_tx(|tx| {
            let names: Vec<String> = tx
                .prepare("SELECT name FROM groups WHERE domain_id = ?1 ORDER BY name")?
                .query_map([domain], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                let g = find_group(tx, domain, &n)?;
                let members: Vec<String> = tx
                    .prepare_cached(
                        "SELECT member FROM memberships WHERE domain_id = ?2 AND group_name = ?1 ORDER BY member",
                    )?
                    .query_map(params![&g.name, domain], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let (source, deleted_at, description, mirrored_from): (
                    String,
                    Option<i64>,
                    Option<String>,
                    Option<String>,
                ) = tx
                    .prepare_cached(
                        "SELECT g.source, g.deleted_at, g.description, d.dn FROM groups g LEFT JOIN domains d ON d.id = g.mirror_from WHERE g.id = ?1",
                    )?
                    .query_row([&g.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                out.push(Listed {
                    id: g.id,
                    name: g.name,
                    user: None,
                    links: g.links,
                    members,
                    source,
                    mirrored_from,
                    deleted_at,
                    attributes: description
                        .map(|d| ("description".to_string(), d))
                        .into_iter()
                        .collect(),
                });
            }
            Ok(out)
        })
    }
}

fn import_user(
    tx: &Connection,
    agent: &AgentAuth,
    u: &ImportUser,
    now: i64,
) -> Result<ImportItem, ApiError> {
    let refused = |m: String| {
        Ok(item(
            "user",
            &u.username,
            &u.guid,
            ImportOutcome::Refused,
            m,
        ))
    };
    if parse_guid_string(&u.guid).is_none() {
        return refused("guid is not an objectGUID in its string form".into());
    }
    if let Some(id) = linked(tx, agent.domain_id, &u.guid)? {
        let name = name_of(tx, &id)?.unwrap_or_else(|| u.username.clone());
        return Ok(item(
            "user",
            &name,
            &u.guid,
            ImportOutcome::Already,
            String::new(),
        ));
    }
    if let Some(why) = user_refusal(u) {
        return refused(why);
    }
    let d = agent.domain_id;
    let outcome = if user_exists(tx, d, &u.username)? {
        let existing = load_user(tx, d, &u.username)?;
        if let Some(other) = link_in_domain(tx, agent.domain_id, &existing.id)? {
            return refused(format!(
                "the cloud user `{}` is already linked to another AD object ({other}) in this domain; rename one of them",
                existing.username
            ));
        }
        add_link(tx, agent, &existing.id, &u.guid, now)?;
        ImportOutcome::Linked
    } else {
        tx.execute(
            "INSERT INTO users (username, id, given_name, surname, email, suspended, display_name, domain_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                u.username,
                new_id("u")?,
                u.given_name,
                u.surname,
                u.email,
                !u.enabled,
                u.display_name,
                d
            ],
        )?;
        let id: String = tx.query_row(
            "SELECT id FROM users WHERE domain_id = ?2 AND username = ?1",
            params![&u.username, d],
            |r| r.get(0),
        )?;
        add_link(tx, agent, &id, &u.guid, now)?;
        ImportOutcome::Created
    };
    let user = load_user(tx, d, &u.username)?;
    append_change(tx, d, &ChangeBody::UserUpsert { user })?;
    Ok(item("user", &u.username, &u.guid, outcome, String::new()))
}

fn import_group(
    tx: &Connection,
    agent: &AgentAuth,
    g: &ImportGroup,
    now: i64,
) -> Result<ImportItem, ApiError> {
    let refused = |m: String| Ok(item("group", &g.name, &g.guid, ImportOutcome::Refused, m));
    if parse_guid_string(&g.guid).is_none() {
        return refused("guid is not an objectGUID in its string form".into());
    }
    if let Some(id) = linked(tx, agent.domain_id, &g.guid)? {
        let name = name_of(tx, &id)?.unwrap_or_else(|| g.name.clone());
        return Ok(item(
            "group",
            &name,
            &g.guid,
            ImportOutcome::Already,
            String::new(),
        ));
    }
    if let Err(e) = validate_group_name(&g.name) {
        return refused(format!("{e}; rename the AD group to import it"));
    }
    let d = agent.domain_id;
    let outcome = if group_exists(tx, d, &g.name)? {
        let existing = find_group(tx, d, &g.name).map_err(|e| match e {
            TxError::Db(e) => ApiError::from(e),
            TxError::Refused(a) => ApiError::new(ErrorCode::Internal, a.to_string()),
        })?;
        if let Some(other) = link_in_domain(tx, agent.domain_id, &existing.id)? {
            return refused(format!(
                "the cloud group `{}` is already linked to another AD group ({other}) in this domain; rename one of them",
                existing.name
            ));
        }
        add_link(tx, agent, &existing.id, &g.guid, now)?;
        ImportOutcome::Linked
    } else {
        let id = new_id("g")?;
        tx.execute(
            "INSERT INTO groups (name, id, domain_id) VALUES (?1, ?2, ?3)",
            params![g.name, id, d],
        )?;
        add_link(tx, agent, &id, &g.guid, now)?;
        ImportOutcome::Created
    };
    let id = linked(tx, agent.domain_id, &g.guid)?.unwrap_or_default();
    if let Some(group) = group_by_id(tx, &id)? {
        append_change(tx, d, &ChangeBody::GroupUpsert { group })?;
    }
    Ok(item("group", &g.name, &g.guid, outcome, String::new()))
}

fn import_membership(
    tx: &Connection,
    agent: &AgentAuth,
    m: &ImportMembership,
) -> Result<ImportItem, ApiError> {
    let name = format!("{} <- {}", m.group_guid, m.member_guid);
    let refused = |name: &str, why: String| {
        Ok(item(
            "membership",
            name,
            &m.member_guid,
            ImportOutcome::Refused,
            why,
        ))
    };
    let group = match linked(tx, agent.domain_id, &m.group_guid)? {
        Some(id) => group_by_id(tx, &id)?,
        None => None,
    };
    let Some(group) = group else {
        return refused(&name, "the group was not imported (it was refused, or is not in this request or an earlier one)".into());
    };
    let Some(member_id) = linked(tx, agent.domain_id, &m.member_guid)? else {
        return refused(
            &format!("{} <- {}", group.name, m.member_guid),
            "the member was not imported (it was refused, or is not in this request or an earlier one)".into(),
        );
    };
    let (member, member_type) = if let Some(u) = user_by_id(tx, &member_id)? {
        (u.username, MemberType::User)
    } else if let Some(g) = group_by_id(tx, &member_id)? {
        (g.name, MemberType::Group)
    } else {
        return refused(&name, "the member's cloud object is gone".into());
    };
    let name = format!("{} <- {member}", group.name);
    if member_type == MemberType::Group
        && (member_id == group.id || contains_group(tx, agent.domain_id, &member, &group.name)?)
    {
        return refused(
            &name,
            format!(
                "`{member}` already contains `{}`; adding it would make a loop",
                group.name
            ),
        );
    }
    let added = tx.execute(
        "INSERT INTO memberships (group_name, member, member_type, domain_id) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![group.name, member, member_type.as_str(), agent.domain_id],
    )? == 1;
    if !added {
        return Ok(item(
            "membership",
            &name,
            &m.member_guid,
            ImportOutcome::Already,
            String::new(),
        ));
    }
    append_change(
        tx,
        agent.domain_id,
        &ChangeBody::MembershipAdd(Membership {
            group_id: group.id,
            group: group.name,
            member_id,
            member,
            member_type,
        }),
    )?;
    Ok(item(
        "membership",
        &name,
        &m.member_guid,
        ImportOutcome::Created,
        String::new(),
    ))
}
