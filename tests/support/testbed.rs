//! A throwaway Active Directory for tests, benches and the demo: real Samba AD DCs on loopback.
//!
//! - `dc1.example.com` (127.0.0.1): LDAPS with Samba's own CA, plain simple bind refused, as on
//!   a hardened Windows DC. Seeded with the service accounts, OUs and groups the checks need.
//!   It runs Samba's internal DNS server too (on 127.0.0.1:53, no forwarder), holding the
//!   domain's DC locator records (`_ldap._tcp.dc._msdcs.example.com`), so discovery is tested
//!   against real SRV records; tests point the resolver at `DNS_SERVER`, never at the machine's.
//! - `dc2.example.com` (127.0.0.2): a second, separate DC whose LDAPS certificate has expired
//!   and which accepts simple bind over plain LDAP: the insecure-fallback path.
//!
//! Each DC runs `samba -i -M single` with its stdin held by this process: when the process ends
//! for any reason, stdin closes and Samba stops itself; `stop()` also kills it by PID. Needs
//! root (ports 389/636, /etc/hosts, a loopback address) and Debian's samba-ad-dc.
#![allow(dead_code)]

use ldap3::{LdapConnAsync, LdapConnSettings, Mod};
use std::collections::HashSet;
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REALM: &str = "EXAMPLE.COM";
pub const NETBIOS: &str = "EXAMPLE";
pub const BASE: &str = "DC=example,DC=com";
pub const DC1_HOST: &str = "dc1.example.com";
pub const DC2_HOST: &str = "dc2.example.com";
/// dc1's DNS server (Samba's internal DNS), serving example.com.
pub const DNS_SERVER: &str = "127.0.0.1";
/// Resolves (to a loopback address nothing listens on) for the unreachable-DC case.
pub const DEAD_HOST: &str = "dc3.example.com";
/// A distinctive password, so tests can search everything printed for it.
pub const SVC_PASSWORD: &str = "Zq7!svc-Sync-Secret-4411";
pub const ADMIN_PASSWORD: &str = "Adm1n!Testbed-Pass-9902";

/// Accounts seeded on dc1, by sAMAccountName.
pub mod accounts {
    /// Ordinary, delegated on OU=Staff, password never expires: passes everything.
    pub const GOOD: &str = "svc-sync";
    /// Ordinary, password expires under the domain policy (42 days).
    pub const EXPIRING: &str = "svc-expiring";
    /// Used for wrong-password tests, so no other account's bad-password count moves.
    pub const TYPO: &str = "svc-typo";
    /// Member of Domain Admins.
    pub const DOMAIN_ADMIN: &str = "svc-admin";
    /// Member, through a nested group, of BUILTIN\Administrators.
    pub const NESTED_ADMIN: &str = "svc-nested";
    /// adminCount=1 but in no administrative group (left over from a former membership).
    pub const PROTECTED: &str = "svc-protected";
    pub const JUMPCLOUD: &str = "JumpCloud";
    pub const DISABLED: &str = "svc-disabled";
    pub const LOCKED: &str = "svc-locked";
    pub const MUST_CHANGE: &str = "svc-mustchange";
    pub const EXPIRED: &str = "svc-expired";
    pub const NO_HOURS: &str = "svc-nohours";
}

pub const OU_STAFF: &str = "OU=Staff,DC=example,DC=com";
pub const OU_UNDELEGATED: &str = "OU=Undelegated,DC=example,DC=com";
/// Non-ASCII and an escaped comma in one name; delegated like OU=Staff.
pub const OU_TRICKY: &str = "OU=Bénéficiaires\\, Zürich,DC=example,DC=com";
pub const GROUP_SECURITY: &str = "CN=Cloud Groups,OU=Staff,DC=example,DC=com";
pub const GROUP_DISTRIBUTION: &str = "CN=Mailing List,OU=Staff,DC=example,DC=com";

pub struct Dc {
    pub dir: PathBuf,
    pub host: &'static str,
    /// The domain's NetBIOS name (the admin binds as `NETBIOS\\Administrator`).
    pub netbios: &'static str,
    pub addr: IpAddr,
    /// The CA that issued the DC's LDAPS certificate, as PEM.
    pub ca_file: PathBuf,
    child: Option<Child>,
}

