//! Windows only: embeds ad-sync-cloud.exe's version resource (assets/windows/version_rc.rs).

include!("../../assets/windows/version_rc.rs");

fn main() {
    println!("cargo:rerun-if-changed=../../assets/windows/version_rc.rs");
    embed_version("ad-sync-cloud", "ad-sync-cloud.exe", "", "");
}
