//! The installed agent's secret store: one file per secret in a `secrets` folder beside the
//! config (0700, each file 0600; on Windows a folder whose ACL admits only SYSTEM,
//! Administrators and the agent's service account), and each secret **encrypted at rest** where
//! the system offers a way the service can undo:
//!
//! - **Linux with systemd 250 or later:** `systemd-creds encrypt` (the host key in
//!   `/var/lib/systemd/credential.secret`, plus the TPM2 chip where the machine has one), stored
//!   as `<name>.cred`. The unit hands them over with `LoadCredentialEncrypted=`: systemd decrypts
//!   them into the service's private `$CREDENTIALS_DIRECTORY`, so the agent never sees the
//!   ciphertext under systemd. A copy of the files without the host key (a backup, another
//!   machine) reads as noise.
//! - **Windows:** DPAPI in machine scope (`CryptProtectData` with `CRYPTPROTECT_LOCAL_MACHINE`
//!   and the secret's name as entropy), stored as `<name>.dpapi`. Machine scope because the
//!   installer (an administrator) writes and the service (`NT SERVICE\ad-sync-agent`) reads; the
//!   folder's ACL keeps other accounts from the blob, and the blob is useless off this machine.
//! - **Otherwise** (no systemd-creds, or it refused): the 0600 file in clear, and every page that
//!   shows the store says so.
//!
//! The wizard's review mode reads the password back the same way (so an upgrade asks for
//! nothing); the agent reads the store at start-up when it does not run under systemd.
//!
//! Why not the OS keyring (`keyring`): on Linux a system service has no Secret Service session to
//! ask, and on Windows the Credential Manager is per user, so what the installer (an
//! administrator) stores there is invisible to the service's account. Neither survives the
//! service's own start-up without a logged-on user. `keyring` serves where a *person's* secret is
//! kept for that person; the product has none: every secret here is the service's.

use crate::secret::Secret;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The file name of the service account's password in the store.
pub const SERVICE_ACCOUNT_PASSWORD: &str = "service-account-password";
/// The agent's own credential from enrollment (`Authorization: Bearer ...`).
pub const AGENT_CREDENTIAL: &str = "agent-credential";
/// The secret half of the agent's X25519 key pair; password changes are sealed to it.
pub const AGENT_PRIVATE_KEY: &str = "agent-private-key";
/// The password of `[cloud] proxy`, when the proxy asks for a login (optional).
pub const PROXY_PASSWORD: &str = "proxy-password";
/// Every secret an installed agent has.
pub const ALL: [&str; 3] = [
    SERVICE_ACCOUNT_PASSWORD,
    AGENT_CREDENTIAL,
    AGENT_PRIVATE_KEY,
];
/// The secrets an install stores only when its config needs them.
pub const OPTIONAL: [&str; 1] = [PROXY_PASSWORD];

/// How a secret is kept on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    /// A file only its owner can read (0600, or the folder's ACL on Windows), in clear.
    File,
    /// Encrypted by `systemd-creds` with the host key (and TPM2 where present).
    SystemdCreds,
    /// Encrypted by Windows DPAPI, machine scope.
    Dpapi,
}

impl Protection {
    /// Every form, strongest first (the order a read looks for them in).
    pub const ALL: [Protection; 3] = [
        Protection::SystemdCreds,
        Protection::Dpapi,
        Protection::File,
    ];

