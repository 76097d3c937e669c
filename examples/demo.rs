//! The README's main command (`bash dev/demo`): brings up a throwaway local domain (a real Samba
//! AD DC on loopback) and runs `ad-sync-setup check` against it, first with a well-prepared
//! service account, then with a Domain Admin to show how a refusal reads.
//! With `--keep`, the domain stays up until Enter is pressed so you can try your own answers.

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
    let write = |name: &str, user: &str| {
        let path = root.join(name);
        let text = format!(
            "version = 1\n\n[server]\ntype = \"member\"\ndc_host = \"{}\"\n\n[ldap]\nsecurity = \"ldaps\"\n\
             ca_file = '{}'\n\n[directory]\nroot_user_dn = 'OU=Staff;DC=example;DC=com'\n\
             sync_group_dn = 'CN=Cloud Groups;OU=Staff;DC=example;DC=com'\n\n\
             [service_account]\nusername = 'EXAMPLE\\{user}'\npassword_file = \"svc.pw\"\n",
            testbed::DC1_HOST,
            bed.dc1.ca_file.display(),
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
    if keep {
        println!(
            "\nThe domain is up. In another shell, try:\n  cargo run -- check --answers {}\n  cargo run -- validate-dn 'ou=Staff;DC=example;DC=com'\nPress Enter to stop it.",
            good.display()
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    bed.stop();
    println!(
        "\nThe demo domain is stopped; its files are under {}.",
        root.display()
    );
}
