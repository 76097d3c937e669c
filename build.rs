//! Windows only: embeds ad-sync-setup's version resource (assets/windows/version_rc.rs), its icon
//! and its manifest (elevation on double-click, since installing registers a service; per-monitor
//! DPI awareness, so the wizard stays sharp on HiDPI screens and over Remote Desktop). Other
//! targets build nothing here.

include!("assets/windows/version_rc.rs");

fn main() {
    println!("cargo:rerun-if-changed=assets/windows/version_rc.rs");
    println!("cargo:rerun-if-changed=assets/windows/ad-sync-setup.exe.manifest");
    println!("cargo:rerun-if-changed=assets/icon.ico");
    let dir = env!("CARGO_MANIFEST_DIR").replace('\\', "/");
    // 24 is RT_MANIFEST.
    embed_version(
        "ad-sync-setup",
        "ad-sync-setup.exe",
        "",
        &format!(
            "1 24 \"{dir}/assets/windows/ad-sync-setup.exe.manifest\"\n1 ICON \"{dir}/assets/icon.ico\""
        ),
    );
    embed_version(
        "ad-sync-setup-console",
        "ad-sync-setup.com",
        "ad-sync setup from a console (runs ad-sync-setup.exe and waits for it)",
        "",
    );
}
