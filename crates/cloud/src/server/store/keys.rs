//! Domain instances and connect keys: adding domains, issuing, listing, revoking and
//! checking keys (only their hashes and last four characters are stored).

use super::*;

impl Store {
    pub fn add_domain(&self, text: &str) -> Result<(DomainRow, bool), AdminError> {
        let dn = api::parse_domain_dn(text).map_err(AdminError::Invalid)?;
        let conn = self.lock();
        let created = conn
            .execute(
                "INSERT INTO domains (dn, dn_key, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![
                    dn.to_comma_form(),
                    api::domain_key(&dn),
                    ad_sync_api::time_fmt::now_unix()
                ],
            )
            .map_err(self.admin_db())?
            == 1;
        let row = find_domain(&conn, &dn)
            .map_err(self.admin_db())?
            .ok_or_else(|| AdminError::Invalid("the domain vanished while being added".into()))?;
        Ok((row, created))
    }

    pub fn domains(&self) -> Result<Vec<DomainRow>, AdminError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT id, dn, created_at, primary_agent, acked_cursor, last_seq FROM domains ORDER BY dn_key")
            .map_err(self.admin_db())?;
        let rows = stmt
            .query_map([], domain_row)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(self.admin_db())?;
        Ok(rows)
    }

    /// Issues a key for a known domain instance. The caller shows the key once; only its hash
    /// and last four characters are stored.
    pub fn issue_key(
        &self,
        domain_text: &str,
        ttl: Duration,
    ) -> Result<(ConnectKey, KeyRow), AdminError> {
        let dn = api::parse_domain_dn(domain_text).map_err(AdminError::Invalid)?;
        if ttl.is_zero() {
            return Err(AdminError::Invalid(
                "--ttl must be longer than zero (for example 7d, 12h or 30m)".into(),
            ));
        }
        let key = ConnectKey::generate().map_err(|e| {
            AdminError::Invalid(format!("the OS could not supply random bytes: {e}"))
        })?;
        let conn = self.lock();
        let domain = find_domain(&conn, &dn)
            .map_err(self.admin_db())?
            .ok_or_else(|| {
                AdminError::Invalid(format!(
                    "--domain {domain_text}: no such domain instance; add it first with `ad-sync-cloud domain add \"{}\"`",
                    dn.to_comma_form()
                ))
            })?;
        let now = ad_sync_api::time_fmt::now_unix();
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 4);
        let expires_at = now.saturating_add(ttl_secs.max(1));
        let hint = key.redacted();
        conn.execute(
            "INSERT INTO keys (hash, hint, domain_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key.hash(), hint, domain.id, now, expires_at],
        )
        .map_err(self.admin_db())?;
        let row = KeyRow {
            hint,
            domain: domain.dn,
            created_at: now,
            expires_at,
            used_at: None,
            used_by: None,
            revoked_at: None,
        };
        Ok((key, row))
    }

    pub fn keys(&self) -> Result<Vec<KeyRow>, AdminError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!("{KEY_SELECT} ORDER BY k.id"))
            .map_err(self.admin_db())?;
        stmt.query_map([], |r| key_row(r).map(|(_, _, row, _)| row))
            .and_then(|r| r.collect())
            .map_err(self.admin_db())
    }

    /// Revokes an unused connect key, named by the key itself or by its last four characters
    /// (as `key list` shows them). Effective at once: it can no longer enroll, and a check
    /// answers `revoked`.
    pub fn revoke_key(&self, key_or_last4: &str, now: i64) -> Result<KeyRow, AdminError> {
        let text = key_or_last4.trim();
        // What errors may show: never a whole key (it came on standard input to stay secret).
        let shown = match ConnectKey::parse(text) {
            Ok(k) if text.len() > 8 => k.redacted(),
            _ if text.len() > 8 => "(the key given)".to_string(),
            _ => text.to_string(),
        };
        self.admin_tx(|tx| {
            let rows: Vec<(i64, i64, KeyRow, String)> = if text.len() > 8 {
                let key = ConnectKey::parse(text)
                    .map_err(|e| AdminError::Invalid(format!("key: {e}")))?;
                tx.query_row(&format!("{KEY_SELECT} WHERE k.hash = ?1"), [key.hash()], key_row)
                    .optional()?
                    .into_iter()
                    .collect()
            } else {
                let suffix = format!("%{}", text.to_ascii_uppercase());
                tx.prepare(&format!("{KEY_SELECT} WHERE k.hint LIKE ?1"))?
                    .query_map([suffix], key_row)?
                    .collect::<Result<_, _>>()?
            };
            let (id, _, mut row, _) = match rows.len() {
                0 => {
                    return Err(AdminError::Invalid(format!(
                        "key {shown}: this cloud has no such key; `ad-sync-cloud key list` shows them"
                    ))
                    .into());
                }
                1 => rows.into_iter().next().ok_or_else(|| AdminError::Invalid(String::new()))?,
                n => {
                    return Err(AdminError::Invalid(format!(
                        "key {shown}: {n} keys end that way; give the whole key on standard input (`key revoke -`)"
                    ))
                    .into());
                }
            };
            if row.revoked_at.is_some() {
                return Ok(row);
            }
            if row.used_at.is_some() {
                return Err(AdminError::Invalid(format!(
                    "key {}: already used by agent {}; a used key cannot enroll again, so revoke the agent instead: ad-sync-cloud agents deregister {}",
                    row.hint,
                    row.used_by.as_deref().unwrap_or("?"),
                    row.used_by.as_deref().unwrap_or("<ID>")
                ))
                .into());
            }
            tx.execute("UPDATE keys SET revoked_at = ?2 WHERE id = ?1", params![id, now])?;
            row.revoked_at = Some(now);
            Ok(row)
        })
    }

    pub fn check_key(
        &self,
        key: &ConnectKey,
        domain: Option<&Dn>,
        now: i64,
    ) -> Result<KeyCheckResponse, ApiError> {
        let conn = self.lock();
        let found = find_key(&conn, &key.hash())?;
        Ok(match found {
            None => KeyCheckResponse {
                state: KeyState::Unknown,
                domain: None,
                expires_at: None,
                used_at: None,
                message: "this cloud did not issue that key (or it was issued by another cloud); check the cloud URL, or issue a new key".into(),
            },
            Some((_, _, row, key_dn_key)) => {
                let mut state = row.state(now);
                if state == KeyState::Valid
                    && domain.is_some_and(|d| api::domain_key(d) != key_dn_key)
                {
                    state = KeyState::WrongDomain;
                }
                let message = key_state_message(state, &row, domain);
                KeyCheckResponse {
                    state,
                    domain: Some(row.domain.clone()),
                    expires_at: Some(unix_to_rfc3339(row.expires_at)),
                    used_at: row.used_at.map(unix_to_rfc3339),
                    message,
                }
            }
        })
    }
}

