//! Forest to forest through the cloud: a domain instance whose authority is AD (AD as a source)
//! mirrored into another domain instance, whose agent then writes it into its own AD under its
//! own policies (ad-user-sync's job, without files).
//!
//! `ad-sync-cloud domain mirror --from A --into B` makes every live object the cloud holds from
//! A's AD (users, groups, and the memberships among them) a copy in B's directory, and every
//! batch A's agent sends afterwards brings the copies in step in the same transaction. The copies
//! go through B's change feed like the cloud's own objects, so B's agent creates, renames,
//! suspends and removes them exactly as it would for the cloud's. They are read-only in B: their
//! authority is A's AD (`source = 'mirror'`, `mirror_from` = A); B's admin commands refuse to
//! change them and B's own export never sends them back (B's agent marks the accounts it writes,
//! and a marked account is never exported).
//!
//! - An object deleted in A, or moved out of A's scope, is kept in A (suspended, soft deleted)
//!   and removed from B, so B's agent applies B's disconnection policy to it (by default it
//!   disables the account). Brought back in A, it comes back to B with the same id, so B's agent
//!   finds its account by its marker again.
//! - A name B already holds for an object of its own is never taken over: that object is left
//!   out of B and listed as a conflict (`domain mirrors`).
//! - Passwords are not part of it: the cloud never has AD's passwords. The accounts in B get
//!   theirs from B's own means (a password set in the cloud for the copy, or by an administrator).
//! - Stopping a mirror hands the copies to B's cloud (`source = 'cloud'`); nothing is removed.
//!
//! The decision is pure (`plan`, table-tested); `reflect` reads both sides and writes the steps.

use super::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// One object as the mirror compares it: a user's whole state, or a group's name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Obj {
    /// The object's id in the domain it comes from.
    pub origin: String,
    pub name: String,
    pub given_name: String,
    pub surname: String,
    pub email: Option<String>,
    pub suspended: bool,
    pub locked: bool,
    pub display_name: Option<String>,
}

/// What the mirror does to one kind of object in the target domain.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// Objects to create (their copy's id is `copy_id(origin)`).
    pub create: Vec<Obj>,
    /// Copies to bring to this state (renames included).
    pub update: Vec<Obj>,
    /// Copies whose object is gone from the source (deleted, out of scope): their origin ids.
    pub remove: Vec<Obj>,
    /// Objects left out because the target holds the name for an object of its own (or
    /// another domain's copy): their names.
    pub conflicts: Vec<String>,
}

/// The copy's id in domain `to` of the object `origin`: the same every time, so an object that
/// leaves and comes back is the same object to the target's agent (its marker finds it).
pub(super) fn copy_id(origin: &str, to: i64) -> String {
    format!("{origin}.d{to}")
}

/// The mirror's decision for one kind: `wanted` are the source's live objects, `copies` what the
/// target holds from it (as they are now), `taken` the names (lower-cased) the target holds for
/// objects that are not copies of this source.
pub(super) fn plan(wanted: &[Obj], copies: &[Obj], taken: &HashSet<String>) -> Plan {
    let by_origin: HashMap<&str, &Obj> = copies.iter().map(|c| (c.origin.as_str(), c)).collect();
    let wanted_origins: HashSet<&str> = wanted.iter().map(|w| w.origin.as_str()).collect();
    // A copy's current name is free for another copy of the same source only if that copy is
    // going away or being renamed; the writes take renames one at a time and re-check (`reflect`
    // never writes a name another row holds), so a swap of two names waits for a later batch.
    let mut out = Plan::default();
    for w in wanted {
        let name_taken = taken.contains(&w.name.to_lowercase());
        match by_origin.get(w.origin.as_str()) {
            Some(c) if *c == w => {}
            Some(c) if name_taken && !c.name.eq_ignore_ascii_case(&w.name) => {
                out.conflicts.push(w.name.clone())
            }
            Some(_) => out.update.push(w.clone()),
            None if name_taken => out.conflicts.push(w.name.clone()),
            None => out.create.push(w.clone()),
        }
    }
    for c in copies {
        if !wanted_origins.contains(c.origin.as_str()) {
            out.remove.push(c.clone());
        }
    }
    out
}

/// A membership as the mirror compares it: the group's and the member's origin ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Edge {
    pub group: String,
    pub member: String,
    pub member_type: MemberType,
}