pub struct Testbed {
    pub root: PathBuf,
    pub dc1: Dc,
    pub dc2: Dc,
    /// The objectSid of the good service account (`accounts::GOOD`), for delegations.
    pub good_sid: String,
}

impl Testbed {
    /// Provisions and starts both DCs in a fresh folder under `parent` and seeds them.
    pub fn start(parent: &Path) -> Result<Testbed, String> {
        let started = Instant::now();
        let root = parent.join(format!("testbed-{}", std::process::id()));
        remove_dead_runs(parent);
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(|e| format!("clean {}: {e}", root.display()))?;
        }
        std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
        ensure_loopback_alias("127.0.0.2")?;
        ensure_hosts_entries()?;
        for (addr, host) in [("127.0.0.1", DC1_HOST), ("127.0.0.2", DC2_HOST)] {
            let sock = format!("{addr}:636").parse().map_err(|e| format!("{e}"))?;
            // The previous test binary's domain gets SIGTERM at its exit and may still be
            // shutting down: give it a moment before calling the port taken.
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline
                && TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok()
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
                return Err(format!(
                    "port 636 on {addr} ({host}) is already in use: another test domain or LDAP server is running; stop it first (ss -ltnp 'sport = :636')"
                ));
            }
        }
        // Provision both in parallel: each is mostly a single-threaded Python process.
        let p1 = provision(&root.join("dc1"), "dc1", "127.0.0.1", REALM, NETBIOS, true)?;
        let p2 = provision(&root.join("dc2"), "dc2", "127.0.0.2", REALM, NETBIOS, false)?;
        wait_ok(p1, "provision dc1")?;
        wait_ok(p2, "provision dc2")?;

        let dc2_dir = root.join("dc2");
        let dc2_ca = write_expired_cert(&dc2_dir)?;
        let mut dc1 = Dc {
            dir: root.join("dc1"),
            host: DC1_HOST,
            netbios: NETBIOS,
            addr: "127.0.0.1".parse().map_err(|e| format!("{e}"))?,
            ca_file: root.join("dc1/private/tls/ca.pem"),
            child: None,
        };
        let mut dc2 = Dc {
            dir: dc2_dir.clone(),
            host: DC2_HOST,
            netbios: NETBIOS,
            addr: "127.0.0.2".parse().map_err(|e| format!("{e}"))?,
            ca_file: dc2_ca,
            child: None,
        };
        dc1.launch(&[])?;
        dc2.launch(&[
            "ldap server require strong auth=no",
            &format!("tls keyfile={}", dc2_dir.join("tls/key.pem").display()),
            &format!("tls certfile={}", dc2_dir.join("tls/cert.pem").display()),
            &format!("tls cafile={}", dc2_dir.join("tls/ca.pem").display()),
        ])?;
        dc1.wait_listening()?;
        dc2.wait_listening()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let good_sid = rt.block_on(seed_dc1(&dc1))?;
        dc1.delegate(OU_STAFF, &good_sid)?;
        dc1.delegate(OU_TRICKY, &good_sid)?;
        rt.block_on(seed_dc2(&dc2))?;
        eprintln!(
            "testbed: dc1 and dc2 provisioned, started and seeded in {:.1} s under {}",
            started.elapsed().as_secs_f32(),
            root.display()
        );
        Ok(Testbed {
            root,
            dc1,
            dc2,
            good_sid,
        })
    }

    pub fn stop(&mut self) {
        self.dc1.stop();
        self.dc2.stop();
    }

    pub fn pids(&self) -> Vec<u32> {
        [&self.dc1, &self.dc2]
            .iter()
            .filter_map(|d| d.child.as_ref().map(Child::id))
            .collect()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Dc {
    fn smb_conf(&self) -> PathBuf {
        self.dir.join("etc/smb.conf")
    }

    fn launch(&mut self, extra: &[&str]) -> Result<(), String> {
        let run = self.dir.join("run");
        std::fs::create_dir_all(&run).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("samba");
        cmd.arg("-i")
            .args(["-M", "single"])
            .arg("-s")
            .arg(self.smb_conf())
            // cldap: the LDAP ping (UDP 389) every Windows DC answers, where discovery learns
            // this server's AD site.
            .arg(if self.is_dc1() {
                "--option=server services=ldap,cldap,dns"
            } else {
                "--option=server services=ldap,cldap"
            })
            // No forwarder: a name outside the test domain is not asked of the machine's DNS.
            .arg("--option=dns forwarder=")
            .arg(format!("--option=pid directory={}", run.display()))
            .arg(format!(
                "--option=log file={}",
                self.dir.join("samba.log").display()
            ));
        for o in extra {
            cmd.arg(format!("--option={o}"));
        }
        let log = std::fs::File::create(self.dir.join("samba.out")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        // stdin stays a pipe owned by us: Samba in -i mode exits on EOF, so it cannot outlive
        // this process even if the process is killed.
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("start samba (is samba-ad-dc installed?): {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = std::net::SocketAddr::new(self.addr, 636);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let out = std::fs::read_to_string(self.dir.join("samba.out")).unwrap_or_default();
                return Err(format!("samba for {} exited ({status}):\n{out}", self.host));
            }
            // Samba writes its CA (and key) on first start, just before it listens: wait for
            // both the port and the CA file the tests trust.
            let dns = std::net::SocketAddr::new(self.addr, 53);
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && self.ca_file.exists()
                && (!self.is_dc1()
                    || TcpStream::connect_timeout(&dns, Duration::from_millis(200)).is_ok())
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "samba for {} did not listen on {addr} within 60 s",
            self.host
        ))
    }

    /// Full control over a container for an account (by SID), as ADUC's Delegate Control gives.
    pub fn delegate(&self, container: &str, sid: &str) -> Result<(), String> {
        self.dsacl(
            "set",
            container,
            &format!("(A;CI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;{sid})"),
        )
    }

    /// Adds (`set`) or removes (`delete`) one ACE, in SDDL, on an object's DACL.
    pub fn dsacl(&self, action: &str, dn: &str, ace: &str) -> Result<(), String> {
        run_capture(
            Command::new("samba-tool")
                .args(["dsacl", action, "-H"])
                .arg(self.dir.join("private/sam.ldb"))
                .arg(format!("--objectdn={dn}"))
                .arg(format!("--sddl={ace}")),
        )?;
        Ok(())
    }

    /// Adds one ACE, in SDDL, to the DACL of a deleted object or of `CN=Deleted Objects`
    /// itself, which `samba-tool dsacl` cannot find (it searches without the show-deleted
    /// control). Through Samba's own Python bindings on the DC's database, as samba-tool does.
    pub fn add_ace_to_deleted(&self, dn: &str, ace: &str) -> Result<(), String> {
        let script = r#"
import sys, ldb
from samba.samdb import SamDB
from samba.auth import system_session
from samba.param import LoadParm
from samba.ndr import ndr_unpack, ndr_pack
from samba.dcerpc import security
url, conf, dn, ace = sys.argv[1:5]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=url, session_info=system_session(), lp=lp)
res = db.search(base=dn, scope=ldb.SCOPE_BASE, attrs=["nTSecurityDescriptor"], controls=["show_deleted:1"])
sd = ndr_unpack(security.descriptor, res[0]["nTSecurityDescriptor"][0])
new = security.descriptor.from_sddl("D:" + ace, security.dom_sid(db.get_domain_sid()))
for a in new.dacl.aces:
    sd.dacl_add(a)
m = ldb.Message()
m.dn = ldb.Dn(db, dn)
m["nTSecurityDescriptor"] = ldb.MessageElement(ndr_pack(sd), ldb.FLAG_MOD_REPLACE, "nTSecurityDescriptor")
db.modify(m, controls=["show_deleted:1"])
"#;
        run_capture(
            // Debian's python3, whose site packages hold Samba's bindings (as samba-tool's
            // first line names it), not whichever python3 comes first on PATH.
            Command::new("/usr/bin/python3")
                .args(["-c", script])
                .arg(self.dir.join("private/sam.ldb"))
                .arg(self.dir.join("etc/smb.conf"))
                .arg(dn)
                .arg(ace),
        )?;
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // By PID: SIGTERM, then SIGKILL if it lingers.
            let pid = c.id() as i32;
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An LDAPS admin session for seeding and for tests that change the directory.
    pub async fn admin(&self) -> Result<ldap3::Ldap, String> {
        admin_session(self.host, self.netbios, self.host == DC2_HOST).await
    }

    fn is_dc1(&self) -> bool {
        self.host == DC1_HOST
    }
}

