//! The cloud's decisions that need no database: a key's state, whether an installer may resume
//! its enrollment, who is primary. The store reads the rows, asks here, and writes what these
//! return, on SQLite and PostgreSQL alike; the tables below are what the rules are.

use ad_sync_api::api::KeyState;

/// How long after its first enrollment an installer may resume it (see
/// `store::agents::resume_enrollment`).
pub const RESUME_WINDOW_SECS: i64 = 15 * 60;

/// A key's state at `now`: revoked over used over expired.
pub fn key_state(
    revoked_at: Option<i64>,
    used_at: Option<i64>,
    expires_at: i64,
    now: i64,
) -> KeyState {
    if revoked_at.is_some() {
        KeyState::Revoked
    } else if used_at.is_some() {
        KeyState::Used
    } else if now >= expires_at {
        KeyState::Expired
    } else {
        KeyState::Valid
    }
}

/// Whether a used key's enrollment may be resumed at `now` (the installer's own retry, soon
/// after it: a later replay of the key must not rotate a running agent's credential). The
/// store also requires the same public key and an agent that never called in.
pub fn may_resume(used_at: Option<i64>, now: i64) -> bool {
    used_at.is_some_and(|used| now.saturating_sub(used) <= RESUME_WINDOW_SECS)
}

/// The domain's primary as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    pub id: String,
    pub last_seen: i64,
    pub deregistered: bool,
}

/// Who is primary after `candidate` calls in: the current one while it is enrolled and has
/// called within `timeout` seconds (or is the caller); otherwise the caller takes the role.
pub fn primary_after(current: Option<&Primary>, candidate: &str, now: i64, timeout: i64) -> String {
    match current {
        Some(p)
            if !p.deregistered
                && (p.id == candidate || now.saturating_sub(p.last_seen) <= timeout) =>
        {
            p.id.clone()
        }
        _ => candidate.to_string(),
    }
}

/// How the cloud reaches its PostgreSQL server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbTls {
    /// Plain TCP (or a Unix socket): asked for with `sslmode=disable`, or a server on this
    /// machine.
    Plain,
    /// TLS, the server's certificate verified (chain to `PGSSLROOTCERT`, and its name); never
    /// plain if that fails.
    Verified,
}

/// The `sslmode` an address gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslAsked {
    Disable,
    /// Not said, or `prefer`: libpq's "TLS if the server offers it", which a man in the middle
    /// turns into plain; here it is plain on this machine and verified TLS elsewhere.
    Prefer,
    Require,
}

/// Whether to reach the database with verified TLS. `local`: every host of the address is
/// this machine (a loopback address, `localhost`, or a Unix socket).
pub fn db_tls(asked: SslAsked, local: bool) -> DbTls {
    match asked {
        SslAsked::Disable => DbTls::Plain,
        SslAsked::Require => DbTls::Verified,
        SslAsked::Prefer if local => DbTls::Plain,
        SslAsked::Prefer => DbTls::Verified,
    }
}

/// Whether a TCP host is this machine.
pub fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_reached_over_verified_tls_unless_it_is_here_or_plain_is_asked_for() {
        use SslAsked::*;
        for (asked, host, want) in [
            (Prefer, "127.0.0.1", DbTls::Plain),
            (Prefer, "127.0.5.9", DbTls::Plain),
            (Prefer, "localhost", DbTls::Plain),
            (Prefer, "::1", DbTls::Plain),
            (Prefer, "db.example.com", DbTls::Verified),
            (Prefer, "10.0.0.5", DbTls::Verified),
            (Require, "127.0.0.1", DbTls::Verified),
            (Require, "db.example.com", DbTls::Verified),
            (Disable, "db.example.com", DbTls::Plain),
        ] {
            assert_eq!(db_tls(asked, is_local_host(host)), want, "{asked:?} {host}");
        }
    }

    #[test]
    fn a_keys_state_is_revoked_over_used_over_expired() {
        // (revoked, used, expires, now) -> state
        for (revoked, used, expires, now, want) in [
            (None, None, 100, 99, KeyState::Valid),
            (None, None, 100, 100, KeyState::Expired),
            (None, Some(50), 100, 99, KeyState::Used),
            (None, Some(50), 100, 200, KeyState::Used),
            (Some(60), None, 100, 99, KeyState::Revoked),
            (Some(60), Some(50), 100, 200, KeyState::Revoked),
        ] {
            assert_eq!(
                key_state(revoked, used, expires, now),
                want,
                "{revoked:?} {used:?} {expires} {now}"
            );
        }
    }

    #[test]
    fn an_enrollment_is_resumed_only_within_the_window() {
        let w = RESUME_WINDOW_SECS;
        for (used, now, want) in [
            (None, 0, false),
            (Some(1000), 1000, true),
            (Some(1000), 1000 + w, true),
            (Some(1000), 1000 + w + 1, false),
            // A clock that went back: still the same retry.
            (Some(1000), 900, true),
        ] {
            assert_eq!(may_resume(used, now), want, "{used:?} {now}");
        }
    }

    #[test]
    fn the_primary_keeps_its_role_while_it_calls_in() {
        let p = |id: &str, last_seen, deregistered| Primary {
            id: id.into(),
            last_seen,
            deregistered,
        };
        // (current, candidate, now) -> primary, with a timeout of 90 s
        for (current, candidate, now, want) in [
            (None, "b", 1000, "b"),
            (Some(p("a", 1000, false)), "b", 1090, "a"),
            (Some(p("a", 1000, false)), "b", 1091, "b"),
            (Some(p("a", 1000, false)), "a", 5000, "a"),
            (Some(p("a", 1000, true)), "b", 1001, "b"),
        ] {
            assert_eq!(
                primary_after(current.as_ref(), candidate, now, 90),
                want,
                "{current:?} {candidate} {now}"
            );
        }
    }
}
