//! Active Directory over LDAP (ldap3): connecting securely, binding as the service account,
//! reading entries. Knows LDAP and AD's conventions; knows nothing of checks or wizards.

pub mod bind;
pub mod browse;
pub mod cert;
pub mod connect;
pub mod dirsync;
pub mod discover;
pub mod object;
pub mod power;
pub mod sd;
pub mod session;
pub mod sid;
pub mod site;
pub mod usn;

pub use connect::{ConnectOptions, Connection, Fallback, Security, connect};
pub use session::{BindError, EntryExt, OpError, Session};

/// What a run cost: connections opened and LDAP operations sent on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub connections: u32,
    pub operations: u32,
}
