//! `cargo bench --bench import`: a domain that is not empty, taken into the cloud.
//!
//! AD gets 10,000 users (names, mail, enabled) and 500 security groups (each user in one) in
//! one OU, loaded with `ldapadd` as the administrator; the agent is installed with that OU as
//! its Root User container. Printed:
//! - `ldapsearch` paging the same entries with the same attributes, as the service account
//!   (`-E pr=1000`), wall time;
//! - `ad-sync-agent import` of all of it into the reference cloud, wall time, and its ratio to
//!   ldapsearch (target at most 2);
//! - a re-run of the import (nothing new: every object `already`), wall time;
//! - the preview of the first sync for those 10,000 existing accounts (`sync.preview`, the
//!   library call the check makes: the cloud's names and the domain's objects read, sorted),
//!   wall time (target under 5 s), and its counts.
//!
//! `BENCH_USERS` and `BENCH_GROUPS` change the sizes (for a quick look).

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

use std::process::Command;
use std::time::Instant;
use support::{fail, ldap_add, measured, stop_at_exit};

const DOMAIN: &str = "DC=example,DC=com";

fn main() {
    let users = support::env_usize("BENCH_USERS", 10_000);
    let groups = support::env_usize("BENCH_GROUPS", 500).max(1);
    let (root, mut bed, server) = support::start("bench-import", DOMAIN);

    // ---- what the domain already holds -------------------------------------------------------
    let ou = format!("OU=Bench Import,{}", testbed::OU_STAFF);
    let sync_group = format!("CN=Bench Import Sync,{ou}");
    if let Err(e) = ldap_add(
        &bed,
        &ou,
        vec![("objectClass", vec!["top", "organizationalUnit"])],
    ) {
        fail(&mut bed, e);
    }
    let mut text = format!(
        "dn: {sync_group}\nobjectClass: group\nsAMAccountName: bench-import-sync\ngroupType: -2147483646\n\n"
    );
    for i in 0..users {
        text.push_str(&format!(
            "dn: CN=e{i:05},{ou}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\nobjectClass: user\n\
             sAMAccountName: e{i:05}\nuserPrincipalName: e{i:05}@example.com\ngivenName: Given\nsn: Sur{i}\ndisplayName: Given Sur{i}\n\
             mail: e{i:05}@mail.example.com\nuserAccountControl: 514\n\n"
        ));
    }
    for g in 0..groups {
        text.push_str(&format!(
            "dn: CN=eg{g:03},{ou}\nobjectClass: group\nsAMAccountName: eg{g:03}\ngroupType: -2147483646\n"
        ));
        for i in (g..users).step_by(groups) {
            text.push_str(&format!("member: CN=e{i:05},{ou}\n"));
        }
        text.push('\n');
    }
    let ldif = root.join("existing.ldif");
    if let Err(e) = std::fs::write(&ldif, text) {
        fail(&mut bed, e.to_string());
    }
    let admin_pw = root.join("admin.pw");
    let _ = std::fs::write(&admin_pw, testbed::ADMIN_PASSWORD);
    let started = Instant::now();
    let (_, _, ok, out) = measured(
        Command::new("ldapadd")
            .args([
                "-H",
                "ldaps://dc1.example.com",
                "-x",
                "-D",
                "Administrator@example.com",
                "-y",
            ])
            .arg(&admin_pw)
            .arg("-f")
            .arg(&ldif)
            .env("LDAPTLS_CACERT", &bed.dc1.ca_file),
    );
    if !ok {
        fail(
            &mut bed,
            format!(
                "ldapadd failed: {}",
                out.lines().rev().take(5).collect::<Vec<_>>().join("\n")
            ),
        );
    }
    println!(
        "AD: {users} users and {groups} groups loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // ---- the agent, installed on that OU ------------------------------------------------------
    let dir = root.join("agent");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("svc.pw"), testbed::SVC_PASSWORD);
    let _ = std::fs::write(dir.join("key.txt"), server.issue_key(DOMAIN, None));
    let answers_text = |key_file: &str| {
        format!(
            "version = 1\n[server]\ntype = \"member\"\ndc_host = \"{}\"\n[ldap]\nca_file = '{}'\ntimeout_seconds = 60\n\
             [directory]\nroot_user_dn = '{ou}'\nsync_group_dn = '{sync_group}'\n\
             [service_account]\nusername = 'EXAMPLE\\{}'\npassword_file = \"svc.pw\"\n\
             [cloud]\nurl = '{}'\nca_file = '{}'\nconnect_key_file = \"{key_file}\"\ntimeout_seconds = 60\n",
            testbed::DC1_HOST,
            bed.dc1.ca_file.display(),
            testbed::accounts::GOOD,
            server.url,
            server.ca.display()
        )
    };
    let answers = dir.join("answers.toml");
    let _ = std::fs::write(&answers, answers_text("key.txt"));
    let prefix = dir.join("root");
    match Command::new(bins::setup_with_agent())
        .args(["install", "--no-start", "--answers"])
        .arg(&answers)
        .arg("--prefix")
        .arg(&prefix)
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => fail(
            &mut bed,
            format!(
                "install failed: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => fail(&mut bed, e.to_string()),
    }
    let config = prefix.join("etc/ad-sync/agent.toml");

    // ---- ldapsearch paging the same entries ------------------------------------------------
    let pw = dir.join("svc.pw");
    let ldapsearch = |controls: &[&str]| {
        let mut c = Command::new("ldapsearch");
        c.args(["-LLL", "-H", "ldaps://dc1.example.com", "-x", "-D"])
            .arg(format!("{}@example.com", testbed::accounts::GOOD))
            .arg("-y")
            .arg(&pw)
            .args(["-E", "pr=1000/noprompt"]);
        for control in controls {
            c.args(["-E", control]);
        }
        c.args(["-b", &ou, ad_sync::directory::object::PEOPLE_FILTER])
            .args(ad_sync::directory::object::import_attrs())
            .env("LDAPTLS_CACERT", &bed.dc1.ca_file);
        measured(&mut c)
    };
    let (search, _, ok, out) = ldapsearch(&[]);
    let entries = out.lines().filter(|l| l.starts_with("dn:")).count();
    if !ok || entries < users + groups {
        fail(
            &mut bed,
            format!(
                "ldapsearch read {entries} entries: {}",
                &out[..out.len().min(500)]
            ),
        );
    }
    println!(
        "ldapsearch -E pr=1000 of the same {entries} entries (the import's attributes): {:.2} s",
        search.as_secs_f64()
    );
    // The same with the extended-DN control the agent asks for (every DN value with its
    // objectGUID and SID: what the DC must look up besides).
    let (search_ext, _, ok, _) = ldapsearch(&[ad_sync::directory::object::EXTENDED_DN]);
    println!(
        "ldapsearch of the same with the extended-DN control (as the agent reads): {:.2} s{}",
        search_ext.as_secs_f64(),
        if ok { "" } else { " (failed)" }
    );

    // ---- the import --------------------------------------------------------------------------
    let import = || {
        measured(
            Command::new(bins::agent())
                .args(["import", "--json", "--config"])
                .arg(&config)
                .args(["--log-dir", "-"]),
        )
    };
    let (took, rss, ok, out) = import();
    // The report (standard output) comes first, the log after it.
    let counts = |out: &str| -> String {
        let json = out.find('{').map_or("", |i| &out[i..]);
        serde_json::Deserializer::from_str(json)
            .into_iter::<serde_json::Value>()
            .next()
            .and_then(Result::ok)
            .map(|v| v["counts"].to_string())
            .unwrap_or_else(|| out.lines().rev().take(5).collect::<Vec<_>>().join(" | "))
    };
    if !ok {
        fail(&mut bed, format!("import failed: {}", counts(&out)));
    }
    println!(
        "ad-sync-agent import: {:.2} s, peak RSS {:.1} MB; {}",
        took.as_secs_f64(),
        rss as f64 / 1024.0,
        counts(&out)
    );
    for line in out
        .lines()
        .filter(|l| l.contains("read AD") || l.contains("import done"))
    {
        println!("  {}", line.split("INFO ").nth(1).unwrap_or(line));
    }
    println!(
        "ratio import / ldapsearch: {:.2} (target at most 2); against ldapsearch with the extended-DN control: {:.2}",
        took.as_secs_f64() / search.as_secs_f64(),
        took.as_secs_f64() / search_ext.as_secs_f64()
    );
    let (again, _, ok, out) = import();
    if !ok {
        fail(&mut bed, format!("second import failed: {}", counts(&out)));
    }
    println!(
        "ad-sync-agent import again (nothing new): {:.2} s; {}",
        again.as_secs_f64(),
        counts(&out)
    );

    // ---- the preview of the first sync for these existing accounts ---------------------------
    let _ = std::fs::write(dir.join("key2.txt"), server.issue_key(DOMAIN, None));
    let preview_answers = dir.join("preview.toml");
    let _ = std::fs::write(
        &preview_answers,
        format!(
            "{}[sync]\nadopt_existing_users = true\nadopt_existing_groups = true\n",
            answers_text("key2.txt")
        ),
    );
    let parsed = match ad_sync::answers::Answers::load(&preview_answers) {
        Ok(a) => a,
        Err(e) => fail(&mut bed, e.to_string()),
    };
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let started = Instant::now();
        let looked = cloud::block_on(ad_sync::preflight::preview::look(&parsed));
        times.push(started.elapsed().as_secs_f64());
        match looked {
            Ok(l) => last = Some(l),
            Err(e) => fail(&mut bed, format!("preview: {e}")),
        }
    }
    times.sort_by(f64::total_cmp);
    if let Some(l) = last {
        let Some(c) = l.preview.as_ref().map(|p| &p.users) else {
            fail(&mut bed, "the preview has no cloud → AD part".to_string())
        };
        println!(
            "preview of the first sync: median {:.2} s of 3 ({}) (target under 5 s): {} cloud users and {} groups against {} AD objects; users {} adopt, {} create, {} collisions, {} protected",
            times[1],
            times
                .iter()
                .map(|t| format!("{t:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            l.cloud_users,
            l.cloud_groups,
            l.ad_objects,
            c.adopt,
            c.create,
            c.collisions.len(),
            c.protected.len()
        );
    }
    drop(server);
    bed.stop();
}
