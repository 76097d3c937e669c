//! AD as a source (`GET /v1/source/cursor`, `POST /v1/source/changes`): the primary agent sends
//! AD's changes, read with DirSync from a cookie, and the cloud commits the objects and the new
//! cookie in one transaction, so a standby that takes over, or a reinstalled agent, resumes
//! exactly where the cloud is, and a restored agent state cannot rewind it (`cursor_moved`).
//!
//! Every object has one authority, kept in `users.source`: a user created from AD is AD's
//! (`ad`: read-only to the cloud's admin commands), one created in the cloud is the cloud's
//! (`cloud`: AD cannot change it; such a change is refused by name). AD's changes are not put in
//! the change feed, so they never travel back to the domain they came from.
//!
//! A user deleted in AD, or moved out of the scope, is suspended and kept (`deleted_at`), and is
//! restored when it comes back with the same objectGUID (AD's Recycle Bin, tombstone
//! reanimation). Users deleted longer ago than the retention are removed for good at the next
//! batch.

use super::*;
use ad_sync_api::api::{
    ImportUser, MAX_SOURCE_ITEMS, SourceCursor, SourceGroup, SourceGroups, SourceHeld, SourceItem,
    SourceOutcome, SourceRequest, SourceResponse, SourceUser, SourceUsers,
};
use ad_sync_api::mapping::{Kind, rows};
use std::collections::BTreeMap;

/// How long an object deleted in AD is kept (a user suspended) before it is removed from the
/// cloud, unless the domain says otherwise (`ad-sync-cloud domain retention`).
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest retention a domain may be given (10 years), and the shortest (a day).
pub const RETENTION_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;

/// How long `domain` keeps what AD deleted, in seconds.
pub(super) fn retention_of(conn: &Connection, domain: i64) -> db::Result<i64> {
    let days: Option<i64> = conn
        .prepare_cached("SELECT source_retention_days FROM domains WHERE id = ?1")?
        .query_row([domain], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(days.map_or(RETENTION.as_secs() as i64, |d| d * 24 * 3600))
}

fn cursor(conn: &Connection, domain_id: i64) -> db::Result<SourceCursor> {
    Ok(conn
        .prepare_cached("SELECT cookie, dc, agent_id, at FROM source_cursors WHERE domain_id = ?1")?
        .query_row([domain_id], |r| {
            Ok(SourceCursor {
                cookie: Some(r.get(0)?),
                dc: Some(r.get(1)?),
                agent_id: Some(r.get(2)?),
                at: Some(r.get(3)?),
            })
        })
        .optional()?
        .unwrap_or_default())
}

/// A stored user as this module compares it.
#[derive(Clone, PartialEq, Eq)]
struct Stored {
    id: String,
    username: String,
    given_name: String,
    surname: String,
    display_name: Option<String>,
    email: Option<String>,
    suspended: bool,
    source: String,
    deleted_at: Option<i64>,
    attributes: BTreeMap<String, String>,
}

fn stored(conn: &Connection, id: &str) -> db::Result<Option<Stored>> {
    conn.prepare_cached(
        "SELECT id, username, given_name, surname, display_name, email, suspended, source, deleted_at, attributes FROM users WHERE id = ?1",
    )?
    .query_row([id], |r| {
        let attrs: Option<String> = r.get(9)?;
        Ok(Stored {
            id: r.get(0)?,
            username: r.get(1)?,
            given_name: r.get(2)?,
            surname: r.get(3)?,
            display_name: r.get(4)?,
            email: r.get(5)?,
            suspended: r.get(6)?,
            source: r.get(7)?,
            deleted_at: r.get(8)?,
            attributes: attrs
                .and_then(|a| serde_json::from_str(&a).ok())
                .unwrap_or_default(),
        })
    })
    .optional()
}

fn item(guid: &str, id: Option<&str>, outcome: SourceOutcome, message: String) -> SourceItem {
    SourceItem {
        guid: guid.into(),
        id: id.map(str::to_string),
        outcome,
        message,
    }
}

/// Why a field of the request cannot be taken for a `kind`, or `None`.
fn field_problem(kind: Kind, fields: &BTreeMap<String, String>) -> Option<String> {
    fields
        .keys()
        .find(|f| !rows(kind).any(|r| r.field == f.as_str()))
        .map(|f| {
            let known: Vec<&str> = rows(kind).map(|r| r.field).collect();
            format!(
                "`{f}` is not a {} field the cloud keeps; the fields are {}",
                kind.section(),
                known.join(", ")
            )
        })
}

/// The user `s` becomes with `u`'s changes applied (fields absent stay; sent empty: cleared).
fn apply(s: &Stored, u: &SourceUser) -> Stored {
    let mut n = Stored {
        deleted_at: None,
        ..s.clone()
    };
    let opt = |v: &String| (!v.is_empty()).then(|| v.clone());
    for (f, v) in &u.fields {
        match f.as_str() {
            "username" => n.username = v.clone(),
            "given_name" => n.given_name = v.clone(),
            "surname" => n.surname = v.clone(),
            "display_name" => n.display_name = opt(v),
            "email" => n.email = opt(v),
            other => {
                if v.is_empty() {
                    n.attributes.remove(other);
                } else {
                    n.attributes.insert(other.to_string(), v.clone());
                }
            }
        }
    }
    if let Some(enabled) = u.enabled {
        n.suspended = !enabled;
    }
    n
}

/// Why the cloud cannot hold `n` (import's rules: what the cloud requires of any user).
fn refusal(n: &Stored) -> Option<String> {
    super::import::user_refusal(&ImportUser {
        guid: String::new(),
        username: n.username.clone(),
        given_name: n.given_name.clone(),
        surname: n.surname.clone(),
        display_name: n.display_name.clone(),
        email: n.email.clone(),
        enabled: !n.suspended,
    })
}

fn write(tx: &Connection, n: &Stored) -> db::Result<()> {
    let attrs = (!n.attributes.is_empty())
        .then(|| serde_json::to_string(&n.attributes).unwrap_or_default());
    tx.prepare_cached(
        "UPDATE users SET username = ?2, given_name = ?3, surname = ?4, display_name = ?5, email = ?6, suspended = ?7, deleted_at = ?8, attributes = ?9 WHERE id = ?1",
    )?
    .execute(params![
        n.id,
        n.username,
        n.given_name,
        n.surname,
        n.display_name,
        n.email,
        n.suspended,
        n.deleted_at,
        attrs
    ])?;
    Ok(())
}

/// Another user of the domain with `name`, if any (the name is the cloud's key per domain).
fn name_taken(tx: &Connection, domain: i64, name: &str, not_id: &str) -> db::Result<bool> {
    tx.prepare_cached(
        "SELECT COUNT(*) FROM users WHERE domain_id = ?1 AND username = ?2 AND id != ?3",
    )?
    .query_row(params![domain, name, not_id], |r| r.get::<_, i64>(0))
    .map(|n| n > 0)
}

/// Keeps what the cloud refused from AD until AD sends the object again in a form it takes (or
/// as gone): what the status page, `agents` and the alerts show.
fn record_refusals(tx: &Connection, domain: i64, items: &[SourceItem], now: i64) -> db::Result<()> {
    for i in items {
        if i.outcome == SourceOutcome::Refused {
            tx.prepare_cached(
                "INSERT INTO source_refusals (domain_id, guid, message, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(domain_id, guid) DO UPDATE SET message = ?3, at = ?4",
            )?
            .execute(params![domain, i.guid, i.message, now])?;
        } else {
            tx.prepare_cached("DELETE FROM source_refusals WHERE domain_id = ?1 AND guid = ?2")?
                .execute(params![domain, i.guid])?;
        }
    }
    Ok(())
}

/// AD as a source in one domain, as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOverview {
    pub domain: String,
    pub cursor: SourceCursor,
    pub users: usize,
    pub groups: usize,
    /// Users and groups deleted in AD (or out of its scope), kept for the retention.
    pub deleted: usize,
    /// How many the cloud refused, and the latest few (objectGUID, why).
    pub refused: usize,
    pub latest_refusals: Vec<(String, String)>,
    /// The primary agent's last full reconciliation of AD (unix seconds), as it reported it.
    pub last_reconcile: Option<i64>,
    /// The backlog: suspensions of AD's objects the primary agent holds by its deletion
    /// threshold, waiting for approval.
    pub held_from_ad: usize,
}

