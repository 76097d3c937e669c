//! `ad-sync-setup.com`, the console twin of the Windows `ad-sync-setup.exe`.
//!
//! `ad-sync-setup.exe` is a GUI program so that double-clicking it opens the wizard with no
//! console window behind it. A shell does not wait for a GUI program, though, and does not
//! show its exit code. Installed beside it as `ad-sync-setup.com` (cmd and PowerShell try `.com`
//! before `.exe`), this console program runs the `.exe` next to it with the same arguments and
//! the same console, waits, and exits with its code, so `ad-sync-setup install --answers F`
//! typed at a prompt behaves as a console program should.

fn main() {
    if !cfg!(windows) {
        eprintln!(
            "ad-sync-setup-console is the Windows console twin of ad-sync-setup.exe; run ad-sync-setup here."
        );
        std::process::exit(2);
    }
    let exe = match std::env::current_exe() {
        Ok(me) => me.with_file_name("ad-sync-setup.exe"),
        Err(e) => {
            eprintln!("ad-sync-setup: cannot find its own folder: {e}");
            std::process::exit(2);
        }
    };
    // Standard input, output and error are the console's (or whatever this was given), and the
    // .exe writes to them directly.
    match std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .status()
    {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(e) => {
            eprintln!(
                "ad-sync-setup: could not run {}: {e}. Reinstall ad-sync (the MSI puts both programs in the same folder).",
                exe.display()
            );
            std::process::exit(2);
        }
    }
}