/// A second, separate forest for the forest-to-forest tests: `fabrikam.test`, one DC
/// (`dc1.fabrikam.test`, 127.0.0.4, LDAPS with Samba's own CA, plain bind refused), seeded with
/// what an agent writing into it needs: OU=Staff delegated to its own `svc-sync`, and a
/// security group `Cloud Groups` in it. Started only by the tests that use it.
pub mod fabrikam {
    pub const REALM: &str = "FABRIKAM.TEST";
    pub const NETBIOS: &str = "FABRIKAM";
    pub const BASE: &str = "DC=fabrikam,DC=test";
    pub const HOST: &str = "dc1.fabrikam.test";
    pub const ADDR: &str = "127.0.0.4";
    pub const OU_STAFF: &str = "OU=Staff,DC=fabrikam,DC=test";
    pub const GROUP_SECURITY: &str = "CN=Cloud Groups,OU=Staff,DC=fabrikam,DC=test";
}

/// The second forest's DC; stopped (by PID) when dropped.
pub struct Forest2 {
    pub dc: Dc,
}

impl Forest2 {
    pub fn start(parent: &Path) -> Result<Forest2, String> {
        let started = Instant::now();
        let root = parent.join(format!("forest2-{}", std::process::id()));
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(|e| format!("clean {}: {e}", root.display()))?;
        }
        std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
        ensure_loopback_alias(fabrikam::ADDR)?;
        ensure_hosts_entries()?;
        let sock: std::net::SocketAddr = format!("{}:636", fabrikam::ADDR)
            .parse()
            .map_err(|e| format!("{e}"))?;
        if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
            return Err(format!(
                "port 636 on {} ({}) is already in use: another test's second forest is running; stop it first",
                fabrikam::ADDR,
                fabrikam::HOST
            ));
        }
        let dir = root.join("dc");
        let p = provision(
            &dir,
            "dc1",
            fabrikam::ADDR,
            fabrikam::REALM,
            fabrikam::NETBIOS,
            false,
        )?;
        wait_ok(p, "provision dc1.fabrikam.test")?;
        let mut dc = Dc {
            ca_file: dir.join("private/tls/ca.pem"),
            dir,
            host: fabrikam::HOST,
            netbios: fabrikam::NETBIOS,
            addr: fabrikam::ADDR.parse().map_err(|e| format!("{e}"))?,
            child: None,
        };
        dc.launch(&[])?;
        dc.wait_listening()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let sid = rt.block_on(async {
            let mut l = dc.admin().await?;
            add(
                &mut l,
                fabrikam::OU_STAFF,
                vec![("objectClass", vec!["top", "organizationalUnit"])],
            )
            .await?;
            add_group(
                &mut l,
                fabrikam::GROUP_SECURITY,
                "Cloud Groups",
                "-2147483646",
            )
            .await?;
            let good = add_user(
                &mut l,
                &format!("CN=Users,{}", fabrikam::BASE),
                accounts::GOOD,
                UAC_NORMAL_NO_EXPIRY,
            )
            .await?;
            let sid = object_sid(&mut l, &good).await;
            let _ = l.unbind().await;
            sid
        })?;
        dc.delegate(fabrikam::OU_STAFF, &sid)?;
        eprintln!(
            "testbed: the second forest ({}) provisioned, started and seeded in {:.1} s",
            fabrikam::REALM,
            started.elapsed().as_secs_f32()
        );
        Ok(Forest2 { dc })
    }

    pub fn pids(&self) -> Vec<u32> {
        self.dc.child.as_ref().map(Child::id).into_iter().collect()
    }
}

