//! The agent API of ad-sync as both of its sides see it: the agent (through `ad-sync-core`,
//! which re-exports these modules under their own names) and the reference cloud
//! (`ad-sync-cloud`, which depends on this crate alone, so that the serving binary links no
//! LDAP, DNS or X.509 code).
//!
//! Pure: the wire types (`api`), password sealing (`sealed`), connect keys, DNs (`dn`), objectGUIDs
//! as text (`guid`), the attribute map of AD as a source (`mapping`), secrets that never print (`secret`) and times (`time_fmt`).

pub mod api;
pub mod connect_key;
pub mod dn;
pub mod guid;
pub mod mapping;
pub mod sealed;
pub mod secret;
pub mod time_fmt;
