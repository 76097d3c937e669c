//! `cargo bench --bench source`: AD as a source, against a fresh Samba DC (lmdb) and the
//! reference cloud, in one run on one machine. Printed:
//! - the baseline: `ldapsearch` (paged) of the scope's users and groups with the mapped
//!   attributes and the groups' members, plus the cloud's own insert of the same records
//!   (`Store::source_changes` in batches of 1,000, in process, into a store of its own);
//! - the agent's first export of the same users and groups (`ad-sync-agent export`: its
//!   position taken, then the scope read page by page and sent, which is the first
//!   reconciliation), wall time, peak RSS, and the ratio to the baseline (goal at most 1.5);
//! - a no-change export (whole process: start, heartbeat, cursor, DirSync, nothing sent;
//!   median of 5, with its phases from the report's `took`), and the no-change cycle of the
//!   running service (heartbeat and export, from its log, heartbeats every 5 s; goal under
//!   200 ms);
//! - one changed user reaching the cloud through `export`, median and p95 of 5;
//! - the full reconciliation (`export --resync`) at the first size and at twice it, with its
//!   peak RSS at both (goal: flat, at most 50 MB);
//! - the service idle after its first export (RSS);
//! - the first export at `BENCH_LARGE` users (default 50,000; 0 skips it), by a second agent
//!   into a fresh cloud, with its peak RSS beside the first size's.
//!
//! `BENCH_FIRST_ONLY=1` stops after the first export.
//! `BENCH_USERS` changes the size (default 10,000; the reconciliation then also reads 20,000);
//! there is one group for every 20 users (500 for 10,000), each with its 20 users as members.

#[allow(dead_code)]
#[path = "../tests/support/bins.rs"]
mod bins;
#[allow(dead_code)]
#[path = "../tests/support/cloud.rs"]
mod cloud;
#[path = "../tests/support/postgres.rs"]
mod postgres;
#[allow(dead_code)]
mod support;
#[path = "../tests/support/testbed.rs"]
mod testbed;

use support::{fail, ldap_add, measured, stop_at_exit};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn setup_bin() -> &'static str {
    bins::setup_with_agent()
}
fn agent_bin() -> &'static str {
    bins::agent()
}
const DOMAIN: &str = "DC=example,DC=com";

/// An LDIF of `n` ordinary users under `ou`, named `{p}NNNNN`, with the default map's
/// attributes filled.
fn ldif(ou: &str, p: &str, from: usize, n: usize) -> String {
    let mut text = String::new();
    for i in from..from + n {
        let u = format!("{p}{i:05}");
        text.push_str(&format!(
            "dn: CN={u},{ou}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: user\n\
             sAMAccountName: {u}\nuserPrincipalName: {u}@example.com\ngivenName: Given\nsn: Sur{i}\ndisplayName: Given Sur{i}\n\
             mail: {u}@mail.example.com\ntitle: Engineer\ndepartment: R&D {}\ncompany: Example\ntelephoneNumber: +47 2000 {i:05}\n\
             employeeID: E{i:06}\nuserAccountControl: 512\n\n",
            i % 20
        ));
    }
    text
}

/// Users per group: group `g{k}` holds users `k * MEMBERS ..` (`MEMBERS` of them).
const MEMBERS: usize = 20;

/// An LDIF of `n` security groups under `ou`, `g00000`…, each with its `MEMBERS` users.
fn group_ldif(ou: &str, n: usize) -> String {
    let mut text = String::new();
    for k in 0..n {
        text.push_str(&format!(
            "dn: CN=g{k:05},{ou}\nobjectClass: top\nobjectClass: group\nsAMAccountName: g{k:05}\ndescription: Bench group {k}\n"
        ));
        for i in k * MEMBERS..(k + 1) * MEMBERS {
            text.push_str(&format!("member: CN=s{i:05},{ou}\n"));
        }
        text.push('\n');
    }
    text
}