impl Drop for Forest2 {
    fn drop(&mut self) {
        self.dc.stop();
    }
}

/// An object's SID in string form.
async fn object_sid(l: &mut ldap3::Ldap, dn: &str) -> Result<String, String> {
    l.search(dn, ldap3::Scope::Base, "(objectClass=*)", vec!["objectSid"])
        .await
        .and_then(|r| r.success())
        .map_err(|e| format!("read objectSid of {dn}: {e}"))?
        .0
        .into_iter()
        .next()
        .map(ldap3::SearchEntry::construct)
        .and_then(|e| {
            e.bin_attrs
                .get("objectSid")
                .and_then(|v| v.first().cloned())
        })
        .and_then(|b| ad_sync::directory::sid::to_string(&b))
        .ok_or_else(|| format!("no objectSid on {dn}"))
}

/// Removes the scratch folders of earlier test processes that are gone (`testbed-<pid>`,
/// `agent-<tag>-<pid>`, `wine-<tag>-<pid>`, …: every test names its folder for its process), so
/// a developer's target folder does not grow by a domain per test run. Only folders named for a
/// process of this machine that has ended are touched; a running test's are left alone.
fn remove_dead_runs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // Every number in the name that could be a process id (a tag or a counter may be a
        // number too): the folder goes only when none of them is a running process.
        let pids: Vec<u32> = name
            .split('-')
            .filter(|p| p.len() >= 2 && p.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|p| p.parse().ok())
            .collect();
        let running =
            |pid: &u32| *pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !pids.is_empty() && !pids.iter().any(running) {
            // Clutter only: a folder that cannot be removed now is tried again next run.
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Provisions a DC; with `dns`, Samba's internal DNS holds the domain's zone.
fn provision(
    dir: &Path,
    host: &str,
    addr: &str,
    realm: &str,
    netbios: &str,
    dns: bool,
) -> Result<Child, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let log =
        std::fs::File::create(dir.with_extension("provision.log")).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("samba-tool");
    cmd.args(["domain", "provision"]);
    // The agent bench asks for lmdb: with tdb, every add costs more as the database grows,
    // which would charge whichever bulk load runs second for the first one.
    if let Ok(store) = std::env::var("TESTBED_BACKEND_STORE") {
        cmd.arg(format!("--backend-store={store}"));
    }
    cmd.arg(format!("--targetdir={}", dir.display()))
        .arg(format!("--realm={realm}"))
        .arg(format!("--domain={netbios}"))
        .arg("--server-role=dc")
        .arg(if dns {
            "--dns-backend=SAMBA_INTERNAL"
        } else {
            "--dns-backend=NONE"
        })
        .arg(format!("--adminpass={ADMIN_PASSWORD}"))
        .arg(format!("--host-name={host}"))
        .arg(format!("--option=interfaces={addr}"))
        .arg("--option=bind interfaces only=yes")
        .arg(format!(
            "--option=log file={}",
            dir.join("samba.log").display()
        ))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("run samba-tool (is samba-ad-dc installed?): {e}"))
}