    /// What this machine can use for a new secret. Probed once per process (a trial
    /// `systemd-creds encrypt` on Linux, which also makes the host key when there is none).
    pub fn detect() -> Protection {
        static DETECTED: OnceLock<Protection> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            if cfg!(windows) {
                Protection::Dpapi
            } else if systemd_creds::usable() {
                Protection::SystemdCreds
            } else {
                Protection::File
            }
        })
    }

    /// The file name suffix of this form.
    pub fn suffix(self) -> &'static str {
        match self {
            Protection::File => "",
            Protection::SystemdCreds => ".cred",
            Protection::Dpapi => ".dpapi",
        }
    }

    /// In words, for the Review and Finish pages and `review`.
    pub fn words(self) -> String {
        match self {
            Protection::File => if cfg!(windows) {
                "not encrypted at rest: files protected by the folder's ACL only".to_string()
            } else {
                "not encrypted at rest: root-only files (0600)".to_string()
            },
            Protection::SystemdCreds => format!(
                "encrypted at rest by systemd-creds ({}); systemd decrypts them for the service alone",
                systemd_creds::key_words()
            ),
            Protection::Dpapi => {
                "encrypted at rest by Windows DPAPI (machine scope), in a folder only SYSTEM, Administrators and the service can read".to_string()
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    /// How new secrets are written (`None`: what this machine can do, `Protection::detect`).
    protection: Option<Protection>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path} does not exist (no password was stored by the installer)")]
    Missing { path: String },
    #[error(
        "{path} cannot be read by this user; re-run the wizard elevated to use the stored password"
    )]
    Denied { path: String },
    #[error(
        "{path} is readable by other users (mode {mode:o}); it is not used. Run `chmod 600 {path}`"
    )]
    Unsafe { path: String, mode: u32 },
    #[error(
        "{path} cannot be decrypted: {reason}. It was encrypted on another machine or with a key this machine no longer has; re-run ad-sync-setup to store it again"
    )]
    Decrypt { path: String, reason: String },
    #[error("{path} cannot be read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> FileStore {
        FileStore {
            dir: dir.into(),
            protection: None,
        }
    }

    /// The same store, writing new secrets with `protection`.
    pub fn with_protection(mut self, protection: Protection) -> FileStore {
        self.protection = Some(protection);
        self
    }

    /// The store that belongs to the config at `config`: its `secrets` folder.
    pub fn beside_config(config: &Path) -> FileStore {
        let parent = config.parent().unwrap_or(Path::new("."));
        FileStore::new(parent.join("secrets"))
    }

    /// The path of `name` in the form new secrets are written in.
    pub fn path(&self, name: &str) -> PathBuf {
        self.path_as(name, self.writes())
    }

    /// The path of `name` in form `p`.
    pub fn path_as(&self, name: &str, p: Protection) -> PathBuf {
        self.dir.join(format!("{name}{}", p.suffix()))
    }

    /// How new secrets are written.
    pub fn writes(&self) -> Protection {
        self.protection.unwrap_or_else(Protection::detect)
    }

    /// How `name` is stored now (None: not stored).
    pub fn stored_as(&self, name: &str) -> Option<Protection> {
        Protection::ALL
            .into_iter()
            .find(|p| self.path_as(name, *p).is_file())
    }

    /// The file `name` is stored in now.
    pub fn stored_path(&self, name: &str) -> Option<PathBuf> {
        self.stored_as(name).map(|p| self.path_as(name, p))
    }

    pub fn has(&self, name: &str) -> bool {
        self.stored_as(name).is_some()
    }

    /// The form of the secrets stored now (the first one found), else the form new ones get.
    pub fn in_use(&self) -> Protection {
        ALL.iter()
            .find_map(|n| self.stored_as(n))
            .unwrap_or_else(|| self.writes())
    }

    /// Where the store is and how it protects what is in it, in words for the pages.
    pub fn describe(&self) -> String {
        format!("{} in {}", self.in_use().words(), self.dir.display())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores a secret atomically, encrypted as the store writes, readable by its owner only,
    /// and removes any other form of it. The folder must exist.
    pub fn write(&self, name: &str, value: &Secret) -> std::io::Result<()> {
        let p = self.writes();
        let bytes = seal(p, name, value)?;
        crate::install::fsops::write_atomic(
            &self.path_as(name, p),
            &bytes,
            crate::install::access_linux::SECRET_MODE,
        )?;
        for other in Protection::ALL.into_iter().filter(|o| *o != p) {
            remove_file(&self.path_as(name, other))?;
        }
        Ok(())
    }

    /// Every path `name` may be stored at (for a rollback to put back as it was).
    pub fn all_paths(&self, name: &str) -> Vec<PathBuf> {
        Protection::ALL
            .into_iter()
            .map(|p| self.path_as(name, p))
            .collect()
    }

    /// Removes a secret in every form; an absent one is not an error.
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        for p in self.all_paths(name) {
            remove_file(&p)?;
        }
        Ok(())
    }

    pub fn read(&self, name: &str) -> Result<Secret, StoreError> {
        let form = self.stored_as(name).unwrap_or(Protection::File);
        let path = self.path_as(name, form);
        let shown = path.display().to_string();
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::Missing {
                path: shown.clone(),
            },
            std::io::ErrorKind::PermissionDenied => StoreError::Denied {
                path: shown.clone(),
            },
            _ => StoreError::Io {
                path: shown.clone(),
                source: e,
            },
        };
        let meta = std::fs::metadata(&path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::Unsafe {
                    path: shown.clone(),
                    mode,
                });
            }
        }
        #[cfg(not(unix))]
        let _ = meta; // Windows: the folder's ACL is what keeps it private.
        let bytes = zeroize::Zeroizing::new(std::fs::read(&path).map_err(io)?);
        let clear = match form {
            Protection::File => Ok(bytes),
            Protection::SystemdCreds => systemd_creds::decrypt(name, &path),
            Protection::Dpapi => dpapi::unprotect(name, &bytes),
        }
        .map_err(|reason| match reason {
            Unseal::Denied => StoreError::Denied {
                path: shown.clone(),
            },
            Unseal::Failed(reason) => StoreError::Decrypt {
                path: shown.clone(),
                reason,
            },
        })?;
        let text = std::str::from_utf8(&clear).map_err(|_| StoreError::Decrypt {
            path: shown.clone(),
            reason: "the stored secret is not text".into(),
        })?;
        Ok(Secret::new(text.trim_end_matches(['\r', '\n'])))
    }
}

