//! The MSI's custom action (`dist/msi/ad-sync.wxs`), a DLL in the MSI's Binary table.
//!
//! An .exe custom action cannot write into Windows Installer's log, so `msiexec /l*v` would
//! only record that the product's install "returned 1". This DLL runs the same command
//! (`ad-sync-setup.exe install --answers F`, `uninstall`, `restart`) and hands every line it
//! prints to Windows Installer as an informational message, so the checks that failed, the
//! steps and the fix are in the MSI log; when the install fails it also raises one error
//! message (a dialog in an interactive install, a log entry in a silent one) with the reason.
//! The exit code decides the action's result: anything but 0 fails it, and Windows Installer
//! rolls the programs back (the uninstall's action is marked to continue on failure).
//!
//! `CustomActionData` carries the command: the program's full path, then its arguments,
//! separated by `|` (no Windows path holds one). Nothing in it is secret: the answers file is
//! a path, and the product never prints a secret.

/// Splits `CustomActionData` into the program and its arguments.
pub fn command_of(data: &str) -> Option<(String, Vec<String>)> {
    let mut parts = data.split('|').map(str::to_string);
    let program = parts.next().filter(|p| !p.trim().is_empty())?;
    Some((program, parts.filter(|a| !a.is_empty()).collect()))
}

/// The error message an install failure raises: the lines that say why (errors, failed checks
/// and fixes), or the last lines when none is marked.
pub fn failure_summary(lines: &[String]) -> String {
    let marked: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("FAIL")
                || t.starts_with("fix:")
                || t.starts_with("Install failed")
                || t.starts_with("Install not finished")
                || t.starts_with("Nothing was installed")
                || t.contains(": FAILED.")
                || t.starts_with("answers file")
        })
        .collect();
    let chosen: Vec<&str> = if marked.is_empty() {
        lines
            .iter()
            .rev()
            .take(5)
            .rev()
            .map(String::as_str)
            .collect()
    } else {
        marked
    };
    format!(
        "ad-sync could not be installed; nothing of it was kept.\n{}\nThe whole report is in %ProgramData%\\ad-sync\\logs\\setup.log.",
        chosen.join("\n")
    )
}

#[cfg(windows)]
mod msi {
    use windows_sys::Win32::System::ApplicationInstallationAndServicing::{
        INSTALLMESSAGE, INSTALLMESSAGE_ERROR, INSTALLMESSAGE_INFO, MSIHANDLE, MsiCloseHandle,
        MsiCreateRecord, MsiGetPropertyW, MsiProcessMessage, MsiRecordSetStringW,
    };

    const ERROR_SUCCESS: u32 = 0;
    const ERROR_MORE_DATA: u32 = 234;
    const ERROR_INSTALL_FAILURE: u32 = 1603;
    const CREATE_NO_WINDOW: u32 = 0x0800_0000;

    fn wide(s: &str) -> Vec<u16> {
        s.encode_utf16().chain(std::iter::once(0)).collect()
    }

    fn property(h: MSIHANDLE, name: &str) -> String {
        let name = wide(name);
        let mut len: u32 = 0;
        let mut empty = [0u16; 1];
        // SAFETY: a one-element buffer with its size 0 asks for the length.
        let rc = unsafe { MsiGetPropertyW(h, name.as_ptr(), empty.as_mut_ptr(), &mut len) };
        if rc != ERROR_MORE_DATA && rc != ERROR_SUCCESS {
            return String::new();
        }
        let mut buf = vec![0u16; len as usize + 1];
        let mut size = buf.len() as u32;
        // SAFETY: the buffer holds `size` characters, the NUL included.
        let rc = unsafe { MsiGetPropertyW(h, name.as_ptr(), buf.as_mut_ptr(), &mut size) };
        if rc != ERROR_SUCCESS {
            return String::new();
        }
        String::from_utf16_lossy(&buf[..size as usize])
    }

