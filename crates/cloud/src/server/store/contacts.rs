//! AD as a source, contacts: AD `contact` objects (people with an e-mail address and no
//! account) in the scope become cloud contacts, matched on their e-mail address, with the map's
//! contact rows (`mapping::ROWS`). Their authority is AD: the cloud has no command that changes
//! them. As users and groups, a contact deleted in AD or moved out of the scope is marked
//! deleted and kept for the retention, restored if it comes back with the same objectGUID, and
//! removed for good after. Contacts travel only from AD to the cloud (the agent writes no
//! contact into AD).
//!
//! Matching on the address: one AD contact per address in a domain. A second live AD contact
//! with an address the first already has is refused by name; a contact the cloud keeps as
//! deleted gives its address to the next AD contact that has it (the link moves to that
//! objectGUID).

use super::*;
use ad_sync_api::api::{AdLink, SourceContact, SourceItem, SourceOutcome};
use std::collections::BTreeMap;

/// The cloud field a contact is matched on.
pub const MATCHED_ON: &str = "email";

struct Stored {
    id: String,
    mail: String,
    fields: BTreeMap<String, String>,
    deleted_at: Option<i64>,
}

fn stored(r: &db::Row<'_>) -> db::Result<Stored> {
    let fields: String = r.get(2)?;
    Ok(Stored {
        id: r.get(0)?,
        mail: r.get(1)?,
        fields: serde_json::from_str(&fields).unwrap_or_default(),
        deleted_at: r.get(3)?,
    })
}

fn by_guid(tx: &Connection, domain: i64, guid: &str) -> db::Result<Option<Stored>> {
    tx.prepare_cached(
        "SELECT c.id, c.mail, c.fields, c.deleted_at FROM links l JOIN contacts c ON c.id = l.object_id
         WHERE l.domain_id = ?1 AND l.guid = ?2",
    )?
    .query_row(params![domain, guid], stored)
    .optional()
}

fn by_mail(tx: &Connection, domain: i64, mail: &str) -> db::Result<Option<Stored>> {
    tx.prepare_cached(
        "SELECT id, mail, fields, deleted_at FROM contacts WHERE domain_id = ?1 AND mail = ?2",
    )?
    .query_row(params![domain, mail], stored)
    .optional()
}

fn answer(guid: &str, id: Option<&str>, outcome: SourceOutcome, message: String) -> SourceItem {
    SourceItem {
        guid: guid.to_string(),
        id: id.map(str::to_string),
        outcome,
        message,
    }
}

/// The address a contact with these fields is matched on, or why the cloud cannot hold it.
pub fn address(fields: &BTreeMap<String, String>) -> Result<String, String> {
    let mail = fields.get(MATCHED_ON).map(|m| m.trim()).unwrap_or_default();
    if mail.is_empty() {
        return Err("it has no e-mail address (mail), which contacts are matched on; set one in AD, and the contact is sent with that change".into());
    }
    if !mail.contains('@') || mail.contains(char::is_whitespace) || mail.len() > 256 {
        return Err(format!(
            "its e-mail address `{mail}` is not one (name@domain); correct mail in AD"
        ));
    }
    Ok(mail.to_string())
}

/// Why the cloud cannot hold a contact with these fields, or `None`.
#[cfg(test)]
fn refusal(fields: &BTreeMap<String, String>) -> Option<String> {
    address(fields).err()
}

