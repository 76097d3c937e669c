//! Windows only: embeds ad-sync-agent.exe's version resource (assets/windows/version_rc.rs).

include!("../../assets/windows/version_rc.rs");

fn main() {
    println!("cargo:rerun-if-changed=../../assets/windows/version_rc.rs");
    embed_version("ad-sync-agent", "ad-sync-agent.exe", "", "");
}
