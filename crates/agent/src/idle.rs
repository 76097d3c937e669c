//! What the service gives back to the system before it waits for its next step.
//!
//! Between steps (a heartbeat every 30 s by default, and a run on the primary) the agent does
//! nothing, yet it would keep resident everything its last step touched: heap the allocator
//! keeps for later, and the pages of its code and of the libraries it called (LDAP, TLS,
//! SQLite), about 15 MB of the 20 MB it held idle. Some seconds into a wait of 15 s or more
//! (`SETTLE`, `GIVE_BACK_BEFORE`), it gives back:
//!
//! - **Linux (glibc):** the heap's free pages (`malloc_trim`), and the pages of every mapping of
//!   a file that it can take again from the file unchanged (`madvise(MADV_DONTNEED)`): private,
//!   not writable, holding no page of its own (`may_give_back`). Those pages stay in the page
//!   cache, where the kernel may reclaim them; the next step maps them again (minor faults).
//!   A mapping that relocation wrote to (RELRO) or that can be written is never touched: its
//!   own pages would be lost.
//! - **Windows:** its working set, with `SetProcessWorkingSetSize(process, -1, -1)`, which
//!   Microsoft documents as "removes as many pages as possible from the working set"; they go
//!   to the standby list and come back on use, as Windows itself does under memory pressure.
//!   Wine accepts the call and does nothing with it, so only Windows shows its effect.
//!
//! Nothing here changes what the agent does; a failure is logged at debug and ignored.
//! `release_heap` alone (the heap's free pages) is also called between the pages of a long read.

use std::time::Duration;

/// How long into a wait memory is given back: after the step's connection to the cloud has
/// closed, which runs TLS code again. The client's pool drops a connection idle for
/// `POOL_IDLE` at its next check, which comes every `POOL_IDLE`: by twice that at the latest.
pub const SETTLE: Duration =
    Duration::from_secs(2 * ad_sync_core::cloud::client::POOL_IDLE.as_secs() + 1);

/// Waits at least this long are worth giving memory back in: a run that goes on at once (a
/// capped first sync) or soon (a short backoff) keeps what it has.
pub const GIVE_BACK_BEFORE: Duration = Duration::from_secs(SETTLE.as_secs() + 4);
const _: () = assert!(GIVE_BACK_BEFORE.as_secs() > SETTLE.as_secs());

/// One mapping of the process, as /proc/PID/smaps describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    /// `rwxp`/`r--s` as the kernel prints them.
    pub perms: String,
    /// The file's path, or `[heap]`, `[stack]`, `[vdso]`..., or empty for anonymous memory.
    pub path: String,
    /// Resident KiB.
    pub rss_kib: u64,
    /// KiB of pages of the process's own (written or copied-on-write), not the file's.
    pub anonymous_kib: u64,
}

/// The mappings of an smaps text (/proc/PID/smaps), in order.
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if first.ends_with(':') {
            let kib = fields
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if let Some(m) = out.last_mut() {
                match first {
                    "Rss:" => m.rss_kib = kib,
                    "Anonymous:" => m.anonymous_kib = kib,
                    _ => {}
                }
            }
            continue;
        }
        // A mapping's header: start-end perms offset dev inode [path, which may hold spaces].
        let Some((start, end)) = first.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        let Some(perms) = fields.next() else {
            continue;
        };
        // offset, device, inode; then the path, the rest of the line as printed.
        let path = after_fields(line, 5).trim().to_string();
        out.push(Mapping {
            start,
            end,
            perms: perms.to_string(),
            path,
            rss_kib: 0,
            anonymous_kib: 0,
        });
    }
    out
}

/// What follows the first `n` whitespace-separated fields of a line.
fn after_fields(line: &str, n: usize) -> &str {
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start();
        rest = rest.find(char::is_whitespace).map_or("", |i| &rest[i..]);
    }
    rest
}

