//! The Windows build reads TLS answers of every size and cut, under Wine, straight from the DC
//! and the cloud (no relay that re-frames the records): `check` with full-control delegation
//! over LDAPS and StartTLS, the agent's first sync of 1, 5, 20, 50, 100 and 2,000 users and of a
//! 1,000-member group, and a container level of 1,000 children.
//!
//! Where the bytes stopped (issue 30): Wine's `DecryptMessage`, given part of a TLS record,
//! reports the whole record as missing in the second buffer where Windows reports the bytes
//! still missing, and schannel-rs then waits for bytes the server never sends. The test bed's
//! `secur32.dll` stand-in (`support/wine/secur32.c`) corrects that count and nothing else; the
//! first test shows the defect without it and the same bytes read with it.
//!
//! Its own test binary, so that no other test's 5 s operation timeouts share the two cores with
//! a 2,000-user sync under Wine; its tests run one at a time for the same reason.

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::Spec;
use support::cloud::CloudServer;
use support::report::{assert_exit_0, json, not_passed, text};
use support::wine::{TrickleRelay, WinHost, win_path};

const SETUP: &str = "ad-sync-setup.exe";
const AGENT: &str = "ad-sync-agent.exe";
const DOMAIN: &str = "DC=example,DC=com";
const CONFIG: &str = r"C:\ProgramData\ad-sync\agent.toml";

static SERIAL: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const TRICKLE: &str = "every_answer_is_read_when_its_tls_records_arrive_cut_at_every_place";
/// Set once the trickle test has ended (passed or not).
static TRICKLE_DONE: (Mutex<bool>, std::sync::Condvar) =
    (Mutex::new(false), std::sync::Condvar::new());

/// Marks the trickle test ended when dropped, also when it panics.
struct TrickleDone;

impl Drop for TrickleDone {
    fn drop(&mut self) {
        *TRICKLE_DONE.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        TRICKLE_DONE.1.notify_all();
    }
}

/// Whether this run includes the trickle test, as libtest's filters select (substring, or
/// `--exact`; `--skip`).
fn trickle_in_this_run() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exact = args.iter().any(|a| a == "--exact");
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--skip" {
            skips.extend(it.next().cloned());
        } else if !a.starts_with('-') {
            filters.push(a.clone());
        }
    }
    let matches = |f: &String| {
        if exact {
            f == TRICKLE
        } else {
            TRICKLE.contains(f.as_str())
        }
    };
    (filters.is_empty() || filters.iter().any(matches)) && !skips.iter().any(matches)
}

/// The sizes test waits for the trickle test when both run: it fills the shared domain with
/// thousands of objects, and a check that then reads every answer a few bytes at a time
/// through the relay has not finished within 240 s in CI (twice in three runs, each time when
/// the sizes test had gone first).
fn after_the_trickle_test() {
    if !trickle_in_this_run() {
        return;
    }
    let mut done = TRICKLE_DONE.0.lock().unwrap_or_else(|p| p.into_inner());
    while !*done {
        done = TRICKLE_DONE.1.wait(done).unwrap_or_else(|p| p.into_inner());
    }
}

