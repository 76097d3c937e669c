//! The README's main command (`bash dev/demo`): brings up a throwaway local domain (a real Samba
//! AD DC on loopback) and the reference cloud (`ad-sync-cloud`'s server, HTTPS with its own CA,
//! with the domain instance added and a connect key issued), then runs `ad-sync-setup check`
//! against both, first with a well-prepared service account, then with a Domain Admin to show
//! how a refusal reads, and `validate-key` on the key. Then it opens the setup wizard against the
//! same domain and cloud (when there is a display) and lists what to type on each page.
//! With `--keep`, both stay up until Enter is pressed so you can try your own answers.

#[path = "../tests/support/testbed.rs"]
mod testbed;

use clap::Parser;
use std::path::Path;

fn main() {
    let keep = std::env::args().any(|a| a == "--keep");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/demo");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::create_dir_all(&root);
    println!("Provisioning a throwaway domain EXAMPLE.COM on 127.0.0.1 (Samba AD DC)...");
    let mut bed = match testbed::Testbed::start(&root) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot start the demo domain: {e}");
            std::process::exit(2);
        }
    };
    println!("Starting the reference cloud (ad-sync-cloud) on 127.0.0.1 with its own CA...");
    let cloud_dir = root.join("cloud");
    let _ = std::fs::create_dir_all(&cloud_dir);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(2);
        }
    };
    let (stop_cloud, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = ad_sync_cloud::server::ServeOptions {
        db: cloud_dir.join("cloud.db"),
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        tls: ad_sync_cloud::server::tls::TlsSource::SelfSigned {
            dir: cloud_dir.join("tls"),
            names: vec!["localhost".into(), "127.0.0.1".into()],
        },
        timing: Default::default(),
        rate_limit: Default::default(),
        limits: Default::default(),
        // The status page has no login: its own loopback port.
        status_listen: Some("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"))),
        // Nothing real is configured in the demo: no alerts leave this machine.
        alert_webhook: None,
    };
    let cloud = match runtime.block_on(ad_sync_cloud::server::start(opts, async {
        let _ = stopped.await;
    })) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start the reference cloud: {e}");
            std::process::exit(2);
        }
    };
    let cloud_url = format!("https://{}", cloud.addr);
    let cloud_ca = cloud_dir.join("tls").join("ca.pem");
    let key =
        ad_sync_cloud::server::store::Store::open(&cloud_dir.join("cloud.db")).and_then(|store| {
            let (domain, _) = store.add_domain("DC=example,DC=com")?;
            let d = domain.id;
            // A small directory, so the preview of the first sync (sync.preview) has something
            // to say: two new users, a new group, and a group whose name an AD distribution
            // group already has (never taken over).
            store.user_add(d, "ada", "Ada", "Lovelace", Some("ada@example.com"))?;
            store.user_add(d, "grace", "Grace", "Hopper", None)?;
            store.group_add(d, "Engineering")?;
            store.group_add(d, "Mailing List")?;
            store.membership(d, "Engineering", "ada", None, true)?;
            store.issue_key(
                "DC=example,DC=com",
                std::time::Duration::from_secs(7 * 86_400),
            )
        });
    let key = match key {
        Ok((k, _)) => k,
        Err(e) => {
            eprintln!("cannot issue the demo connect key: {e}");
            std::process::exit(2);
        }
    };
    let _ = std::fs::write(root.join("connect-key.txt"), key.secret().expose());
    let status = cloud
        .status_addr
        .map_or_else(|| "not served".to_string(), |a| format!("https://{a}/"));
    println!(
        "Cloud at {cloud_url} (status page: {status}); connect key {} issued for DC=example,DC=com.",
        key.redacted()
    );
    let write = |name: &str, user: &str| {
        let path = root.join(name);
        let text = format!(
            "version = 1\n\n[server]\ntype = \"member\"\ndc_host = \"{}\"\n\n[ldap]\nsecurity = \"ldaps\"\n\
             ca_file = '{}'\n\n[directory]\nroot_user_dn = 'OU=Staff;DC=example;DC=com'\n\
             sync_group_dn = 'CN=Cloud Groups;OU=Staff;DC=example;DC=com'\n\n\
             [service_account]\nusername = 'EXAMPLE\\{user}'\npassword_file = \"svc.pw\"\n\n\
             [cloud]\nurl = '{cloud_url}'\nca_file = '{}'\nconnect_key_file = \"connect-key.txt\"\n",
            testbed::DC1_HOST,
            bed.dc1.ca_file.display(),
            cloud_ca.display(),
        );
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("write {}: {e}", path.display());
        }
        path
    };
    let _ = std::fs::write(root.join("svc.pw"), testbed::SVC_PASSWORD);
    let good = write("answers.toml", testbed::accounts::GOOD);
    let admin = write("answers-domain-admin.toml", testbed::accounts::DOMAIN_ADMIN);
    for (title, path) in [
        ("a well-prepared service account", &good),
        ("a Domain Admin as the service account", &admin),
    ] {
        println!(
            "\n=== ad-sync-setup check --answers {} ({title})\n",
            path.display()
        );
        let cli = ad_sync::cli::Cli::parse_from([
            "ad-sync-setup",
            "check",
            "--answers",
            &path.to_string_lossy(),
        ]);
        let code = ad_sync::cli::run(cli);
        println!("(exit code {code})");
    }
    let key_file = root.join("connect-key.txt");
    println!(
        "\n=== ad-sync-setup validate-key --key-file {} --cloud {cloud_url} --ca {}\n",
        key_file.display(),
        cloud_ca.display()
    );
    let cli = ad_sync::cli::Cli::parse_from([
        "ad-sync-setup",
        "validate-key",
        "--key-file",
        &key_file.to_string_lossy(),
        "--cloud",
        &cloud_url,
        "--ca",
        &cloud_ca.to_string_lossy(),
    ]);
    let code = ad_sync::cli::run(cli);
    println!("(exit code {code}; checking never uses the key up)");

    // Discovery as a member server of example.com does it: the domain's DNS (Samba's internal
    // DNS on the demo DC's address), asked directly, never this machine's resolver.
    let dns: std::net::IpAddr = testbed::DNS_SERVER
        .parse()
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
    println!(
        "\n=== DNS SRV discovery: _ldap._tcp.dc._msdcs.example.com, asked of the domain's DNS server {dns}\n"
    );
    match runtime.block_on(ad_sync::directory::discover::domain_controllers(
        "example.com",
        Some(dns),
        std::time::Duration::from_secs(3),
    )) {
        Ok(found) => {
            match (&found.site, &found.site_note) {
                (Some(site), _) => println!("  this server's AD site: {site} (its DCs first)"),
                (None, Some(note)) => println!("  {note}"),
                _ => {}
            }
            for dc in found.dcs {
                println!(
                    "  {} port {} (priority {}, weight {}){}",
                    dc.host,
                    dc.port,
                    dc.priority,
                    dc.weight,
                    if dc.in_site { ", in this site" } else { "" }
                );
            }
        }
        Err(e) => println!("  {e}"),
    }
    println!(
        "\n=== The setup wizard (ad-sync-setup with no arguments)\n\nOn its pages:\n  \
         Server type: Member server (the wizard then finds {} in the domain's DNS and fills it in)\n  \
         Trust this CA file: {}\n  \
         Service account: EXAMPLE\\{}   Password: the one in {}\n  \
         Root User container: pick Staff in the tree (no DN to type)\n  \
         Cloud URL: {cloud_url}   Cloud CA file: {}\n  \
         Connect key: paste it from {}\n  Sync group: pick Cloud Groups under Staff\n\
         Install is staged under target/demo/installed (the demo never writes this machine's /etc or /opt).",
        testbed::DC1_HOST,
        bed.dc1.ca_file.display(),
        testbed::accounts::GOOD,
        root.join("svc.pw").display(),
        cloud_ca.display(),
        key_file.display()
    );
    let has_display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    if has_display {
        // A fresh setup, staged: Install writes under target/demo/installed, never this
        // machine's /etc or /opt (the config path is the installed one, as on a real server).
        let mut options =
            ad_sync::wizard::Options::live(ad_sync::install::layout::default_config_path());
        options.prefix = Some(root.join("installed"));
        // This demo host stands for a member server of the demo domain, whose DNS it asks.
        options.dns_server = Ok(Some(dns));
        options.host_domain = Some("example.com".into());
        options.agent_dir =
            Some(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debug"));
        if let Err(e) = ad_sync::wizard::run(options) {
            eprintln!("{e}");
        }
    } else {
        println!(
            "\nNo display here (neither DISPLAY nor WAYLAND_DISPLAY is set), so the wizard window cannot open.\n\
             From a desktop session or `ssh -X`, run `bash dev/demo` again and the wizard opens after these checks;\n\
             its pages run exactly the checks shown above. Its pages are pictured in tests/snapshots/wizard/."
        );
    }
    if keep {
        println!(
            "\nThe domain and the cloud are up. In another shell, try:\n  cargo run -- check --answers {}\n  cargo run -- validate-dn 'ou=Staff;DC=example;DC=com'\n  cargo run --bin ad-sync-cloud -- key issue --db {} --domain DC=example,DC=com\n  curl --cacert {} {cloud_url}/\nPress Enter to stop them.",
            good.display(),
            cloud_dir.join("cloud.db").display(),
            cloud_ca.display()
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    let _ = stop_cloud.send(());
    let _ = runtime.block_on(cloud.task);
    bed.stop();
    println!(
        "\nThe demo domain and cloud are stopped; their files are under {}.",
        root.display()
    );
}