/// Whether a mapping's resident pages can be given back and taken again from its file with the
/// same contents: a private mapping of a file that exists, readable, not writable (so nothing
/// can write a page of its own between this look and the call), holding no page of its own
/// already (a RELRO segment that relocation wrote, say), and holding something.
pub fn may_give_back(m: &Mapping) -> bool {
    let p = m.perms.as_bytes();
    p.len() == 4
        && p[0] == b'r'
        && p[1] == b'-'
        && p[3] == b'p'
        && m.path.starts_with('/')
        && !m.path.ends_with(" (deleted)")
        && m.anonymous_kib == 0
        && m.rss_kib > 0
}

/// What one giving back did, for the debug log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GivenBack {
    /// Mappings of files whose pages were given back.
    pub mappings: usize,
    /// Their resident KiB before.
    pub file_kib: u64,
}

/// Gives the heap freed by a run back to the system (glibc keeps it otherwise). Also called
/// between the pages of a long read (the reconciliation, a full read): what one page's
/// entries, records and bodies took is given back before the next (the export's live heap
/// peaks near 11 MB at 10,000 users, heaptrack; its resident size at 30 MB, GNU time).
pub fn release_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's to the system; it takes
    // the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Gives back the heap's free pages and the file pages the last step touched (see the module).
pub fn give_back() -> GivenBack {
    let given = platform::give_back();
    tracing::debug!(
        mappings = given.mappings,
        file_kib = given.file_kib,
        "memory given back before waiting"
    );
    given
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod platform {
    use super::{GivenBack, may_give_back, parse_smaps};

    pub fn give_back() -> GivenBack {
        super::release_heap();
        let smaps = match std::fs::read_to_string("/proc/self/smaps") {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("/proc/self/smaps cannot be read ({e}): no file pages given back");
                return GivenBack::default();
            }
        };
        let mut given = GivenBack::default();
        for m in parse_smaps(&smaps).iter().filter(|m| may_give_back(m)) {
            // SAFETY: the range is one whole mapping of this process, as the kernel listed it
            // a moment ago; it is private, read-only and holds no page of the process's own
            // (`may_give_back`), so the pages dropped are the file's and come back from it
            // unchanged on the next access. Nothing is unmapped.
            let r = unsafe {
                libc::madvise(
                    m.start as *mut libc::c_void,
                    m.end - m.start,
                    libc::MADV_DONTNEED,
                )
            };
            if r == 0 {
                given.mappings += 1;
                given.file_kib += m.rss_kib;
            } else {
                tracing::debug!(
                    path = %m.path,
                    "a mapping's pages were not given back: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        given
    }
}

#[cfg(windows)]
mod platform {
    use super::GivenBack;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, SetProcessWorkingSetSize};

    pub fn give_back() -> GivenBack {
        // SAFETY: the pseudo-handle of this process; -1 and -1 ask Windows to trim the working
        // set as far as it can (documented for SetProcessWorkingSetSize).
        let ok = unsafe { SetProcessWorkingSetSize(GetCurrentProcess(), usize::MAX, usize::MAX) };
        if ok == 0 {
            tracing::debug!(
                "the working set was not trimmed: {}",
                std::io::Error::last_os_error()
            );
        }
        GivenBack::default()
    }
}

#[cfg(not(any(all(target_os = "linux", target_env = "gnu"), windows)))]
mod platform {
    pub fn give_back() -> super::GivenBack {
        super::GivenBack::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The idle agent's kinds of mapping in the kernel's smaps format (sizes from a run of the
    /// bench, addresses made up; the other fields left out), and the cases around them.
    const SMAPS: &str = "\
55d0c0800000-55d0c0a00000 r--p 00000000 08:01 1234                       /opt/ad-sync/ad-sync-agent
Size:               2048 kB
Rss:                1900 kB
Anonymous:             0 kB
55d0c0a00000-55d0c1200000 r-xp 00200000 08:01 1234                       /opt/ad-sync/ad-sync-agent
Size:               8192 kB
Rss:                7000 kB
Anonymous:             0 kB
55d0c1200000-55d0c1300000 r--p 00a00000 08:01 1234                       /opt/ad-sync/ad-sync-agent
Rss:                 280 kB
Anonymous:           280 kB
55d0c1300000-55d0c1310000 rw-p 00b00000 08:01 1234                       /opt/ad-sync/ad-sync-agent
Rss:                  40 kB
Anonymous:            40 kB
55d0c2000000-55d0c2400000 rw-p 00000000 00:00 0                          [heap]
Rss:                3860 kB
Anonymous:          3860 kB
7f1000000000-7f1000200000 r-xp 00100000 08:01 99                         /usr/lib/x86_64-linux-gnu/libcrypto.so.3
Rss:                3700 kB
Anonymous:             0 kB
7f1000300000-7f1000308000 rw-s 00000000 08:01 77                         /var/lib/ad-sync/state.db-shm
Rss:                  32 kB
Anonymous:             0 kB
7f1000400000-7f1000410000 r-xp 00000000 08:01 55                         /opt/ad sync/old agent (deleted)
Rss:                  64 kB
Anonymous:             0 kB
7f1000500000-7f1000501000 rw-p 00000000 00:00 0 
Rss:                   4 kB
Anonymous:             4 kB
7ffd0000a000-7ffd0000c000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
Anonymous:             0 kB
7f1000600000-7f1000610000 r--p 00000000 08:01 56                         /usr/lib/locale/C.utf8/LC_CTYPE
Rss:                   0 kB
Anonymous:             0 kB
";

    #[test]
    fn smaps_is_read_mapping_by_mapping() {
        let maps = parse_smaps(SMAPS);
        assert_eq!(maps.len(), 11);
        assert_eq!(
            maps[1],
            Mapping {
                start: 0x55d0c0a00000,
                end: 0x55d0c1200000,
                perms: "r-xp".into(),
                path: "/opt/ad-sync/ad-sync-agent".into(),
                rss_kib: 7000,
                anonymous_kib: 0,
            }
        );
        assert_eq!(maps[4].path, "[heap]");
        assert_eq!(maps[4].anonymous_kib, 3860);
        // A path with spaces is kept whole; anonymous memory has none.
        assert_eq!(maps[7].path, "/opt/ad sync/old agent (deleted)");
        assert_eq!(maps[8].path, "");
        assert_eq!(maps[8].rss_kib, 4);
    }

    #[test]
    fn only_pages_the_file_gives_back_unchanged_are_given_back() {
        let maps = parse_smaps(SMAPS);
        let cases: &[(usize, bool, &str)] = &[
            (0, true, "the binary's read-only data"),
            (1, true, "the binary's code"),
            (2, false, "RELRO: relocation wrote pages of its own"),
            (3, false, "writable data"),
            (4, false, "the heap (malloc_trim's)"),
            (5, true, "a library's code"),
            (6, false, "a shared mapping (SQLite's shared memory)"),
            (7, false, "a file replaced since it was mapped"),
            (8, false, "anonymous memory"),
            (9, false, "the kernel's vdso"),
            (10, false, "nothing resident"),
        ];
        for (i, want, what) in cases {
            assert_eq!(may_give_back(&maps[*i]), *want, "{what}: {:?}", maps[*i]);
        }
        // A mapping that could be written is never touched, whatever it holds now.
        let mut m = maps[1].clone();
        m.perms = "rwxp".into();
        assert!(!may_give_back(&m));
    }

    /// docs/agent.md says when memory is given back, as the constants have it.
    #[test]
    fn the_doc_says_when_memory_is_given_back() {
        let doc = include_str!("../../../docs/agent.md").replace("\n  ", " ");
        let said = format!(
            "given back {} s into a wait of {} s or more",
            SETTLE.as_secs(),
            GIVE_BACK_BEFORE.as_secs()
        );
        assert!(doc.contains(&said), "docs/agent.md does not say: {said}");
    }

    /// The real thing on this process: the pages come back on use (the test goes on running
    /// the code it gave back), and the process's file pages resident went down.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn giving_back_lowers_the_resident_file_pages_and_everything_goes_on_working() {
        fn rss_file_kib() -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("RssFile:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        }
        let before = rss_file_kib();
        let given = give_back();
        let after = rss_file_kib();
        assert!(given.mappings > 0, "{given:?}");
        assert!(
            after < before,
            "resident file pages {before} KiB before, {after} KiB after"
        );
        // Code and read-only data given back are read again from their files.
        let again = parse_smaps(SMAPS);
        assert_eq!(again.len(), 11);
        assert!(format!("{:?}", again[0]).contains("ad-sync-agent"));
    }
}