/// Each phase's median in milliseconds, "name ms, …" (`took[i]` holds phase i's seconds).
fn by_phase(phases: &[&str], took: Vec<Vec<f64>>) -> String {
    phases
        .iter()
        .zip(took)
        .map(|(p, v)| {
            format!(
                "{} {:.0}",
                p.trim_end_matches("_ms"),
                median_p95(v).0 * 1000.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn median_p95(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.95))
}

fn main() {
    let users = support::env_usize("BENCH_USERS", 10_000).max(MEMBERS);
    let groups = users / MEMBERS;
    // Heartbeats every 5 s: the service's cycles are measured while it idles.
    let (root, mut bed, server) =
        support::start_with("bench-source", DOMAIN, &["--heartbeat-interval", "5s"]);
    let ou = format!("OU=Bench Source,{}", testbed::OU_STAFF);
    if let Err(e) = ldap_add(
        &bed,
        &ou,
        vec![("objectClass", vec!["top", "organizationalUnit"])],
    ) {
        fail(&mut bed, e);
    }
    let pw = root.join("svc.pw");
    let _ = std::fs::write(&pw, testbed::SVC_PASSWORD);
    let bind = format!("{}@example.com", testbed::accounts::GOOD);
    let ldapadd = |bed: &mut testbed::Testbed, from: usize, n: usize, groups: usize| {
        let file = root.join(format!("source-{from}.ldif"));
        let text = ldif(&ou, "s", from, n) + &group_ldif(&ou, groups);
        if let Err(e) = std::fs::write(&file, text) {
            fail(bed, e.to_string());
        }
        let (took, _, ok, out) = measured(
            Command::new("ldapadd")
                .args(["-H", "ldaps://dc1.example.com", "-x", "-D", &bind, "-y"])
                .arg(&pw)
                .arg("-f")
                .arg(&file)
                .env("LDAPTLS_CACERT", &bed.dc1.ca_file),
        );
        if !ok {
            fail(
                bed,
                format!("ldapadd: {}", out.lines().last().unwrap_or("")),
            );
        }
        println!(
            "setup: ldapadd of {n} users and {groups} groups into {ou} in {:.1} s",
            took.as_secs_f64()
        );
    };
    ldapadd(&mut bed, 0, users, groups);

    // ---- the baseline: ldapsearch of the same users, and the cloud's own insert -------------
    let map = ad_sync_core::mapping::Mapping::default();
    let mut attrs = map.attributes(ad_sync_core::mapping::Kind::User);
    attrs.extend(map.attributes(ad_sync_core::mapping::Kind::Group));
    attrs.extend(["userAccountControl", "member"]);
    let (ls_time, _, ok, out) = measured(
        Command::new("ldapsearch")
            .args([
                "-H",
                "ldaps://dc1.example.com",
                "-x",
                "-LLL",
                "-D",
                &bind,
                "-y",
            ])
            .arg(&pw)
            .args([
                "-E",
                "pr=1000/noprompt",
                "-b",
                &ou,
                "(|(objectClass=user)(objectClass=group))",
            ])
            .args(&attrs)
            .env("LDAPTLS_CACERT", &bed.dc1.ca_file),
    );
    let found = out.lines().filter(|l| l.starts_with("dn: ")).count();
    if !ok || found != users + groups {
        fail(
            &mut bed,
            format!(
                "ldapsearch found {found} of {}: {}",
                users + groups,
                out.lines().last().unwrap_or("")
            ),
        );
    }
    let insert = match cloud_insert(&root, users, groups) {
        Ok(d) => d,
        Err(e) => fail(&mut bed, e),
    };
    let baseline = ls_time.as_secs_f64() + insert.as_secs_f64();
    println!(
        "baseline: ldapsearch of {users} users and {groups} groups {:.2} s + the cloud's own insert of the same records {:.2} s = {baseline:.2} s",
        ls_time.as_secs_f64(),
        insert.as_secs_f64()
    );

    // ---- the agent ---------------------------------------------------------------------------
    let dir = root.join("agent");
    let _ = std::fs::create_dir_all(&dir);
    let key = server.issue_key(DOMAIN, None);
    let _ = std::fs::write(dir.join("svc.pw"), testbed::SVC_PASSWORD);
    let _ = std::fs::write(dir.join("key.txt"), &key);
    // An agent enrolled with `server`, its config under `dir`, scoped to the bench's OU.
    let enroll = |bed: &mut testbed::Testbed,
                  dir: &std::path::Path,
                  server: &cloud::CloudServer| {
        let _ = std::fs::create_dir_all(dir);
        let key = server.issue_key(DOMAIN, None);
        let _ = std::fs::write(dir.join("svc.pw"), testbed::SVC_PASSWORD);
        let _ = std::fs::write(dir.join("key.txt"), &key);
        let answers = dir.join("answers.toml");
        let _ = std::fs::write(
            &answers,
            format!(
                "version = 1\n[server]\ntype = \"member\"\ndc_host = \"{}\"\n[ldap]\nca_file = '{}'\ntimeout_seconds = 60\n\
                 [directory]\nroot_user_dn = '{ou}'\n\
                 [service_account]\nusername = 'EXAMPLE\\{}'\npassword_file = \"svc.pw\"\n\
                 [cloud]\nurl = '{}'\nca_file = '{}'\nconnect_key_file = \"key.txt\"\ntimeout_seconds = 120\n\
                 [sync]\ndirection = \"ad-to-cloud\"\n[source]\ncontainers = ['{ou}']\n",
                testbed::DC1_HOST,
                bed.dc1.ca_file.display(),
                testbed::accounts::GOOD,
                server.url,
                server.ca.display()
            ),
        );
        support::install_under(bed, setup_bin(), &answers, &dir.join("root"))
    };
    let config = enroll(&mut bed, &dir, &server);
    let state = dir.join("state");
    let agent_of =
        |config: &std::path::Path, state: &std::path::Path, cmd: &str, extra: &[&str]| {
            let mut c = Command::new(agent_bin());
            c.args([cmd, "--config"])
                .arg(config)
                .arg("--state-dir")
                .arg(state)
                .args(["--log-dir", "-"])
                .args(extra)
                .env("AD_SYNC_LOG", "warn");
            c
        };
    let agent = |cmd: &str, extra: &[&str]| agent_of(&config, &state, cmd, extra);
    let export_of = |bed: &mut testbed::Testbed,
                     server: &cloud::CloudServer,
                     config: &std::path::Path,
                     state: &std::path::Path,
                     extra: &[&str],
                     what: &str| {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let cloud_before = server.pid().map_or(0.0, support::process_cpu);
        let busy_before = support::machine_busy();
        let support::Measured {
            took: t,
            rss,
            cpu,
            ok,
            out,
        } = support::measured_cpu(&mut agent_of(config, state, "export", &args));
        let cloud_cpu = server.pid().map_or(0.0, support::process_cpu) - cloud_before;
        let busy = support::machine_busy() - busy_before;
        println!(
            "  {what}: CPU seconds: the agent {cpu:.2}, the cloud {cloud_cpu:.2}, the rest of the machine (the DC, mostly) {:.2}; wall {:.2} s on {} cores",
            busy - cpu - cloud_cpu,
            t.as_secs_f64(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        if !ok {
            fail(
                bed,
                format!(
                    "{what}: {}",
                    out.lines().rev().take(8).collect::<Vec<_>>().join("\n")
                ),
            );
        }
        let json = out
            .find('{')
            .and_then(|i| serde_json::from_str::<serde_json::Value>(&out[i..]).ok())
            .unwrap_or_default();
        (t.as_secs_f64(), rss as f64 / 1024.0, json)
    };
    let export = |bed: &mut testbed::Testbed, extra: &[&str], what: &str| {
        export_of(bed, &server, &config, &state, extra, what)
    };
    let (first, first_rss, r) = export(&mut bed, &[], "the first export");
    if r["created"] != users + groups {
        fail(
            &mut bed,
            format!(
                "the first export created {} of {}: {r}",
                r["created"],
                users + groups
            ),
        );
    }
    println!(
        "agent: first export of {users} users and {groups} groups with their members (the position taken, then the scope read page by page and sent: the first reconciliation) {first:.2} s, peak RSS {first_rss:.1} MB; ratio to the baseline {:.2} (goal at most 1.5)",
        first / baseline
    );
    // `BENCH_FIRST_ONLY=1`: the baseline and the first export, nothing after (to try a change
    // to the first export in a few minutes).
    if std::env::var_os("BENCH_FIRST_ONLY").is_some() {
        bed.stop();
        return;
    }

    let mut quiet = Vec::new();
    let phases = [
        "heartbeat_ms",
        "connect_ms",
        "account_ms",
        "cursor_ms",
        "changes_ms",
    ];
    let mut took: Vec<Vec<f64>> = vec![Vec::new(); phases.len()];
    for _ in 0..5 {
        let (t, _, r) = export(&mut bed, &[], "a no-change export");
        if r["changed"] != 0 || r["reconciled"] == true {
            fail(&mut bed, format!("the no-change export was not one: {r}"));
        }
        quiet.push(t);
        for (i, p) in phases.iter().enumerate() {
            took[i].push(r["took"][p].as_f64().unwrap_or(0.0) / 1000.0);
        }
    }
    let (q50, _) = median_p95(quiet);
    println!(
        "no-change export (whole process: start, state, heartbeat, cursor, DirSync; nothing sent, no full read): median {:.0} ms of 5; by phase (ms, medians): {}; the rest is the process's start and end",
        q50 * 1000.0,
        by_phase(&phases, took)
    );

    let mut one = Vec::new();
    for k in 0..5 {
        let dn = format!("CN=s{:05},{ou}", k * 7);
        let title = format!("Lead {k}");
        let changed = cloud::block_on(async {
            let mut l = bed.dc1.admin().await?;
            l.modify(
                &dn,
                vec![ldap3::Mod::Replace(
                    "title",
                    std::collections::HashSet::from([title.as_str()]),
                )],
            )
            .await
            .and_then(|r| r.success())
            .map(|_| ())
            .map_err(|e| e.to_string())
        });
        if let Err(e) = changed {
            fail(&mut bed, e);
        }
        let started = Instant::now();
        let (_, _, r) = export(&mut bed, &[], "a one-change export");
        if r["updated"] != 1 {
            fail(&mut bed, format!("the change was not sent: {r}"));
        }
        one.push(started.elapsed().as_secs_f64());
    }
    let (o50, o95) = median_p95(one);
    println!(
        "one changed user to the cloud through export: median {:.0} ms, p95 {:.0} ms of 5; the service adds at most its heartbeat interval (30 s by default: the cloud sets it, 5 s to 1 h) before that",
        o50 * 1000.0,
        o95 * 1000.0
    );

    let (rec1, rec1_rss, r1) = export(&mut bed, &["--resync"], "the reconciliation");
    ldapadd(&mut bed, users, users, 0);
    // The new users arrive by DirSync (one page on Samba); the reconciliation then reads twice
    // as many, with nothing new to send.
    let (more, more_rss, m) = export(&mut bed, &[], "the export of the new users");
    println!(
        "export of {} new users by DirSync (an incremental read, every change in one Samba page): {more:.2} s, peak RSS {more_rss:.1} MB",
        m["created"]
    );
    let (rec2, rec2_rss, r2) = export(
        &mut bed,
        &["--resync"],
        "the reconciliation at twice the size",
    );
    println!(
        "full reconciliation (export --resync: the scope read page by page, compared with the cloud's list): {} users {rec1:.2} s, peak RSS {rec1_rss:.1} MB; {} users {rec2:.2} s, peak RSS {rec2_rss:.1} MB (goal: flat, at most 50 MB)",
        r1["read"], r2["read"]
    );

    // Idle: the service after its first export, nothing to do; its log says what each cycle
    // took.
    let service_log = root.join("service.log");
    let log_file = match std::fs::File::create(&service_log) {
        Ok(f) => f,
        Err(e) => fail(&mut bed, e.to_string()),
    };
    let mut child = match agent("run", &[])
        .env("AD_SYNC_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => fail(&mut bed, e.to_string()),
    };
    stop_at_exit([child.id()]);
    std::thread::sleep(Duration::from_secs(20));
    let field = support::status_mb(child.id());
    println!(
        "service idle after its export: RSS {:.1} MB (peak so far {:.1} MB) (goal under 10 MB idle)",
        field("VmRSS:"),
        field("VmHWM:")
    );
    let _ = child.kill();
    let _ = child.wait();
    // Each cycle's "AD to the cloud" line, with its phases; the first is left out (it builds
    // the DC's TLS connector, which the process then keeps).
    let log = std::fs::read_to_string(&service_log).unwrap_or_default();
    let field = |line: &str, name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cycles: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("AD to the cloud:"))
        .skip(1)
        .collect();
    if cycles.is_empty() {
        fail(
            &mut bed,
            format!(
                "the service logged no second cycle in 20 s:\n{}",
                log.lines().rev().take(8).collect::<Vec<_>>().join("\n")
            ),
        );
    }
    let sum = |l: &str| phases.iter().map(|p| field(l, p)).sum::<f64>() / 1000.0;
    let (c50, _) = median_p95(cycles.iter().map(|l| sum(l)).collect());
    let took = phases
        .iter()
        .map(|p| cycles.iter().map(|l| field(l, p) / 1000.0).collect())
        .collect();
    println!(
        "no-change cycle in the running service (heartbeat and export, every 5 s here; the first left out): median {:.0} ms of {} (goal under 200 ms); by phase (ms, medians): {}",
        c50 * 1000.0,
        cycles.len(),
        by_phase(&phases, took)
    );

    // ---- the first export at a larger size, into a cloud of its own ---------------------------
    // The OU now holds twice BENCH_USERS users; it is filled up to BENCH_LARGE (0: skipped) and
    // a second agent, enrolled with a fresh cloud, makes its first export of all of it.
    let large = support::env_usize("BENCH_LARGE", 50_000);
    let held = 2 * users;
    if large > held {
        ldapadd(&mut bed, held, large - held, 0);
        let server2 = cloud::CloudServer::start("bench-source-large", &[]);
        server2.admin_ok(&["domain", "add", DOMAIN]);
        let dir2 = root.join("agent-large");
        let config2 = enroll(&mut bed, &dir2, &server2);
        let (t, rss, r) = export_of(
            &mut bed,
            &server2,
            &config2,
            &dir2.join("state"),
            &[],
            "the first export at the larger size",
        );
        if r["created"] != large + groups {
            fail(
                &mut bed,
                format!(
                    "the first export at the larger size created {} of {}: {r}",
                    r["created"],
                    large + groups
                ),
            );
        }
        println!(
            "agent: first export of {large} users and {groups} groups into a fresh cloud {t:.2} s, peak RSS {rss:.1} MB; at {users} users it was {first_rss:.1} MB (goal: within 10 MB of each other, both at most 50 MB)"
        );
    }
    bed.stop();
}

/// The cloud's own insert of `n` AD users like the bench's, in batches of 1,000 (the agent's
/// pages; over HTTPS it sends each in parts within the body limit, about 500 users), into a
/// store of its own.
fn cloud_insert(root: &std::path::Path, n: usize, groups: usize) -> Result<Duration, String> {
    use ad_sync_cloud::server::store::{Store, Timing};
    use ad_sync_core::cloud::api::{HeartbeatRequest, SourceGroup, SourceRequest, SourceUser};
    let store = Store::open(&root.join("baseline.db")).map_err(|e| e.to_string())?;
    store.add_domain(DOMAIN).map_err(|e| e.to_string())?;
    let (key, _) = store
        .issue_key(DOMAIN, Duration::from_secs(3600))
        .map_err(|e| e.to_string())?;
    let dn = ad_sync_core::cloud::api::parse_domain_dn(DOMAIN)?;
    let now = ad_sync_core::time_fmt::now_unix();
    let enrolled = store
        .enroll(
            &key,
            &dn,
            "bench",
            "0.1.0",
            "linux",
            &[7; 32],
            Timing::default(),
            now,
        )
        .map_err(|e| format!("{e:?}"))?;
    let agent = store
        .authenticate(&enrolled.credential)
        .map_err(|e| format!("{e:?}"))?
        .ok_or("the baseline's agent was not found")?;
    let hb = HeartbeatRequest {
        version: "0.1.0".into(),
        host: "bench".into(),
        status: "ok".into(),
        message: None,
        run: None,
    };
    store
        .heartbeat(&agent, &hb, Timing::default(), now)
        .map_err(|e| format!("{e:?}"))?;
    let records: Vec<SourceUser> = (0..n)
        .map(|i| {
            let u = format!("s{i:05}");
            let fields = [
                ("username", u.clone()),
                ("user_principal_name", format!("{u}@example.com")),
                ("given_name", "Given".into()),
                ("surname", format!("Sur{i}")),
                ("display_name", format!("Given Sur{i}")),
                ("email", format!("{u}@mail.example.com")),
                ("phone", format!("+47 2000 {i:05}")),
                ("mobile", String::new()),
                ("title", "Engineer".into()),
                ("department", format!("R&D {}", i % 20)),
                ("company", "Example".into()),
                ("employee_id", format!("E{i:06}")),
                ("manager", String::new()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            SourceUser {
                guid: format!("{i:08x}-0000-4000-8000-000000000000"),
                deleted: false,
                enabled: Some(true),
                fields,
            }
        })
        .collect();
    let guid = |i: usize| format!("{i:08x}-0000-4000-8000-000000000000");
    let group_records: Vec<SourceGroup> = (0..groups)
        .map(|k| SourceGroup {
            guid: format!("{k:08x}-1111-4000-8000-000000000000"),
            deleted: false,
            fields: [
                ("name".to_string(), format!("g{k:05}")),
                ("description".to_string(), format!("Bench group {k}")),
            ]
            .into_iter()
            .collect(),
            members: Some((k * MEMBERS..(k + 1) * MEMBERS).map(guid).collect()),
            added: Vec::new(),
            removed: Vec::new(),
        })
        .collect();
    let started = Instant::now();
    let mut after: Option<String> = None;
    let mut send = |users: Vec<SourceUser>, groups: Vec<SourceGroup>, k: usize| {
        let cookie = format!("c{k}");
        store
            .source_changes(
                &agent,
                &SourceRequest {
                    after: after.clone(),
                    cookie: cookie.clone(),
                    dc: "dc1".into(),
                    contacts: Vec::new(),
                    users,
                    groups,
                    partial: false,
                },
                now,
            )
            .map_err(|e| format!("{e:?}"))?;
        after = Some(cookie);
        Ok::<(), String>(())
    };
    let mut k = 0;
    for part in records.chunks(1000) {
        send(part.to_vec(), Vec::new(), k)?;
        k += 1;
    }
    for part in group_records.chunks(1000) {
        send(Vec::new(), part.to_vec(), k)?;
        k += 1;
    }
    Ok(started.elapsed())
}
