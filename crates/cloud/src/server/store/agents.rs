//! Agents: enrollment (and its resumption), authentication, heartbeats with the primary
//! election, deregistration, and the list the admin and the status page read.

use super::keys::{find_key, key_state_message, unusable_key};
use super::*;

impl Store {
    /// Consumes the key and creates the agent, in one transaction: of any number of concurrent
    /// enrollments with one key exactly one commits; any failure leaves the key as it was.
    #[allow(clippy::too_many_arguments)]
    pub fn enroll(
        &self,
        key: &ConnectKey,
        domain: &Dn,
        host: &str,
        version: &str,
        os: &str,
        public_key: &[u8; 32],
        timing: Timing,
        now: i64,
    ) -> Result<EnrollResponse, ApiError> {
        let agent_id = format!("agt-{}", random_token(8)?.to_lowercase());
        // Cleared from memory when dropped (a resume seals it and drops it here; a new
        // enrollment's goes out in the response, whose buffer this cannot reach).
        let credential = zeroize::Zeroizing::new(format!("ADSA1-{}", random_token(32)?));
        self.write(|tx| {
        let (key_id, domain_id, row, key_dn_key) = find_key(tx, &key.hash())?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::KeyUnknown,
                "connect key: this cloud did not issue it; check the cloud URL or issue a new key",
            )
        })?;
        match row.state(now) {
            KeyState::Valid => {}
            KeyState::Used
                if api::domain_key(domain) == key_dn_key
                    && let Some(resumed) =
                        resume_enrollment(tx, &row, domain_id, public_key, &credential, now)? =>
            {
                let primary = elect(tx, domain_id, &resumed, now, timing)?;
                let sealed = ad_sync_api::sealed::seal(public_key, credential.as_bytes())
                    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
                return Ok(EnrollResponse {
                    role: if primary == resumed {
                        Role::Primary
                    } else {
                        Role::Standby
                    },
                    agent_id: resumed,
                    credential: sealed,
                    resumed: true,
                    domain: row.domain,
                    heartbeat_interval_seconds: timing.heartbeat_interval.as_secs(),
                });
            }
            state => {
                return Err(unusable_key(state, &row));
            }
        }
        if api::domain_key(domain) != key_dn_key {
            return Err(ApiError::new(
                ErrorCode::WrongDomain,
                key_state_message(KeyState::WrongDomain, &row, Some(domain)),
            ));
        }
        let consumed = tx.execute(
            "UPDATE keys SET used_at = ?2, used_by = ?3 WHERE id = ?1 AND used_at IS NULL",
            params![key_id, now, agent_id],
        )?;
        if consumed != 1 {
            return Err(ApiError::new(
                ErrorCode::KeyUsed,
                "connect key: already used to enroll an agent; issue a new key for this one",
            ));
        }
        tx.execute(
            "INSERT INTO agents (id, domain_id, credential_hash, public_key, host, version, os, enrolled_at, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            params![
                agent_id,
                domain_id,
                credential_hash(&credential),
                public_key.as_slice(),
                host,
                version,
                os,
                now
            ],
        )?;
        let primary = elect(tx, domain_id, &agent_id, now, timing)?;
        Ok(EnrollResponse {
            role: if primary == agent_id {
                Role::Primary
            } else {
                Role::Standby
            },
            agent_id: agent_id.clone(),
            credential: credential.to_string(),
            resumed: false,
            domain: row.domain,
            heartbeat_interval_seconds: timing.heartbeat_interval.as_secs(),
        })
        })
    }

    pub fn authenticate(&self, credential: &str) -> Result<Option<AgentAuth>, ApiError> {
        let conn = self.lock();
        let found = conn
            .query_row(
                "SELECT id, domain_id, deregistered_at FROM agents WHERE credential_hash = ?1",
                [credential_hash(credential)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                },
            )
            .optional()?;
        Ok(match found {
            Some((agent_id, domain_id, None)) => Some(AgentAuth {
                agent_id,
                domain_id,
            }),
            _ => None,
        })
    }

    pub fn heartbeat(
        &self,
        agent: &AgentAuth,
        req: &HeartbeatRequest,
        timing: Timing,
        now: i64,
    ) -> Result<HeartbeatResponse, ApiError> {
        let status = if req.status.is_empty() {
            "ok"
        } else {
            &req.status
        };
        let primary = self.write(|tx| -> Result<String, ApiError> {
        tx.execute(
            "UPDATE agents SET last_seen = ?2, version = ?3, host = ?4, status = ?5, message = ?6,
                 first_heartbeat_at = COALESCE(first_heartbeat_at, ?2) WHERE id = ?1",
            params![
                agent.agent_id,
                now,
                req.version,
                req.host,
                status,
                req.message
            ],
        )?;
        if let Some(run) = &req.run {
            let at = |t: &Option<String>| {
                t.as_deref()
                    .and_then(ad_sync_api::time_fmt::rfc3339_to_unix)
            };
            tx.execute(
                "UPDATE agents SET held = ?2, failed = ?3, last_run = ?4, last_success = ?5, last_reconcile = ?6, held_from_ad = ?7 WHERE id = ?1",
                params![
                    agent.agent_id,
                    run.held.min(i64::MAX as u64) as i64,
                    run.failed.min(i64::MAX as u64) as i64,
                    at(&run.last_run),
                    at(&run.last_success),
                    at(&run.last_reconcile),
                    run.held_from_ad.min(i64::MAX as u64) as i64
                ],
            )?;
        }
        Ok(elect(tx, agent.domain_id, &agent.agent_id, now, timing)?)
        })?;
        Ok(HeartbeatResponse {
            role: if primary == agent.agent_id {
                Role::Primary
            } else {
                Role::Standby
            },
            primary_agent_id: primary,
            heartbeat_interval_seconds: timing.heartbeat_interval.as_secs(),
            primary_timeout_seconds: timing.primary_timeout.as_secs(),
            server_time: unix_to_rfc3339(now),
        })
    }

    /// Retires the agent's credential; its primary role goes to the next agent that calls in.
    pub fn deregister(&self, agent: &AgentAuth, now: i64) -> Result<(), ApiError> {
        self.write(|tx| -> Result<(), ApiError> {
            tx.execute(
                "UPDATE agents SET deregistered_at = ?2 WHERE id = ?1",
                params![agent.agent_id, now],
            )?;
            tx.execute(
                "UPDATE domains SET primary_agent = NULL WHERE id = ?1 AND primary_agent = ?2",
                params![agent.domain_id, agent.agent_id],
            )?;
            Ok(())
        })
    }

    /// Retires an agent from the admin side (a stolen or retired server): its credential
    /// stops working at once (401), it gets no more passwords, and its primary role goes to
    /// the next agent that calls in.
    pub fn deregister_agent(&self, id: &str, now: i64) -> Result<bool, AdminError> {
        self.admin_tx(|tx| {
            let found: Option<(i64, Option<i64>)> = tx
                .query_row(
                    "SELECT domain_id, deregistered_at FROM agents WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((domain_id, deregistered)) = found else {
                return Err(AdminError::Invalid(format!(
                    "agent {id}: this cloud has no such agent; `ad-sync-cloud agents` lists them"
                ))
                .into());
            };
            if deregistered.is_some() {
                return Ok(false);
            }
            tx.execute(
                "UPDATE agents SET deregistered_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            tx.execute(
                "UPDATE domains SET primary_agent = NULL WHERE id = ?1 AND primary_agent = ?2",
                params![domain_id, id],
            )?;
            Ok(true)
        })
    }

    pub fn agents(&self) -> Result<Vec<AgentRow>, AdminError> {
        agent_rows(&self.lock()).map_err(self.admin_db())
    }
}

