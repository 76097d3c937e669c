//! The reference cloud, run for real (`ad-sync-cloud serve` over HTTPS with its own CA), driven
//! by the product's client, by `ad-sync-setup validate-key` and by raw HTTP for the error codes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use ad_sync::cloud::api::{
    ApplyStatus, ChangeBody, ChangeResult, ErrorCode, HeartbeatRequest, ImportGroup,
    ImportMembership, ImportOutcome, ImportRequest, ImportResponse, ImportUser, MAX_IMPORT_ITEMS,
    Role,
};
use ad_sync::cloud::client::{CloudClient, CloudError, CloudOptions};
use ad_sync::cloud::sealed::{self, AgentKeyPair};
use ad_sync::connect_key::ConnectKey;
use ad_sync::secret::Secret;
use serde_json::Value;
use support::cloud::{CloudServer, block_on};

const DOMAIN: &str = "DC=example,DC=com";
const OTHER: &str = "DC=other,DC=com";

fn server(tag: &str, extra: &[&str]) -> CloudServer {
    let s = CloudServer::start(tag, extra);
    s.admin_ok(&["domain", "add", "DC=example;DC=com"]);
    s.admin_ok(&["domain", "add", OTHER]);
    s
}

fn key(text: &str) -> ConnectKey {
    ConnectKey::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

struct Enrolled {
    id: String,
    host: String,
    credential: Secret,
    pair: AgentKeyPair,
    role: Role,
}

fn enroll(
    client: &CloudClient,
    key_text: &str,
    domain: &str,
    host: &str,
) -> Result<Enrolled, CloudError> {
    let pair = sealed::generate_key_pair();
    let r = block_on(client.enroll(
        &key(key_text),
        domain,
        host,
        "0.1.0",
        "linux",
        &pair.public_key,
    ))?;
    Ok(Enrolled {
        id: r.agent_id,
        host: host.to_string(),
        credential: Secret::new(r.credential),
        pair,
        role: r.role,
    })
}

fn heartbeat(client: &CloudClient, agent: &Enrolled) -> Role {
    let req = HeartbeatRequest {
        version: "0.1.0".into(),
        host: agent.host.clone(),
        status: "ok".into(),
        message: None,
        run: None,
    };
    block_on(client.heartbeat(&agent.credential, &req))
        .unwrap_or_else(|e| panic!("heartbeat: {e}"))
        .role
}

/// `ad-sync-setup validate-key - --json ...` with the key on standard input; (exit code, JSON).
/// Runs `cmd` with `input` (a key: never an argument) on its standard input.
fn with_stdin(cmd: &mut std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

fn validate_key(key: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ad-sync-setup"));
    cmd.args(["validate-key", "-", "--json"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        if !env.iter().any(|(k, _)| *k == var) {
            cmd.env_remove(var);
        }
    }
    let out = with_stdin(&mut cmd, key);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("validate-key printed no JSON ({e}): {stdout}"));
    (
        out.status.code().unwrap_or(-1),
        json,
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn key_lifecycle_valid_used_expired_wrong_domain_and_typo() {
    let s = server("lifecycle", &[]);
    let ca = s.ca.to_string_lossy().into_owned();
    let cloud = ["--cloud", s.url.as_str(), "--ca", ca.as_str()];
    let k = s.issue_key("dc=Example,dc=COM", None);

    let (code, j, _) = validate_key(&k, &cloud, &[]);
    assert_eq!(
        (code, j["state"].as_str(), j["valid"].as_bool()),
        (0, Some("valid"), Some(true)),
        "{j}"
    );
    assert_eq!(j["domain"], DOMAIN);
    // Seven days by default.
    let expires = ad_sync::time_fmt::rfc3339_to_unix(j["expires_at"].as_str().unwrap_or_default())
        .unwrap_or_else(|| panic!("no expires_at: {j}"));
    let week = ad_sync::time_fmt::now_unix() + 7 * 86_400;
    assert!((expires - week).abs() < 120, "{j}");

    // The domain is compared as a DN: separator and case do not matter; another domain does.
    let (code, j, _) = validate_key(
        &k,
        &[&cloud[..], &["--domain", "dc=EXAMPLE;dc=com"]].concat(),
        &[],
    );
    assert_eq!((code, j["state"].as_str()), (0, Some("valid")), "{j}");
    let (code, j, _) = validate_key(&k, &[&cloud[..], &["--domain", OTHER]].concat(), &[]);
    assert_eq!(
        (code, j["state"].as_str(), j["valid"].as_bool()),
        (1, Some("wrong_domain"), Some(false)),
        "{j}"
    );

    // Checking twice used nothing up; enrolling does.
    enroll(&s.client(), &k, DOMAIN, "dc1").unwrap_or_else(|e| panic!("{e}"));
    let (code, j, _) = validate_key(&k, &cloud, &[]);
    assert_eq!((code, j["state"].as_str()), (1, Some("used")), "{j}");

    // Unknown: well-formed, never issued here.
    let stranger = ConnectKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let (code, j, _) = validate_key(stranger.secret().expose(), &cloud, &[]);
    assert_eq!((code, j["state"].as_str()), (1, Some("unknown")), "{j}");
    assert!(j["domain"].is_null());

    // Expired.
    let short = s.issue_key(DOMAIN, Some("1s"));
    std::thread::sleep(Duration::from_millis(2100));
    let (code, j, _) = validate_key(&short, &cloud, &[]);
    assert_eq!((code, j["state"].as_str()), (1, Some("expired")), "{j}");

    // A typo is caught offline: the cloud URL points at a closed port and is never tried.
    let fresh = s.issue_key(DOMAIN, None);
    let i = fresh.len() - 3;
    let typo = format!(
        "{}{}{}",
        &fresh[..i],
        if &fresh[i..=i] == "A" { "B" } else { "A" },
        &fresh[i + 1..]
    );
    let (code, j, all) = validate_key(&typo, &["--cloud", "https://127.0.0.1:9"], &[]);
    assert_eq!(
        (code, j["state"].as_str(), j["checked"].as_str()),
        (1, Some("malformed"), Some("offline")),
        "{j}"
    );
    assert!(all.contains("mistyped"), "{all}");
    // Pasted with spaces, line breaks and lower case, the key still works.
    let pasted = format!(
        "  {}\n{}  ",
        fresh[..17].to_lowercase(),
        fresh[17..].replace('-', " ")
    );
    let (code, j, _) = validate_key(&pasted, &cloud, &[]);
    assert_eq!((code, j["state"].as_str()), (0, Some("valid")), "{j}");
    // Offline only: well-formed, and it says it did not ask the cloud.
    let (code, j, _) = validate_key(&fresh, &["--offline"], &[]);
    assert_eq!((code, j["checked"].as_str()), (0, Some("offline")), "{j}");

    // `key list` shows every key redacted, with its state.
    let list = s.admin_ok(&["key", "list"]);
    for (text, state) in [(&k, "used"), (&short, "expired"), (&fresh, "valid")] {
        let tail = &text[text.len() - 4..];
        assert!(
            list.lines().any(|l| l.contains(tail) && l.contains(state)),
            "{tail} {state}: {list}"
        );
        assert!(!list.contains(&text[5..25]), "key list shows a key: {list}");
    }
}

#[test]
fn fifty_concurrent_enrollments_with_one_key_make_exactly_one_agent() {
    let s = server("concurrent", &[]);
    let k = s.issue_key(DOMAIN, None);
    let client = std::sync::Arc::new(s.client());
    let results = block_on(async {
        let mut tasks = Vec::new();
        for i in 0..50 {
            let client = client.clone();
            let k = key(&k);
            tasks.push(tokio::spawn(async move {
                let pair = sealed::generate_key_pair();
                client
                    .enroll(
                        &k,
                        DOMAIN,
                        &format!("host-{i}"),
                        "0.1.0",
                        "linux",
                        &pair.public_key,
                    )
                    .await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_else(|e| panic!("{e}")));
        }
        out
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let used = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.api_code() == Some("key_used")))
        .count();
    assert_eq!(
        (ok, used),
        (1, 49),
        "{:?}",
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .collect::<Vec<_>>()
    );
    let agents = s.admin_ok(&["agents"]);
    assert_eq!(
        agents.lines().filter(|l| l.starts_with("agt-")).count(),
        1,
        "{agents}"
    );
}

#[test]
fn a_failed_enrollment_leaves_the_key_usable() {
    let s = server("failed-enroll", &[]);
    let k = s.issue_key(DOMAIN, None);
    let client = s.client();
    // Wrong domain instance, and a public key of the wrong size: refused before the key is used.
    let e = enroll(&client, &k, OTHER, "dc1")
        .err()
        .unwrap_or_else(|| panic!("enrolled"));
    assert_eq!(e.api_code(), Some("wrong_domain"), "{e}");
    let bad = block_on(client.enroll(&key(&k), DOMAIN, "dc1", "0.1.0", "linux", "AAAA"));
    assert_eq!(
        bad.err()
            .and_then(|e| e.api_code().map(str::to_string))
            .as_deref(),
        Some("invalid_request")
    );
    let state =
        block_on(client.check_key(&key(&k), Some(DOMAIN))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.state.as_str(), "valid");
    let agent = enroll(&client, &k, "dc=example;dc=com", "dc1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(agent.role, Role::Primary);
    // Replayed: the same enrollment again is refused and creates nothing.
    let e = enroll(&client, &k, DOMAIN, "dc1")
        .err()
        .unwrap_or_else(|| panic!("replayed"));
    assert_eq!(e.api_code(), Some("key_used"), "{e}");
    assert_eq!(
        s.admin_ok(&["agents"])
            .lines()
            .filter(|l| l.starts_with("agt-"))
            .count(),
        1
    );
}

#[test]
fn keys_agents_and_the_directory_survive_a_restart() {
    let mut s = server("restart", &[]);
    let k = s.issue_key(DOMAIN, None);
    let agent = enroll(&s.client(), &k, DOMAIN, "dc1").unwrap_or_else(|e| panic!("{e}"));
    s.admin_ok(&[
        "user",
        "add",
        "ada",
        "--given",
        "Ada",
        "--surname",
        "Lovelace",
        "--domain",
        DOMAIN,
    ]);
    let ca_before = std::fs::read(&s.ca).unwrap_or_default();
    s.restart();
    assert_eq!(
        std::fs::read(&s.ca).unwrap_or_default(),
        ca_before,
        "the CA must be kept"
    );
    let client = s.client();
    assert_eq!(heartbeat(&client, &agent), Role::Primary);
    let state = block_on(client.check_key(&key(&k), None)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(state.state.as_str(), "used");
    let changes =
        block_on(client.changes(&agent.credential, 0, 100)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&changes.changes[0].body, ChangeBody::UserUpsert { user } if user.username == "ada")
    );
}

#[test]
fn the_primary_role_moves_when_the_primary_stops_heartbeating() {
    let s = server(
        "failover",
        &[
            "--primary-timeout",
            "2s",
            "--heartbeat-interval",
            "1s",
            "--status-listen",
            "127.0.0.1:0",
        ],
    );
    let client = s.client();
    let a = enroll(&client, &s.issue_key(DOMAIN, None), DOMAIN, "dc1")
        .unwrap_or_else(|e| panic!("{e}"));
    let b = enroll(&client, &s.issue_key(DOMAIN, None), DOMAIN, "dc2")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((a.role, b.role), (Role::Primary, Role::Standby));
    assert_eq!(
        (heartbeat(&client, &a), heartbeat(&client, &b)),
        (Role::Primary, Role::Standby)
    );
    // Only the primary applies changes.
    let e = block_on(client.changes(&b.credential, 0, 10))
        .err()
        .unwrap_or_else(|| panic!("standby fetched"));
    assert_eq!(e.api_code(), Some("not_primary"), "{e}");
    // A goes silent; B keeps calling in and takes over after the timeout.
    let mut roles = Vec::new();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        roles.push(heartbeat(&client, &b));
    }
    assert_eq!(roles.last(), Some(&Role::Primary), "{roles:?}");
    assert_eq!(
        roles.first(),
        Some(&Role::Standby),
        "moved before the timeout: {roles:?}"
    );
    assert_eq!(
        heartbeat(&client, &a),
        Role::Standby,
        "the old primary must step down"
    );
    block_on(client.changes(&b.credential, 0, 10)).unwrap_or_else(|e| panic!("{e}"));
    let agents = s.admin_ok(&["agents"]);
    assert!(
        agents
            .lines()
            .any(|l| l.contains(&b.id) && l.contains("primary")),
        "{agents}"
    );
    // The status page says the same, on its own (loopback) port; the API's port has none.
    let page = status_page(&s);
    assert!(raw_get(&s, "/").contains("not_found"));
    assert!(
        page.contains(&b.id) && page.contains("primary") && page.contains("dc2"),
        "{page}"
    );
    assert!(
        page.contains("healthy") && page.contains("0.1.0") && page.contains(DOMAIN),
        "{page}"
    );
    // Deregistering the primary hands the role over at once.
    block_on(client.deregister(&b.credential)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(heartbeat(&client, &a), Role::Primary);
    let e = block_on(client.heartbeat(
        &b.credential,
        &HeartbeatRequest {
            version: "x".into(),
            host: "y".into(),
            ..Default::default()
        },
    ))
    .err()
    .unwrap_or_else(|| panic!("deregistered agent accepted"));
    assert_eq!(e.api_code(), Some("unauthorized"));
}

fn raw_get(s: &CloudServer, path: &str) -> String {
    raw_get_url(s, &format!("{}{path}", s.url))
}

/// The server's status page (served with `--status-listen`, at the address it printed).
fn status_page(s: &CloudServer) -> String {
    let url = s
        .stdout()
        .lines()
        .find_map(|l| l.strip_prefix("status page on ").map(str::to_string))
        .unwrap_or_else(|| panic!("no status page line: {}", s.stdout()));
    raw_get_url(s, &url)
}

fn raw_get_url(s: &CloudServer, url: &str) -> String {
    let client = raw_client(s, None);
    block_on(async {
        client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A TLS client that trusts only the server's CA.
fn tls_connector(s: &CloudServer) -> native_tls::TlsConnector {
    let pem = std::fs::read(&s.ca).unwrap_or_else(|e| panic!("{e}"));
    let ca = native_tls::Certificate::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
    native_tls::TlsConnector::builder()
        .add_root_certificate(ca)
        .disable_built_in_roots(true)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A TLS connection to the server from `from` (a loopback address), with nothing sent yet.
fn raw_tls(
    s: &CloudServer,
    tls: &native_tls::TlsConnector,
    from: IpAddr,
) -> std::io::Result<native_tls::TlsStream<std::net::TcpStream>> {
    let port = s.port();
    let tcp = socket2_connect(from, port)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tls.connect("127.0.0.1", tcp)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// A blocking TCP connection to 127.0.0.1:`port` from the address `from`.
fn socket2_connect(from: IpAddr, port: u16) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd as _;
    let IpAddr::V4(v4) = from else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    // SAFETY: plain socket calls on a descriptor this function owns until it is handed to
    // TcpStream (which closes it), or closed here on failure.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let addr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = addr(v4, 0);
        let remote = addr(std::net::Ipv4Addr::LOCALHOST, port);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(std::net::TcpStream::from_raw_fd(fd))
    }
}

/// Whether the server has closed this connection (a read ends, or fails, rather than timing
/// out).
fn closed_by_server(c: &mut native_tls::TlsStream<std::net::TcpStream>) -> bool {
    use std::io::Read as _;
    let mut buf = [0u8; 512];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

fn raw_client(s: &CloudServer, from: Option<IpAddr>) -> reqwest::Client {
    let pem = std::fs::read(&s.ca).unwrap_or_else(|e| panic!("{e}"));
    let ca = reqwest::Certificate::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
    reqwest::Client::builder()
        .tls_backend_native()
        .tls_certs_merge([ca])
        .no_proxy()
        .local_address(from)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn changes_carry_the_directory_and_sealed_passwords_and_acks_are_recorded() {
    let s = server("changes", &[]);
    let client = s.client();
    let agent = enroll(&client, &s.issue_key(DOMAIN, None), DOMAIN, "dc1")
        .unwrap_or_else(|e| panic!("{e}"));
    // An agent of another domain instance, enrolled before anything happens here: it must see
    // none of this domain's changes and be sealed none of its passwords.
    let neighbour = enroll(&client, &s.issue_key(OTHER, None), OTHER, "dc-other")
        .unwrap_or_else(|e| panic!("{e}"));
    s.admin_ok(&[
        "user",
        "add",
        "ada",
        "--given",
        "Ada",
        "--surname",
        "Lovelace",
        "--email",
        "ada@example.com",
        "--domain",
        DOMAIN,
    ]);
    s.admin_ok(&["group", "add", "Engineering", "--domain", DOMAIN]);
    s.admin_ok(&["group", "add", "Staff", "--domain", DOMAIN]);
    s.admin_ok(&[
        "group",
        "add-member",
        "Engineering",
        "ada",
        "--domain",
        DOMAIN,
    ]);
    s.admin_ok(&[
        "group",
        "add-member",
        "Staff",
        "Engineering",
        "--domain",
        DOMAIN,
    ]);
    s.admin_ok(&["user", "lock", "ada", "--domain", DOMAIN]);
    let password = "Zürich-Pa55 word!";
    let pw_file = s.dir.join("pw.txt");
    std::fs::write(&pw_file, format!("{password}\n")).unwrap_or_else(|e| panic!("{e}"));
    let said = s.admin_ok(&[
        "user",
        "set-password",
        "ada",
        "--password-file",
        &pw_file.to_string_lossy(),
        "--domain",
        DOMAIN,
    ]);
    assert!(said.contains("sealed to 1 enrolled agent"), "{said}");
    // The neighbour's domain has a user of the same name, which is another user.
    s.admin_ok(&[
        "user",
        "add",
        "ada",
        "--given",
        "A",
        "--surname",
        "B",
        "--domain",
        OTHER,
    ]);
    let theirs =
        block_on(client.changes(&neighbour.credential, 0, 100)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(theirs.changes.len(), 1, "{:?}", theirs.changes);
    assert!(
        matches!(&theirs.changes[0].body, ChangeBody::UserUpsert { user } if user.given_name == "A")
    );
    // An agent that enrolls later (another domain, so it is that domain's primary).
    let late =
        enroll(&client, &s.issue_key(OTHER, None), OTHER, "dc9").unwrap_or_else(|e| panic!("{e}"));

    let page1 = block_on(client.changes(&agent.credential, 0, 4)).unwrap_or_else(|e| panic!("{e}"));
    assert!(page1.more);
    assert_eq!(page1.changes.len(), 4);
    let page2 = block_on(client.changes(&agent.credential, page1.cursor, 100))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!page2.more);
    let all: Vec<_> = page1.changes.iter().chain(&page2.changes).collect();
    let kinds: Vec<String> = all
        .iter()
        .map(|c| {
            serde_json::to_value(&c.body).unwrap_or_default()["type"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "user.upsert",
            "group.upsert",
            "group.upsert",
            "membership.add",
            "membership.add",
            "user.upsert",
            "user.password"
        ]
    );
    assert!(
        matches!(&all[4].body, ChangeBody::MembershipAdd(ad_sync::cloud::api::Membership { member, member_type, .. })
        if member == "Engineering" && member_type.as_str() == "group")
    );
    assert!(
        matches!(&all[5].body, ChangeBody::UserUpsert { user } if user.locked && !user.suspended)
    );
    let ChangeBody::UserPassword {
        sealed_password: Some(sealed_pw),
        ..
    } = &all[6].body
    else {
        panic!("no sealed password: {:?}", all[6]);
    };
    let ChangeBody::UserPassword { id: pw_user, .. } = &all[6].body else {
        panic!("not a password change");
    };
    let opened = sealed::open(&agent.pair.secret_key, sealed_pw).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sealed::unbind_password(&opened, pw_user, all[6].seq)
            .unwrap_or_else(|e| panic!("{e}"))
            .expose(),
        password
    );
    // Bound to its user and change: replayed as another change, or for another user, it is
    // refused.
    assert!(sealed::unbind_password(&opened, pw_user, all[6].seq + 1).is_err());
    assert!(sealed::unbind_password(&opened, "u-someone-else", all[6].seq).is_err());
    // Not readable with another agent's key, not kept by the cloud, and not sealed for an agent
    // that did not exist yet.
    assert!(sealed::open(&late.pair.secret_key, sealed_pw).is_err());
    let stored = s.stored_bytes();
    assert!(!stored.is_empty(), "the database's bytes were read");
    assert!(
        !stored
            .windows(password.len())
            .any(|w| w == password.as_bytes()),
        "password stored"
    );
    // Sealed to this domain's one agent only: not to the neighbour's, nor to one enrolled later.
    let envelopes = s.sql(&format!(
        "SELECT agent_id FROM password_envelopes WHERE seq = {}",
        all[6].seq
    ));
    assert_eq!(envelopes, vec![agent.id.clone()]);

    // Acks: per-change results, idempotent, and the cursor of fully acknowledged changes.
    let result = |seq, status| ChangeResult {
        seq,
        status,
        message: String::new(),
    };
    let r = block_on(client.ack(
        &agent.credential,
        vec![
            result(1, ApplyStatus::Applied),
            result(3, ApplyStatus::Failed),
        ],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.recorded, r.acked_cursor), (2, 1));
    let r = block_on(client.ack(
        &agent.credential,
        (1..=7).map(|s| result(s, ApplyStatus::Applied)).collect(),
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.acked_cursor, 7);
    let store = ad_sync_cloud::server::store::Store::open(&s.db).unwrap_or_else(|e| panic!("{e}"));
    let results = store.results(DOMAIN).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(results.len(), 7);
    assert!(results.iter().all(|(_, st, _)| *st == ApplyStatus::Applied));
    let e = block_on(client.ack(&agent.credential, vec![result(99, ApplyStatus::Applied)]))
        .err()
        .unwrap_or_else(|| panic!("ack of an unknown change accepted"));
    assert_eq!(e.api_code(), Some("invalid_request"));
}

#[test]
fn the_server_never_logs_a_key_a_credential_or_a_password() {
    let s = server("logs", &[]);
    let client = s.client();
    let k = s.issue_key(DOMAIN, None);
    let agent = enroll(&client, &k, DOMAIN, "dc1").unwrap_or_else(|e| panic!("{e}"));
    let _ = enroll(&client, &k, DOMAIN, "dc1");
    heartbeat(&client, &agent);
    s.admin_ok(&[
        "user",
        "add",
        "bob",
        "--given",
        "Bob",
        "--surname",
        "B",
        "--domain",
        DOMAIN,
    ]);
    let pw_file = s.dir.join("pw.txt");
    std::fs::write(&pw_file, "Distinct-Log-Secret-9931").unwrap_or_else(|e| panic!("{e}"));
    s.admin_ok(&[
        "user",
        "set-password",
        "bob",
        "--password-file",
        &pw_file.to_string_lossy(),
        "--domain",
        DOMAIN,
    ]);
    block_on(client.changes(&agent.credential, 0, 100)).unwrap_or_else(|e| panic!("{e}"));
    let log = s.log();
    // The log is not empty: enrollment is logged, with the key redacted.
    assert!(
        log.contains("agent enrolled") && log.contains(&k[k.len() - 4..]),
        "{log}"
    );
    assert!(log.contains("enrollment refused"), "{log}");
    assert!(!log.contains(&k[5..30]), "key in the log: {log}");
    assert!(
        !log.contains(agent.credential.expose()),
        "credential in the log"
    );
    assert!(
        !log.contains("Distinct-Log-Secret-9931"),
        "password in the log"
    );
}

/// The error table of docs/cloud-api.md: code -> status.
fn documented_errors() -> BTreeMap<String, u16> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cloud-api.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    doc.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let status = cells.get(2)?.parse().ok()?;
            Some((code.to_string(), status))
        })
        .collect()
}

#[test]
fn every_documented_error_code_is_returned_and_changes_nothing() {
    let documented = documented_errors();
    let known: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    assert_eq!(
        documented.keys().cloned().collect::<BTreeSet<_>>(),
        known,
        "docs/cloud-api.md and api.rs differ"
    );
    for c in ErrorCode::ALL {
        assert_eq!(documented[c.as_str()], c.http_status(), "{}", c.as_str());
    }

    let s = server("errors", &["--request-timeout", "2s"]);
    let client = s.client();
    let http = raw_client(&s, None);
    let url = |p: &str| format!("{}{p}", s.url);
    let spare = s.issue_key(DOMAIN, None);
    let pk = sealed::generate_key_pair().public_key;
    let enroll_body = |key: &str, domain: &str| serde_json::json!({"key": key, "domain": domain, "host": "dc1", "version": "0.1.0", "os": "linux", "public_key": pk});
    let primary = enroll(&client, &s.issue_key(DOMAIN, None), DOMAIN, "dc1")
        .unwrap_or_else(|e| panic!("{e}"));
    let standby_key = s.issue_key(DOMAIN, None);
    let standby = enroll(&client, &standby_key, DOMAIN, "dc2").unwrap_or_else(|e| panic!("{e}"));
    let expired = s.issue_key(DOMAIN, Some("1s"));
    std::thread::sleep(Duration::from_millis(1100));
    let stranger = ConnectKey::generate().unwrap_or_else(|e| panic!("{e}"));

    let mut seen: BTreeMap<String, u16> = BTreeMap::new();
    let mut record = |resp: reqwest::Response| {
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").is_some();
        let body: Value =
            block_on(resp.json()).unwrap_or_else(|e| panic!("error without a JSON body: {e}"));
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code: {body}"))
            .to_string();
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{body}"
        );
        if code == "rate_limited" {
            assert!(retry_after, "429 without Retry-After");
        }
        seen.insert(code, status);
    };
    let send = |r: reqwest::RequestBuilder| block_on(r.send()).unwrap_or_else(|e| panic!("{e}"));
    let json = |r: reqwest::RequestBuilder| r.header("content-type", "application/json");

    record(send(
        json(http.post(url("/v1/agents/enroll"))).body(format!("{{\"key\":\"{spare}\",")),
    )); // malformed_json
    record(send(json(http.post(url("/v1/agents/enroll"))).body(
        serde_json::json!({"key": spare, "domain": DOMAIN, "host": "dc1", "version": "1", "public_key": pk, "extra": 1}).to_string(),
    ))); // invalid_request
    record(send(
        http.post(url("/v1/agents/enroll"))
            .json(&enroll_body("ADS1-0000", DOMAIN)),
    )); // key_malformed
    record(send(
        json(http.post(url("/v1/agents/heartbeat"))).body("{}"),
    )); // unauthorized
    record(send(http.get(url("/v2/anything")))); // not_found
    record(send(
        http.post(url("/v1/agents/enroll"))
            .json(&enroll_body(stranger.secret().expose(), DOMAIN)),
    )); // key_unknown
    record(send(http.get(url("/v1/agents/enroll")))); // method_not_allowed
    record(send(
        http.post(url("/v1/agents/enroll"))
            .json(&enroll_body(&standby_key, DOMAIN)),
    )); // key_used
    record(send(
        http.get(url("/v1/changes"))
            .bearer_auth(standby.credential.expose()),
    )); // not_primary
    record(send(
        http.post(url("/v1/agents/enroll"))
            .json(&enroll_body(&expired, DOMAIN)),
    )); // key_expired
    let revoked = s.issue_key(DOMAIN, None);
    s.admin_ok(&["key", "revoke", &revoked[revoked.len() - 4..]]);
    record(send(
        http.post(url("/v1/agents/enroll"))
            .json(&enroll_body(&revoked, DOMAIN)),
    )); // key_revoked
    // A standby's acknowledgement is refused: only the primary's word is recorded.
    let standby_ack = send(
        http.post(url("/v1/changes/ack"))
            .bearer_auth(standby.credential.expose())
            .json(&serde_json::json!({"results": [{"seq": 1, "status": "applied"}]})),
    );
    assert_eq!(standby_ack.status().as_u16(), 409);
    record(standby_ack); // not_primary
    // AD's changes read from a cookie the cloud's cursor is not at (here: it has none yet).
    record(send(
        http.post(url("/v1/source/changes"))
            .bearer_auth(primary.credential.expose())
            .json(&serde_json::json!({"after": "old", "cookie": "new", "dc": "dc1", "users": []})),
    )); // cursor_moved
    let cursor =
        block_on(client.source_cursor(&primary.credential)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cursor.cookie, None, "a refused batch moved the cursor");
    // body_too_large: the server answers before reading the body and closes, so a client still
    // sending can see the connection reset instead of the answer (HTTP allows both); the answer
    // is what is tested, so a reset is retried.
    let oversized = format!("{{\"key\":\"{}\"}}", "A".repeat(300 * 1024));
    let too_large = (0..5)
        .find_map(|_| {
            block_on(
                json(http.post(url("/v1/agents/enroll")))
                    .body(oversized.clone())
                    .send(),
            )
            .ok()
        })
        .unwrap_or_else(|| panic!("the oversized request never got an answer"));
    record(too_large);
    record(send(
        http.post(url("/v1/agents/enroll"))
            .header("content-type", "text/plain")
            .body(enroll_body(&spare, DOMAIN).to_string()),
    )); // unsupported_media_type
    record(send(
        http.post(url("/v1/agents/enroll"))
            .json(&enroll_body(&spare, OTHER)),
    )); // wrong_domain
    // rate_limited: from its own loopback address, so no other request here is counted with it.
    let limited = raw_client(
        &s,
        Some("127.0.0.9".parse().unwrap_or_else(|e| panic!("{e}"))),
    );
    let mut last = None;
    for _ in 0..21 {
        last =
            Some(send(limited.post(url("/v1/keys/check")).json(
                &serde_json::json!({"key": stranger.secret().expose()}),
            )));
    }
    record(last.unwrap_or_else(|| panic!("no request")));
    // The limit is per address: 127.0.0.1 is still served.
    let ok = block_on(client.check_key(&key(&spare), None)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.state.as_str(), "valid");

    // None of that changed anything: the spare key is still valid, two agents exist.
    assert_eq!(
        s.admin_ok(&["agents"])
            .lines()
            .filter(|l| l.starts_with("agt-"))
            .count(),
        2
    );

    // internal: the storage fails under the server (a table vanishes); the request is refused
    // with the documented error and the server keeps serving.
    s.admin_ok(&[
        "user",
        "add",
        "ada",
        "--given",
        "Ada",
        "--surname",
        "L",
        "--domain",
        DOMAIN,
    ]);
    s.sql("DROP TABLE acks");
    record(send(
        http.post(url("/v1/changes/ack"))
            .bearer_auth(primary.credential.expose())
            .json(&serde_json::json!({"results": [{"seq": 1, "status": "applied"}]})),
    ));
    assert_eq!(heartbeat(&client, &primary), Role::Primary);

    // request_timeout: a body announced and never sent (the server here allows 2 s).
    {
        use std::io::{Read as _, Write as _};
        let mut c = raw_tls(&s, &tls_connector(&s), [127, 0, 0, 1].into())
            .unwrap_or_else(|e| panic!("{e}"));
        c.write_all(b"POST /v1/agents/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"key\"")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or(""))
            .unwrap_or_else(|e| panic!("{e}: {text}"));
        seen.insert(
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            408,
        );
    }

    assert_eq!(seen, documented, "every documented code, with its status");
    assert!(!s.log().contains(&spare[5..30]));
}

#[test]
fn idle_and_half_sent_connections_are_closed_and_health_keeps_answering() {
    use std::io::Write as _;
    let s = server(
        "slow",
        &[
            "--header-timeout",
            "2s",
            "--max-connections-per-address",
            "100",
        ],
    );
    let health = |from: [u8; 4]| {
        let c = raw_client(&s, Some(from.into()));
        block_on(async { c.get(format!("{}/v1/health", s.url)).send().await })
            .map(|r| r.status().as_u16())
    };
    // 150 connections from one address that finish the handshake and send half a request
    // line: 100 are held (the per-address cap), the rest are closed at once.
    // (Opened at once, so none reaches the header timeout before the last is open.)
    let tls = tls_connector(&s);
    let opened: Vec<Option<native_tls::TlsStream<std::net::TcpStream>>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..150)
                .map(|_| {
                    scope.spawn(|| {
                        let mut c = raw_tls(&s, &tls, [127, 0, 0, 5].into()).ok()?;
                        c.write_all(b"GET /v1/hea").ok()?;
                        Some(c)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().ok().flatten())
                .collect()
        });
    let refused = opened.iter().filter(|c| c.is_none()).count();
    let mut held: Vec<_> = opened.into_iter().flatten().collect();
    assert!(refused >= 50, "only {refused} of 150 were refused");
    // Everyone else is served meanwhile.
    assert_eq!(health([127, 0, 0, 6]).ok(), Some(200));
    let started = std::time::Instant::now();
    println!("{refused} of 150 refused, {} held", held.len());
    // The header timeout (3 s) closes every one of them.
    let open_after: Vec<bool> = held
        .iter_mut()
        .map(|c| {
            c.get_ref()
                .set_read_timeout(Some(Duration::from_secs(15)))
                .unwrap_or_else(|e| panic!("{e}"));
            !closed_by_server(c)
        })
        .collect();
    assert!(
        open_after.iter().all(|open| !open),
        "{} connections still open after {:?}",
        open_after.iter().filter(|o| **o).count(),
        started.elapsed()
    );
    // And the address is served again.
    assert_eq!(health([127, 0, 0, 5]).ok(), Some(200));
    // An idle keep-alive connection (a request answered, then nothing) is closed too.
    let mut c = raw_tls(&s, &tls, [127, 0, 0, 7].into()).unwrap_or_else(|e| panic!("{e}"));
    c.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let before = std::time::Instant::now();
    assert!(closed_by_server(&mut c), "the idle connection stayed open");
    assert!(
        before.elapsed() < Duration::from_secs(5),
        "{:?}",
        before.elapsed()
    );
    assert!(!s.log().contains("Too many open files"));
}

#[test]
fn under_a_low_open_files_limit_the_server_refuses_connections_instead_of_failing() {
    use std::io::Write as _;
    // As in the finding: `ulimit -n 256` and 242 idle connections (here from three addresses,
    // under the per-address cap). The server holds at most 256 - 64 = 192, refuses the rest at
    // once, never runs out of descriptors, and serves again once the idle ones time out.
    let s = CloudServer::start_limited("nofile", &["--header-timeout", "3s"], 256);
    s.admin_ok(&["domain", "add", DOMAIN]);
    let tls = tls_connector(&s);
    let opened: Vec<Option<native_tls::TlsStream<std::net::TcpStream>>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..242u32)
                .map(|i| {
                    let tls = &tls;
                    let s = &s;
                    scope.spawn(move || {
                        let from: IpAddr = [127, 0, 3, (i % 3 + 1) as u8].into();
                        let mut c = raw_tls(s, tls, from).ok()?;
                        c.write_all(b"GET /v1/hea").ok()?;
                        Some(c)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().ok().flatten())
                .collect()
        });
    let held = opened.iter().filter(|c| c.is_some()).count();
    println!("{held} of 242 held under ulimit -n 256");
    assert!(held <= 192, "{held} connections held past the cap");
    assert!(held >= 150, "only {held} held");
    // The idle ones are closed by the header timeout; then the server answers again.
    let started = std::time::Instant::now();
    let health = || {
        let c = raw_client(&s, Some([127, 0, 0, 1].into()));
        block_on(async { c.get(format!("{}/v1/health", s.url)).send().await })
            .map(|r| r.status().as_u16())
            .ok()
    };
    let mut answered = None;
    while started.elapsed() < Duration::from_secs(15) {
        if let Some(code) = health() {
            answered = Some(code);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(answered, Some(200), "health never answered again");
    drop(opened);
    let log = s.log();
    assert!(!log.contains("Too many open files"), "{log}");
    assert!(log.contains("over the server's connection limit"), "{log}");
}

#[test]
fn the_server_offers_tls_1_3_and_no_cbc_suite() {
    let s = server("suites", &[]);
    let port = s.port().to_string();
    let probe = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("openssl: {e}"));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let v13 = probe(&["-tls1_3"]);
    assert!(v13.contains("TLSv1.3"), "{v13}");
    // TLS 1.2 with CBC (SHA-1 or SHA-256 MACs) only: refused.
    let cbc = probe(&[
        "-tls1_2",
        "-cipher",
        "ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:AES128-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256",
    ]);
    assert!(
        !cbc.contains("Cipher is ECDHE") && !cbc.contains("Cipher is AES"),
        "{cbc}"
    );
    // TLS 1.2 with an AEAD suite: served.
    let gcm = probe(&[
        "-tls1_2",
        "-cipher",
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
    ]);
    assert!(gcm.contains("GCM"), "{gcm}");
}

#[test]
fn revoked_agents_and_keys_stop_at_once_and_a_late_replay_is_refused() {
    let s = server("revoke", &[]);
    let client = s.client();
    let hb = HeartbeatRequest {
        version: "0.1.0".into(),
        host: "dc1".into(),
        status: "ok".into(),
        message: None,
        run: None,
    };
    // The installer's own retry (same key, same key pair) before the agent ever called in:
    // resumed, with a new credential sealed to that key pair.
    let k = s.issue_key(DOMAIN, None);
    let pair = sealed::generate_key_pair();
    let first =
        block_on(client.enroll(&key(&k), DOMAIN, "dc1", "0.1.0", "linux", &pair.public_key))
            .unwrap_or_else(|e| panic!("{e}"));
    let retry =
        block_on(client.enroll(&key(&k), DOMAIN, "dc1", "0.1.0", "linux", &pair.public_key))
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(retry.resumed && retry.agent_id == first.agent_id);
    assert!(s.log().contains("agent enrollment resumed"), "{}", s.log());
    let credential =
        sealed::open(&pair.secret_key, &retry.credential).unwrap_or_else(|e| panic!("{e}"));
    block_on(client.heartbeat(&credential, &hb)).unwrap_or_else(|e| panic!("{e}"));
    // Heartbeat fields are bounded (they are shown on the status page).
    for bad in [
        HeartbeatRequest {
            host: "h".repeat(200_000),
            ..hb.clone()
        },
        HeartbeatRequest {
            message: Some("m".repeat(5_000)),
            ..hb.clone()
        },
        HeartbeatRequest {
            host: "dc1\u{1b}[31m".into(),
            ..hb.clone()
        },
    ] {
        let e = block_on(client.heartbeat(&credential, &bad))
            .err()
            .unwrap_or_else(|| panic!("an oversized heartbeat was taken"));
        assert_eq!(e.api_code(), Some("invalid_request"), "{e}");
    }
    // Once the agent has called in, a replay of the used key with the same public key is
    // refused, and the live agent's credential keeps working.
    let replay =
        block_on(client.enroll(&key(&k), DOMAIN, "dc1", "0.1.0", "linux", &pair.public_key))
            .err()
            .unwrap_or_else(|| panic!("a late replay enrolled"));
    assert_eq!(replay.api_code(), Some("key_used"), "{replay}");
    block_on(client.heartbeat(&credential, &hb)).unwrap_or_else(|e| panic!("{e}"));

    // The operator deregisters the agent: its next call is refused.
    let out = s.admin_ok(&["agents", "deregister", &first.agent_id]);
    assert!(out.contains("deregistered"), "{out}");
    let e = block_on(client.heartbeat(&credential, &hb))
        .err()
        .unwrap_or_else(|| panic!("a deregistered agent was heard"));
    assert_eq!(e.api_code(), Some("unauthorized"), "{e}");
    let again = s.admin_ok(&["agents", "deregister", &first.agent_id]);
    assert!(again.contains("already"), "{again}");
    let unknown = s.admin(&["agents", "deregister", "agt-nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no such agent"));

    // A revoked key: by its last four characters, or the whole key on standard input.
    let k2 = s.issue_key(DOMAIN, None);
    let last4 = &k2[k2.len() - 4..];
    let out = s.admin_ok(&["key", "revoke", last4]);
    assert!(out.contains("revoked"), "{out}");
    let e = enroll(&client, &k2, DOMAIN, "dc2")
        .err()
        .unwrap_or_else(|| panic!("enrolled"));
    assert_eq!(e.api_code(), Some("key_revoked"), "{e}");
    let check = block_on(client.check_key(&key(&k2), None)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(check.state.as_str(), "revoked");
    let k3 = s.issue_key(DOMAIN, None);
    let out = with_stdin(
        std::process::Command::new(support::cloud::bin())
            .args(["key", "revoke", "-", "--db"])
            .arg(&s.db),
        &k3,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&k3[5..]));
    let e = enroll(&client, &k3, DOMAIN, "dc3")
        .err()
        .unwrap_or_else(|| panic!("enrolled"));
    assert_eq!(e.api_code(), Some("key_revoked"), "{e}");
    // A whole key as an argument is refused (command lines are visible to other users).
    let whole = s.admin(&["key", "revoke", &k3]);
    assert!(!whole.status.success());
    // A used key cannot be revoked; its agent is deregistered instead.
    let used = s.admin(&["key", "revoke", &k[k.len() - 4..]]);
    assert!(String::from_utf8_lossy(&used.stderr).contains("agents deregister"));
}

#[test]
fn the_rate_limit_holds_under_concurrency_and_spares_real_keys() {
    let s = server("limits", &[]);
    let c = raw_client(&s, Some([127, 0, 0, 11].into()));
    let url = format!("{}/v1/keys/check", s.url);
    let guesses: Vec<String> = (0..41)
        .map(|_| {
            ConnectKey::generate()
                .unwrap_or_else(|e| panic!("{e}"))
                .secret()
                .expose()
                .to_string()
        })
        .collect();
    // 41 guesses at once against a limit of 20 per window: exactly 20 are answered.
    let codes: Vec<u16> = block_on(async {
        let sends = guesses
            .iter()
            .map(|k| c.post(&url).json(&serde_json::json!({"key": k})).send());
        futures_join(sends).await
    });
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 20, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 21, "{codes:?}");
    // The same address, now over its limit, still gets an answer for a real key (an
    // administrator behind the same NAT as the guesser).
    let real = s.issue_key(DOMAIN, None);
    let r = block_on(c.post(&url).json(&serde_json::json!({"key": real})).send())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = block_on(r.json()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["state"], "valid", "{v}");
    // ...and a guess from it is still refused.
    let r = block_on(
        c.post(&url)
            .json(&serde_json::json!({"key": guesses[0]}))
            .send(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 429);
}

/// Sends every request at once; their HTTP statuses (0 when one failed to send).
async fn futures_join(
    sends: impl Iterator<Item = impl std::future::Future<Output = reqwest::Result<reqwest::Response>>>,
) -> Vec<u16> {
    futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.map(|r| r.status().as_u16()).unwrap_or(0))
        .collect()
}

#[test]
fn client_failures_are_told_in_words() {
    let s = CloudServer::start_on("words", "0.0.0.0:0", &[]);
    s.admin_ok(&["domain", "add", DOMAIN]);
    let k = s.issue_key(DOMAIN, None);
    let port = s.port();
    let check = |url: String, ca: Option<&std::path::Path>| {
        let mut o = CloudOptions::new(url);
        o.ca_file = ca.map(|p| p.to_path_buf());
        o.timeout = Duration::from_secs(5);
        let c = CloudClient::new(&o).unwrap_or_else(|e| panic!("{e}"));
        block_on(c.check_key(&key(&k), None))
            .err()
            .unwrap_or_else(|| panic!("no error"))
    };
    // Untrusted: the certificate's details come with the error.
    let e = check(format!("https://127.0.0.1:{port}"), None);
    assert!(
        e.to_string()
            .contains("not signed by a certificate authority this server trusts"),
        "{e}"
    );
    let cert = e
        .certificate()
        .unwrap_or_else(|| panic!("no certificate details: {e}"));
    assert!(cert.issuer.contains("ad-sync-cloud local CA"), "{cert:?}");
    assert!(e.fix().contains("ca.pem"), "{}", e.fix());
    // Wrong name: 127.0.0.2 is not in the certificate.
    let e = check(format!("https://127.0.0.2:{port}"), Some(&s.ca));
    assert!(e.to_string().contains("not issued for `127.0.0.2`"), "{e}");
    assert!(e.fix().contains("127.0.0.1"), "{}", e.fix());
    // Refused, DNS, and an HTTP error from a server that is not the API's base.
    let e = check("https://127.0.0.1:9".into(), None);
    assert!(matches!(e, CloudError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("refused"), "{e}");
    let e = check("https://no-such-host.invalid".into(), None);
    assert!(matches!(e, CloudError::Dns { .. }), "{e}");
    assert!(e.to_string().contains("does not resolve"), "{e}");
    let e = check(format!("https://127.0.0.1:{port}/tenant/"), Some(&s.ca));
    assert_eq!(e.api_code(), Some("not_found"), "{e}");
    // A server that accepts and never answers: a timeout, in bounded time.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let mut o = CloudOptions::new(format!(
        "https://127.0.0.1:{}",
        silent.local_addr().map(|a| a.port()).unwrap_or(0)
    ));
    o.timeout = Duration::from_secs(1);
    let c = CloudClient::new(&o).unwrap_or_else(|e| panic!("{e}"));
    let e = block_on(c.health())
        .err()
        .unwrap_or_else(|| panic!("no error"));
    assert!(matches!(e, CloudError::Timeout { .. }), "{e}");

    // The proxy from the environment: a dead proxy is named as the proxy's failure (its
    // password never shown), and NO_PROXY bypasses it.
    let ca = s.ca.to_string_lossy().into_owned();
    let url = format!("https://127.0.0.1:{port}");
    let args = ["--cloud", url.as_str(), "--ca", ca.as_str()];
    let (code, j, all) = validate_key(
        &k,
        &args,
        &[("HTTPS_PROXY", "http://user:Pr0xy-Secret@127.0.0.1:9")],
    );
    assert_eq!(code, 2, "{all}");
    let err = j["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("proxy http://127.0.0.1:9") && err.contains("HTTPS_PROXY"),
        "{j}"
    );
    assert!(!all.contains("Pr0xy-Secret"), "{all}");
    let (code, j, _) = validate_key(
        &k,
        &args,
        &[
            ("HTTPS_PROXY", "http://127.0.0.1:9"),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    assert_eq!((code, j["state"].as_str()), (0, Some("valid")), "{j}");
}

#[test]
fn a_redirect_is_never_followed_and_nothing_reaches_where_it_points() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("redirector-{}", std::process::id()));
    let r = support::forged::Redirector::start(&dir);
    let key_text = support::cloud::shared().issue_key(DOMAIN, None);
    // validate-key: the key is in the body of a POST a client following 307 would re-send.
    let ca = r.ca.to_string_lossy().into_owned();
    let (code, j, all) = validate_key(&key_text, &["--cloud", &r.url, "--ca", &ca], &[]);
    assert_eq!(code, 2, "{all}");
    let err = j["error"].as_str().unwrap_or_default();
    let target = format!("http://127.0.0.1:{}/v1/keys/check", r.plain_port);
    assert!(err.contains("redirect") && err.contains(&target), "{j}");
    assert!(!all.contains(&key_text), "{all}");
    // The agent's calls: a credential in the Authorization header.
    let mut o = CloudOptions::new(r.url.clone());
    o.ca_file = Some(r.ca.clone());
    let c = CloudClient::new(&o).unwrap_or_else(|e| panic!("{e}"));
    let credential = Secret::new("agent-credential-that-must-stay".to_string());
    let hb = HeartbeatRequest {
        version: "t".into(),
        host: "h".into(),
        status: "ok".into(),
        message: None,
        run: None,
    };
    let e = block_on(c.heartbeat(&credential, &hb))
        .err()
        .unwrap_or_else(|| panic!("a redirect was taken as an answer"));
    assert!(matches!(e, CloudError::Redirect { status: 307, .. }), "{e}");
    assert!(e.fix().contains("never followed"), "{}", e.fix());
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        r.plain_received().is_empty(),
        "the plain listener received {:?}",
        String::from_utf8_lossy(&r.plain_received())
    );
    // And an http:// cloud URL is refused before anything is sent.
    assert!(matches!(
        CloudClient::new(&CloudOptions::new(format!(
            "http://127.0.0.1:{}",
            r.plain_port
        ))),
        Err(CloudError::BadUrl { .. })
    ));
}

#[test]
fn admin_commands_refuse_bad_input_with_the_field_and_the_fix() {
    let s = server("admin", &[]);
    let refused = |args: &[&str], words: &str| {
        let out = s.admin(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
    };
    refused(
        &["domain", "add", "OU=Staff,DC=example,DC=com"],
        "only DC= parts",
    );
    // The status page has no login: never on an address other hosts reach.
    let tls = s.dir.join("tls").to_string_lossy().into_owned();
    let out = s.admin(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--self-signed",
        &tls,
        "--status-listen",
        "0.0.0.0:0",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback address only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    refused(&["domain", "add", "DC=example,,DC=com"], "not a valid DN");
    refused(
        &["key", "issue", "--domain", "DC=nowhere,DC=com"],
        "domain add",
    );
    refused(
        &[
            "user",
            "add",
            "bad,name",
            "--given",
            "A",
            "--surname",
            "B",
            "--domain",
            DOMAIN,
        ],
        "contains `,`",
    );
    refused(
        &[
            "user",
            "add",
            "averyveryverylongusername",
            "--given",
            "A",
            "--surname",
            "B",
            "--domain",
            DOMAIN,
        ],
        "20 characters",
    );
    refused(
        &["user", "lock", "nobody", "--domain", DOMAIN],
        "no user is named `nobody`",
    );
    refused(
        &["group", "add-member", "Nope", "ada", "--domain", DOMAIN],
        "no group is named `Nope`",
    );
    s.admin_ok(&["group", "add", "Engineering", "--domain", DOMAIN]);
    refused(
        &[
            "group",
            "add-member",
            "Engineering",
            "ghost",
            "--domain",
            DOMAIN,
        ],
        "no user or group",
    );
    refused(
        &[
            "group",
            "add-member",
            "Engineering",
            "Engineering",
            "--domain",
            DOMAIN,
        ],
        "member of itself",
    );
    s.admin_ok(&[
        "user",
        "add",
        "ada",
        "--given",
        "Ada",
        "--surname",
        "L",
        "--domain",
        DOMAIN,
    ]);
    let empty = s.dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap_or_else(|e| panic!("{e}"));
    refused(
        &[
            "user",
            "set-password",
            "ada",
            "--password-file",
            &empty.to_string_lossy(),
            "--domain",
            DOMAIN,
        ],
        "empty",
    );
    // A bad --ttl is clap's to refuse (exit 2), naming the flag.
    let out = s.admin(&["key", "issue", "--domain", DOMAIN, "--ttl", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ttl"));
    // Nothing was added by any of that.
    assert!(s.admin_ok(&["key", "list"]).lines().count() == 1);
}

#[test]
fn import_and_the_preview_directory_keep_their_limits_and_are_idempotent() {
    let s = server("import", &[]);
    let client = s.client();
    let http = raw_client(&s, None);
    let url = |p: &str| format!("{}{p}", s.url);
    let send = |r: reqwest::RequestBuilder| block_on(r.send()).unwrap_or_else(|e| panic!("{e}"));
    let code = |r: reqwest::Response| -> (u16, String) {
        let st = r.status().as_u16();
        let v: Value = block_on(r.json()).unwrap_or_else(|e| panic!("{e}"));
        (
            st,
            v["error"]["code"].as_str().unwrap_or_default().to_string(),
        )
    };
    let agent = enroll(&client, &s.issue_key(DOMAIN, None), DOMAIN, "dc1")
        .unwrap_or_else(|e| panic!("{e}"));
    let other =
        enroll(&client, &s.issue_key(OTHER, None), OTHER, "dc9").unwrap_or_else(|e| panic!("{e}"));
    s.admin_ok(&[
        "user",
        "add",
        "ada",
        "--given",
        "Ada",
        "--surname",
        "L",
        "--domain",
        DOMAIN,
    ]);
    let guid = |n: u8| format!("{n:08x}-0000-0000-0000-000000000000");
    let user = |n: u8, name: &str, sn: &str| ImportUser {
        guid: guid(n),
        username: name.into(),
        given_name: "G".into(),
        surname: sn.into(),
        display_name: None,
        email: None,
        enabled: n != 2,
    };
    let req = ImportRequest {
        users: vec![
            user(1, "ada", "L"),
            user(2, "bea", "B"),
            user(3, "cy", ""),
            user(4, "bad name?", "X"),
        ],
        groups: vec![ImportGroup {
            guid: guid(9),
            name: "Team".into(),
        }],
        memberships: vec![
            ImportMembership {
                group_guid: guid(9),
                member_guid: guid(2),
            },
            ImportMembership {
                group_guid: guid(9),
                member_guid: guid(3),
            },
        ],
        dry_run: false,
    };
    // A dry run answers and changes nothing.
    let dry = block_on(client.import(
        &agent.credential,
        &ImportRequest {
            dry_run: true,
            ..req.clone()
        },
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let before = s.admin_ok(&["user", "list", "--domain", DOMAIN]);
    assert!(!before.contains("bea"), "{before}");
    let outcomes = |r: &ImportResponse| -> Vec<String> {
        r.items
            .iter()
            .map(|i| format!("{} {} {:?}", i.kind, i.name, i.outcome))
            .collect()
    };
    let got = block_on(client.import(&agent.credential, &req)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes(&dry), outcomes(&got));
    assert_eq!(
        outcomes(&got),
        vec![
            "user ada Linked",
            "user bea Created",
            "user cy Refused",
            "user bad name? Refused",
            "group Team Created",
            "membership Team <- bea Created",
            format!("membership Team <- {} Refused", guid(3)).as_str(),
        ]
    );
    assert!(got.items[2].message.contains("no sn"), "{:?}", got.items[2]);
    // Again (a re-run, or after a crash mid-import): nothing new.
    let again = block_on(client.import(&agent.credential, &req)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        outcomes(&again)[..2],
        [
            "user ada Already".to_string(),
            "user bea Already".to_string()
        ]
    );
    assert!(outcomes(&again).contains(&"membership Team <- bea Already".to_string()));
    // A mistyped field is refused, never ignored (a `dryrun` would otherwise run for real).
    let typo = send(
        http.post(url("/v1/import"))
            .bearer_auth(agent.credential.expose())
            .json(&serde_json::json!({"dryrun": true, "users": [{
                "guid": guid(6), "username": "eve", "given_name": "E", "surname": "V", "enabled": true
            }]})),
    );
    assert_eq!(code(typo).0, 400);
    assert!(
        !s.admin_ok(&["user", "list", "--domain", DOMAIN])
            .contains("eve")
    );
    // The same GUID in another case and with braces is the same link: `already`.
    let upper = block_on(client.import(
        &agent.credential,
        &ImportRequest {
            users: vec![ImportUser {
                guid: format!("{{{}}}", guid(2).to_uppercase()),
                ..user(2, "bea", "B")
            }],
            ..ImportRequest::default()
        },
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes(&upper), vec!["user bea Already"]);
    // A standby of the same domain may not import: links are what the primary takes AD
    // objects over by.
    let standby = enroll(&client, &s.issue_key(DOMAIN, None), DOMAIN, "dc2")
        .unwrap_or_else(|e| panic!("{e}"));
    let refused = block_on(client.import(
        &standby.credential,
        &ImportRequest {
            users: vec![user(5, "dee", "D")],
            ..ImportRequest::default()
        },
    ));
    match refused {
        Err(e) => assert!(e.to_string().contains("standby"), "{e}"),
        Ok(r) => panic!("a standby imported: {:?}", outcomes(&r)),
    }
    assert!(
        !s.admin_ok(&["user", "list", "--domain", DOMAIN])
            .contains("dee")
    );
    // The same AD object in another domain is another link; ada's link here stays.
    let there = block_on(client.import(
        &other.credential,
        &ImportRequest {
            users: vec![user(1, "ada", "L")],
            ..ImportRequest::default()
        },
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    // The other domain instance has its own directory: its import creates its own ada.
    assert_eq!(outcomes(&there), vec!["user ada Created"]);
    let list: Value =
        serde_json::from_str(&s.admin_ok(&["user", "list", "--json", "--domain", DOMAIN]))
            .unwrap_or_else(|e| panic!("{e}"));
    let ada = &list["users"][0];
    assert_eq!(ada["links"].as_array().map(Vec::len), Some(1), "{list}");
    let theirs: Value =
        serde_json::from_str(&s.admin_ok(&["user", "list", "--json", "--domain", OTHER]))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        theirs["users"].as_array().map(Vec::len),
        Some(1),
        "{theirs}"
    );
    assert_ne!(
        theirs["users"][0]["id"], ada["id"],
        "one user in two domains"
    );
    assert_eq!(
        list["users"][1]["user"]["suspended"], true,
        "bea was disabled in AD"
    );
    // A second AD object for a cloud user already linked in this domain is refused.
    let clash = block_on(client.import(
        &agent.credential,
        &ImportRequest {
            users: vec![user(7, "ada", "L")],
            ..ImportRequest::default()
        },
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        clash.items[0].outcome == ImportOutcome::Refused
            && clash.items[0]
                .message
                .contains("already linked to another AD object"),
        "{:?}",
        clash.items
    );

    // Limits and errors, as documented.
    let many = ImportRequest {
        users: (0..=MAX_IMPORT_ITEMS)
            .map(|i| user((i % 200) as u8, "x", "y"))
            .collect(),
        ..ImportRequest::default()
    };
    assert_eq!(
        code(send(
            http.post(url("/v1/import"))
                .bearer_auth(agent.credential.expose())
                .json(&many)
        )),
        (400, "invalid_request".into())
    );
    assert_eq!(
        code(send(
            http.post(url("/v1/import"))
                .bearer_auth(agent.credential.expose())
                .json(&ImportRequest::default())
        )),
        (400, "invalid_request".into())
    );
    assert_eq!(
        code(send(http.post(url("/v1/import")).json(&req))),
        (401, "unauthorized".into())
    );

    // The preview's directory: names and links for a valid key, which stays unused.
    let k = s.issue_key(DOMAIN, None);
    let dir = block_on(client.directory(&key(&k))).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = dir.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, vec!["ada", "bea"]);
    assert_eq!(dir.groups[0].links[0].guid, guid(9));
    assert_eq!(
        block_on(client.check_key(&key(&k), None))
            .unwrap_or_else(|e| panic!("{e}"))
            .state
            .as_str(),
        "valid"
    );
    let used = s.issue_key(DOMAIN, None);
    enroll(&client, &used, DOMAIN, "dc2").unwrap_or_else(|e| panic!("{e}"));
    for (body, want) in [
        (serde_json::json!({"key": used}), (409, "key_used")),
        (
            serde_json::json!({"key": "ADS1-0000"}),
            (400, "key_malformed"),
        ),
        (
            serde_json::json!({"key": ConnectKey::generate().unwrap_or_else(|e| panic!("{e}")).secret().expose()}),
            (404, "key_unknown"),
        ),
    ] {
        let (st, c) = code(send(http.post(url("/v1/keys/directory")).json(&body)));
        assert_eq!((st, c.as_str()), want);
    }
    assert!(!s.log().contains(&k[5..30]));
}

/// A webhook receiver on loopback: plain HTTP/1.1, one request per connection; answers 500 to
/// the first `fail_first` requests (so the sender's retries are seen), 200 after. Keeps every
/// request's head and body.
struct Receiver {
    url: String,
    /// Every request: its head, its body, and whether it was answered 200.
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, String, bool)>>>,
}

impl Receiver {
    fn start(fail_first: usize) -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = l.local_addr().map(|a| a.port()).unwrap_or_default();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mine = got.clone();
        // Ends with the test process (a blocked accept holds nothing but the port).
        std::thread::spawn(move || {
            let mut n = 0;
            for conn in l.incoming().flatten() {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut r = BufReader::new(&conn);
                let mut head = String::new();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                n += 1;
                let status = if n <= fail_first {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let mut w = &conn;
                let _ = write!(
                    w,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                if let Ok(mut g) = mine.lock() {
                    g.push((
                        head,
                        String::from_utf8_lossy(&body).into_owned(),
                        n > fail_first,
                    ));
                }
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks/T000/B000/xoxb-webhook-token"),
            got,
        }
    }

    /// The events delivered (answered 200), as JSON.
    fn events(&self) -> Vec<Value> {
        self.got
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|(_, _, ok)| *ok)
                    .filter_map(|(_, b, _)| serde_json::from_str(b).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what} alert; received: {ev:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn count(ev: &[Value], agent: &str, event: &str, state: &str) -> usize {
    ev.iter()
        .filter(|e| e["agent_id"] == agent && e["event"] == event && e["state"] == state)
        .count()
}

#[test]
fn alerts_reach_a_webhook_once_per_incident_and_when_it_clears() {
    let hook = Receiver::start(1);
    let s = server(
        "alerts",
        &[
            "--heartbeat-interval",
            "1s",
            "--primary-timeout",
            "3s",
            "--alert-webhook",
            &hook.url,
        ],
    );
    let client = s.client();
    let key_text = s.issue_key(DOMAIN, None);
    let agent = enroll(&client, &key_text, DOMAIN, "dc1").unwrap_or_else(|e| panic!("{e}"));
    let beat = |held: u64, failed: u64| {
        let req = HeartbeatRequest {
            version: "0.1.0".into(),
            host: "dc1".into(),
            status: if held + failed > 0 { "degraded" } else { "ok" }.into(),
            message: Some(format!("credential {} here", agent.credential.expose())),
            run: Some(ad_sync::cloud::api::RunHealth {
                held,
                failed,
                last_success: Some("2026-12-02T10:00:00Z".into()),
                last_run: Some("2026-12-02T11:00:00Z".into()),
                ..Default::default()
            }),
        };
        block_on(client.heartbeat(&agent.credential, &req)).unwrap_or_else(|e| panic!("{e}"));
    };
    // Blocked by the threshold: raised once (the receiver refuses the first delivery: the
    // retry brings it), however many heartbeats say so.
    beat(3, 0);
    let ev = hook.wait_for("run_blocked raised", |ev| {
        count(ev, &agent.id, "run_blocked", "raised") == 1
    });
    for _ in 0..3 {
        beat(3, 0);
        std::thread::sleep(Duration::from_millis(700));
    }
    let raised = ev
        .iter()
        .find(|e| e["event"] == "run_blocked")
        .cloned()
        .unwrap_or_default();
    assert_eq!(raised["schema"], "ad-sync.alert/1", "{raised:#}");
    assert_eq!(raised["held"], 3);
    assert_eq!(raised["domain"], DOMAIN);
    assert_eq!(raised["host"], "dc1");
    assert_eq!(raised["last_success"], "2026-12-02T10:00:00Z");
    assert!(
        raised["summary"]
            .as_str()
            .unwrap_or("")
            .contains("ad-sync-agent pending"),
        "{raised:#}"
    );
    // The status page's view and `agents` say the same.
    let listed = s.admin_ok(&["agents"]);
    assert!(
        listed.contains("blocked: 3 held by the deletion threshold"),
        "{listed}"
    );
    // Cleared, and changes failing: one cleared, one raised.
    beat(0, 2);
    let ev = hook.wait_for("run_blocked cleared, changes_failed raised", |ev| {
        count(ev, &agent.id, "run_blocked", "cleared") == 1
            && count(ev, &agent.id, "changes_failed", "raised") == 1
    });
    let cleared = ev
        .iter()
        .find(|e| e["event"] == "run_blocked" && e["state"] == "cleared")
        .cloned()
        .unwrap_or_default();
    assert_eq!(cleared["incident"], raised["incident"], "one incident id");
    beat(0, 0);
    // Silent past the primary timeout: raised; calling in again clears it.
    let ev = hook.wait_for("agent_silent raised", |ev| {
        count(ev, &agent.id, "changes_failed", "cleared") == 1
            && count(ev, &agent.id, "agent_silent", "raised") == 1
    });
    assert_eq!(
        count(&ev, &agent.id, "run_blocked", "raised"),
        1,
        "once per incident"
    );
    beat(0, 0);
    let ev = hook.wait_for("agent_silent cleared", |ev| {
        count(ev, &agent.id, "agent_silent", "cleared") == 1
    });
    // The refused first delivery was retried: the same event twice on the wire, once taken.
    let attempts = hook.got.lock().map(|g| g.len()).unwrap_or_default();
    assert_eq!(attempts, ev.len() + 1, "one retry");
    // No secret in any event: not the credential (the agent's message quoted it), not the key,
    // and the webhook's token is not in the server's log.
    let everything = hook
        .got
        .lock()
        .map(|g| {
            g.iter()
                .map(|(h, b, _)| format!("{h}{b}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    assert!(!everything.contains(agent.credential.expose()));
    assert!(!everything.contains(&key_text));
    assert!(ev.iter().all(|e| e.get("message").is_none()));
    let log = s.log();
    assert!(log.contains("alert delivered"), "{log}");
    assert!(
        !log.contains("xoxb-webhook-token"),
        "the webhook's token reached the log"
    );
    // A plain-http webhook elsewhere than this host is refused at start.
    let out = std::process::Command::new(support::cloud::bin())
        .args(["serve", "--db"])
        .arg(std::env::temp_dir().join("alerts-refused.db"))
        .args(["--listen", "127.0.0.1:0", "--self-signed"])
        .arg(std::env::temp_dir().join("alerts-refused-tls"))
        .args(["--alert-webhook", "http://hooks.example.com/x"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The serving binary links only what serving needs: the cloud depends on `ad-sync-api`, not
/// on the core with its LDAP, DNS and X.509 code (read from Cargo's own dependency tree).
#[test]
fn the_cloud_links_no_ldap_dns_or_x509_code() {
    let out = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "tree",
            "--offline",
            "-p",
            "ad-sync-cloud",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .unwrap_or_else(|e| panic!("cargo tree: {e}"));
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(crates.contains("ad-sync-api"), "{tree}");
    for absent in [
        "ad-sync-core",
        "ldap3",
        "lber",
        "hickory-resolver",
        "x509-parser",
        "x509-cert",
        "der",
        "cms",
    ] {
        assert!(
            !crates.contains(absent),
            "ad-sync-cloud links {absent}:\n{tree}"
        );
    }
}

/// `ad-sync-cloud load` runs the load test program beside it with its options, and passes its
/// exit code on (a short run: the figures are the bench's business).
#[test]
fn load_runs_the_load_program_beside_the_server() {
    support::bins::built("ad-sync-cloud-load");
    let out = std::process::Command::new(support::bins::built("ad-sync-cloud"))
        .args(["load", "--agents", "3", "--seconds", "1", "--idle", "0"])
        .output()
        .unwrap_or_else(|e| panic!("ad-sync-cloud load: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("enrolled 3 agents"), "{text}");
}

/// AD as a source, the cloud's side: the primary agent sends AD's changes with the DirSync
/// cookie they end at; users are created, changed, suspended and kept when deleted, restored
/// with the same objectGUID; the cookie moves with the changes in one transaction and only from
/// where the cloud's cursor stands (a stale or restored agent gets `cursor_moved`; a batch sent
/// again after a lost answer is `replayed`); AD's users are AD's (the admin commands refuse to
/// change them) and a cloud user is the cloud's (AD cannot change it); nothing AD sent is put in
/// the change feed, so it never travels back to AD.
#[test]
fn ad_changes_reach_the_cloud_with_their_cursor_and_one_authority_per_user() {
    use ad_sync::cloud::api::{SourceOutcome, SourceRequest, SourceUser};
    let s = server("source", &[]);
    let client = s.client();
    let a = enroll(&client, &s.issue_key(DOMAIN, None), DOMAIN, "dc1")
        .unwrap_or_else(|e| panic!("{e}"));
    let b = enroll(&client, &s.issue_key(DOMAIN, None), DOMAIN, "dc2")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (heartbeat(&client, &a), heartbeat(&client, &b)),
        (Role::Primary, Role::Standby)
    );
    s.admin_ok(&[
        "user",
        "add",
        "cloudy",
        "--given",
        "Cloud",
        "--surname",
        "Owned",
        "--domain",
        DOMAIN,
    ]);
    let feed_before = block_on(client.changes(&a.credential, 0, 100))
        .unwrap_or_else(|e| panic!("{e}"))
        .changes
        .len();
    let guid = |n: u8| format!("{n:08x}-1111-2222-3333-444455556666");
    let fields = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let user = |n: u8, pairs: &[(&str, &str)]| SourceUser {
        guid: guid(n),
        deleted: false,
        enabled: Some(true),
        fields: fields(pairs),
    };
    let send = |who: &Enrolled, after: Option<&str>, cookie: &str, users: Vec<SourceUser>| {
        block_on(client.source_changes(
            &who.credential,
            &SourceRequest {
                after: after.map(str::to_string),
                cookie: cookie.into(),
                dc: "dc1.example.com".into(),
                contacts: Vec::new(),
                users,
                groups: Vec::new(),
                partial: false,
            },
        ))
    };
    let outcomes = |r: &ad_sync::cloud::api::SourceResponse| -> Vec<SourceOutcome> {
        r.items.iter().map(|i| i.outcome).collect()
    };

    // Before any batch the cursor is empty; a standby may not send.
    let c = block_on(client.source_cursor(&a.credential)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.cookie, None);
    let e = send(&b, None, "c1", vec![])
        .err()
        .unwrap_or_else(|| panic!("standby sent"));
    assert_eq!(e.api_code(), Some("not_primary"), "{e}");

    // The first full read: two users, one the cloud cannot hold (no surname), one whose name a
    // cloud user already has.
    let ann = [
        ("username", "ann"),
        ("given_name", "Ann"),
        ("surname", "Lee"),
        ("email", "ann@example.com"),
        ("title", "Engineer"),
    ];
    let r = send(
        &a,
        None,
        "c1",
        vec![
            user(1, &ann),
            user(2, &[("username", "nosn"), ("given_name", "No")]),
            user(
                3,
                &[
                    ("username", "cloudy"),
                    ("given_name", "C"),
                    ("surname", "O"),
                ],
            ),
            user(4, &[("username", "x"), ("shoe_size", "44")]),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        outcomes(&r),
        [
            SourceOutcome::Created,
            SourceOutcome::Refused,
            SourceOutcome::Refused,
            SourceOutcome::Refused
        ],
        "{r:?}"
    );
    assert!(r.items[1].message.contains("sn (surname)"), "{r:?}");
    assert!(
        r.items[2]
            .message
            .contains("already has a user named `cloudy`"),
        "{r:?}"
    );
    assert!(
        r.items[3]
            .message
            .contains("`shoe_size` is not a user field"),
        "{r:?}"
    );
    assert_eq!(r.cursor.cookie.as_deref(), Some("c1"));
    assert_eq!(r.cursor.dc.as_deref(), Some("dc1.example.com"));
    let listed = |args: &[&str]| -> Value {
        let mut all = vec!["user", "list", "--domain", DOMAIN, "--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&s.admin_ok(&all)).unwrap_or_else(|e| panic!("{e}"))
    };
    let names = |v: &Value| -> Vec<String> {
        v["users"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let from_ad = listed(&["--source", "ad"]);
    assert_eq!(names(&from_ad), ["ann"]);
    assert_eq!(from_ad["users"][0]["attributes"]["title"], "Engineer");
    assert_eq!(from_ad["users"][0]["links"][0]["guid"], guid(1));
    assert_eq!(names(&listed(&["--source", "cloud"])), ["cloudy"]);

    // A change from the cursor: a rename and a cleared title; the same batch sent again after
    // a lost answer changes nothing; a batch from an old cookie is refused.
    let r = send(
        &a,
        Some("c1"),
        "c2",
        vec![user(1, &[("username", "ann.lee"), ("title", "")])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes(&r), [SourceOutcome::Updated]);
    let again = send(
        &a,
        Some("c1"),
        "c2",
        vec![user(1, &[("username", "ann.lee"), ("title", "")])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.replayed && again.items.is_empty(), "{again:?}");
    let stale = send(&a, Some("c1"), "c9", vec![user(1, &[("surname", "Old")])])
        .err()
        .unwrap_or_else(|| panic!("a batch from an old cookie was taken"));
    assert_eq!(stale.api_code(), Some("cursor_moved"), "{stale}");
    let from_ad = listed(&["--source", "ad"]);
    assert_eq!(names(&from_ad), ["ann.lee"]);
    assert_eq!(
        from_ad["users"][0]["user"]["surname"], "Lee",
        "the stale batch changed nothing"
    );
    assert!(from_ad["users"][0].get("attributes").is_none(), "{from_ad}");

    // AD's user is AD's; the cloud's user is the cloud's.
    let out = s.admin(&["user", "suspend", "ann.lee", "--domain", DOMAIN]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("comes from AD, which is its authority"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Deleted in AD: suspended and kept; back with the same objectGUID: restored.
    let gone = SourceUser {
        guid: guid(1),
        deleted: true,
        ..SourceUser::default()
    };
    let r = send(&a, Some("c2"), "c3", vec![gone]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes(&r), [SourceOutcome::Suspended]);
    assert_eq!(names(&listed(&["--source", "ad"])), Vec::<String>::new());
    let deleted = listed(&["--deleted"]);
    assert_eq!(names(&deleted), ["ann.lee"]);
    assert_eq!(deleted["users"][0]["user"]["suspended"], true);
    assert!(deleted["users"][0]["deleted_at"].is_i64(), "{deleted}");
    let r = send(&a, Some("c3"), "c4", vec![user(1, &[])]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes(&r), [SourceOutcome::Restored]);
    let back = listed(&["--source", "ad"]);
    assert_eq!(names(&back), ["ann.lee"]);
    assert_eq!(back["users"][0]["user"]["suspended"], false);

    // Disabled in AD: suspended in the cloud (a change, not a deletion).
    let off = SourceUser {
        enabled: Some(false),
        ..user(1, &[])
    };
    let r = send(&a, Some("c4"), "c5", vec![off]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes(&r), [SourceOutcome::Updated]);
    assert!(listed(&["--source", "ad"])["users"][0]["user"]["suspended"] == true);

    // Nothing from AD went into the feed: the domain's own agent never gets it back.
    let feed = block_on(client.changes(&a.credential, 0, 100)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(feed.changes.len(), feed_before, "{:?}", feed.changes);

    // A standby that takes over, or a reinstalled agent, resumes where the cloud is.
    let c = block_on(client.source_cursor(&b.credential)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.cookie.as_deref(), Some("c5"));
    assert_eq!(c.agent_id.as_deref(), Some(a.id.as_str()));

    // A DirSync page too large for one request goes in parts: a part's users are committed,
    // the cursor moves only with the page's last part.
    let part = block_on(client.source_changes(
        &a.credential,
        &SourceRequest {
            after: Some("c5".into()),
            cookie: String::new(),
            dc: "dc1.example.com".into(),
            contacts: Vec::new(),
            groups: Vec::new(),
            users: vec![user(
                5,
                &[
                    ("username", "eve"),
                    ("given_name", "Eve"),
                    ("surname", "Ng"),
                ],
            )],
            partial: true,
        },
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcomes(&part), [SourceOutcome::Created]);
    assert_eq!(
        part.cursor.cookie.as_deref(),
        Some("c5"),
        "a part does not move the cursor"
    );

    // A malformed objectGUID is refused by index before anything is stored.
    let e = send(
        &a,
        Some("c5"),
        "c6",
        vec![SourceUser {
            guid: "nope".into(),
            ..SourceUser::default()
        }],
    )
    .err()
    .unwrap_or_else(|| panic!("taken"));
    assert_eq!(e.api_code(), Some("invalid_request"), "{e}");
    assert!(e.to_string().contains("users[0].guid"), "{e}");
}

/// Three `serve` processes on one database behave as one cloud: a key issued once checks
/// through one node and enrolls through another; the primary election and the standby's
/// refusals hold whichever node an agent calls; a change written anywhere is read and
/// acknowledged through any node; the status page of any node shows every agent; and an alert
/// is posted once, not once per node (each node watches the agents; `settle_alerts` lets one
/// record and post each incident).
#[test]
fn several_nodes_on_one_database_are_one_cloud() {
    let hook = Receiver::start(0);
    let flags = [
        "--heartbeat-interval",
        "1s",
        "--primary-timeout",
        "3s",
        "--alert-webhook",
        &hook.url,
        "--status-listen",
        "127.0.0.1:0",
    ];
    let n1 = server("nodes", &flags);
    let nodes = [n1.node(&flags), n1.node(&flags)];
    let (c1, c2, c3) = (n1.client(), nodes[0].client(), nodes[1].client());
    // A key issued once: valid through one node, used through the others once enrolled.
    let k = n1.issue_key(DOMAIN, None);
    let state = |c: &CloudClient| {
        block_on(c.check_key(&key(&k), Some(DOMAIN)))
            .unwrap_or_else(|e| panic!("{e}"))
            .state
            .as_str()
            .to_string()
    };
    assert_eq!(state(&c1), "valid");
    let a = enroll(&c2, &k, DOMAIN, "dc1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.role, Role::Primary);
    assert_eq!((state(&c1), state(&c3)), ("used".into(), "used".into()));
    let again = enroll(&c3, &k, DOMAIN, "dc9").err();
    assert!(again.is_some(), "a used key enrolled a second agent");
    let b =
        enroll(&c3, &n1.issue_key(DOMAIN, None), DOMAIN, "dc2").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.role, Role::Standby);
    assert_eq!(
        (heartbeat(&c1, &a), heartbeat(&c2, &b), heartbeat(&c3, &a)),
        (Role::Primary, Role::Standby, Role::Primary)
    );
    // The standby is refused through every node.
    for c in [&c1, &c2, &c3] {
        let e = block_on(c.changes(&b.credential, 0, 10))
            .err()
            .unwrap_or_else(|| panic!("a standby read the changes"));
        assert_eq!(e.api_code(), Some("not_primary"), "{e}");
    }
    // A change written by the admin is read through one node and acknowledged through another.
    n1.admin_ok(&[
        "user",
        "add",
        "ada",
        "--given",
        "Ada",
        "--surname",
        "L",
        "--domain",
        DOMAIN,
    ]);
    let page = block_on(c3.changes(&a.credential, 0, 100)).unwrap_or_else(|e| panic!("{e}"));
    let seq = page
        .changes
        .iter()
        .find(|c| matches!(&c.body, ChangeBody::UserUpsert { user } if user.username == "ada"))
        .map(|c| c.seq)
        .unwrap_or_else(|| panic!("ada is not in the feed: {:?}", page.changes));
    let r = block_on(c2.ack(
        &a.credential,
        vec![ChangeResult {
            seq,
            status: ApplyStatus::Applied,
            message: String::new(),
        }],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.recorded, 1);
    // Every node's status page shows both agents.
    for n in [&n1, &nodes[0], &nodes[1]] {
        let page = status_page(n);
        assert!(page.contains(&a.id) && page.contains(&b.id), "{page}");
    }
    // A goes silent; B, calling through another node, takes over after the timeout, and A
    // steps down through a third. One alert says A went silent, whichever nodes saw it.
    let mut roles = Vec::new();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(500));
        roles.push(heartbeat(&c2, &b));
    }
    assert_eq!(roles.last(), Some(&Role::Primary), "{roles:?}");
    hook.wait_for("agent_silent raised", |ev| {
        count(ev, &a.id, "agent_silent", "raised") >= 1
    });
    // Three nodes look every second: give each several looks at the silence before counting
    // (B calling in through the first node meanwhile, so that it stays primary).
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(heartbeat(&c1, &b), Role::Primary);
    }
    let ev = hook.events();
    assert_eq!(count(&ev, &a.id, "agent_silent", "raised"), 1, "{ev:#?}");
    assert_eq!(heartbeat(&c3, &a), Role::Standby);
}

/// A TCP forwarder in front of a cloud node that cuts the first connection as the client sends
/// its first request: it relays the TLS handshake, then, at the client's second application
/// data record (the first is TLS 1.3's encrypted Finished), closes both sides without relaying
/// it, as a node lost under a request would. Later connections are relayed whole.
struct CutFirstRequest {
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CutFirstRequest {
    fn start(to: u16) -> CutFirstRequest {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let port = l.local_addr().map(|a| a.port()).unwrap_or_default();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        // Ends with the test process (a blocked accept holds nothing but the port).
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                let (Ok(mut c_in), Ok(mut s_out)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(Shutdown::Both);
                });
                std::thread::spawn(move || {
                    // Client to server, record by record: type (1), version (2), length (2).
                    let mut app_records = 0;
                    loop {
                        let mut head = [0u8; 5];
                        if c_in.read_exact(&mut head).is_err() {
                            break;
                        }
                        let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
                        let mut body = vec![0u8; len];
                        if c_in.read_exact(&mut body).is_err() {
                            break;
                        }
                        if head[0] == 0x17 {
                            app_records += 1;
                        }
                        if n == 0 && app_records == 2 {
                            let _ = c_in.shutdown(Shutdown::Both);
                            let _ = s_out.shutdown(Shutdown::Both);
                            break;
                        }
                        if s_out
                            .write_all(&head)
                            .and_then(|_| s_out.write_all(&body))
                            .is_err()
                        {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Write);
                });
            }
        });
        CutFirstRequest { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An agent's call that is safe to repeat (a heartbeat) whose connection drops under it is
/// sent once more on a new connection, and succeeds; one that is not (a key check, which could
/// count against the address's limit) is not repeated and fails with the dropped connection.
#[test]
fn a_call_safe_to_repeat_is_sent_again_when_its_connection_drops() {
    let s = server("cut", &[]);
    let agent = enroll(&s.client(), &s.issue_key(DOMAIN, None), DOMAIN, "dc1")
        .unwrap_or_else(|e| panic!("{e}"));
    let client_via = |cut: &CutFirstRequest| {
        let mut opts = CloudOptions::new(format!("https://127.0.0.1:{}", cut.port));
        opts.ca_file = Some(s.ca.clone());
        CloudClient::new(&opts).unwrap_or_else(|e| panic!("{e}"))
    };
    let cut = CutFirstRequest::start(s.port());
    assert_eq!(heartbeat(&client_via(&cut), &agent), Role::Primary);
    assert_eq!(cut.connections(), 2, "the heartbeat was not sent again");

    let cut = CutFirstRequest::start(s.port());
    let e = block_on(client_via(&cut).check_key(&key(&s.issue_key(DOMAIN, None)), None))
        .err()
        .unwrap_or_else(|| panic!("a key check went through a cut connection"));
    assert_eq!(cut.connections(), 1, "a key check was sent again: {e}");
}

/// `ad-sync-cloud migrate` moves a populated cloud from its SQLite file to PostgreSQL: the
/// server started on the new database knows the same agents (their credentials and roles), the
/// same keys in the same states, the same directory and feed (the same numbers, the cursor
/// acknowledged, the password sealed for the agent), and goes on from there; a second migrate
/// into the same database is refused, and so is a password in the address.
#[test]
fn migrate_moves_a_populated_cloud_from_sqlite_to_postgres() {
    let mut old = CloudServer::start_on_sqlite("migrate-from", &[]);
    let client = old.client();
    old.admin_ok(&["domain", "add", DOMAIN]);
    old.admin_ok(&["domain", "add", OTHER]);
    let a = enroll(&client, &old.issue_key(DOMAIN, None), DOMAIN, "dc1")
        .unwrap_or_else(|e| panic!("{e}"));
    let b = enroll(&client, &old.issue_key(DOMAIN, None), DOMAIN, "dc2")
        .unwrap_or_else(|e| panic!("{e}"));
    let unused = old.issue_key(DOMAIN, None);
    let revoked = old.issue_key(OTHER, None);
    let revoke = with_stdin(
        std::process::Command::new(support::cloud::bin())
            .args(["key", "revoke", "-", "--db"])
            .arg(&old.db),
        &revoked,
    );
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    for (name, domain) in [("ada", DOMAIN), ("bob", DOMAIN), ("ada", OTHER)] {
        old.admin_ok(&[
            "user",
            "add",
            name,
            "--given",
            "G",
            "--surname",
            "S",
            "--domain",
            domain,
        ]);
    }
    old.admin_ok(&["group", "add", "Staff", "--domain", DOMAIN]);
    old.admin_ok(&["group", "add-member", "Staff", "ada", "--domain", DOMAIN]);
    let pw_file = old.dir.join("pw.txt");
    std::fs::write(&pw_file, "Migr4te-me!\n").unwrap_or_else(|e| panic!("{e}"));
    old.admin_ok(&[
        "user",
        "set-password",
        "ada",
        "--password-file",
        &pw_file.to_string_lossy(),
        "--domain",
        DOMAIN,
    ]);
    assert_eq!(heartbeat(&client, &a), Role::Primary);
    let before = block_on(client.changes(&a.credential, 0, 100)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(before.changes.len(), 5, "{:?}", before.changes);
    let acked = block_on(client.ack(
        &a.credential,
        vec![ChangeResult {
            seq: before.changes[0].seq,
            status: ApplyStatus::Applied,
            message: String::new(),
        }],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    old.stop();

    let mut new = CloudServer::start_on_postgres("migrate-to", &[]);
    new.stop();
    let migrate = |from: &std::path::Path, to: &str| {
        std::process::Command::new(support::cloud::bin())
            .arg("migrate")
            .arg("--from")
            .arg(from)
            .args(["--to", to])
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let to = new.db.to_string_lossy().into_owned();
    let out = migrate(&old.db, &to);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for table in [
        "domains 2 2",
        "keys 4 4",
        "agents 2 2",
        "users 3 3",
        "changes 6 6",
        "password_envelopes 2 2",
        "acks 1 1",
    ] {
        let words: Vec<&str> = table.split(' ').collect();
        assert!(
            said.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == words),
            "{table}: {said}"
        );
    }
    new.restart();
    let client = new.client();
    assert_eq!(heartbeat(&client, &a), Role::Primary);
    assert_eq!(heartbeat(&client, &b), Role::Standby);
    for (k, state) in [(&unused, "valid"), (&revoked, "revoked")] {
        let check = block_on(client.check_key(&key(k), None)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(check.state.as_str(), state);
    }
    let after = block_on(client.changes(&a.credential, 0, 100)).unwrap_or_else(|e| panic!("{e}"));
    let seqs = |c: &ad_sync::cloud::api::ChangesResponse| -> Vec<i64> {
        c.changes.iter().map(|c| c.seq).collect()
    };
    assert_eq!(seqs(&after), seqs(&before));
    assert_eq!(
        serde_json::to_value(&after.changes).unwrap_or_default(),
        serde_json::to_value(&before.changes).unwrap_or_default()
    );
    let sealed = after.changes.iter().find_map(|c| match &c.body {
        ChangeBody::UserPassword {
            sealed_password, ..
        } => sealed_password.clone(),
        _ => None,
    });
    assert!(
        sealed.is_some(),
        "the password is still sealed for the agent"
    );
    // It goes on from there: the next change takes the next number, a new domain a new id.
    new.admin_ok(&[
        "user",
        "add",
        "cy",
        "--given",
        "C",
        "--surname",
        "S",
        "--domain",
        DOMAIN,
    ]);
    let next = block_on(client.changes(&a.credential, before.cursor, 100))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seqs(&next), vec![before.cursor + 1]);
    new.admin_ok(&["domain", "add", "DC=third,DC=com"]);
    let r = block_on(client.ack(
        &a.credential,
        vec![ChangeResult {
            seq: before.cursor + 1,
            status: ApplyStatus::Applied,
            message: String::new(),
        }],
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.acked_cursor, acked.acked_cursor,
        "changes 2..5 are still open"
    );
    new.stop();
    // Never into a database that holds something.
    let again = migrate(&old.db, &to);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        err.contains("already holds") && err.contains("empty database"),
        "{err}"
    );
    // Never a password where the process list shows it, and never said back.
    let with_password = to.replacen("postgres@", "postgres:Sekr1t-pw@", 1);
    let refused = migrate(&old.db, &with_password);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(err.contains("PGPASSWORD"), "{err}");
    assert!(!err.contains("Sekr1t-pw"), "{err}");
}

/// The cloud reaches PostgreSQL over TLS when asked (and, not shown here, whenever the server
/// is not on this machine: the rule's table test), verifies the server's certificate against
/// PGSSLROOTCERT, and never goes on in plain text when that fails.
#[test]
fn the_cloud_reaches_postgres_over_verified_tls_and_never_falls_back_to_plain() {
    let cluster = support::postgres::cluster(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let plain = cluster.new_database("tls");
    let name = plain.rsplit('/').next().unwrap_or_default().to_string();
    let url = format!("{plain}?sslmode=require");
    let admin = |url: &str, ca: Option<&std::path::Path>| {
        let mut cmd = std::process::Command::new(support::cloud::bin());
        cmd.args(["domain", "add", "DC=tls,DC=test", "--db", url]);
        cmd.env_remove("PGSSLROOTCERT");
        if let Some(ca) = ca {
            cmd.env("PGSSLROOTCERT", ca);
        }
        cmd.output().unwrap_or_else(|e| panic!("{e}"))
    };
    // Asked for TLS without a CA to check the server against: refused, saying what to set.
    let out = admin(&url, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("PGSSLROOTCERT"), "{err}");
    // A CA that did not sign the server's certificate: refused, and nothing is written in
    // plain text instead.
    let other = std::env::temp_dir().join(format!("other-ca-{}.pem", std::process::id()));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-keyout",
            "/dev/null",
            "-days",
            "1",
            "-subj",
            "/CN=someone else",
        ])
        .arg("-out")
        .arg(&other)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = admin(&url, Some(&other));
    let err = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_file(&other);
    assert!(
        !out.status.success(),
        "connected with a CA that did not sign the server"
    );
    assert!(
        err.contains("cannot connect") && err.contains("certificate"),
        "{err}"
    );
    assert!(
        cluster.psql(
            &plain,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'domains'"
        ) == ["0"],
        "the refused attempt made the schema"
    );
    // The right CA: the cloud connects over TLS and works.
    let out = admin(&url, Some(&cluster.ca));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(cluster.psql(&plain, "SELECT count(*) FROM domains"), ["1"]);
    let log = cluster.log();
    assert!(
        log.lines().any(
            |l| l.contains(&format!("database={name} application_name=ad-sync-cloud"))
                && l.contains("SSL enabled")
        ),
        "no TLS connection of the cloud to {name} in the server's log"
    );
    assert!(
        !log.lines().any(|l| l
            .contains(&format!("database={name} application_name=ad-sync-cloud"))
            && !l.contains("SSL enabled")),
        "the cloud connected to {name} in plain text"
    );
}