/// The refusals a status lists by name (the rest are counted).
pub const REFUSALS_LISTED: usize = 5;

/// The refusal of a change AD sent to a user or group whose authority is the cloud.
fn the_clouds(kind: Kind, guid: &str, id: &str, name: &str) -> SourceItem {
    item(
        guid,
        Some(id),
        SourceOutcome::Refused,
        format!(
            "the cloud {} `{name}` was created in the cloud, which is its authority; AD cannot change it (change it in the cloud)",
            kind.section()
        ),
    )
}

/// A user or group (`id`) AD sent as gone: marked deleted now and kept for the retention (a
/// user suspended too), or left as it is when it already was (`deleted_at`).
fn mark_gone(
    tx: &Connection,
    kind: Kind,
    guid: &str,
    id: &str,
    deleted_at: Option<i64>,
    now: i64,
) -> db::Result<SourceItem> {
    if deleted_at.is_some() {
        return Ok(item(
            guid,
            Some(id),
            SourceOutcome::Unchanged,
            String::new(),
        ));
    }
    let sql = if kind == Kind::Group {
        "UPDATE groups SET deleted_at = ?2 WHERE id = ?1"
    } else {
        "UPDATE users SET suspended = 1, deleted_at = ?2 WHERE id = ?1"
    };
    tx.execute(sql, params![id, now])?;
    Ok(item(
        guid,
        Some(id),
        SourceOutcome::Suspended,
        String::new(),
    ))
}

fn one_user(
    tx: &Connection,
    agent: &AgentAuth,
    u: &SourceUser,
    now: i64,
) -> Result<SourceItem, ApiError> {
    let guid = u.guid.as_str();
    if let Some(why) = field_problem(Kind::User, &u.fields) {
        return Ok(item(guid, None, SourceOutcome::Refused, why));
    }
    let linked = match super::import::linked(tx, agent.domain_id, guid)? {
        Some(id) => stored(tx, &id)?,
        None => None,
    };
    let Some(s) = linked else {
        if u.deleted {
            // Never in the cloud: nothing to keep.
            return Ok(item(guid, None, SourceOutcome::Unchanged, String::new()));
        }
        return create(tx, agent, u, now);
    };
    if s.source != "ad" {
        return Ok(the_clouds(Kind::User, guid, &s.id, &s.username));
    }
    if u.deleted {
        return Ok(mark_gone(tx, Kind::User, guid, &s.id, s.deleted_at, now)?);
    }
    let n = apply(&s, u);
    if let Some(why) = refusal(&n) {
        return Ok(item(guid, Some(&s.id), SourceOutcome::Refused, why));
    }
    if !n.username.eq_ignore_ascii_case(&s.username)
        && name_taken(tx, agent.domain_id, &n.username, &s.id)?
    {
        return Ok(item(
            guid,
            Some(&s.id),
            SourceOutcome::Refused,
            format!(
                "the cloud has another user named `{}`; rename one of them",
                n.username
            ),
        ));
    }
    if s == n {
        return Ok(item(
            guid,
            Some(&s.id),
            SourceOutcome::Unchanged,
            String::new(),
        ));
    }
    if n.username != s.username {
        tx.execute(
            "UPDATE memberships SET member = ?2 WHERE domain_id = ?3 AND member = ?1 AND member_type = 'user'",
            params![s.username, n.username, agent.domain_id],
        )?;
    }
    write(tx, &n)?;
    let outcome = if s.deleted_at.is_some() {
        SourceOutcome::Restored
    } else {
        SourceOutcome::Updated
    };
    Ok(item(guid, Some(&s.id), outcome, String::new()))
}

fn create(
    tx: &Connection,
    agent: &AgentAuth,
    u: &SourceUser,
    now: i64,
) -> Result<SourceItem, ApiError> {
    let guid = u.guid.as_str();
    let blank = Stored {
        id: String::new(),
        username: String::new(),
        given_name: String::new(),
        surname: String::new(),
        display_name: None,
        email: None,
        suspended: false,
        source: "ad".into(),
        deleted_at: None,
        attributes: BTreeMap::new(),
    };
    let mut n = apply(&blank, u);
    if !u.fields.contains_key("username") {
        return Ok(item(
            guid,
            None,
            SourceOutcome::Refused,
            "a user new to the cloud needs its `username`: send the whole record the first time"
                .into(),
        ));
    }
    if let Some(why) = refusal(&n) {
        return Ok(item(guid, None, SourceOutcome::Refused, why));
    }
    if user_exists(tx, agent.domain_id, &n.username)? {
        return Ok(item(
            guid,
            None,
            SourceOutcome::Refused,
            format!(
                "the cloud already has a user named `{}` that does not come from this AD object; rename one of them, or link them with `ad-sync-agent import`",
                n.username
            ),
        ));
    }
    n.id = new_id("u")?;
    tx.execute(
        "INSERT INTO users (domain_id, username, id, given_name, surname, email, suspended, display_name, source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'ad')",
        params![
            agent.domain_id,
            n.username,
            n.id,
            n.given_name,
            n.surname,
            n.email,
            n.suspended,
            n.display_name
        ],
    )?;
    write(tx, &n)?;
    super::import::add_link(tx, agent, &n.id, guid, now)?;
    join_groups(tx, agent.domain_id, guid, &n.username, "user")?;
    Ok(item(
        guid,
        Some(&n.id),
        SourceOutcome::Created,
        String::new(),
    ))
}

/// Removes the users and groups deleted in AD longer ago than `RETENTION`, with their links,
/// memberships and AD's membership facts about them.
fn purge(tx: &Connection, domain: i64, now: i64) -> db::Result<()> {
    let before = now - retention_of(tx, domain)?;
    // (the table, its name column, the memberships that go with one of its rows)
    let tables = [
        (
            "users",
            "username",
            "DELETE FROM memberships WHERE domain_id = ?1 AND member = ?2 AND member_type = 'user'",
        ),
        (
            "groups",
            "name",
            "DELETE FROM memberships WHERE domain_id = ?1 AND (group_name = ?2 OR (member = ?2 AND member_type = 'group'))",
        ),
    ];
    super::contacts::purge(tx, domain, before)?;
    for (table, name_column, memberships) in tables {
        let gone: Vec<(String, String)> = tx
            .prepare_cached(&format!(
                "SELECT id, {name_column} FROM {table} WHERE domain_id = ?1 AND source = 'ad' AND deleted_at IS NOT NULL AND deleted_at < ?2"
            ))?
            .query_map(params![domain, before], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (id, name) in gone {
            tx.execute(memberships, params![domain, name])?;
            forget_facts(tx, domain, &id)?;
            tx.execute("DELETE FROM links WHERE object_id = ?1", [&id])?;
            tx.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [&id])?;
        }
    }
    Ok(())
}

/// The statements of `forget_facts`: one per index (one statement with `OR` would read all of
/// the domain's facts).
const FORGET_FACTS: [&str; 2] = [
    "DELETE FROM source_members WHERE domain_id = ?1 AND group_guid IN (SELECT guid FROM links WHERE object_id = ?2)",
    "DELETE FROM source_members WHERE domain_id = ?1 AND member_guid IN (SELECT guid FROM links WHERE object_id = ?2)",
];

/// The groups AD says the object with objectGUID ?2 is a member of, joined as ?3 of type ?4.
const JOIN_GROUPS: &str = "INSERT INTO memberships (domain_id, group_name, member, member_type)
         SELECT ?1, g.name, ?3, ?4 FROM source_members sm
         JOIN links l ON l.domain_id = sm.domain_id AND l.guid = sm.group_guid
         JOIN groups g ON g.id = l.object_id AND g.source = 'ad'
         WHERE sm.domain_id = ?1 AND sm.member_guid = ?2 ON CONFLICT DO NOTHING";

/// AD's membership facts about the object `id` removed for good: as a group and as a member.
fn forget_facts(tx: &Connection, domain: i64, id: &str) -> db::Result<()> {
    for sql in FORGET_FACTS {
        tx.prepare_cached(sql)?.execute(params![domain, id])?;
    }
    Ok(())
}