fn wait_ok(mut child: Child, what: &str) -> Result<(), String> {
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({status}); see the provision.log beside its folder"
        ))
    }
}

fn run_capture(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}{}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_loopback_alias(addr: &str) -> Result<(), String> {
    let shown = run_capture(Command::new("ip").args(["-o", "addr", "show", "dev", "lo"]))?;
    if shown.contains(&format!("inet {addr}/")) {
        return Ok(());
    }
    run_capture(Command::new("ip").args(["addr", "add", &format!("{addr}/8"), "dev", "lo"]))
        .map(|_| ())
}

/// The test DCs' addresses and names, as the machine's hosts file maps them (Samba's DNS has
/// no address records for DCs on loopback addresses).
pub const HOSTS: [(&str, &str); 4] = [
    ("127.0.0.1", DC1_HOST),
    ("127.0.0.2", DC2_HOST),
    ("127.0.0.3", DEAD_HOST),
    (fabrikam::ADDR, fabrikam::HOST),
];

/// Maps the test DC names in /etc/hosts (the domain has no DNS server of its own).
fn ensure_hosts_entries() -> Result<(), String> {
    let wanted = HOSTS;
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let present: HashSet<&str> = hosts
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace().skip(1))
        .collect();
    let mut add = String::new();
    for (ip, name) in wanted {
        if !present.contains(name) {
            add.push_str(&format!("{ip} {name}  # ad-sync testbed\n"));
        }
    }
    if add.is_empty() {
        return Ok(());
    }
    let mut text = hosts;
    if !text.ends_with('\n') && !text.is_empty() {
        text.push('\n');
    }
    text.push_str(&add);
    std::fs::write("/etc/hosts", text).map_err(|e| format!("add test DC names to /etc/hosts: {e}"))
}