    /// One message to Windows Installer: the text in field 1, and field 0 the template `[1]`
    /// (text in field 0 itself would be formatted: `[1/6]` would read as a field reference).
    fn say(h: MSIHANDLE, kind: INSTALLMESSAGE, text: &str) {
        // SAFETY: a record this function creates and closes.
        unsafe {
            let rec = MsiCreateRecord(1);
            if rec == 0 {
                return;
            }
            let template = wide("[1]");
            let body = wide(text);
            MsiRecordSetStringW(rec, 0, template.as_ptr());
            MsiRecordSetStringW(rec, 1, body.as_ptr());
            MsiProcessMessage(h, kind, rec);
            MsiCloseHandle(rec);
        }
    }

    /// Runs the command in `CustomActionData`; every line it prints goes to the MSI log.
    #[unsafe(no_mangle)]
    pub extern "system" fn RunProduct(h: MSIHANDLE) -> u32 {
        use std::io::BufRead as _;
        use std::os::windows::process::CommandExt as _;
        let data = property(h, "CustomActionData");
        let Some((program, args)) = super::command_of(&data) else {
            say(
                h,
                INSTALLMESSAGE_ERROR,
                "ad-sync: the custom action was given no command (CustomActionData is empty); the package is damaged: download it again.",
            );
            return ERROR_INSTALL_FAILURE;
        };
        let what = args.first().cloned().unwrap_or_default();
        say(
            h,
            INSTALLMESSAGE_INFO,
            &format!("ad-sync: running {program} {}", args.join(" ")),
        );
        let child = std::process::Command::new(&program)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .creation_flags(CREATE_NO_WINDOW)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                say(
                    h,
                    INSTALLMESSAGE_ERROR,
                    &format!("ad-sync: {program} could not be started: {e}"),
                );
                return ERROR_INSTALL_FAILURE;
            }
        };
        // Standard error on its own thread (both pipes must drain); its lines come after.
        let err = child.stderr.take();
        let err_lines = std::thread::spawn(move || {
            err.map(|e| {
                std::io::BufReader::new(e)
                    .lines()
                    .map_while(Result::ok)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
        });
        let mut lines = Vec::new();
        if let Some(out) = child.stdout.take() {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                say(h, INSTALLMESSAGE_INFO, &format!("ad-sync: {line}"));
                lines.push(line);
            }
        }
        for line in err_lines.join().unwrap_or_default() {
            say(h, INSTALLMESSAGE_INFO, &format!("ad-sync: {line}"));
            lines.push(line);
        }
        let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(-1);
        say(
            h,
            INSTALLMESSAGE_INFO,
            &format!("ad-sync: {what} exited with {code}"),
        );
        if code == 0 {
            return ERROR_SUCCESS;
        }
        if what == "install" {
            say(h, INSTALLMESSAGE_ERROR, &super::failure_summary(&lines));
        }
        ERROR_INSTALL_FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_the_program_then_its_arguments() {
        assert_eq!(
            command_of(
                r"C:\Program Files\ad-sync\ad-sync-setup.exe|install|--answers|C:\a b\x.toml"
            ),
            Some((
                r"C:\Program Files\ad-sync\ad-sync-setup.exe".to_string(),
                vec![
                    "install".into(),
                    "--answers".into(),
                    r"C:\a b\x.toml".into()
                ]
            ))
        );
        assert_eq!(command_of(""), None);
        assert_eq!(
            command_of("p.exe|restart|--if-installed|"),
            Some((
                "p.exe".into(),
                vec!["restart".into(), "--if-installed".into()]
            ))
        );
    }

    #[test]
    fn a_failure_is_summed_up_by_the_lines_that_say_why() {
        let lines: Vec<String> = [
            "PASS dc.reachable: 127.0.0.1:636",
            "FAIL connect_key.valid: the key was already used",
            "  fix: Issue a new connect key",
            "Nothing was installed: fix the failed checks above and run the install again.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let s = failure_summary(&lines);
        assert!(
            s.contains("connect_key.valid") && s.contains("fix: Issue") && !s.contains("PASS"),
            "{s}"
        );
        let s = failure_summary(&["a".into(), "b".into()]);
        assert!(s.contains("a\nb"), "{s}");
    }
}