/// The memberships to add and remove in the target: `wanted` among the source's live objects,
/// `held` among the target's copies, `present` the origins that have a copy after this run's
/// creations and keep it (a membership of an object left out by a conflict is not wanted; one of
/// a copy being removed goes with the copy).
pub(super) fn plan_edges(
    wanted: &[Edge],
    held: &[Edge],
    present: &HashSet<String>,
) -> (Vec<Edge>, Vec<Edge>) {
    let want: HashSet<&Edge> = wanted
        .iter()
        .filter(|e| present.contains(&e.group) && present.contains(&e.member))
        .collect();
    // A held membership of a copy that is going away goes with it, not on its own.
    let have: HashSet<&Edge> = held
        .iter()
        .filter(|e| present.contains(&e.group) && present.contains(&e.member))
        .collect();
    let mut add: Vec<Edge> = want.difference(&have).map(|e| (*e).clone()).collect();
    let mut remove: Vec<Edge> = have.difference(&want).map(|e| (*e).clone()).collect();
    add.sort();
    remove.sort();
    (add, remove)
}

/// A mirror as `domain mirrors` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorRow {
    pub from: String,
    pub into: String,
    pub since: i64,
    /// The live copies in the target.
    pub users: usize,
    pub groups: usize,
    /// Names left out because the target holds them for objects of its own.
    pub conflicts: Vec<String>,
}

/// What one reflection did (counts of changes appended to the target's feed).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reflected {
    pub created: usize,
    pub updated: usize,
    pub removed: usize,
    pub memberships: usize,
    pub conflicts: usize,
}

fn user_obj(r: &db::Row<'_>) -> db::Result<Obj> {
    Ok(Obj {
        origin: r.get(0)?,
        name: r.get(1)?,
        given_name: r.get(2)?,
        surname: r.get(3)?,
        email: r.get(4)?,
        suspended: r.get(5)?,
        locked: r.get(6)?,
        display_name: r.get(7)?,
    })
}

fn group_obj(r: &db::Row<'_>) -> db::Result<Obj> {
    Ok(Obj {
        origin: r.get(0)?,
        name: r.get(1)?,
        ..Obj::default()
    })
}