pub(super) fn domain_row(r: &db::Row<'_>) -> db::Result<DomainRow> {
    Ok(DomainRow {
        id: r.get(0)?,
        dn: r.get(1)?,
        created_at: r.get(2)?,
        primary_agent: r.get(3)?,
        acked_cursor: r.get(4)?,
        last_seq: r.get(5)?,
    })
}

pub(super) fn find_domain(conn: &Connection, dn: &Dn) -> db::Result<Option<DomainRow>> {
    conn.query_row(
        "SELECT id, dn, created_at, primary_agent, acked_cursor, last_seq FROM domains WHERE dn_key = ?1",
        [api::domain_key(dn)],
        domain_row,
    )
    .optional()
}

/// A key with its domain; `key_row` reads it.
pub(super) const KEY_SELECT: &str = "SELECT k.id, k.domain_id, k.hint, d.dn, k.created_at, k.expires_at, k.used_at, k.used_by, d.dn_key, k.revoked_at
     FROM keys k JOIN domains d ON d.id = k.domain_id";

/// (key id, domain id, row, the domain's comparison key)
pub(super) fn key_row(r: &db::Row<'_>) -> db::Result<(i64, i64, KeyRow, String)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        KeyRow {
            hint: r.get(2)?,
            domain: r.get(3)?,
            created_at: r.get(4)?,
            expires_at: r.get(5)?,
            used_at: r.get(6)?,
            used_by: r.get(7)?,
            revoked_at: r.get(9)?,
        },
        r.get(8)?,
    ))
}

pub(super) fn find_key(
    conn: &Connection,
    hash: &str,
) -> Result<Option<(i64, i64, KeyRow, String)>, ApiError> {
    Ok(conn
        .query_row(&format!("{KEY_SELECT} WHERE k.hash = ?1"), [hash], key_row)
        .optional()?)
}

/// The error for a key that cannot enroll (used, expired or revoked), in words.
pub(super) fn unusable_key(state: KeyState, row: &KeyRow) -> ApiError {
    let code = match state {
        KeyState::Used => ErrorCode::KeyUsed,
        KeyState::Revoked => ErrorCode::KeyRevoked,
        _ => ErrorCode::KeyExpired,
    };
    ApiError::new(code, key_state_message(state, row, None))
}

pub(super) fn key_state_message(state: KeyState, row: &KeyRow, asked: Option<&Dn>) -> String {
    match state {
        KeyState::Valid => format!(
            "the key is valid for {} until {}",
            row.domain,
            unix_to_rfc3339(row.expires_at)
        ),
        KeyState::Used => format!(
            "the key was already used (at {}) to enroll an agent; keys work once: issue a new key for this agent",
            row.used_at.map_or_else(String::new, unix_to_rfc3339)
        ),
        KeyState::Expired => format!(
            "the key expired at {}; issue a new key (ad-sync-cloud key issue --domain \"{}\")",
            unix_to_rfc3339(row.expires_at),
            row.domain
        ),
        KeyState::WrongDomain => format!(
            "the key is for domain {}, not {}; issue a key for this domain instance",
            row.domain,
            asked.map_or_else(|| "this one".to_string(), Dn::to_comma_form)
        ),
        KeyState::Revoked => format!(
            "the key was revoked at {}; issue a new key (ad-sync-cloud key issue --domain \"{}\")",
            row.revoked_at.map_or_else(String::new, unix_to_rfc3339),
            row.domain
        ),
        KeyState::Malformed | KeyState::Unknown => String::new(),
    }
}