/// A CA and an LDAPS certificate for dc2 that expired last year.
fn write_expired_cert(dc_dir: &Path) -> Result<PathBuf, String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let e = |e: rcgen::Error| e.to_string();
    let tls = dc_dir.join("tls");
    std::fs::create_dir_all(&tls).map_err(|e| e.to_string())?;
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.distinguished_name
        .push(DnType::CommonName, "ad-sync testbed CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().map_err(e)?;
    let mut leaf = CertificateParams::new(vec![DC2_HOST.to_string()]).map_err(e)?;
    leaf.distinguished_name.push(DnType::CommonName, DC2_HOST);
    leaf.not_before = rcgen::date_time_ymd(2024, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(2025, 1, 1);
    let cert = leaf.signed_by(&key, &issuer).map_err(e)?;
    let write = |name: &str, text: String| -> Result<(), String> {
        let p = tls.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
        set_mode(&p, 0o600)
    };
    write("ca.pem", ca_cert.pem())?;
    write("cert.pem", cert.pem())?;
    write("key.pem", key.serialize_pem())?;
    Ok(tls.join("ca.pem"))
}

fn set_mode(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
}

async fn admin_session(
    host: &str,
    netbios: &str,
    accept_invalid_cert: bool,
) -> Result<ldap3::Ldap, String> {
    let connector = native_tls::TlsConnector::builder()
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(accept_invalid_cert)
        .build()
        .map_err(|e| e.to_string())?;
    let settings = LdapConnSettings::new()
        .set_conn_timeout(Duration::from_secs(10))
        .set_connector(connector);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &format!("ldaps://{host}"))
        .await
        .map_err(|e| format!("admin connect to {host}: {e}"))?;
    ldap3::drive!(conn);
    ldap.simple_bind(&format!("{netbios}\\Administrator"), ADMIN_PASSWORD)
        .await
        .and_then(|r| r.success())
        .map_err(|e| format!("admin bind on {host}: {e}"))?;
    Ok(ldap)
}

fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

const UAC_NORMAL: &str = "512";
const UAC_NORMAL_NO_EXPIRY: &str = "66048";
const UAC_DISABLED: &str = "514";

async fn add(
    ldap: &mut ldap3::Ldap,
    dn: &str,
    attrs: Vec<(&str, Vec<&str>)>,
) -> Result<(), String> {
    let attrs: Vec<(&str, HashSet<&str>)> = attrs
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect();
    ldap.add(dn, attrs)
        .await
        .and_then(|r| r.success())
        .map(|_| ())
        .map_err(|e| format!("add {dn}: {e}"))
}

async fn modify(ldap: &mut ldap3::Ldap, dn: &str, mods: Vec<Mod<Vec<u8>>>) -> Result<(), String> {
    ldap.modify(dn, mods)
        .await
        .and_then(|r| r.success())
        .map(|_| ())
        .map_err(|e| format!("modify {dn}: {e}"))
}

fn replace(attr: &str, value: impl Into<Vec<u8>>) -> Mod<Vec<u8>> {
    Mod::Replace(attr.as_bytes().to_vec(), HashSet::from([value.into()]))
}

pub async fn add_user(
    ldap: &mut ldap3::Ldap,
    container: &str,
    sam: &str,
    uac: &str,
) -> Result<String, String> {
    let dn = format!("CN={sam},{container}");
    add(
        ldap,
        &dn,
        vec![
            (
                "objectClass",
                vec!["top", "person", "organizationalPerson", "user"],
            ),
            ("sAMAccountName", vec![sam]),
            ("userPrincipalName", vec![&format!("{sam}@example.com")]),
        ],
    )
    .await?;
    modify(
        ldap,
        &dn,
        vec![
            replace("unicodePwd", unicode_pwd(SVC_PASSWORD)),
            replace("userAccountControl", uac.as_bytes().to_vec()),
        ],
    )
    .await?;
    Ok(dn)
}