/// The cloud object AD's `guid` is, as a member: its name and member type (a user or group the
/// cloud holds linked to it in this domain, whatever its authority).
fn member_by_guid(
    tx: &Connection,
    domain: i64,
    guid: &str,
) -> db::Result<Option<(String, &'static str)>> {
    tx.prepare_cached(
        "SELECT u.username, 'user' FROM links l JOIN users u ON u.id = l.object_id WHERE l.domain_id = ?1 AND l.guid = ?2
         UNION ALL
         SELECT g.name, 'group' FROM links l JOIN groups g ON g.id = l.object_id WHERE l.domain_id = ?1 AND l.guid = ?2",
    )?
    .query_row(params![domain, guid], |r| {
        let t: String = r.get(1)?;
        Ok((r.get(0)?, if t == "group" { "group" } else { "user" }))
    })
    .optional()
}

/// A user or group just created from AD (`guid`, named `name`) joins the AD groups AD says it
/// is a member of: the facts were kept while the cloud did not hold it.
fn join_groups(
    tx: &Connection,
    domain: i64,
    guid: &str,
    name: &str,
    member_type: &str,
) -> db::Result<()> {
    tx.prepare_cached(JOIN_GROUPS)?
        .execute(params![domain, guid, name, member_type])?;
    Ok(())
}

