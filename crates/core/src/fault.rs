//! Test hooks for the kill-at-a-point tests: when the variable `var` is `stop-after:<name>` (or
//! `stop-before:<name>`), the process stops itself (SIGSTOP) at that point, so a test can kill
//! it there, or change the world (stop the cloud) and let it go on. Unix only; a no-op
//! elsewhere and whenever the variable is not set to that point. Compiled in only with the
//! `fault-hooks` feature, which the tests' builds turn on: a release build has no hook, so
//! no environment variable can stop a shipped agent or installer.

/// Stops this process when `var` names `point` (`stop-after:<point>` or `stop-before:<point>`).
pub fn point(var: &str, point: &str) {
    #[cfg(all(unix, feature = "fault-hooks"))]
    if std::env::var(var).is_ok_and(|v| {
        v.strip_prefix("stop-after:")
            .or_else(|| v.strip_prefix("stop-before:"))
            == Some(point)
    }) {
        // SAFETY: raise() only sends a signal to this process.
        unsafe {
            libc::raise(libc::SIGSTOP);
        }
    }
    #[cfg(not(all(unix, feature = "fault-hooks")))]
    let _ = (var, point); // SIGSTOP is Unix only; the hook is for the tests' builds.
}