pub async fn add_group(
    ldap: &mut ldap3::Ldap,
    dn: &str,
    sam: &str,
    group_type: &str,
) -> Result<(), String> {
    add(
        ldap,
        dn,
        vec![
            ("objectClass", vec!["top", "group"]),
            ("sAMAccountName", vec![sam]),
            ("groupType", vec![group_type]),
        ],
    )
    .await
}

pub async fn add_member(ldap: &mut ldap3::Ldap, group: &str, member: &str) -> Result<(), String> {
    modify(
        ldap,
        group,
        vec![Mod::Add(
            b"member".to_vec(),
            HashSet::from([member.as_bytes().to_vec()]),
        )],
    )
    .await
}

/// Brings `sam`'s tombstone back from Deleted Objects to `dn` (tombstone reanimation: the same
/// objectGUID, as the AD Recycle Bin's restore keeps it), as an administrator does with
/// `ldp.exe`: the show-deleted control, `isDeleted` removed and the DN given back.
pub async fn reanimate(ldap: &mut ldap3::Ldap, sam: &str, dn: &str) -> Result<(), String> {
    let show_deleted = ldap3::controls::RawControl {
        ctype: "1.2.840.113556.1.4.417".into(),
        crit: true,
        val: None,
    };
    let (found, _) = ldap
        .with_controls(vec![show_deleted.clone()])
        .search(
            "CN=Deleted Objects,DC=example,DC=com",
            ldap3::Scope::OneLevel,
            &format!("(sAMAccountName={sam})"),
            vec!["distinguishedName"],
        )
        .await
        .and_then(|r| r.success())
        .map_err(|e| format!("the tombstone of {sam}: {e}"))?;
    let tombstone = found
        .into_iter()
        .next()
        .map(|e| ldap3::SearchEntry::construct(e).dn)
        .ok_or_else(|| format!("{sam}'s tombstone is not in Deleted Objects"))?;
    ldap.with_controls(vec![show_deleted])
        .modify(
            &tombstone,
            vec![
                Mod::Delete("isDeleted", HashSet::new()),
                Mod::Replace("distinguishedName", HashSet::from([dn])),
            ],
        )
        .await
        .and_then(|r| r.success())
        .map(|_| ())
        .map_err(|e| format!("reanimate {tombstone}: {e}"))
}

