// Included by each binary's build.rs (`include!`): the Windows version resource every .exe
// carries (Explorer's Details tab, UAC's dialog, Apps & features), from the crate's own
// Cargo.toml: version, description, and the workspace's authors as the company. Nothing here
// is kept in step by hand; the MSI's Manufacturer is read from the same `authors` field.

/// The resource script of `exe` (e.g. "ad-sync-agent.exe"), described as `description` (the
/// crate's own description when empty), plus `extra` lines (icon, manifest).
fn version_rc(exe: &str, description: &str, extra: &str) -> String {
    let v = |k: &str| std::env::var(k).unwrap_or_default();
    let num = |k: &str| v(k).parse::<u16>().unwrap_or(0);
    let (major, minor, patch) = (
        num("CARGO_PKG_VERSION_MAJOR"),
        num("CARGO_PKG_VERSION_MINOR"),
        num("CARGO_PKG_VERSION_PATCH"),
    );
    let quote = |s: String| s.replace('"', "\"\"");
    let company = quote(v("CARGO_PKG_AUTHORS").replace(':', ", "));
    let description = quote(if description.is_empty() {
        v("CARGO_PKG_DESCRIPTION")
    } else {
        description.to_string()
    });
    let version = quote(v("CARGO_PKG_VERSION"));
    let stem = exe.trim_end_matches(".exe").trim_end_matches(".com");
    format!(
        r#"{extra}
1 VERSIONINFO
FILEVERSION {major},{minor},{patch},0
PRODUCTVERSION {major},{minor},{patch},0
FILEFLAGSMASK 0x3f
FILEFLAGS 0x0
FILEOS 0x40004
FILETYPE 0x1
FILESUBTYPE 0x0
BEGIN
  BLOCK "StringFileInfo"
  BEGIN
    BLOCK "040904b0"
    BEGIN
      VALUE "CompanyName", "{company}"
      VALUE "FileDescription", "{description}"
      VALUE "FileVersion", "{version}"
      VALUE "InternalName", "{stem}"
      VALUE "OriginalFilename", "{exe}"
      VALUE "ProductName", "ad-sync"
      VALUE "ProductVersion", "{version}"
      VALUE "LegalCopyright", "{company}; licensed MIT OR Apache-2.0"
    END
  END
  BLOCK "VarFileInfo"
  BEGIN
    VALUE "Translation", 0x409, 1200
  END
END
"#
    )
}

/// Writes the script into OUT_DIR and compiles it into the binary `bin`, shipped as `exe`;
/// Windows targets only.
fn embed_version(bin: &str, exe: &str, description: &str, extra: &str) {
    println!("cargo:rerun-if-changed={}", concat!(env!("CARGO_MANIFEST_DIR"), "/build.rs"));
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let rc = out.join(format!("{bin}.rc"));
    if let Err(e) = std::fs::write(&rc, version_rc(exe, description, extra)) {
        println!("cargo:warning=could not write {}: {e}", rc.display());
        std::process::exit(1);
    }
    if let Err(e) = embed_resource::compile_for(&rc, [bin], embed_resource::NONE).manifest_required() {
        println!("cargo:warning=the Windows resources of {bin} were not embedded: {e}");
        std::process::exit(1);
    }
}