/// Records AD's membership facts for the group `g` (the whole list, or the values added and
/// removed). Returns whether they changed, and the member GUIDs whose cloud membership must
/// follow (`None`: all of them).
fn record_facts(
    tx: &Connection,
    domain: i64,
    g: &SourceGroup,
) -> db::Result<(bool, Option<Vec<String>>)> {
    let norm = |v: &Vec<String>| -> Vec<String> {
        let mut v: Vec<String> = v
            .iter()
            .filter_map(|m| ad_sync_api::guid::normalize_guid_string(m))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if let Some(all) = &g.members {
        let want = norm(all);
        let had: Vec<String> = tx
            .prepare_cached(
                "SELECT member_guid FROM source_members WHERE domain_id = ?1 AND group_guid = ?2 ORDER BY member_guid",
            )?
            .query_map(params![domain, g.guid], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if had == want {
            return Ok((false, Some(Vec::new())));
        }
        tx.execute(
            "DELETE FROM source_members WHERE domain_id = ?1 AND group_guid = ?2",
            params![domain, g.guid],
        )?;
        let mut add = tx.prepare_cached(
            "INSERT INTO source_members (domain_id, group_guid, member_guid) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?;
        for m in &want {
            add.execute(params![domain, g.guid, m])?;
        }
        return Ok((true, None));
    }
    let mut changed = false;
    let mut touched = Vec::new();
    for m in norm(&g.added) {
        changed |= tx.execute(
            "INSERT INTO source_members (domain_id, group_guid, member_guid) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![domain, g.guid, m],
        )? > 0;
        touched.push(m);
    }
    for m in norm(&g.removed) {
        changed |= tx.execute(
            "DELETE FROM source_members WHERE domain_id = ?1 AND group_guid = ?2 AND member_guid = ?3",
            params![domain, g.guid, m],
        )? > 0;
        touched.push(m);
    }
    Ok((changed, Some(touched)))
}

/// The cloud memberships of the AD group `name` made to follow AD's facts: for `only` those
/// member GUIDs, or all (`None`: the group's memberships rebuilt from the facts).
fn follow_facts(
    tx: &Connection,
    domain: i64,
    group_guid: &str,
    name: &str,
    only: Option<&[String]>,
) -> db::Result<()> {
    let guids: Vec<String> = match only {
        Some(o) => o.to_vec(),
        None => {
            tx.execute(
                "DELETE FROM memberships WHERE domain_id = ?1 AND group_name = ?2",
                params![domain, name],
            )?;
            tx.prepare_cached(
                "SELECT member_guid FROM source_members WHERE domain_id = ?1 AND group_guid = ?2",
            )?
            .query_map(params![domain, group_guid], |r| r.get(0))?
            .collect::<Result<_, _>>()?
        }
    };
    for m in guids {
        let Some((member, member_type)) = member_by_guid(tx, domain, &m)? else {
            continue;
        };
        let fact: bool = tx
            .prepare_cached(
                "SELECT COUNT(*) FROM source_members WHERE domain_id = ?1 AND group_guid = ?2 AND member_guid = ?3",
            )?
            .query_row(params![domain, group_guid, m], |r| r.get::<_, i64>(0))?
            > 0;
        // A group is never its own member (AD refuses it too).
        if member_type == "group" && member.eq_ignore_ascii_case(name) {
            continue;
        }
        let sql = if fact {
            "INSERT INTO memberships (domain_id, group_name, member, member_type) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM memberships WHERE domain_id = ?1 AND group_name = ?2 AND member = ?3 AND member_type = ?4"
        };
        tx.execute(sql, params![domain, name, member, member_type])?;
    }
    Ok(())
}

/// A stored group as this module compares it.
#[derive(Clone, PartialEq, Eq)]
struct StoredGroup {
    id: String,
    name: String,
    description: Option<String>,
    source: String,
    deleted_at: Option<i64>,
}

fn stored_group(conn: &Connection, id: &str) -> db::Result<Option<StoredGroup>> {
    conn.prepare_cached(
        "SELECT id, name, description, source, deleted_at FROM groups WHERE id = ?1",
    )?
    .query_row([id], |r| {
        Ok(StoredGroup {
            id: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            source: r.get(3)?,
            deleted_at: r.get(4)?,
        })
    })
    .optional()
}

/// Why the cloud cannot hold a group named `name`, or `None`.
fn group_name_problem(name: &str) -> Option<String> {
    super::validate_group_name(name)
        .err()
        .map(|e| e.to_string())
}

fn one_group(
    tx: &Connection,
    agent: &AgentAuth,
    g: &SourceGroup,
    now: i64,
) -> Result<SourceItem, ApiError> {
    let guid = g.guid.as_str();
    let domain = agent.domain_id;
    if let Some(why) = field_problem(Kind::Group, &g.fields) {
        return Ok(item(guid, None, SourceOutcome::Refused, why));
    }
    // AD's facts are kept whatever becomes of the group's own fields: a group refused now
    // (its name taken) has its members when it is taken later.
    let (facts_changed, follow) = if g.deleted {
        (false, Some(Vec::new()))
    } else {
        record_facts(tx, domain, g)?
    };
    let linked = match super::import::linked(tx, domain, guid)? {
        Some(id) => stored_group(tx, &id)?,
        None => None,
    };
    let Some(s) = linked else {
        if g.deleted {
            return Ok(item(guid, None, SourceOutcome::Unchanged, String::new()));
        }
        return create_group(tx, agent, g, now);
    };
    if s.source != "ad" {
        return Ok(the_clouds(Kind::Group, guid, &s.id, &s.name));
    }
    if g.deleted {
        return Ok(mark_gone(tx, Kind::Group, guid, &s.id, s.deleted_at, now)?);
    }
    let mut n = StoredGroup {
        deleted_at: None,
        ..s.clone()
    };
    for (f, v) in &g.fields {
        match f.as_str() {
            "name" => n.name = v.clone(),
            _ => n.description = (!v.is_empty()).then(|| v.clone()),
        }
    }
    if let Some(why) = group_name_problem(&n.name) {
        return Ok(item(guid, Some(&s.id), SourceOutcome::Refused, why));
    }
    if !n.name.eq_ignore_ascii_case(&s.name) && super::group_exists(tx, domain, &n.name)? {
        return Ok(item(
            guid,
            Some(&s.id),
            SourceOutcome::Refused,
            format!(
                "the cloud has another group named `{}`; rename one of them",
                n.name
            ),
        ));
    }
    if n != s {
        if n.name != s.name {
            tx.execute(
                "UPDATE memberships SET group_name = ?2 WHERE domain_id = ?3 AND group_name = ?1",
                params![s.name, n.name, domain],
            )?;
            tx.execute(
                "UPDATE memberships SET member = ?2 WHERE domain_id = ?3 AND member = ?1 AND member_type = 'group'",
                params![s.name, n.name, domain],
            )?;
        }
        tx.execute(
            "UPDATE groups SET name = ?2, description = ?3, deleted_at = NULL WHERE id = ?1",
            params![n.id, n.name, n.description],
        )?;
    }
    if facts_changed {
        follow_facts(tx, domain, guid, &n.name, follow.as_deref())?;
    }
    let outcome = if s.deleted_at.is_some() {
        SourceOutcome::Restored
    } else if n != s || facts_changed {
        SourceOutcome::Updated
    } else {
        SourceOutcome::Unchanged
    };
    Ok(item(guid, Some(&s.id), outcome, String::new()))
}

fn create_group(
    tx: &Connection,
    agent: &AgentAuth,
    g: &SourceGroup,
    now: i64,
) -> Result<SourceItem, ApiError> {
    let guid = g.guid.as_str();
    let Some(name) = g.fields.get("name").filter(|n| !n.is_empty()) else {
        return Ok(item(
            guid,
            None,
            SourceOutcome::Refused,
            "a group new to the cloud needs its `name`: send the whole record the first time"
                .into(),
        ));
    };
    if let Some(why) = group_name_problem(name) {
        return Ok(item(guid, None, SourceOutcome::Refused, why));
    }
    if super::group_exists(tx, agent.domain_id, name)? {
        return Ok(item(
            guid,
            None,
            SourceOutcome::Refused,
            format!(
                "the cloud already has a group named `{name}` that does not come from this AD object; rename one of them, or link them with `ad-sync-agent import`"
            ),
        ));
    }
    let id = new_id("g")?;
    let description = g.fields.get("description").filter(|d| !d.is_empty());
    tx.execute(
        "INSERT INTO groups (domain_id, name, id, source, description) VALUES (?1, ?2, ?3, 'ad', ?4)",
        params![agent.domain_id, name, id, description],
    )?;
    super::import::add_link(tx, agent, &id, guid, now)?;
    follow_facts(tx, agent.domain_id, guid, name, None)?;
    join_groups(tx, agent.domain_id, guid, name, "group")?;
    Ok(item(guid, Some(&id), SourceOutcome::Created, String::new()))
}

/// The live objects, users, groups and contacts, the cloud holds from AD in `domain`.
fn live_count(conn: &Connection, domain: i64) -> db::Result<usize> {
    conn.prepare_cached(
        "SELECT (SELECT COUNT(*) FROM links l JOIN users u ON u.id = l.object_id
                 WHERE l.domain_id = ?1 AND u.source = 'ad' AND u.deleted_at IS NULL)
              + (SELECT COUNT(*) FROM links l JOIN groups g ON g.id = l.object_id
                 WHERE l.domain_id = ?1 AND g.source = 'ad' AND g.deleted_at IS NULL)
              + (SELECT COUNT(*) FROM links l JOIN contacts c ON c.id = l.object_id
                 WHERE l.domain_id = ?1 AND c.deleted_at IS NULL)",
    )?
    .query_row([domain], |r| r.get::<_, i64>(0))
    .map(|n| n.max(0) as usize)
}

/// `live` for a page of a list: counted on the first page only (no `after`), 0 (left out) on
/// the others. Counting reads every live object of the domain, so counting on every page made
/// a list of 50,000 users quadratic (260 ms a page, 13 s of a 24 s first export).
fn first_page_live(conn: &Connection, domain: i64, after: Option<&str>) -> db::Result<usize> {
    match after {
        None => live_count(conn, domain),
        Some(_) => Ok(0),
    }
}

fn held(r: &db::Row) -> db::Result<SourceHeld> {
    let deleted_at: Option<i64> = r.get(3)?;
    let kind: String = r.get(4)?;
    Ok(SourceHeld {
        guid: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        deleted: deleted_at.is_some(),
        group: kind == "group",
        contact: kind == "contact",
    })
}

/// The users (`users`), groups (`groups`) or contacts (`contacts`) the cloud holds from AD, in objectGUID order
/// after `after`, at most `MAX_SOURCE_ITEMS` (and whether there are more).
fn held_page(
    conn: &Connection,
    domain: i64,
    table: &str,
    after: Option<&str>,
) -> db::Result<(Vec<SourceHeld>, bool)> {
    let sql = match table {
        "contacts" => {
            "SELECT l.guid, c.id, c.mail, c.deleted_at, 'contact' FROM links l JOIN contacts c ON c.id = l.object_id
             WHERE l.domain_id = ?1 AND l.guid > ?2
             ORDER BY l.guid LIMIT ?3"
        }
        "groups" => {
            "SELECT l.guid, g.id, g.name, g.deleted_at, 'group' FROM links l JOIN groups g ON g.id = l.object_id
             WHERE l.domain_id = ?1 AND g.source = 'ad' AND l.guid > ?2
             ORDER BY l.guid LIMIT ?3"
        }
        _ => {
            "SELECT l.guid, u.id, u.username, u.deleted_at, 'user' FROM links l JOIN users u ON u.id = l.object_id
             WHERE l.domain_id = ?1 AND u.source = 'ad' AND l.guid > ?2
             ORDER BY l.guid LIMIT ?3"
        }
    };
    let mut items: Vec<SourceHeld> = conn
        .prepare_cached(sql)?
        .query_map(
            params![
                domain,
                after.unwrap_or_default(),
                (MAX_SOURCE_ITEMS + 1) as i64
            ],
            held,
        )?
        .collect::<Result<_, _>>()?;
    let more = items.len() > MAX_SOURCE_ITEMS;
    items.truncate(MAX_SOURCE_ITEMS);
    Ok((items, more))
}

impl Store {
    /// Sets how long `domain` keeps what AD deleted before removing it for good.
    pub fn set_source_retention(&self, domain: i64, days: u32) -> Result<(), AdminError> {
        if !RETENTION_DAYS.contains(&days) {
            return Err(AdminError::Invalid(format!(
                "--days {days}: give {} to {} days (the default is 30)",
                RETENTION_DAYS.start(),
                RETENTION_DAYS.end()
            )));
        }
        self.admin_tx(|tx| {
            tx.execute(
                "UPDATE domains SET source_retention_days = ?2 WHERE id = ?1",
                params![domain, days],
            )?;
            Ok(())
        })
    }

    /// How long `domain` keeps what AD deleted, in seconds.
    pub fn source_retention(&self, domain: i64) -> Result<i64, AdminError> {
        let conn = self.lock();
        retention_of(&conn, domain).map_err(self.admin_db())
    }

    /// The users the cloud holds from AD in the agent's domain, in objectGUID order, after
    /// `after` (at most `MAX_SOURCE_ITEMS`).
    pub fn source_users(
        &self,
        agent: &AgentAuth,
        after: Option<&str>,
    ) -> Result<SourceUsers, ApiError> {
        let conn = self.lock();
        let (users, more) = held_page(&conn, agent.domain_id, "users", after)?;
        let live = first_page_live(&conn, agent.domain_id, after)?;
        Ok(SourceUsers { users, more, live })
    }

    /// The groups the cloud holds from AD in the agent's domain, as `source_users` lists users.
    pub fn source_groups(
        &self,
        agent: &AgentAuth,
        after: Option<&str>,
    ) -> Result<SourceGroups, ApiError> {
        let conn = self.lock();
        let (groups, more) = held_page(&conn, agent.domain_id, "groups", after)?;
        let live = first_page_live(&conn, agent.domain_id, after)?;
        Ok(SourceGroups { groups, more, live })
    }

    /// The contacts the cloud holds from AD in the agent's domain, as `source_users` lists
    /// users.
    pub fn source_contacts(
        &self,
        agent: &AgentAuth,
        after: Option<&str>,
    ) -> Result<ad_sync_api::api::SourceContacts, ApiError> {
        let conn = self.lock();
        let (contacts, more) = held_page(&conn, agent.domain_id, "contacts", after)?;
        let live = first_page_live(&conn, agent.domain_id, after)?;
        Ok(ad_sync_api::api::SourceContacts {
            contacts,
            more,
            live,
        })
    }

    /// Those of `guids` the cloud holds from AD in the agent's domain.
    pub fn source_lookup(
        &self,
        agent: &AgentAuth,
        guids: &[String],
    ) -> Result<SourceUsers, ApiError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT l.guid, u.id, u.username, u.deleted_at, 'user' FROM links l JOIN users u ON u.id = l.object_id
             WHERE l.domain_id = ?1 AND u.source = 'ad' AND l.guid = ?2
             UNION ALL
             SELECT l.guid, g.id, g.name, g.deleted_at, 'group' FROM links l JOIN groups g ON g.id = l.object_id
             WHERE l.domain_id = ?1 AND g.source = 'ad' AND l.guid = ?2
             UNION ALL
             SELECT l.guid, c.id, c.mail, c.deleted_at, 'contact' FROM links l JOIN contacts c ON c.id = l.object_id
             WHERE l.domain_id = ?1 AND l.guid = ?2",
        )?;
        let mut users = Vec::new();
        for g in guids {
            if let Some(h) = stmt
                .query_row(params![agent.domain_id, g], held)
                .optional()?
            {
                users.push(h);
            }
        }
        users.sort_by(|a, b| a.guid.cmp(&b.guid));
        users.dedup_by(|a, b| a.guid == b.guid);
        drop(stmt);
        let live = live_count(&conn, agent.domain_id)?;
        Ok(SourceUsers {
            users,
            more: false,
            live,
        })
    }

    /// Every domain that has had AD's changes, with what it holds from AD and what it refused.
    pub fn source_overview(&self) -> Result<Vec<SourceOverview>, ApiError> {
        let conn = self.lock();
        let domains: Vec<(i64, String)> = conn
            .prepare(
                "SELECT d.id, d.dn FROM domains d JOIN source_cursors c ON c.domain_id = d.id ORDER BY d.dn_key",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(domains.len());
        for (id, dn) in domains {
            let count = |sql: &str| -> db::Result<usize> {
                conn.prepare_cached(sql)?
                    .query_row([id], |r| r.get::<_, i64>(0))
                    .map(|n| n.max(0) as usize)
            };
            let latest_refusals = conn
                .prepare_cached(
                    "SELECT guid, message FROM source_refusals WHERE domain_id = ?1 ORDER BY at DESC, guid LIMIT ?2",
                )?
                .query_map(params![id, REFUSALS_LISTED as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            let (last_reconcile, held_from_ad): (Option<i64>, i64) = conn
                .prepare_cached(
                    "SELECT a.last_reconcile, a.held_from_ad FROM domains d JOIN agents a ON a.id = d.primary_agent WHERE d.id = ?1",
                )?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .unwrap_or((None, 0));
            out.push(SourceOverview {
                last_reconcile,
                held_from_ad: held_from_ad.max(0) as usize,
                domain: dn,
                cursor: cursor(&conn, id)?,
                users: count(
                    "SELECT COUNT(*) FROM users WHERE domain_id = ?1 AND source = 'ad' AND deleted_at IS NULL",
                )?,
                groups: count(
                    "SELECT COUNT(*) FROM groups WHERE domain_id = ?1 AND source = 'ad' AND deleted_at IS NULL",
                )?,
                deleted: count(
                    "SELECT (SELECT COUNT(*) FROM users WHERE domain_id = ?1 AND source = 'ad' AND deleted_at IS NOT NULL)
                          + (SELECT COUNT(*) FROM groups WHERE domain_id = ?1 AND source = 'ad' AND deleted_at IS NOT NULL)",
                )?,
                refused: count("SELECT COUNT(*) FROM source_refusals WHERE domain_id = ?1")?,
                latest_refusals,
            });
        }
        Ok(out)
    }

    pub fn source_cursor(&self, agent: &AgentAuth) -> Result<SourceCursor, ApiError> {
        let conn = self.lock();
        Ok(cursor(&conn, agent.domain_id)?)
    }

    pub fn source_changes(
        &self,
        agent: &AgentAuth,
        req: &SourceRequest,
        now: i64,
    ) -> Result<SourceResponse, ApiError> {
        self.write(|tx| {
        super::require_primary(
            tx,
            agent,
            "alone sends AD's changes to the cloud (a standby reads the cursor when it takes over)",
        )?;
        let at = cursor(tx, agent.domain_id)?;
        if !req.partial
            && at.cookie.as_deref() == Some(req.cookie.as_str())
            && at.cookie.as_deref() != req.after.as_deref()
        {
            // This very batch was committed; its answer was lost on the way.
            return Ok(SourceResponse {
                replayed: true,
                items: Vec::new(),
                cursor: at,
            });
        }
        if at.cookie.as_deref() != req.after.as_deref() {
            return Err(ApiError::new(
                ErrorCode::CursorMoved,
                match &at.cookie {
                    Some(_) => format!(
                        "the cloud's AD cursor for this domain is elsewhere (last moved by {} at {}): this batch was read from another point; read GET /v1/source/cursor and go on from there",
                        at.agent_id.as_deref().unwrap_or("an agent"),
                        at.at.map(ad_sync_api::time_fmt::unix_to_text).unwrap_or_default()
                    ),
                    None => "the cloud has no AD cursor for this domain yet: send the first batch of a full read, without `after`".to_string(),
                },
            ));
        }
        let mut items = Vec::with_capacity(req.users.len() + req.groups.len());
        for u in &req.users {
            items.push(one_user(tx, agent, u, now)?);
        }
        for g in &req.groups {
            items.push(one_group(tx, agent, g, now)?);
        }
        for c in &req.contacts {
            items.push(super::contacts::one_contact(tx, agent, c, now)?);
        }
        record_refusals(tx, agent.domain_id, &items, now)?;
        if !req.partial {
            tx.execute(
                "INSERT INTO source_cursors (domain_id, cookie, dc, agent_id, at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(domain_id) DO UPDATE SET cookie = ?2, dc = ?3, agent_id = ?4, at = ?5",
                params![agent.domain_id, req.cookie, req.dc, agent.agent_id, now],
            )?;
        }
        purge(tx, agent.domain_id, now)?;
        super::mirror::reflect_from(tx, agent.domain_id)?;
        let cursor = cursor(tx, agent.domain_id)?;
        Ok(SourceResponse {
            replayed: false,
            items,
            cursor,
        })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ad_sync_api::api::HeartbeatRequest;

    /// A user deleted in AD is kept, suspended, for `RETENTION`, then removed with its link at
    /// the next batch; one deleted a moment less long ago stays.
    #[test]
    fn users_deleted_in_ad_are_kept_for_the_retention_then_removed() {
        let (_dir, store, agent, t0) = primary();
        let batch = |after: Option<&str>, cookie: &str, users: Vec<SourceUser>, now: i64| {
            store
                .source_changes(
                    &agent,
                    &SourceRequest {
                        after: after.map(str::to_string),
                        cookie: cookie.into(),
                        dc: "dc1".into(),
                        contacts: Vec::new(),
                        users,
                        groups: Vec::new(),
                        partial: false,
                    },
                    now,
                )
                .unwrap_or_else(|e| panic!("{e:?}"))
        };
        batch(None, "c1", vec![user(1, false), user(2, false)], t0);
        let day = 24 * 3600;
        batch(Some("c1"), "c2", vec![user(1, true)], t0 + day);
        batch(Some("c2"), "c3", vec![user(2, true)], t0 + 2 * day);
        let retention = RETENTION.as_secs() as i64;
        let names = || -> Vec<String> {
            store
                .user_list(agent.domain_id)
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .map(|l| l.name)
                .collect()
        };
        // Just before user 1's retention ends, both are kept.
        batch(Some("c3"), "c4", vec![], t0 + day + retention);
        assert_eq!(names(), ["u1", "u2"]);
        // A second past it, user 1 is removed for good; user 2 (deleted a day later) stays.
        batch(Some("c4"), "c5", vec![], t0 + day + retention + 1);
        assert_eq!(names(), ["u2"]);
        let conn = store.lock();
        let links: i64 = conn
            .query_row("SELECT COUNT(*) FROM links", [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(links, 1, "the removed user's link went with it");
        drop(conn);
        // The domain's own retention: a day or ten years at most; a shorter one removes user 2
        // at the next batch.
        assert!(store.set_source_retention(agent.domain_id, 0).is_err());
        assert!(store.set_source_retention(agent.domain_id, 3651).is_err());
        store
            .set_source_retention(agent.domain_id, 40)
            .unwrap_or_else(|e| panic!("{e}"));
        batch(Some("c5"), "c6", vec![], t0 + day + retention + 2);
        assert_eq!(names(), ["u2"], "40 days: still kept");
        store
            .set_source_retention(agent.domain_id, 2)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.source_retention(agent.domain_id).unwrap_or_default(),
            2 * day
        );
        batch(Some("c6"), "c7", vec![], t0 + day + retention + 3);
        assert!(names().is_empty(), "{:?}", names());
    }

    /// What the reconciliation compares with: every user the cloud holds from AD, in objectGUID
    /// order, page by page with nothing skipped or repeated, the deleted ones marked; and the
    /// lookup answers only for those it holds from AD (never a cloud user).
    #[test]
    fn the_users_from_ad_are_listed_in_guid_order_and_looked_up_by_guid() {
        let (_dir, store, agent, t0) = primary();
        let n = MAX_SOURCE_ITEMS + 5;
        let mut after = None;
        for (i, part) in (0..n as u32)
            .rev()
            .collect::<Vec<_>>()
            .chunks(MAX_SOURCE_ITEMS)
            .enumerate()
        {
            let cookie = format!("c{i}");
            store
                .source_changes(
                    &agent,
                    &SourceRequest {
                        after: after.clone(),
                        cookie: cookie.clone(),
                        dc: "dc1".into(),
                        contacts: Vec::new(),
                        users: part.iter().map(|&k| user(k, false)).collect(),
                        groups: Vec::new(),
                        partial: false,
                    },
                    t0,
                )
                .unwrap_or_else(|e| panic!("{e:?}"));
            after = Some(cookie);
        }
        // User 3 is deleted in AD: still held (suspended, for the retention), marked deleted.
        store
            .source_changes(
                &agent,
                &SourceRequest {
                    after: after.clone(),
                    cookie: "last".into(),
                    dc: "dc1".into(),
                    contacts: Vec::new(),
                    users: vec![user(3, true)],
                    groups: Vec::new(),
                    partial: false,
                },
                t0,
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
        let mut seen = Vec::new();
        let mut from = None;
        let mut pages = 0;
        loop {
            let page = store
                .source_users(&agent, from.as_deref())
                .unwrap_or_else(|e| panic!("{e:?}"));
            pages += 1;
            from = page.users.last().map(|u| u.guid.clone());
            seen.extend(page.users);
            if !page.more {
                break;
            }
        }
        assert_eq!(pages, 2);
        assert_eq!(seen.len(), n, "every user once");
        assert!(seen.windows(2).all(|w| w[0].guid < w[1].guid), "in order");
        let deleted: Vec<&str> = seen
            .iter()
            .filter(|u| u.deleted)
            .map(|u| u.name.as_str())
            .collect();
        assert_eq!(deleted, ["u3"]);
        let first = store
            .source_users(&agent, None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(first.live, n - 1, "the live ones: not the deleted user");
        // Counted on the first page only: the later pages leave it out.
        let second = store
            .source_users(&agent, first.users.last().map(|u| u.guid.as_str()))
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!second.users.is_empty());
        assert_eq!(second.live, 0);
        assert!(
            !serde_json::to_string(&second)
                .unwrap_or_default()
                .contains("\"live\""),
            "a later page leaves `live` out"
        );
        // A cloud user linked to an AD object (an import's link) is the cloud's, not AD's:
        // never listed, never looked up.
        store
            .user_add(agent.domain_id, "cloudy", "C", "L", None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let cloudy = "77777777-0000-0000-0000-000000000000";
        {
            let conn = store.lock();
            conn.execute(
                "INSERT INTO links (object_id, domain_id, guid, agent_id, at) SELECT id, ?1, ?2, 'a', 0 FROM users WHERE username = 'cloudy'",
                params![agent.domain_id, cloudy],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let all = store
            .source_users(&agent, None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(all.users.iter().all(|u| u.guid != cloudy));
        let known = |k: u32| user(k, false).guid;
        let looked = store
            .source_lookup(
                &agent,
                &[
                    known(7),
                    known(1),
                    "99999999-0000-0000-0000-000000000000".into(),
                    known(7),
                    cloudy.into(),
                ],
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            looked
                .users
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>(),
            ["u1", "u7"]
        );
        assert!(!looked.more);
    }

    /// A group from AD: created with its name and description, its members whole or changed
    /// by value (a member not yet in the cloud joins when it arrives), renamed with its
    /// memberships, nested in another, marked deleted and kept with its members, restored, and
    /// removed for good after the retention; the cloud's admin commands cannot change it, and
    /// a cloud group of the same name is never taken over.
    #[test]
    fn groups_from_ad_keep_ads_membership_by_guid() {
        let (_dir, store, agent, t0) = primary();
        let mut at = 0;
        let mut batch = |users: Vec<SourceUser>, groups: Vec<SourceGroup>, now: i64| {
            let after = (at > 0).then(|| format!("c{at}"));
            at += 1;
            store
                .source_changes(
                    &agent,
                    &SourceRequest {
                        after,
                        cookie: format!("c{at}"),
                        dc: "dc1".into(),
                        contacts: Vec::new(),
                        users,
                        groups,
                        partial: false,
                    },
                    now,
                )
                .unwrap_or_else(|e| panic!("{e:?}"))
                .items
                .into_iter()
                .map(|i| (i.outcome, i.message))
                .collect::<Vec<_>>()
        };
        let guid = |n: u32| user(n, false).guid;
        let group =
            |n: u32, name: &str, members: Option<Vec<u32>>, added: Vec<u32>, removed: Vec<u32>| {
                let g = |v: Vec<u32>| v.into_iter().map(guid).collect::<Vec<_>>();
                SourceGroup {
                    guid: guid(n),
                    deleted: false,
                    fields: [("name", name), ("description", "from AD")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    members: members.map(g),
                    added: g(added),
                    removed: g(removed),
                }
            };
        let listed = |name: &str| {
            store
                .group_list(agent.domain_id)
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .find(|g| g.name == name)
                .map(|g| (g.members, g.source, g.deleted_at.is_some()))
        };
        use SourceOutcome::*;
        // u1 and u2 arrive with Staff, whose members are u1 and u3 (not in the cloud yet).
        let r = batch(
            vec![user(1, false), user(2, false)],
            vec![group(100, "Staff", Some(vec![1, 3]), vec![], vec![])],
            t0,
        );
        assert_eq!(
            r.iter().map(|x| x.0).collect::<Vec<_>>(),
            [Created, Created, Created]
        );
        assert_eq!(
            listed("Staff"),
            Some((vec!["u1".into()], "ad".into(), false))
        );
        // u3 arrives: it joins Staff without Staff being sent.
        batch(vec![user(3, false)], vec![], t0);
        assert_eq!(
            listed("Staff").map(|l| l.0),
            Some(vec!["u1".into(), "u3".into()])
        );
        // Values: u2 added, u1 removed; renamed; a nested group Leads is added to it.
        let r = batch(
            vec![],
            vec![
                group(101, "Leads", Some(vec![3]), vec![], vec![]),
                group(100, "Staff-All", None, vec![2, 101], vec![1]),
            ],
            t0,
        );
        assert_eq!(
            r.iter().map(|x| x.0).collect::<Vec<_>>(),
            [Created, Updated]
        );
        assert_eq!(listed("Staff"), None);
        assert_eq!(
            listed("Staff-All").map(|l| l.0),
            Some(vec!["Leads".into(), "u2".into(), "u3".into()])
        );
        // The same values again change nothing.
        let r = batch(
            vec![],
            vec![group(100, "Staff-All", None, vec![2], vec![1])],
            t0,
        );
        assert_eq!(r[0].0, Unchanged);
        // The cloud's commands cannot change a group AD is the authority of.
        for e in [
            store.group_rename(agent.domain_id, "Staff-All", "X").err(),
            store.group_remove(agent.domain_id, "Staff-All").err(),
            store
                .membership(agent.domain_id, "Staff-All", "u2", None, false)
                .err(),
        ] {
            let e = e.map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("comes from AD"), "{e}");
        }
        // A cloud group's name is not taken over by an AD group.
        store
            .group_add(agent.domain_id, "Cloudy")
            .unwrap_or_else(|e| panic!("{e}"));
        let r = batch(
            vec![],
            vec![group(102, "Cloudy", Some(vec![]), vec![], vec![])],
            t0,
        );
        assert_eq!(r[0].0, Refused);
        assert!(
            r[0].1.contains("already has a group named `Cloudy`"),
            "{}",
            r[0].1
        );
        // Deleted in AD: kept, marked deleted, with its members; back: restored as it was.
        let gone = SourceGroup {
            guid: guid(100),
            deleted: true,
            ..SourceGroup::default()
        };
        let r = batch(vec![], vec![gone.clone()], t0);
        assert_eq!(r[0].0, Suspended);
        assert_eq!(
            listed("Staff-All"),
            Some((
                vec!["Leads".into(), "u2".into(), "u3".into()],
                "ad".into(),
                true
            ))
        );
        let r = batch(
            vec![],
            vec![group(100, "Staff-All", None, vec![], vec![])],
            t0,
        );
        assert_eq!(r[0].0, Restored);
        assert_eq!(listed("Staff-All").map(|l| l.2), Some(false));
        // Deleted again, and past the retention: removed with its memberships and facts.
        batch(vec![], vec![gone], t0);
        let later = t0 + RETENTION.as_secs() as i64 + 1;
        batch(vec![], vec![], later);
        assert_eq!(listed("Staff-All"), None);
        let conn = store.lock();
        let count = |sql: &str| -> i64 {
            conn.query_row(sql, [], |r| r.get(0))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            count("SELECT COUNT(*) FROM memberships WHERE group_name = 'Staff-All'"),
            0
        );
        assert_eq!(
            count(&format!(
                "SELECT COUNT(*) FROM source_members WHERE group_guid = '{}'",
                guid(100)
            )),
            0
        );
    }

    /// What the cloud refused from AD is kept, counted on the domain's primary (what `agents`,
    /// the status page and the alerts show) until AD sends the object in a form it takes.
    #[test]
    fn refusals_are_kept_until_ad_sends_the_object_in_a_form_the_cloud_takes() {
        let (_dir, store, agent, t0) = primary();
        let send = |after: Option<&str>, cookie: &str, users: Vec<SourceUser>| {
            store
                .source_changes(
                    &agent,
                    &SourceRequest {
                        after: after.map(str::to_string),
                        cookie: cookie.into(),
                        dc: "dc1".into(),
                        contacts: Vec::new(),
                        users,
                        groups: Vec::new(),
                        partial: false,
                    },
                    t0,
                )
                .unwrap_or_else(|e| panic!("{e:?}"))
        };
        let mut nameless = user(2, false);
        nameless.fields.insert("given_name".into(), String::new());
        let r = send(None, "c1", vec![user(1, false), nameless]);
        assert_eq!(r.items[1].outcome, SourceOutcome::Refused);
        let refused_on_primary = || {
            store
                .agents()
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .map(|a| a.source_refused)
                .sum::<i64>()
        };
        assert_eq!(refused_on_primary(), 1);
        let view = store.source_overview().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(view.len(), 1);
        assert_eq!((view[0].users, view[0].groups, view[0].refused), (1, 0, 1));
        assert_eq!(view[0].latest_refusals[0].0, user(2, false).guid);
        assert!(
            view[0].latest_refusals[0].1.contains("given"),
            "{:?}",
            view[0].latest_refusals
        );
        assert_eq!(view[0].cursor.dc.as_deref(), Some("dc1"));
        assert_eq!((view[0].last_reconcile, view[0].held_from_ad), (None, 0));
        let page = crate::server::status_page::render(&store, Timing::default(), t0 + 5)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            page.contains("<h2>AD as a source</h2>")
                && page.contains("1 users, 0 groups")
                && page.contains(&user(2, false).guid)
                && page.contains("5 s ago (from dc1, by agt-")
                && page.contains("1 object(s) from AD refused by the cloud"),
            "{page}"
        );
        // The primary reports its last reconciliation and its backlog with its heartbeat.
        let hb = HeartbeatRequest {
            version: "0.1.0".into(),
            host: "dc1".into(),
            status: "ok".into(),
            message: None,
            run: Some(ad_sync_api::api::RunHealth {
                held: 2,
                last_reconcile: Some(ad_sync_api::time_fmt::unix_to_rfc3339(t0 - 3600)),
                held_from_ad: 2,
                ..Default::default()
            }),
        };
        store
            .heartbeat(&agent, &hb, Timing::default(), t0)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let view = store.source_overview().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (view[0].last_reconcile, view[0].held_from_ad),
            (Some(t0 - 3600), 2)
        );
        let page = crate::server::status_page::render(&store, Timing::default(), t0 + 5)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            page.contains("2 suspensions (ad-sync-agent pending)")
                && page.contains("Last full reconciliation"),
            "{page}"
        );
        // Sent again with its given name: taken, and no refusal is left.
        let r = send(Some("c1"), "c2", vec![user(2, false)]);
        assert_eq!(r.items[0].outcome, SourceOutcome::Created);
        assert_eq!(refused_on_primary(), 0);
        let view = store.source_overview().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!((view[0].users, view[0].refused), (2, 0));
    }

    /// Forest to forest: what the cloud holds from domain A's AD becomes domain B's, through B's
    /// own change feed; kept in step batch by batch, read-only in B, never taking a name B holds.
    #[test]
    fn a_mirrored_domain_gets_the_sources_objects_through_its_own_feed() {
        let (_dir, store, agent, t0) = primary();
        let (b_row, _) = store
            .add_domain("DC=fabrikam,DC=test")
            .unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (agent.domain_id, b_row.id);
        store
            .user_add(b, "carol", "Carol", "Own", None)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut at = 0;
        let mut batch = |users: Vec<SourceUser>, groups: Vec<SourceGroup>| {
            let after = (at > 0).then(|| format!("c{at}"));
            at += 1;
            store
                .source_changes(
                    &agent,
                    &SourceRequest {
                        after,
                        cookie: format!("c{at}"),
                        dc: "dc1".into(),
                        contacts: Vec::new(),
                        users,
                        groups,
                        partial: false,
                    },
                    t0,
                )
                .unwrap_or_else(|e| panic!("{e:?}"));
        };
        let named = |n: u32, name: &str| {
            let mut u = user(n, false);
            u.fields.insert("username".into(), name.into());
            u
        };
        let group = SourceGroup {
            guid: user(10, false).guid,
            deleted: false,
            fields: [("name".to_string(), "Sales".to_string())].into(),
            members: Some(vec![user(1, false).guid, user(2, false).guid]),
            added: Vec::new(),
            removed: Vec::new(),
        };
        batch(
            vec![user(1, false), user(2, false), named(3, "carol")],
            vec![group],
        );
        // B's feed: (kind, name) of each change after `after`.
        let feed = |after: i64| -> Vec<(String, String)> {
            let conn = store.lock();
            let mut stmt = conn
                .prepare("SELECT body FROM changes WHERE domain_id = ?1 AND seq > ?2 ORDER BY seq")
                .unwrap_or_else(|e| panic!("{e}"));
            stmt.query_map(params![b, after], |r| r.get::<_, String>(0))
                .unwrap_or_else(|e| panic!("{e}"))
                .map(|body| {
                    let v: serde_json::Value = serde_json::from_str(&body.unwrap_or_default())
                        .unwrap_or_else(|e| panic!("{e}"));
                    let kind = v["type"].as_str().unwrap_or_default().to_string();
                    let name = [
                        &v["user"]["username"],
                        &v["group"]["name"],
                        &v["username"],
                        &v["name"],
                        &v["member"],
                    ]
                    .into_iter()
                    .find_map(|x| x.as_str())
                    .unwrap_or_default()
                    .to_string();
                    (kind, name)
                })
                .collect()
        };
        let head = |store: &Store| -> i64 {
            store
                .lock()
                .query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM changes WHERE domain_id = ?1",
                    [b],
                    |r| r.get(0),
                )
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let before = head(&store);
        // Nothing reaches B before the mirror exists.
        assert_eq!(feed(before), Vec::<(String, String)>::new());
        let done = store.mirror_add(a, b, t0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (done.created, done.memberships, done.conflicts),
            (3, 2, 1),
            "{done:?}"
        );
        let kinds: Vec<String> = feed(before).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            [
                "user.upsert",
                "user.upsert",
                "group.upsert",
                "membership.add",
                "membership.add"
            ],
            "{:?}",
            feed(before)
        );
        let users = |store: &Store| -> BTreeMap<String, (String, String, bool)> {
            store
                .user_list(b)
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .map(|l| {
                    let u = l.user.unwrap_or_else(|| panic!("user"));
                    (l.name, (l.source, u.surname, u.suspended))
                })
                .collect()
        };
        let listed = users(&store);
        // B's own carol is left as it is; A's carol is listed as a conflict.
        assert_eq!(listed["carol"].0, "cloud");
        assert_eq!(listed["u1"].0, "mirror");
        let mirrors = store.mirrors().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(mirrors[0].conflicts, ["carol"]);
        assert_eq!((mirrors[0].users, mirrors[0].groups), (2, 1));
        // A second mirror of the same pair, or a domain into itself, is refused.
        assert!(store.mirror_add(a, b, t0).is_err());
        assert!(store.mirror_add(a, a, t0).is_err());
        // Read-only in B: named in the refusal.
        let refused = store
            .user_rename(b, "u1", "x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            refused.contains("mirrored from the domain DC=example,DC=com"),
            "{refused}"
        );
        let refused = store
            .group_remove(b, "Sales")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("mirrored from"), "{refused}");
        let id_u2 = store
            .user_list(b)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .find(|l| l.name == "u2")
            .map(|l| l.id)
            .unwrap_or_default();

        // A renames u1 and deletes u2: B renames and removes (B's policy then applies).
        let before = head(&store);
        batch(vec![named(1, "u1x"), user(2, true)], vec![]);
        assert_eq!(
            feed(before),
            [
                ("user.upsert".to_string(), "u1x".to_string()),
                ("user.remove".to_string(), "u2".to_string())
            ]
        );
        let listed = users(&store);
        assert!(
            listed.contains_key("u1x") && !listed.contains_key("u2"),
            "{listed:?}"
        );
        let sales = store
            .group_list(b)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .find(|g| g.name == "Sales")
            .map(|g| g.members)
            .unwrap_or_default();
        assert_eq!(sales, ["u1x"]);

        // Nothing new: nothing appended.
        let before = head(&store);
        batch(vec![], vec![]);
        assert_eq!(head(&store), before);

        // u2 comes back in A (reanimated): B gets it back with the same id and its membership.
        batch(vec![user(2, false)], vec![]);
        let back = store
            .user_list(b)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .find(|l| l.name == "u2")
            .map(|l| l.id)
            .unwrap_or_default();
        assert_eq!(back, id_u2);
        assert!(
            feed(before).contains(&("membership.add".to_string(), "u2".to_string())),
            "{:?}",
            feed(before)
        );

        // The status page shows the mirror and what it left out.
        let page = crate::server::status_page::render(&store, Timing::default(), t0)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            page.contains("Forest to forest")
                && page.contains("DC=fabrikam,DC=test")
                && page.contains("carol"),
            "{page}"
        );

        // Stopping the mirror hands the copies to B's cloud; nothing is removed.
        let before = head(&store);
        assert!(store.mirror_remove(a, b).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(head(&store), before);
        assert_eq!(users(&store)["u1x"].0, "cloud");
        store
            .user_rename(b, "u1x", "u1y")
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Contacts from AD are matched on their address: created, updated, marked deleted and
    /// restored by objectGUID; a second AD contact with a live contact's address is refused by
    /// name; a deleted contact gives its address to the next one; one without an address is
    /// refused; all are listed, and looked up as contacts.
    #[test]
    fn contacts_from_ad_are_matched_on_their_address() {
        use ad_sync_api::api::SourceContact;
        let (_dir, store, agent, t0) = primary();
        let mut at = 0;
        let mut batch = |contacts: Vec<SourceContact>| {
            let after = (at > 0).then(|| format!("c{at}"));
            at += 1;
            store
                .source_changes(
                    &agent,
                    &SourceRequest {
                        after,
                        cookie: format!("c{at}"),
                        dc: "dc1".into(),
                        contacts,
                        users: Vec::new(),
                        groups: Vec::new(),
                        partial: false,
                    },
                    t0,
                )
                .unwrap_or_else(|e| panic!("{e:?}"))
                .items
                .into_iter()
                .map(|i| (i.outcome, i.message))
                .collect::<Vec<_>>()
        };
        let contact = |n: u32, mail: &str, name: &str| SourceContact {
            guid: user(n, false).guid,
            deleted: false,
            fields: [("email", mail), ("display_name", name)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let gone = |n: u32| SourceContact {
            guid: user(n, false).guid,
            deleted: true,
            fields: BTreeMap::new(),
        };
        let outcomes = |r: Vec<(SourceOutcome, String)>| -> Vec<SourceOutcome> {
            r.into_iter().map(|(o, _)| o).collect()
        };
        let r = batch(vec![
            contact(1, "ann@partner.example", "Ann"),
            contact(2, "ANN@partner.example", "Ann again"),
            contact(3, "", "No address"),
        ]);
        assert_eq!(
            outcomes(r.clone()),
            [
                SourceOutcome::Created,
                SourceOutcome::Refused,
                SourceOutcome::Refused
            ]
        );
        assert!(
            r[1].1
                .contains("another AD contact of this domain has the e-mail address"),
            "{r:?}"
        );
        assert!(r[2].1.contains("no e-mail address"), "{r:?}");
        // Unchanged, then a new display name.
        let r = batch(vec![contact(1, "ann@partner.example", "Ann")]);
        assert_eq!(outcomes(r), [SourceOutcome::Unchanged]);
        let r = batch(vec![contact(1, "ann@partner.example", "Ann Lee")]);
        assert_eq!(outcomes(r), [SourceOutcome::Updated]);
        let listed = store
            .contact_list(agent.domain_id)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].fields["display_name"], "Ann Lee");
        assert_eq!(listed[0].links[0].guid, user(1, false).guid);
        // Looked up as a contact, and counted live.
        let found = store
            .source_lookup(&agent, &[user(1, false).guid])
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(found.users[0].contact && !found.users[0].group, "{found:?}");
        assert_eq!(found.live, 1);
        // Deleted in AD: kept, marked; its address then goes to the next contact that has it.
        let r = batch(vec![gone(1)]);
        assert_eq!(outcomes(r), [SourceOutcome::Suspended]);
        let r = batch(vec![contact(2, "ann@partner.example", "Ann's successor")]);
        assert_eq!(outcomes(r.clone()), [SourceOutcome::Restored], "{r:?}");
        let listed = store
            .contact_list(agent.domain_id)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].links[0].guid, user(2, false).guid);
        assert_eq!(listed[0].deleted_at, None);
        let page = store
            .source_contacts(&agent, None)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(page.contacts.len(), 1);
        assert!(page.contacts[0].contact);
    }

    /// The statements run once per object AD sends find their rows by an index on more than
    /// the domain: one that read the whole domain's facts per user made a first export of
    /// 10,000 users spend 75% of the cloud's time in SQLite (its time per request grew from 32
    /// to 366 ms as the domain filled).
    #[test]
    fn the_statements_run_per_object_do_not_read_the_whole_domain() {
        let (_dir, store, _, _) = primary();
        let conn = store.lock();
        let per_object = [JOIN_GROUPS, FORGET_FACTS[0], FORGET_FACTS[1]];
        for sql in per_object {
            let plan: Vec<String> = conn
                .as_sqlite()
                .expect("the store opened a file")
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .and_then(|mut st| {
                    let n = st.parameter_count();
                    st.query_map(rusqlite::params_from_iter(vec!["x"; n]), |r| {
                        r.get::<_, String>(3)
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            let scans: Vec<&String> = plan
                .iter()
                .filter(|step| step.starts_with("SCAN") || step.ends_with("(domain_id=?)"))
                .collect();
            assert!(
                scans.is_empty(),
                "{sql}\nreads a whole table or domain: {scans:?} (plan: {plan:?})"
            );
        }
    }

    fn user(n: u32, deleted: bool) -> SourceUser {
        SourceUser {
            guid: format!("{n:08x}-0000-0000-0000-000000000000"),
            deleted,
            enabled: None,
            fields: if deleted {
                BTreeMap::new()
            } else {
                [
                    ("username", format!("u{n}")),
                    ("given_name", "G".into()),
                    ("surname", "S".into()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
            },
        }
    }

    /// A store with one domain and its primary agent, heard from at the returned time.
    fn primary() -> (tempfile::TempDir, Store, AgentAuth, i64) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&dir.path().join("cloud.db")).unwrap_or_else(|e| panic!("{e}"));
        let domain = "DC=example,DC=com";
        store.add_domain(domain).unwrap_or_else(|e| panic!("{e}"));
        let (agent, t0) = super::super::enrolled_primary(&store, domain);
        (dir, store, agent, t0)
    }
}