/// Seeds dc1; returns the SID of the good service account (for delegation).
async fn seed_dc1(dc: &Dc) -> Result<String, String> {
    use accounts::*;
    let mut l = dc.admin().await?;
    let users = "CN=Users,DC=example,DC=com";
    for ou in [OU_STAFF, OU_UNDELEGATED, OU_TRICKY] {
        add(
            &mut l,
            ou,
            vec![("objectClass", vec!["top", "organizationalUnit"])],
        )
        .await?;
    }
    // Global security group (0x80000002) and global distribution group (0x2).
    add_group(&mut l, GROUP_SECURITY, "Cloud Groups", "-2147483646").await?;
    add_group(&mut l, GROUP_DISTRIBUTION, "Mailing List", "2").await?;

    // Lockout after 5 bad passwords, so one account can be locked on purpose.
    modify(&mut l, BASE, vec![replace("lockoutThreshold", "5")]).await?;

    let good = add_user(&mut l, users, GOOD, UAC_NORMAL_NO_EXPIRY).await?;
    let good_sid = object_sid(&mut l, &good).await?;
    add_user(&mut l, users, EXPIRING, UAC_NORMAL).await?;
    add_user(&mut l, users, TYPO, UAC_NORMAL_NO_EXPIRY).await?;
    let admin = add_user(&mut l, users, DOMAIN_ADMIN, UAC_NORMAL_NO_EXPIRY).await?;
    add_member(&mut l, &format!("CN=Domain Admins,{users}"), &admin).await?;
    modify(&mut l, &admin, vec![replace("adminCount", "1")]).await?;

    let nested = add_user(&mut l, users, NESTED_ADMIN, UAC_NORMAL_NO_EXPIRY).await?;
    let helpdesk = format!("CN=Helpdesk Admins,{users}");
    add_group(&mut l, &helpdesk, "Helpdesk Admins", "-2147483646").await?;
    add_member(&mut l, &helpdesk, &nested).await?;
    add_member(
        &mut l,
        "CN=Administrators,CN=Builtin,DC=example,DC=com",
        &helpdesk,
    )
    .await?;

    let protected = add_user(&mut l, users, PROTECTED, UAC_NORMAL_NO_EXPIRY).await?;
    modify(&mut l, &protected, vec![replace("adminCount", "1")]).await?;
    add_user(&mut l, users, JUMPCLOUD, UAC_NORMAL_NO_EXPIRY).await?;
    add_user(&mut l, users, DISABLED, UAC_DISABLED).await?;
    let must = add_user(&mut l, users, MUST_CHANGE, UAC_NORMAL).await?;
    modify(&mut l, &must, vec![replace("pwdLastSet", "0")]).await?;
    let expired = add_user(&mut l, users, EXPIRED, UAC_NORMAL_NO_EXPIRY).await?;
    // 2020-01-01 as FILETIME.
    modify(
        &mut l,
        &expired,
        vec![replace("accountExpires", "132223104000000000")],
    )
    .await?;
    let hours = add_user(&mut l, users, NO_HOURS, UAC_NORMAL_NO_EXPIRY).await?;
    modify(&mut l, &hours, vec![replace("logonHours", vec![0u8; 21])]).await?;
    add_user(&mut l, users, LOCKED, UAC_NORMAL_NO_EXPIRY).await?;
    let _ = l.unbind().await;

    // Lock svc-locked the way it happens in life: repeated wrong passwords.
    for _ in 0..6 {
        let (conn, mut probe) = LdapConnAsync::with_settings(
            LdapConnSettings::new().set_connector(
                native_tls::TlsConnector::builder()
                    .danger_accept_invalid_certs(true)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
            &format!("ldaps://{}", dc.host),
        )
        .await
        .map_err(|e| e.to_string())?;
        ldap3::drive!(conn);
        let _ = probe
            .simple_bind(&format!("{NETBIOS}\\{LOCKED}"), "wrong-password")
            .await;
        let _ = probe.unbind().await;
    }
    Ok(good_sid)
}

async fn seed_dc2(dc: &Dc) -> Result<(), String> {
    let mut l = dc.admin().await?;
    add_user(
        &mut l,
        "CN=Users,DC=example,DC=com",
        accounts::GOOD,
        UAC_NORMAL_NO_EXPIRY,
    )
    .await?;
    add_group(
        &mut l,
        "CN=Cloud Groups,CN=Users,DC=example,DC=com",
        "Cloud Groups",
        "-2147483646",
    )
    .await?;
    // Reversible encryption on: the password_policy check warns about it.
    modify(&mut l, BASE, vec![replace("pwdProperties", "17")]).await?;
    let _ = l.unbind().await;
    Ok(())
}

/// Kills dc1 (SIGKILL, as a crash or a power cut would) and starts it again on the same
/// database; returns once it listens again.
pub fn restart_dc1(bed: &Testbed) {
    static LATER: std::sync::Mutex<Vec<Child>> = std::sync::Mutex::new(Vec::new());
    let mut later = LATER.lock().unwrap_or_else(|p| p.into_inner());
    let mut pids: Vec<u32> = later.iter().map(Child::id).collect();
    if pids.is_empty()
        && let Some(c) = &bed.dc1.child
    {
        pids.push(c.id());
    }
    for pid in pids {
        // SAFETY: kill(2) on a samba process this test binary started.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    for mut c in later.drain(..) {
        let _ = c.wait();
    }
    let sock = std::net::SocketAddr::new(bed.dc1.addr, 636);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline
        && TcpStream::connect_timeout(&sock, Duration::from_millis(100)).is_ok()
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut dc = Dc {
        dir: bed.dc1.dir.clone(),
        host: bed.dc1.host,
        netbios: NETBIOS,
        addr: bed.dc1.addr,
        ca_file: bed.dc1.ca_file.clone(),
        child: None,
    };
    dc.launch(&[])
        .unwrap_or_else(|e| panic!("restart dc1: {e}"));
    dc.wait_listening()
        .unwrap_or_else(|e| panic!("restart dc1: {e}"));
    // Kept here: its stdin pipe closes when this process exits, and Samba (-i) stops then.
    if let Some(c) = dc.child.take() {
        later.push(c);
    }
}
