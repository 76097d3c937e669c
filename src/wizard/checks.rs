//! The wizard's own check, beside the preflight list: on an upgrade, the service account is the
//! installed one (`account.unchanged`). A new id, never renamed, like the preflight ones.

use crate::directory::bind::AccountName;
use crate::preflight::CheckResult;

pub const ACCOUNT_UNCHANGED: &str = "account.unchanged";

/// On an upgrade the agent keeps its service account: `typed` must name `installed`.
pub fn account_unchanged(installed: &str, typed: &str) -> CheckResult {
    let user = |s: &str| {
        AccountName::parse(s)
            .ok()
            .map(|a| a.user().to_ascii_lowercase())
    };
    match (user(installed), user(typed)) {
        (Some(a), Some(b)) if a == b => CheckResult::pass(
            ACCOUNT_UNCHANGED,
            format!("`{typed}` is the installed service account"),
            "",
        ),
        _ => CheckResult::fail(
            ACCOUNT_UNCHANGED,
            format!("Service account `{typed}` is not the installed one (`{installed}`)"),
            "",
            format!(
                "An upgrade keeps the service account: type `{installed}`. To change it, uninstall (ad-sync-setup uninstall --keep-config) and set up again."
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Status;

    #[test]
    fn the_same_account_in_another_spelling_is_unchanged() {
        assert_eq!(
            account_unchanged(r"EXAMPLE\svc-sync", "svc-sync@example.com").status,
            Status::Pass
        );
        assert_eq!(
            account_unchanged(r"EXAMPLE\svc-sync", r"EXAMPLE\other").status,
            Status::Fail
        );
    }
}
