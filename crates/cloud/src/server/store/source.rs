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
    ImportUser, MAX_SOURCE_ITEMS, SourceCursor, SourceHeld, SourceItem, SourceOutcome,
    SourceRequest, SourceResponse, SourceUser, SourceUsers,
};
use ad_sync_api::mapping::{Kind, rows};
use std::collections::BTreeMap;

/// How long a user deleted in AD is kept, suspended, before it is removed from the cloud.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

fn cursor(conn: &Connection, domain_id: i64) -> rusqlite::Result<SourceCursor> {
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

fn stored(conn: &Connection, id: &str) -> rusqlite::Result<Option<Stored>> {
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

/// Why a field of the request cannot be taken, or `None`.
fn field_problem(fields: &BTreeMap<String, String>) -> Option<String> {
    fields
        .keys()
        .find(|f| !rows(Kind::User).any(|r| r.field == f.as_str()))
        .map(|f| {
            let known: Vec<&str> = rows(Kind::User).map(|r| r.field).collect();
            format!(
                "`{f}` is not a user field the cloud keeps; the fields are {}",
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

fn write(tx: &Connection, n: &Stored) -> rusqlite::Result<()> {
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
fn name_taken(tx: &Connection, domain: i64, name: &str, not_id: &str) -> rusqlite::Result<bool> {
    tx.prepare_cached(
        "SELECT COUNT(*) FROM users WHERE domain_id = ?1 AND username = ?2 AND id != ?3",
    )?
    .query_row(params![domain, name, not_id], |r| r.get::<_, i64>(0))
    .map(|n| n > 0)
}

fn one_user(
    tx: &Connection,
    agent: &AgentAuth,
    u: &SourceUser,
    now: i64,
) -> Result<SourceItem, ApiError> {
    let guid = u.guid.as_str();
    if let Some(why) = field_problem(&u.fields) {
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
        return Ok(item(
            guid,
            Some(&s.id),
            SourceOutcome::Refused,
            format!(
                "the cloud user `{}` was created in the cloud, which is its authority; AD cannot change it (change it in the cloud)",
                s.username
            ),
        ));
    }
    if u.deleted {
        if s.deleted_at.is_some() {
            return Ok(item(
                guid,
                Some(&s.id),
                SourceOutcome::Unchanged,
                String::new(),
            ));
        }
        tx.execute(
            "UPDATE users SET suspended = 1, deleted_at = ?2 WHERE id = ?1",
            params![s.id, now],
        )?;
        return Ok(item(
            guid,
            Some(&s.id),
            SourceOutcome::Suspended,
            String::new(),
        ));
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
    Ok(item(
        guid,
        Some(&n.id),
        SourceOutcome::Created,
        String::new(),
    ))
}

/// Removes the users deleted in AD longer ago than `RETENTION`, with their links and
/// memberships.
fn purge(tx: &Connection, domain: i64, now: i64) -> rusqlite::Result<()> {
    let before = now - RETENTION.as_secs() as i64;
    let gone: Vec<(String, String)> = tx
        .prepare_cached(
            "SELECT id, username FROM users WHERE domain_id = ?1 AND source = 'ad' AND deleted_at IS NOT NULL AND deleted_at < ?2",
        )?
        .query_map(params![domain, before], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, name) in gone {
        tx.execute(
            "DELETE FROM memberships WHERE domain_id = ?1 AND member = ?2 AND member_type = 'user'",
            params![domain, name],
        )?;
        tx.execute("DELETE FROM links WHERE object_id = ?1", [&id])?;
        tx.execute("DELETE FROM users WHERE id = ?1", [&id])?;
    }
    Ok(())
}

/// The live users the cloud holds from AD in `domain`.
fn live_count(conn: &Connection, domain: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM links l JOIN users u ON u.id = l.object_id
         WHERE l.domain_id = ?1 AND u.source = 'ad' AND u.deleted_at IS NULL",
    )?
    .query_row([domain], |r| r.get::<_, i64>(0))
    .map(|n| n.max(0) as usize)
}

fn held(r: &rusqlite::Row) -> rusqlite::Result<SourceHeld> {
    let deleted_at: Option<i64> = r.get(3)?;
    Ok(SourceHeld {
        guid: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        deleted: deleted_at.is_some(),
    })
}

impl Store {
    /// The users the cloud holds from AD in the agent's domain, in objectGUID order, after
    /// `after` (at most `MAX_SOURCE_ITEMS`).
    pub fn source_users(
        &self,
        agent: &AgentAuth,
        after: Option<&str>,
    ) -> Result<SourceUsers, ApiError> {
        let conn = self.lock();
        let mut users: Vec<SourceHeld> = conn
            .prepare_cached(
                "SELECT l.guid, u.id, u.username, u.deleted_at FROM links l JOIN users u ON u.id = l.object_id
                 WHERE l.domain_id = ?1 AND u.source = 'ad' AND l.guid > ?2
                 ORDER BY l.guid LIMIT ?3",
            )?
            .query_map(
                params![
                    agent.domain_id,
                    after.unwrap_or_default(),
                    (MAX_SOURCE_ITEMS + 1) as i64
                ],
                held,
            )?
            .collect::<Result<_, _>>()?;
        let more = users.len() > MAX_SOURCE_ITEMS;
        users.truncate(MAX_SOURCE_ITEMS);
        let live = live_count(&conn, agent.domain_id)?;
        Ok(SourceUsers { users, more, live })
    }

    /// Those of `guids` the cloud holds from AD in the agent's domain.
    pub fn source_lookup(
        &self,
        agent: &AgentAuth,
        guids: &[String],
    ) -> Result<SourceUsers, ApiError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT l.guid, u.id, u.username, u.deleted_at FROM links l JOIN users u ON u.id = l.object_id
             WHERE l.domain_id = ?1 AND u.source = 'ad' AND l.guid = ?2",
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
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        super::require_primary(
            &tx,
            agent,
            "alone sends AD's changes to the cloud (a standby reads the cursor when it takes over)",
        )?;
        let at = cursor(&tx, agent.domain_id)?;
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
        let mut items = Vec::with_capacity(req.users.len());
        for u in &req.users {
            items.push(one_user(&tx, agent, u, now)?);
        }
        if !req.partial {
            tx.execute(
                "INSERT INTO source_cursors (domain_id, cookie, dc, agent_id, at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(domain_id) DO UPDATE SET cookie = ?2, dc = ?3, agent_id = ?4, at = ?5",
                params![agent.domain_id, req.cookie, req.dc, agent.agent_id, now],
            )?;
        }
        purge(&tx, agent.domain_id, now)?;
        let cursor = cursor(&tx, agent.domain_id)?;
        tx.commit()?;
        Ok(SourceResponse {
            replayed: false,
            items,
            cursor,
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
                        users,
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
                        users: part.iter().map(|&k| user(k, false)).collect(),
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
                    users: vec![user(3, true)],
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
        let (key, _) = store
            .issue_key(domain, Duration::from_secs(3600))
            .unwrap_or_else(|e| panic!("{e}"));
        let dn = ad_sync_api::api::parse_domain_dn(domain).unwrap_or_else(|e| panic!("{e}"));
        let t0 = ad_sync_api::time_fmt::now_unix();
        let enrolled = store
            .enroll(
                &key,
                &dn,
                "dc1",
                "0.1.0",
                "linux",
                &[7; 32],
                Timing::default(),
                t0,
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
        let agent = store
            .authenticate(&enrolled.credential)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .unwrap_or_else(|| panic!("no agent"));
        let hb = HeartbeatRequest {
            version: "0.1.0".into(),
            host: "dc1".into(),
            status: "ok".into(),
            message: None,
            run: None,
        };
        store
            .heartbeat(&agent, &hb, Timing::default(), t0)
            .unwrap_or_else(|e| panic!("{e:?}"));
        (dir, store, agent, t0)
    }
}