/// Why a stored secret could not be turned back into clear text.
#[derive(Debug)]
enum Unseal {
    /// Only an administrator (root) can decrypt it.
    Denied,
    Failed(String),
}

fn remove_file(p: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The bytes to store for `value` in form `p`.
fn seal(p: Protection, name: &str, value: &Secret) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    let clear = value.expose().as_bytes();
    match p {
        Protection::File => Ok(zeroize::Zeroizing::new(clear.to_vec())),
        Protection::SystemdCreds => systemd_creds::encrypt(name, clear),
        Protection::Dpapi => dpapi::protect(name, clear),
    }
}

/// Runs `program args` with `input` on stdin, returns its stdout, within `limit`. Secrets travel
/// through the pipes only, never the command line.
fn filter(
    program: &str,
    args: &[&str],
    input: &[u8],
    limit: Duration,
) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let mut child = Command::new(crate::install::service::system_tool(program))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run {program}: {e}"))?;
    let mut stdin = child.stdin.take();
    let input = zeroize::Zeroizing::new(input.to_vec());
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&input);
        }
        // Dropped here: the program sees the end of its input.
    });
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut out = zeroize::Zeroizing::new(Vec::new());
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut out);
        }
        out
    });
    let mut stderr = child.stderr.take();
    let errs = std::thread::spawn(move || {
        let mut out = String::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_string(&mut out);
        }
        out
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} did not finish within {} s",
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("{program}: {e}")),
        }
    };
    let _ = writer.join();
    let out = reader.join().unwrap_or_default();
    let err = errs.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        // systemd-creds names the file and the reason; it never echoes the secret.
        let why = err
            .lines()
            .filter(|l| !l.contains("not located on encrypted media"))
            .collect::<Vec<_>>()
            .join(" ");
        Err(format!("{program} failed ({status}): {}", why.trim()))
    }
}

/// `systemd-creds` (systemd 250 and later).
mod systemd_creds {
    use super::{Duration, OnceLock, Unseal, filter};
    use std::path::Path;

    const LIMIT: Duration = Duration::from_secs(20);