/// An installer that was stopped after the cloud enrolled it, but before it stored the
/// credential, enrolls again with the same key and the same public key. The agent it created
/// gets a new credential, sealed to that public key, so only the holder of the private key
/// (the installer that made the pair) can read it; the old credential stops working. Anyone
/// else presenting the used key gets `key_used` as before.
pub(super) fn resume_enrollment(
    tx: &Connection,
    row: &KeyRow,
    domain_id: i64,
    public_key: &[u8; 32],
    credential: &str,
    now: i64,
) -> Result<Option<String>, ApiError> {
    let Some(agent) = row.used_by.as_deref() else {
        return Ok(None);
    };
    // Only the installer's own retry: soon after the first enrollment, and before the agent
    // ever called in. Later, a replay of the used key (with a public key it copied) must not
    // rotate a running agent's credential.
    if !crate::server::rules::may_resume(row.used_at, now) {
        return Ok(None);
    }
    let changed = tx.execute(
        "UPDATE agents SET credential_hash = ?1
         WHERE id = ?2 AND domain_id = ?3 AND public_key = ?4 AND deregistered_at IS NULL
           AND first_heartbeat_at IS NULL",
        params![
            credential_hash(credential),
            agent,
            domain_id,
            public_key.as_slice()
        ],
    )?;
    Ok((changed == 1).then(|| agent.to_string()))
}

