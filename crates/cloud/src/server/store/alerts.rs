//! The open alerts: each look at the agents decides and records in one write transaction.

use super::agents::agent_rows;
use super::*;

impl Store {
    /// One look at the agents for the alerts, in one write transaction: `decide` gets the
    /// agents and the incidents open ((agent id, kind) → when raised) and returns what to post
    /// with the incidents it raises (agent id, kind, when) and clears (agent id, kind), which
    /// are recorded before the transaction ends. Of several nodes looking at once, each waits
    /// for the one before it, so exactly one raises (and posts) an incident and the others find
    /// it open.
    pub fn settle_alerts<T>(
        &self,
        mut decide: impl FnMut(&[AgentRow], Vec<(String, String, i64)>) -> Settled<T>,
    ) -> Result<T, AdminError> {
        self.admin_tx(|tx| {
            let agents = agent_rows(tx).map_err(self.admin_db())?;
            let open = tx
                .prepare("SELECT agent_id, kind, raised_at FROM alerts")
                .and_then(|mut st| {
                    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .and_then(|r| r.collect())
                })
                .map_err(self.admin_db())?;
            let (out, raised, cleared) = decide(&agents, open);
            for (a, k, at) in &raised {
                tx.execute(
                    "INSERT INTO alerts (agent_id, kind, raised_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (agent_id, kind) DO UPDATE SET raised_at = excluded.raised_at",
                    params![a, k, at],
                )
                .map_err(self.admin_db())?;
            }
            for (a, k) in &cleared {
                tx.execute(
                    "DELETE FROM alerts WHERE agent_id = ?1 AND kind = ?2",
                    params![a, k],
                )
                .map_err(self.admin_db())?;
            }
            Ok(out)
        })
    }
}

/// What `settle_alerts`' decision returns: what to post, the incidents raised (agent id, kind,
/// when) and those cleared (agent id, kind).
pub type Settled<T> = (T, Vec<(String, String, i64)>, Vec<(String, String)>);