    /// Whether this machine has a TPM2 systemd can use (`systemd-creds has-tpm2`).
    fn tpm2() -> bool {
        static TPM2: OnceLock<bool> = OnceLock::new();
        *TPM2.get_or_init(|| {
            std::process::Command::new(crate::install::service::system_tool("systemd-creds"))
                .arg("has-tpm2")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    fn key_arg() -> &'static str {
        if tpm2() {
            "--with-key=host+tpm2"
        } else {
            "--with-key=host"
        }
    }

    pub fn key_words() -> &'static str {
        if tpm2() {
            "host key and TPM2"
        } else {
            "host key; no TPM2 here"
        }
    }

    /// systemd 250 or later (LoadCredentialEncrypted=) and a trial encryption that works.
    pub fn usable() -> bool {
        let version =
            std::process::Command::new(crate::install::service::system_tool("systemd-creds"))
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u32>().ok())
                });
        if version.is_none_or(|v| v < 250) {
            return false;
        }
        encrypt("ad-sync-probe", b"probe").is_ok()
    }

    pub fn encrypt(name: &str, clear: &[u8]) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
        let name_arg = format!("--name={name}");
        filter(
            "systemd-creds",
            &["encrypt", key_arg(), &name_arg, "-", "-"],
            clear,
            LIMIT,
        )
        .map_err(std::io::Error::other)
    }

    pub fn decrypt(name: &str, path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, Unseal> {
        let name_arg = format!("--name={name}");
        let path_arg = path.display().to_string();
        filter(
            "systemd-creds",
            &["decrypt", &name_arg, &path_arg, "-"],
            b"",
            LIMIT,
        )
        .map_err(|e| {
            if e.contains("Permission denied") || e.contains("Operation not permitted") {
                Unseal::Denied
            } else {
                Unseal::Failed(e)
            }
        })
    }
}

/// Windows DPAPI, machine scope, the secret's name as entropy (a blob renamed to another
/// secret's file does not decrypt).
mod dpapi {
    use super::Unseal;

    #[cfg(windows)]
    fn blob(bytes: &[u8]) -> windows_sys::Win32::Security::Cryptography::CRYPT_INTEGER_BLOB {
        windows_sys::Win32::Security::Cryptography::CRYPT_INTEGER_BLOB {
            cbData: bytes.len() as u32,
            pbData: bytes.as_ptr() as *mut u8,
        }
    }

    /// Copies what DPAPI returned and frees its buffer.
    #[cfg(windows)]
    fn take(
        out: windows_sys::Win32::Security::Cryptography::CRYPT_INTEGER_BLOB,
    ) -> zeroize::Zeroizing<Vec<u8>> {
        // SAFETY: DPAPI returned `cbData` bytes at `pbData`, allocated with LocalAlloc.
        let copy = unsafe { std::slice::from_raw_parts(out.pbData, out.cbData as usize) }.to_vec();
        // SAFETY: the buffer is DPAPI's, freed once; it is wiped first when it held clear text.
        unsafe {
            std::ptr::write_bytes(out.pbData, 0, out.cbData as usize);
            windows_sys::Win32::Foundation::LocalFree(out.pbData as _);
        }
        zeroize::Zeroizing::new(copy)
    }

