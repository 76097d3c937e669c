//! Test hooks for the kill-at-a-point tests: when the variable `var` is `stop-after:<name>` (or
//! `stop-before:<name>`), the process stops itself (SIGSTOP) at that point, so a test can kill
//! it there, or change the world (stop the cloud) and let it go on. Unix only; a no-op
//! elsewhere and whenever the variable is not set to that point.

/// Stops this process when `var` names `point` (`stop-after:<point>` or `stop-before:<point>`).
pub fn point(var: &str, point: &str) {
    #[cfg(unix)]
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
    #[cfg(not(unix))]
    let _ = (var, point); // SIGSTOP is Unix only.
}