fn query<T>(
    tx: &Connection,
    sql: &str,
    p: impl db::Params,
    f: impl FnMut(&db::Row<'_>) -> db::Result<T>,
) -> db::Result<Vec<T>> {
    tx.prepare_cached(sql)?.query_map(p, f)?.collect()
}

/// The names (lower-cased) in `to` of `table`'s objects that are not copies of `from`.
fn taken_names(tx: &Connection, table: &str, to: i64, from: i64) -> db::Result<HashSet<String>> {
    let col = if table == "users" { "username" } else { "name" };
    let sql = format!(
        "SELECT {col} FROM {table} WHERE domain_id = ?1 AND (mirror_from IS NULL OR mirror_from != ?2)"
    );
    Ok(
        query(tx, &sql, params![to, from], |r| r.get::<_, String>(0))?
            .into_iter()
            .map(|n| n.to_lowercase())
            .collect(),
    )
}

/// Whether a row other than `id` holds `name` in `to` (checked before each write, so the
/// reflection never fails on the target's key, whatever the order of renames).
fn held_by_other(tx: &Connection, table: &str, to: i64, name: &str, id: &str) -> db::Result<bool> {
    let col = if table == "users" { "username" } else { "name" };
    let sql =
        format!("SELECT COUNT(*) FROM {table} WHERE domain_id = ?1 AND {col} = ?2 AND id != ?3");
    tx.prepare_cached(&sql)?
        .query_row(params![to, name, id], |r| r.get::<_, i64>(0))
        .map(|n| n > 0)
}

/// Brings the copies in `to` in step with what the cloud holds from `from`'s AD, appending each
/// change to `to`'s feed. Idempotent: a second call with nothing new appends nothing.
pub(super) fn reflect(tx: &Connection, from: i64, to: i64) -> db::Result<Reflected> {
    let mut done = Reflected::default();
    const USER_COLS: &str = "username, given_name, surname, email, suspended, locked, display_name";
    let wanted_users = query(
        tx,
        &format!(
            "SELECT id, {USER_COLS} FROM users WHERE domain_id = ?1 AND source = 'ad' AND deleted_at IS NULL"
        ),
        [from],
        user_obj,
    )?;
    let user_copies = query(
        tx,
        &format!(
            "SELECT mirror_of, {USER_COLS} FROM users WHERE domain_id = ?1 AND mirror_from = ?2"
        ),
        params![to, from],
        user_obj,
    )?;
    let users = plan(
        &wanted_users,
        &user_copies,
        &taken_names(tx, "users", to, from)?,
    );
    let wanted_groups = query(
        tx,
        "SELECT id, name FROM groups WHERE domain_id = ?1 AND source = 'ad' AND deleted_at IS NULL",
        [from],
        group_obj,
    )?;
    let group_copies = query(
        tx,
        "SELECT mirror_of, name FROM groups WHERE domain_id = ?1 AND mirror_from = ?2",
        params![to, from],
        group_obj,
    )?;
    let groups = plan(
        &wanted_groups,
        &group_copies,
        &taken_names(tx, "groups", to, from)?,
    );
    done.conflicts = users.conflicts.len() + groups.conflicts.len();

    let old_user_names: HashMap<&str, &str> = user_copies
        .iter()
        .map(|c| (c.origin.as_str(), c.name.as_str()))
        .collect();
    for u in users.create.iter().chain(&users.update) {
        let id = copy_id(&u.origin, to);
        if held_by_other(tx, "users", to, &u.name, &id)? {
            done.conflicts += 1;
            continue;
        }
        let old = old_user_names.get(u.origin.as_str());
        if let Some(old) = old
            && !old.eq_ignore_ascii_case(&u.name)
        {
            tx.execute(
                "UPDATE memberships SET member = ?2 WHERE domain_id = ?3 AND member = ?1 AND member_type = 'user'",
                params![old, u.name, to],
            )?;
        }
        tx.execute(
            "INSERT INTO users (domain_id, username, id, given_name, surname, email, suspended, locked, display_name, source, mirror_of, mirror_from)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'mirror', ?10, ?11)
             ON CONFLICT(id) DO UPDATE SET username = ?2, given_name = ?4, surname = ?5, email = ?6, suspended = ?7, locked = ?8, display_name = ?9",
            params![to, u.name, id, u.given_name, u.surname, u.email, u.suspended, u.locked, u.display_name, u.origin, from],
        )?;
        let user = load_user(tx, to, &u.name)?;
        append_change(tx, to, &ChangeBody::UserUpsert { user })?;
        if old.is_some() {
            done.updated += 1;
        } else {
            done.created += 1;
        }
    }
    let old_group_names: HashMap<&str, &str> = group_copies
        .iter()
        .map(|c| (c.origin.as_str(), c.name.as_str()))
        .collect();
    for g in groups.create.iter().chain(&groups.update) {
        let id = copy_id(&g.origin, to);
        if held_by_other(tx, "groups", to, &g.name, &id)? {
            done.conflicts += 1;
            continue;
        }
        let old = old_group_names.get(g.origin.as_str());
        if let Some(old) = old
            && !old.eq_ignore_ascii_case(&g.name)
        {
            tx.execute(
                "UPDATE memberships SET group_name = ?2 WHERE domain_id = ?3 AND group_name = ?1",
                params![old, g.name, to],
            )?;
            tx.execute(
                "UPDATE memberships SET member = ?2 WHERE domain_id = ?3 AND member = ?1 AND member_type = 'group'",
                params![old, g.name, to],
            )?;
        }
        tx.execute(
            "INSERT INTO groups (domain_id, name, id, source, mirror_of, mirror_from) VALUES (?1, ?2, ?3, 'mirror', ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET name = ?2",
            params![to, g.name, id, g.origin, from],
        )?;
        let group = Group {
            id: id.clone(),
            name: g.name.clone(),
            links: links_of(tx, &id)?,
        };
        append_change(tx, to, &ChangeBody::GroupUpsert { group })?;
        if old.is_some() {
            done.updated += 1;
        } else {
            done.created += 1;
        }
    }

    // The memberships among the live copies, by origin ids.
    let wanted_edges = query(
        tx,
        "SELECT g.id, COALESCE(u.id, g2.id), m.member_type FROM memberships m
         JOIN groups g ON g.domain_id = m.domain_id AND g.name = m.group_name AND g.source = 'ad' AND g.deleted_at IS NULL
         LEFT JOIN users u ON m.member_type = 'user' AND u.domain_id = m.domain_id AND u.username = m.member AND u.source = 'ad' AND u.deleted_at IS NULL
         LEFT JOIN groups g2 ON m.member_type = 'group' AND g2.domain_id = m.domain_id AND g2.name = m.member AND g2.source = 'ad' AND g2.deleted_at IS NULL
         WHERE m.domain_id = ?1 AND COALESCE(u.id, g2.id) IS NOT NULL",
        [from],
        edge,
    )?;
    let held_edges = query(
        tx,
        "SELECT g.mirror_of, COALESCE(u.mirror_of, g2.mirror_of), m.member_type FROM memberships m
         JOIN groups g ON g.domain_id = m.domain_id AND g.name = m.group_name AND g.mirror_from = ?2
         LEFT JOIN users u ON m.member_type = 'user' AND u.domain_id = m.domain_id AND u.username = m.member AND u.mirror_from = ?2
         LEFT JOIN groups g2 ON m.member_type = 'group' AND g2.domain_id = m.domain_id AND g2.name = m.member AND g2.mirror_from = ?2
         WHERE m.domain_id = ?1 AND COALESCE(u.mirror_of, g2.mirror_of) IS NOT NULL",
        params![to, from],
        edge,
    )?;
    let present: HashSet<String> = query(
        tx,
        "SELECT mirror_of FROM users WHERE domain_id = ?1 AND mirror_from = ?2
         UNION ALL SELECT mirror_of FROM groups WHERE domain_id = ?1 AND mirror_from = ?2",
        params![to, from],
        |r| r.get::<_, String>(0),
    )?
    .into_iter()
    // A copy about to be removed takes its memberships along (as the cloud's own `user
    // remove` does): no membership change of its own is sent before its removal.
    .filter(|o| {
        !users
            .remove
            .iter()
            .chain(&groups.remove)
            .any(|r| &r.origin == o)
    })
    .collect();
    let (add, remove) = plan_edges(&wanted_edges, &held_edges, &present);
    for (edges, adding) in [(&remove, false), (&add, true)] {
        for e in edges {
            let group_id = copy_id(&e.group, to);
            let member_id = copy_id(&e.member, to);
            let name_of = |table: &str, id: &str| -> db::Result<String> {
                let col = if table == "users" { "username" } else { "name" };
                tx.query_row(
                    &format!("SELECT {col} FROM {table} WHERE id = ?1"),
                    [id],
                    |r| r.get(0),
                )
            };
            let group = name_of("groups", &group_id)?;
            let member = match e.member_type {
                MemberType::User => name_of("users", &member_id)?,
                MemberType::Group => name_of("groups", &member_id)?,
            };
            let sql = if adding {
                "INSERT INTO memberships (domain_id, group_name, member, member_type) VALUES (?4, ?1, ?2, ?3) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM memberships WHERE domain_id = ?4 AND group_name = ?1 AND member = ?2 AND member_type = ?3"
            };
            if tx.execute(sql, params![group, member, e.member_type.as_str(), to])? == 1 {
                let m = Membership {
                    group_id,
                    group,
                    member_id,
                    member,
                    member_type: e.member_type,
                };
                append_change(
                    tx,
                    to,
                    &if adding {
                        ChangeBody::MembershipAdd(m)
                    } else {
                        ChangeBody::MembershipRemove(m)
                    },
                )?;
                done.memberships += 1;
            }
        }
    }

    // Last, what left the source: groups first (a user's removal takes its memberships along,
    // as the cloud's own `user remove` does).
    for g in &groups.remove {
        let id = copy_id(&g.origin, to);
        tx.execute(
            "DELETE FROM memberships WHERE domain_id = ?2 AND (group_name = ?1 OR (member = ?1 AND member_type = 'group'))",
            params![g.name, to],
        )?;
        tx.execute("DELETE FROM groups WHERE id = ?1", [&id])?;
        tx.execute("DELETE FROM links WHERE object_id = ?1", [&id])?;
        append_change(
            tx,
            to,
            &ChangeBody::GroupRemove {
                id,
                name: g.name.clone(),
            },
        )?;
        done.removed += 1;
    }
    for u in &users.remove {
        let id = copy_id(&u.origin, to);
        tx.execute(
            "DELETE FROM memberships WHERE domain_id = ?2 AND member = ?1 AND member_type = 'user'",
            params![u.name, to],
        )?;
        tx.execute("DELETE FROM users WHERE id = ?1", [&id])?;
        tx.execute("DELETE FROM links WHERE object_id = ?1", [&id])?;
        append_change(
            tx,
            to,
            &ChangeBody::UserRemove {
                id,
                username: u.name.clone(),
            },
        )?;
        done.removed += 1;
    }
    Ok(done)
}

fn edge(r: &db::Row<'_>) -> db::Result<Edge> {
    let t: String = r.get(2)?;
    Ok(Edge {
        group: r.get(0)?,
        member: r.get(1)?,
        member_type: if t == "group" {
            MemberType::Group
        } else {
            MemberType::User
        },
    })
}

/// After a batch from `from`'s AD: every domain it is mirrored into brought in step, in the
/// batch's own transaction.
pub(super) fn reflect_from(tx: &Connection, from: i64) -> db::Result<()> {
    let targets = query(
        tx,
        "SELECT to_domain FROM mirrors WHERE from_domain = ?1 ORDER BY to_domain",
        [from],
        |r| r.get::<_, i64>(0),
    )?;
    for to in targets {
        let done = reflect(tx, from, to)?;
        if done != Reflected::default() {
            tracing::info!(
                from,
                to,
                ?done,
                "mirrored AD's changes into another domain instance"
            );
        }
    }
    Ok(())
}

impl Store {
    /// Mirrors `from` (a domain whose authority is AD) into `into`, and copies what the cloud
    /// already holds from `from`'s AD at once.
    pub fn mirror_add(&self, from: i64, into: i64, now: i64) -> Result<Reflected, AdminError> {
        if from == into {
            return Err(AdminError::Invalid(
                "--into: a domain instance cannot be mirrored into itself; name another with --into".into(),
            ));
        }
        self.admin_tx(|tx| {
            let added = tx.execute(
                "INSERT INTO mirrors (from_domain, to_domain, since) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![from, into, now],
            )?;
            if added == 0 {
                return Err(AdminError::Invalid(
                    "this mirror exists already; `ad-sync-cloud domain mirrors` lists it".into(),
                )
                .into());
            }
            Ok(reflect(tx, from, into)?)
        })
    }

    /// Stops mirroring `from` into `into`. The copies stay in `into`, handed to its cloud
    /// (`source = 'cloud'`): nothing is removed from its AD. `false` when there was no such
    /// mirror.
    pub fn mirror_remove(&self, from: i64, into: i64) -> Result<bool, AdminError> {
        self.admin_tx(|tx| {
            let gone = tx.execute(
                "DELETE FROM mirrors WHERE from_domain = ?1 AND to_domain = ?2",
                params![from, into],
            )?;
            for table in ["users", "groups"] {
                tx.execute(
                    &format!("UPDATE {table} SET source = 'cloud', mirror_of = NULL, mirror_from = NULL WHERE domain_id = ?1 AND mirror_from = ?2"),
                    params![into, from],
                )?;
            }
            Ok(gone == 1)
        })
    }

    /// Every mirror, with its copies and its conflicts.
    pub fn mirrors(&self) -> Result<Vec<MirrorRow>, AdminError> {
        self.admin_tx(|tx| {
            let rows = query(
                tx,
                "SELECT m.from_domain, m.to_domain, f.dn, t.dn, m.since FROM mirrors m
                 JOIN domains f ON f.id = m.from_domain JOIN domains t ON t.id = m.to_domain
                 ORDER BY f.dn_key, t.dn_key",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for (from, to, from_dn, to_dn, since) in rows {
                let count = |table: &str| -> db::Result<usize> {
                    tx.query_row(
                        &format!("SELECT COUNT(*) FROM {table} WHERE domain_id = ?1 AND mirror_from = ?2"),
                        params![to, from],
                        |r| r.get::<_, i64>(0),
                    )
                    .map(|n| n.max(0) as usize)
                };
                let mut conflicts = Vec::new();
                for (table, col) in [("users", "username"), ("groups", "name")] {
                    conflicts.extend(query(
                        tx,
                        &format!(
                            "SELECT s.{col} FROM {table} s WHERE s.domain_id = ?1 AND s.source = 'ad' AND s.deleted_at IS NULL
                             AND EXISTS (SELECT 1 FROM {table} t WHERE t.domain_id = ?2 AND t.{col} = s.{col} AND (t.mirror_from IS NULL OR t.mirror_from != ?1 OR t.mirror_of != s.id))
                             ORDER BY s.{col}"
                        ),
                        params![from, to],
                        |r| r.get::<_, String>(0),
                    )?);
                }
                out.push(MirrorRow {
                    from: from_dn,
                    into: to_dn,
                    since,
                    users: count("users")?,
                    groups: count("groups")?,
                    conflicts,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(origin: &str, name: &str) -> Obj {
        Obj {
            origin: origin.into(),
            name: name.into(),
            given_name: "G".into(),
            surname: "S".into(),
            ..Obj::default()
        }
    }

    fn names(v: &[Obj]) -> Vec<&str> {
        v.iter().map(|o| o.name.as_str()).collect()
    }

    /// One row per situation the mirror meets: (wanted, copies, names the target holds for its
    /// own, then what it creates, updates, removes and leaves out).
    #[test]
    fn the_mirror_creates_updates_removes_and_never_takes_a_name() {
        let renamed = obj("u1", "alice2");
        let suspended = Obj {
            suspended: true,
            ..obj("u1", "alice")
        };
        type Row<'a> = (Vec<Obj>, Vec<Obj>, &'a [&'a str], [&'a [&'a str]; 4]);
        let rows: Vec<Row> = vec![
            // New in the source.
            (
                vec![obj("u1", "alice")],
                vec![],
                &[],
                [&["alice"], &[], &[], &[]],
            ),
            // Unchanged: nothing.
            (
                vec![obj("u1", "alice")],
                vec![obj("u1", "alice")],
                &[],
                [&[], &[], &[], &[]],
            ),
            // Renamed, and suspended.
            (
                vec![renamed.clone()],
                vec![obj("u1", "alice")],
                &[],
                [&[], &["alice2"], &[], &[]],
            ),
            (
                vec![suspended],
                vec![obj("u1", "alice")],
                &[],
                [&[], &["alice"], &[], &[]],
            ),
            // Gone from the source (deleted, out of scope).
            (
                vec![],
                vec![obj("u1", "alice")],
                &[],
                [&[], &[], &["alice"], &[]],
            ),
            // The target holds the name for its own: never taken, in either case.
            (
                vec![obj("u1", "alice")],
                vec![],
                &["alice"],
                [&[], &[], &[], &["alice"]],
            ),
            (
                vec![renamed],
                vec![obj("u1", "alice")],
                &["alice2"],
                [&[], &[], &[], &["alice2"]],
            ),
            // Case differs only: the same name to the target.
            (
                vec![obj("u1", "Bob")],
                vec![],
                &["bob"],
                [&[], &[], &[], &["Bob"]],
            ),
        ];
        for (i, (wanted, copies, taken, [create, update, remove, conflicts])) in
            rows.into_iter().enumerate()
        {
            let taken: HashSet<String> = taken.iter().map(|s| s.to_string()).collect();
            let p = plan(&wanted, &copies, &taken);
            assert_eq!(names(&p.create), create.to_vec(), "row {i}: create");
            assert_eq!(names(&p.update), update.to_vec(), "row {i}: update");
            assert_eq!(names(&p.remove), remove.to_vec(), "row {i}: remove");
            assert_eq!(p.conflicts, conflicts.to_vec(), "row {i}: conflicts");
        }
    }

    #[test]
    fn memberships_follow_only_among_objects_the_target_holds() {
        let e = |g: &str, m: &str| Edge {
            group: g.into(),
            member: m.into(),
            member_type: MemberType::User,
        };
        let present: HashSet<String> = ["g1", "u1", "u2"].iter().map(|s| s.to_string()).collect();
        // u3 has no copy (a conflict): its membership is not wanted; u2's is gone in the source.
        let (add, remove) = plan_edges(&[e("g1", "u1"), e("g1", "u3")], &[e("g1", "u2")], &present);
        assert_eq!(add, vec![e("g1", "u1")]);
        assert_eq!(remove, vec![e("g1", "u2")]);
        let (add, remove) = plan_edges(&[e("g1", "u1")], &[e("g1", "u1")], &present);
        assert!(add.is_empty() && remove.is_empty());
        // u2's copy is being removed (not present): its membership goes with it, not alone.
        let going: HashSet<String> = ["g1", "u1"].iter().map(|s| s.to_string()).collect();
        let (add, remove) = plan_edges(&[], &[e("g1", "u2")], &going);
        assert!(add.is_empty() && remove.is_empty(), "{remove:?}");
    }

    #[test]
    fn a_copys_id_is_the_same_each_time_and_differs_per_target() {
        assert_eq!(copy_id("u-01", 2), copy_id("u-01", 2));
        assert_ne!(copy_id("u-01", 2), copy_id("u-01", 3));
        assert_ne!(copy_id("u-01", 2), "u-01");
    }
}