/// Keeps the current primary while it calls in; hands the role to `candidate` when there is no
/// primary or the primary has been silent longer than the timeout.
pub(super) fn elect(
    conn: &Connection,
    domain_id: i64,
    candidate: &str,
    now: i64,
    timing: Timing,
) -> db::Result<String> {
    use crate::server::rules::{Primary, primary_after};
    let current: Option<Primary> = conn
        .query_row(
            "SELECT a.id, a.last_seen, a.deregistered_at FROM domains d
             JOIN agents a ON a.id = d.primary_agent WHERE d.id = ?1",
            [domain_id],
            |r| {
                Ok(Primary {
                    id: r.get(0)?,
                    last_seen: r.get(1)?,
                    deregistered: r.get::<_, Option<i64>>(2)?.is_some(),
                })
            },
        )
        .optional()?;
    let timeout = i64::try_from(timing.primary_timeout.as_secs()).unwrap_or(i64::MAX);
    let primary = primary_after(current.as_ref(), candidate, now, timeout);
    if current.as_ref().is_some_and(|c| c.id == primary) {
        return Ok(primary);
    }
    conn.execute(
        "UPDATE domains SET primary_agent = ?2 WHERE id = ?1",
        params![domain_id, primary],
    )?;
    if let Some(old) = current {
        tracing::info!(domain_id, from = %old.id, to = %primary, "primary agent moved");
    }
    Ok(primary)
}

pub(super) fn agent_rows(conn: &Connection) -> db::Result<Vec<AgentRow>> {
    let mut stmt = conn.prepare(
        "SELECT a.id, d.dn, a.host, a.version, a.os, a.enrolled_at, a.last_seen, a.status,
                a.message, a.deregistered_at, d.primary_agent = a.id, a.held, a.failed,
                a.last_run, a.last_success,
                CASE WHEN d.primary_agent = a.id
                     THEN (SELECT COUNT(*) FROM source_refusals r WHERE r.domain_id = d.id)
                     ELSE 0 END
         FROM agents a JOIN domains d ON d.id = a.domain_id ORDER BY d.dn_key, a.enrolled_at",
    )?;
    stmt.query_map([], |r| {
        Ok(AgentRow {
            id: r.get(0)?,
            domain: r.get(1)?,
            host: r.get(2)?,
            version: r.get(3)?,
            os: r.get(4)?,
            enrolled_at: r.get(5)?,
            last_seen: r.get(6)?,
            status: r.get(7)?,
            message: r.get(8)?,
            deregistered_at: r.get(9)?,
            primary: r.get::<_, Option<bool>>(10)?.unwrap_or(false),
            held: r.get(11)?,
            failed: r.get(12)?,
            last_run: r.get(13)?,
            last_success: r.get(14)?,
            source_refused: r.get(15)?,
        })
    })
    .and_then(|r| r.collect())
}

/// Refuses a standby agent what only the domain's primary may do (`does`: what that is).
pub(crate) fn require_primary(
    conn: &db::Connection,
    agent: &AgentAuth,
    does: &str,
) -> Result<(), ApiError> {
    let primary: Option<String> = conn.query_row(
        "SELECT primary_agent FROM domains WHERE id = ?1",
        [agent.domain_id],
        |r| r.get(0),
    )?;
    if primary.as_deref() != Some(agent.agent_id.as_str()) {
        return Err(ApiError::new(
            ErrorCode::NotPrimary,
            format!(
                "this agent is standby; {} is primary for the domain and {does}",
                primary.as_deref().unwrap_or("no agent")
            ),
        ));
    }
    Ok(())
}