/// One contact AD sent: created, brought up to date, marked deleted, restored, or refused.
pub(super) fn one_contact(
    tx: &Connection,
    agent: &AgentAuth,
    c: &SourceContact,
    now: i64,
) -> db::Result<SourceItem> {
    let domain = agent.domain_id;
    let mine = by_guid(tx, domain, &c.guid)?;
    if c.deleted {
        return Ok(match mine {
            Some(s) if s.deleted_at.is_none() => {
                tx.execute(
                    "UPDATE contacts SET deleted_at = ?2 WHERE id = ?1",
                    params![s.id, now],
                )?;
                answer(
                    &c.guid,
                    Some(&s.id),
                    SourceOutcome::Suspended,
                    String::new(),
                )
            }
            Some(s) => answer(
                &c.guid,
                Some(&s.id),
                SourceOutcome::Unchanged,
                String::new(),
            ),
            None => answer(&c.guid, None, SourceOutcome::Unchanged, String::new()),
        });
    }
    let mail = match address(&c.fields) {
        Ok(m) => m,
        Err(why) => {
            return Ok(answer(
                &c.guid,
                mine.as_ref().map(|s| s.id.as_str()),
                SourceOutcome::Refused,
                why,
            ));
        }
    };
    let holder = by_mail(tx, domain, &mail)?;
    // The address is another contact's: a live one keeps it; a deleted one gives it up.
    if let Some(h) = &holder
        && mine.as_ref().is_none_or(|m| m.id != h.id)
    {
        if h.deleted_at.is_none() {
            return Ok(answer(
                &c.guid,
                mine.as_ref().map(|s| s.id.as_str()),
                SourceOutcome::Refused,
                format!(
                    "another AD contact of this domain has the e-mail address {mail}, and contacts are matched on it; give one of them another address in AD"
                ),
            ));
        }
        if mine.is_some() {
            // This contact moves to an address a deleted one held: that one goes for good.
            tx.execute("DELETE FROM links WHERE object_id = ?1", [&h.id])?;
            tx.execute("DELETE FROM contacts WHERE id = ?1", [&h.id])?;
        }
    }
    let fields = serde_json::to_string(&c.fields).map_err(|e| db::Error::Other(Box::new(e)))?;
    match (mine, holder) {
        (Some(s), _) => {
            let outcome = if s.deleted_at.is_some() {
                SourceOutcome::Restored
            } else if s.mail == mail && s.fields == c.fields {
                return Ok(answer(
                    &c.guid,
                    Some(&s.id),
                    SourceOutcome::Unchanged,
                    String::new(),
                ));
            } else {
                SourceOutcome::Updated
            };
            tx.execute(
                "UPDATE contacts SET mail = ?2, fields = ?3, deleted_at = NULL WHERE id = ?1",
                params![s.id, mail, fields],
            )?;
            Ok(answer(&c.guid, Some(&s.id), outcome, String::new()))
        }
        // A deleted contact with this address: matched on it, it is this one now.
        (None, Some(h)) => {
            tx.execute("DELETE FROM links WHERE object_id = ?1", [&h.id])?;
            super::import::add_link(tx, agent, &h.id, &c.guid, now)?;
            tx.execute(
                "UPDATE contacts SET mail = ?2, fields = ?3, deleted_at = NULL WHERE id = ?1",
                params![h.id, mail, fields],
            )?;
            Ok(answer(
                &c.guid,
                Some(&h.id),
                SourceOutcome::Restored,
                format!(
                    "matched on its e-mail address {mail} with the contact the cloud kept as deleted"
                ),
            ))
        }
        (None, None) => {
            let id = new_id("c")?;
            tx.execute(
                "INSERT INTO contacts (domain_id, id, mail, fields) VALUES (?1, ?2, ?3, ?4)",
                params![domain, id, mail, fields],
            )?;
            super::import::add_link(tx, agent, &id, &c.guid, now)?;
            Ok(answer(
                &c.guid,
                Some(&id),
                SourceOutcome::Created,
                String::new(),
            ))
        }
    }
}

/// Removes the contacts deleted in AD longer ago than the retention, with their links.
pub(super) fn purge(tx: &Connection, domain: i64, before: i64) -> db::Result<()> {
    tx.execute(
        "DELETE FROM links WHERE object_id IN (SELECT id FROM contacts WHERE domain_id = ?1 AND deleted_at IS NOT NULL AND deleted_at < ?2)",
        params![domain, before],
    )?;
    tx.execute(
        "DELETE FROM contacts WHERE domain_id = ?1 AND deleted_at IS NOT NULL AND deleted_at < ?2",
        params![domain, before],
    )?;
    Ok(())
}

/// A contact as `ad-sync-cloud contact list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContactRow {
    pub id: String,
    pub mail: String,
    /// The map's contact fields as AD sent them.
    pub fields: BTreeMap<String, String>,
    pub links: Vec<AdLink>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
}

impl Store {
    /// Every contact of `domain`, by address.
    pub fn contact_list(&self, domain: i64) -> Result<Vec<ContactRow>, AdminError> {
        self.admin_tx(|tx| {
            let rows: Vec<Stored> = tx
                .prepare("SELECT id, mail, fields, deleted_at FROM contacts WHERE domain_id = ?1 ORDER BY mail")?
                .query_map([domain], stored)?
                .collect::<Result<_, _>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for s in rows {
                out.push(ContactRow {
                    links: links_of(tx, &s.id)?,
                    id: s.id,
                    mail: s.mail,
                    fields: s.fields,
                    deleted_at: s.deleted_at,
                });
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_needs_an_address_it_can_be_matched_on() {
        let f = |mail: Option<&str>| -> BTreeMap<String, String> {
            mail.map(|m| (MATCHED_ON.to_string(), m.to_string()))
                .into_iter()
                .collect()
        };
        for (mail, refused) in [
            (Some("ann@example.com"), None),
            (None, Some("no e-mail address")),
            (Some("  "), Some("no e-mail address")),
            (Some("ann at example.com"), Some("is not one")),
            (Some("ann"), Some("is not one")),
        ] {
            let r = refusal(&f(mail));
            match refused {
                None => assert_eq!(r, None, "{mail:?}"),
                Some(words) => assert!(
                    r.as_deref().is_some_and(|w| w.contains(words)),
                    "{mail:?}: {r:?}"
                ),
            }
        }
    }
}