/// A reference cloud of this test's own, serving the test domain, with certificates Wine
/// verifies.
fn cloud(tag: &str) -> CloudServer {
    let c = CloudServer::start_for_wine(tag, &[]);
    c.admin_ok(&["domain", "add", DOMAIN]);
    c
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The good answers as a Windows administrator writes them (Windows paths), for `cloud`
/// reached at `cloud_port` by its DNS name.
fn win_spec(cloud: &CloudServer, cloud_port: u16, key: &str) -> Spec {
    let mut s = Spec::good();
    s.ca_file = Some(PathBuf::from(win_path(&support::bed().dc1.ca_file)));
    s.cloud_url = Some(format!("https://localhost:{cloud_port}"));
    s.cloud_ca = Some(PathBuf::from(win_path(&cloud.ca)));
    s.connect_key = Some(key.to_string());
    s
}

fn win_check(host: &WinHost, spec: &Spec) -> (std::process::Output, Value) {
    let answers = spec.write();
    // Every answer in pieces of 1 to 31 bytes, each sent only once the last was read, is slow:
    // the limit is for a hang, not for speed (see `after_the_trickle_test`).
    let out = host.exe_within(
        SETUP,
        &["check", "--answers", &win_path(&answers), "--json"],
        std::time::Duration::from_secs(900),
    );
    let v = json(&out);
    (out, v)
}

fn status_of(report: &Value, id: &str) -> String {
    report["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id))
        .map(|c| c["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no {id} in {report:#}"))
}

#[test]
fn every_answer_is_read_when_its_tls_records_arrive_cut_at_every_place() {
    let _ended = TrickleDone;
    let _one = one_at_a_time();
    let cloud = cloud("trickle");
    let host = WinHost::start("trickle");
    let ldaps = TrickleRelay::start(loopback(636));
    let ldap = TrickleRelay::start(loopback(389));
    let https = TrickleRelay::start(loopback(cloud.port()));
    let key = cloud.issue_key(DOMAIN, None);

    // OU=Staff carries full control for the service account (CCDCLCSWRPWPDTLOCRSDRCWDWO,
    // container inherit, as ADUC's Delegate Control gives): its allowedChildClassesEffective is
    // the 3 KB answer that stopped the Windows build.
    for (security, relay) in [("ldaps", &ldaps), ("starttls", &ldap)] {
        let mut spec = win_spec(&cloud, https.port, &key);
        spec.security = security;
        spec.port = Some(relay.port);
        let (ldap_before, https_before) = (relay.pieces(), https.pieces());
        let started = Instant::now();
        let (out, v) = win_check(&host, &spec);
        assert_exit_0(&out, &v);
        for id in ["root_dn.exists", "root_dn.delegation", "sync_group.exists"] {
            assert_eq!(status_of(&v, id), "pass", "{security}: {id}: {v:#}");
        }
        let (ldap_pieces, https_pieces) =
            (relay.pieces() - ldap_before, https.pieces() - https_before);
        println!(
            "{security}: every check passed in {} ms, the DC's answers read in {ldap_pieces} pieces, the cloud's in {https_pieces}",
            started.elapsed().as_millis()
        );
        // Thousands of reads that each end inside a TLS record: the read path was exercised,
        // not a lucky framing.
        assert!(ldap_pieces > 1_000, "{security}: {ldap_pieces} pieces");
        assert!(https_pieces > 100, "{security}: {https_pieces} pieces");
    }

    // The same bytes without the stand-in: Wine's own count, and the first answer that arrives
    // in pieces is never read (the product gives up after its 5 s operation timeout, and says
    // so). This is what the Windows build met under Wine, and what the stand-in is for; when a
    // Wine that counts as Windows does reaches Debian, this part fails and the stand-in goes.
    host.without_secur32_stand_in();
    let mut spec = win_spec(&cloud, https.port, &key);
    spec.port = Some(ldaps.port);
    let started = Instant::now();
    let (out, v) = win_check(&host, &spec);
    let failed = not_passed(&v);
    println!(
        "without the stand-in: exit {:?} after {} ms\n{failed}",
        out.status.code(),
        started.elapsed().as_millis()
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        failed.contains("did not answer within 5 s") && failed.contains("cloud.tls"),
        "the reads time out: {failed}"
    );
}

/// Adds each entry (its DN and attributes) as the domain's administrator.
async fn add_all(
    ldap: &mut ldap3::Ldap,
    entries: impl IntoIterator<Item = (String, Vec<(&'static str, Vec<String>)>)>,
) {
    for (dn, attrs) in entries {
        let attrs: Vec<(&str, std::collections::HashSet<&str>)> = attrs
            .iter()
            .map(|(a, vs)| (*a, vs.iter().map(String::as_str).collect()))
            .collect();
        ldap.add(&dn, attrs)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("add {dn}: {e}"));
    }
}

fn ou(dn: String) -> (String, Vec<(&'static str, Vec<String>)>) {
    (
        dn,
        vec![(
            "objectClass",
            vec!["top".to_string(), "organizationalUnit".to_string()],
        )],
    )
}

/// How many users are under `base`, and the members of the group named `group` there.
fn count_in_ad(base: &str, group: Option<&str>) -> (usize, usize) {
    support::cloud::block_on(async {
        let mut l = support::bed()
            .dc1
            .admin()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut users = 0;
        let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> = vec![
            Box::new(ldap3::adapters::EntriesOnly::new()),
            Box::new(ldap3::adapters::PagedResults::new(500)),
        ];
        let mut stream = l
            .streaming_search_with(
                adapters,
                base,
                ldap3::Scope::Subtree,
                "(&(objectCategory=person)(objectClass=user))",
                vec!["1.1"],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        while let Some(_entry) = stream.next().await.unwrap_or_else(|e| panic!("{e}")) {
            users += 1;
        }
        stream
            .finish()
            .await
            .success()
            .unwrap_or_else(|e| panic!("{e}"));
        let members = match group {
            None => 0,
            Some(name) => {
                let (rows, _) = l
                    .search(
                        base,
                        ldap3::Scope::Subtree,
                        &format!("(&(objectClass=group)(cn={}))", ldap3::ldap_escape(name)),
                        vec!["member"],
                    )
                    .await
                    .and_then(|r| r.success())
                    .unwrap_or_else(|e| panic!("{e}"));
                rows.into_iter()
                    .next()
                    .map(ldap3::SearchEntry::construct)
                    .map(|e| e.attrs.get("member").map(Vec::len).unwrap_or(0))
                    .unwrap_or(0)
            }
        };
        l.unbind().await.ok();
        (users, members)
    })
}

#[test]
fn the_windows_agent_syncs_every_size_directly_over_ldaps_and_https() {
    after_the_trickle_test();
    let _one = one_at_a_time();
    let bed = support::bed();
    let cloud = cloud("sizes");
    let host = WinHost::start("sizes");
    let key = cloud.issue_key(DOMAIN, None);

    // Its own Root User container at the domain's root (no other test's agent reads it), with
    // full control for the service account, its sync group, and an OU of 1,000 OUs.
    let root = format!("OU=Wine Sizes,{DOMAIN}");
    let group_dn = format!("CN=Wine Sizes Sync,{root}");
    let wide = format!("OU=Wide,{root}");
    support::cloud::block_on(async {
        let mut l = bed.dc1.admin().await.unwrap_or_else(|e| panic!("{e}"));
        add_all(&mut l, [ou(root.clone()), ou(wide.clone())]).await;
        add_all(
            &mut l,
            [(
                group_dn.clone(),
                vec![
                    ("objectClass", vec!["top".into(), "group".into()]),
                    ("sAMAccountName", vec!["wine-sizes-sync".into()]),
                    ("groupType", vec!["-2147483646".into()]),
                ],
            )],
        )
        .await;
        add_all(
            &mut l,
            (0..1_000).map(|i| ou(format!("OU=Branch {i:04},{wide}"))),
        )
        .await;
        l.unbind().await.ok();
    });
    bed.dc1
        .delegate(&root, &bed.good_sid)
        .unwrap_or_else(|e| panic!("{e}"));

    let mut spec = win_spec(&cloud, cloud.port(), &key);
    spec.root_dn = root.clone();
    spec.sync_group_dn = Some(group_dn.clone());

    // `check` straight against the DC, full control, over LDAPS and over StartTLS; the DC's
    // CA as Windows exports it too (DER .cer, PKCS#7 .p7b), named in the check.
    let (der, p7b) = support::dc_ca_as_windows_exports_it();
    let pem = spec.ca_file.clone();
    for (security, ca, read_as) in [
        ("ldaps", pem.clone(), "(PEM, 1 certificate)"),
        (
            "starttls",
            Some(PathBuf::from(win_path(&der))),
            "(DER, 1 certificate)",
        ),
        (
            "ldaps",
            Some(PathBuf::from(win_path(&p7b))),
            "(a PKCS#7 bundle (DER), 1 certificate)",
        ),
    ] {
        spec.security = security;
        spec.ca_file = ca;
        let (out, v) = win_check(&host, &spec);
        assert_exit_0(&out, &v);
        assert_eq!(status_of(&v, "root_dn.delegation"), "pass", "{v:#}");
        let tls = v["checks"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == "ldap.tls"))
            .map(|c| c["detail"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default();
        assert!(tls.contains(read_as), "{security}: {tls}");
    }
    spec.security = "ldaps";
    spec.ca_file = pem;
    let answers = spec.write();
    let out = host.install_no_start(&answers);
    let v = json(&out);
    assert_exit_0(&out, &v);

    // The container tree's level of 1,000 children, as the wizard's picker reads it.
    let out = host.exe(
        SETUP,
        &[
            "browse",
            "--answers",
            &win_path(&answers),
            "--under",
            &wide,
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let level = json(&out);
    assert_eq!(
        level["children"].as_array().map(Vec::len),
        Some(1_000),
        "{}",
        text(&out)
    );
    assert_eq!(level["more"], false);

    // First syncs (a fresh state each) of a cloud of 1, 5, 20, 50, 100 and 2,000 users: the
    // change feed answers every size, the DC answers the agent's reads of the container.
    let store =
        ad_sync_cloud::server::store::Store::open(&cloud.db).unwrap_or_else(|e| panic!("{e}"));
    let d = store
        .domain_id(Some(DOMAIN))
        .unwrap_or_else(|e| panic!("{e}"));
    let agent = host.bin.join(AGENT).to_string_lossy().to_string();
    let run_once = |state: &str| {
        let started = Instant::now();
        let out = host.wine(
            &[
                agent.as_str(),
                "run",
                "--once",
                "--config",
                CONFIG,
                "--state-dir",
                state,
            ],
            Duration::from_secs(900),
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        started.elapsed()
    };
    let mut made = 0;
    for total in [1usize, 5, 20, 50, 100, 2_000] {
        while made < total {
            store
                .user_add(
                    d,
                    &format!("ws{made:04}"),
                    "Wine",
                    &format!("Size{made}"),
                    None,
                )
                .unwrap_or_else(|e| panic!("{e}"));
            made += 1;
        }
        let took = run_once(&format!(r"C:\state-{total}"));
        let (users, _) = count_in_ad(&root, None);
        println!("first sync of {total} users: {} ms", took.as_millis());
        assert_eq!(
            users, total,
            "every user of the cloud is in AD after one run"
        );
    }

    // A group of 1,000 members: written to AD and read back by the agent's next run.
    store
        .group_add(d, "wine-sizes-1000")
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..1_000 {
        store
            .membership(d, "wine-sizes-1000", &format!("ws{i:04}"), None, true)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    drop(store);
    let took = run_once(r"C:\state-2000");
    let (_, members) = count_in_ad(&root, Some("wine-sizes-1000"));
    println!("a group of 1,000 members: {} ms", took.as_millis());
    assert_eq!(members, 1_000);
    // And its next run, which reads that group back from AD, changes nothing and stops on
    // nothing.
    run_once(r"C:\state-2000");

    assert_eq!(count_in_ad(&root, Some("wine-sizes-1000")), (2_000, 1_000));
}
