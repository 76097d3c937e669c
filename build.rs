//! Windows only: embeds ad-sync-setup's icon and its manifest (elevation on double-click,
//! per-monitor DPI awareness). Other targets build nothing here.

fn main() {
    println!("cargo:rerun-if-changed=assets/windows/ad-sync-setup.rc");
    println!("cargo:rerun-if-changed=assets/windows/ad-sync-setup.exe.manifest");
    println!("cargo:rerun-if-changed=assets/icon.ico");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
    if let Err(e) = embed_resource::compile_for(
        "assets/windows/ad-sync-setup.rc",
        ["ad-sync-setup"],
        embed_resource::NONE,
    )
    .manifest_required()
    {
        println!("cargo:warning=the Windows resources of ad-sync-setup were not embedded: {e}");
        std::process::exit(1);
    }
}