    #[cfg(windows)]
    pub fn protect(name: &str, clear: &[u8]) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
        use windows_sys::Win32::Security::Cryptography::{
            CRYPT_INTEGER_BLOB, CRYPTPROTECT_LOCAL_MACHINE, CRYPTPROTECT_UI_FORBIDDEN,
            CryptProtectData,
        };
        let entropy = format!("ad-sync:{name}");
        let input = blob(clear);
        let extra = blob(entropy.as_bytes());
        let mut out = CRYPT_INTEGER_BLOB {
            cbData: 0,
            pbData: std::ptr::null_mut(),
        };
        // SAFETY: every pointer is to a live blob of this frame; DPAPI allocates `out`.
        let ok = unsafe {
            CryptProtectData(
                &input,
                std::ptr::null(),
                &extra,
                std::ptr::null(),
                std::ptr::null(),
                CRYPTPROTECT_LOCAL_MACHINE | CRYPTPROTECT_UI_FORBIDDEN,
                &mut out,
            )
        };
        if ok == 0 {
            return Err(std::io::Error::other(format!(
                "DPAPI could not encrypt the secret: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(take(out))
    }

    #[cfg(windows)]
    pub fn unprotect(name: &str, sealed: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, Unseal> {
        use windows_sys::Win32::Security::Cryptography::{
            CRYPT_INTEGER_BLOB, CRYPTPROTECT_UI_FORBIDDEN, CryptUnprotectData,
        };
        let entropy = format!("ad-sync:{name}");
        let input = blob(sealed);
        let extra = blob(entropy.as_bytes());
        let mut out = CRYPT_INTEGER_BLOB {
            cbData: 0,
            pbData: std::ptr::null_mut(),
        };
        // SAFETY: as in protect.
        let ok = unsafe {
            CryptUnprotectData(
                &input,
                std::ptr::null_mut(),
                &extra,
                std::ptr::null(),
                std::ptr::null(),
                CRYPTPROTECT_UI_FORBIDDEN,
                &mut out,
            )
        };
        if ok == 0 {
            return Err(Unseal::Failed(format!(
                "DPAPI: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(take(out))
    }

    #[cfg(not(windows))]
    pub fn protect(_: &str, _: &[u8]) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
        Err(std::io::Error::other("DPAPI exists on Windows only"))
    }

    #[cfg(not(windows))]
    pub fn unprotect(_: &str, _: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, Unseal> {
        Err(Unseal::Failed(
            "a DPAPI secret can be read on the Windows machine that wrote it only".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_private_file_and_refuses_a_shared_one() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let store = FileStore::new(dir.path()).with_protection(Protection::File);
        assert!(matches!(
            store.read(SERVICE_ACCOUNT_PASSWORD),
            Err(StoreError::Missing { .. })
        ));
        let path = store.path(SERVICE_ACCOUNT_PASSWORD);
        std::fs::write(&path, "s3cret-value\n").unwrap_or_else(|e| panic!("write: {e}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
                .unwrap_or_else(|e| panic!("chmod: {e}"));
            let err = store
                .read(SERVICE_ACCOUNT_PASSWORD)
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains("chmod 600")),
                "{err:?}"
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|e| panic!("chmod: {e}"));
        }
        let secret = store
            .read(SERVICE_ACCOUNT_PASSWORD)
            .map_err(|e| e.to_string());
        assert_eq!(secret.as_ref().map(|s| s.expose()), Ok("s3cret-value"));
        assert_eq!(
            store.stored_as(SERVICE_ACCOUNT_PASSWORD),
            Some(Protection::File)
        );
    }

    /// systemd-creds: the file holds no clear text, reads back, is bound to its name (a blob
    /// copied to another secret's file does not decrypt), and replaces a clear copy.
    #[cfg(unix)]
    #[test]
    fn systemd_creds_round_trip_bound_to_the_name() {
        if !Path::new("/usr/bin/systemd-creds").exists() {
            // dev/setup-machine installs systemd, so CI always runs this; a bare machine says so.
            eprintln!("SKIPPED: no systemd-creds on this machine");
            return;
        }
        assert!(
            systemd_creds::usable(),
            "systemd-creds is here but a trial encryption failed"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let clear = FileStore::new(dir.path()).with_protection(Protection::File);
        clear
            .write(AGENT_CREDENTIAL, &Secret::new("old-clear-value"))
            .unwrap_or_else(|e| panic!("{e}"));
        let store = FileStore::new(dir.path()).with_protection(Protection::SystemdCreds);
        let value = "cred-9f8e7d6c5b4a-secret";
        store
            .write(AGENT_CREDENTIAL, &Secret::new(value))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !clear.path(AGENT_CREDENTIAL).exists(),
            "the clear copy is removed"
        );
        let path = store.path(AGENT_CREDENTIAL);
        assert!(path.to_string_lossy().ends_with("agent-credential.cred"));
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            !on_disk.windows(value.len()).any(|w| w == value.as_bytes()),
            "no clear text on disk"
        );
        assert_eq!(
            store
                .read(AGENT_CREDENTIAL)
                .map(|s| s.expose().to_string())
                .ok(),
            Some(value.to_string())
        );
        assert_eq!(store.in_use(), Protection::SystemdCreds);
        assert!(
            store.describe().contains("systemd-creds"),
            "{}",
            store.describe()
        );
        // The blob under another secret's name: systemd-creds refuses it (the name is sealed in).
        std::fs::copy(&path, store.path(AGENT_PRIVATE_KEY)).unwrap_or_else(|e| panic!("{e}"));
        let err = store.read(AGENT_PRIVATE_KEY).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("cannot be decrypted") && !e.contains(value)),
            "{err:?}"
        );
        store
            .remove(AGENT_CREDENTIAL)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!store.has(AGENT_CREDENTIAL));
    }
}
