//! Bind names and bind failures. AD says why a bind failed only in a hex sub-code inside the
//! diagnostic text (`... AcceptSecurityContext error, data 52e, v1db1`); this turns it into
//! words and a fix.

/// How the service account was written, and what we send as the bind name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountName {
    /// `EXAMPLE\svc-sync`
    DownLevel { domain: String, user: String },
    /// `svc-sync@example.com`
    Upn { user: String, suffix: String },
    /// `svc-sync`: sent as `svc-sync@<dns domain>`, the implicit UPN every AD account has,
    /// because AD refuses a simple bind with a bare name.
    Bare { user: String },
}

impl AccountName {
    pub fn parse(input: &str) -> Result<AccountName, String> {
        let input = input.trim();
        if input.is_empty() {
            return Err("is empty; enter it as DOMAIN\\user, user@example.com or user".into());
        }
        if let Some((domain, user)) = input.split_once('\\') {
            if domain.is_empty() || user.is_empty() || user.contains('\\') {
                return Err(format!(
                    "`{input}` is not DOMAIN\\user; write it like EXAMPLE\\svc-sync"
                ));
            }
            return Ok(AccountName::DownLevel {
                domain: domain.into(),
                user: user.into(),
            });
        }
        if let Some((user, suffix)) = input.rsplit_once('@') {
            if user.is_empty() || suffix.is_empty() || !suffix.contains('.') {
                return Err(format!(
                    "`{input}` is not a user principal name; write it like svc-sync@example.com"
                ));
            }
            return Ok(AccountName::Upn {
                user: user.into(),
                suffix: suffix.into(),
            });
        }
        if input.contains([
            '/', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '"',
        ]) {
            return Err(format!(
                "`{input}` contains a character AD does not allow in a logon name"
            ));
        }
        Ok(AccountName::Bare { user: input.into() })
    }

    /// The logon name without a domain (the sAMAccountName for down-level and bare names).
    pub fn user(&self) -> &str {
        match self {
            AccountName::DownLevel { user, .. }
            | AccountName::Upn { user, .. }
            | AccountName::Bare { user } => user,
        }
    }

    /// What we put in the simple bind request.
    pub fn bind_name(&self, dns_domain: &str) -> String {
        match self {
            AccountName::DownLevel { domain, user } => format!("{domain}\\{user}"),
            AccountName::Upn { user, suffix } => format!("{user}@{suffix}"),
            AccountName::Bare { user } => format!("{user}@{dns_domain}"),
        }
    }

    /// An LDAP filter that finds the account's entry after the bind (AD has no WhoAmI we can
    /// count on: Samba lacks it).
    pub fn search_filter(&self) -> String {
        let esc = ldap3::ldap_escape;
        match self {
            AccountName::Upn { user, suffix } => format!(
                "(&(objectCategory=person)(objectClass=user)(|(userPrincipalName={}@{})(sAMAccountName={})))",
                esc(user.as_str()),
                esc(suffix.as_str()),
                esc(user.as_str())
            ),
            _ => format!(
                "(&(objectCategory=person)(objectClass=user)(sAMAccountName={}))",
                esc(self.user())
            ),
        }
    }
}

/// Why AD refused a bind, decoded from its sub-code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindFailure {
    WrongPassword,
    NoSuchUser,
    LogonHoursRestriction,
    WorkstationRestriction,
    PasswordExpired,
    Disabled,
    AccountExpired,
    MustChangePassword,
    LockedOut,
    /// Result 8: the DC insists on an encrypted or signed connection for simple binds.
    EncryptionRequired,
    /// Anything else; the server's own text is kept by the caller.
    Other,
}

impl BindFailure {
    /// Decodes the LDAP result code and AD's diagnostic text.
    pub fn from_result(rc: u32, text: &str) -> BindFailure {
        if rc == 8 {
            return BindFailure::EncryptionRequired;
        }
        let code = text
            .split("data ")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .map(|c| c.trim().to_ascii_lowercase());
        match code.as_deref() {
            Some("52e") => BindFailure::WrongPassword,
            Some("525") => BindFailure::NoSuchUser,
            Some("530") => BindFailure::LogonHoursRestriction,
            Some("531") => BindFailure::WorkstationRestriction,
            Some("532") => BindFailure::PasswordExpired,
            Some("533") => BindFailure::Disabled,
            Some("701") => BindFailure::AccountExpired,
            Some("773") => BindFailure::MustChangePassword,
            Some("775") => BindFailure::LockedOut,
            _ if rc == 49 => BindFailure::WrongPassword,
            _ => BindFailure::Other,
        }
    }

    /// One clause saying what is wrong.
    pub fn words(self) -> &'static str {
        match self {
            BindFailure::WrongPassword => {
                "the user name or password is wrong (AD sub-code 52e; AD also gives this when the user does not exist)"
            }
            BindFailure::NoSuchUser => "the account does not exist (AD sub-code 525)",
            BindFailure::LogonHoursRestriction => {
                "the account may not log on at this time (logon hours, AD sub-code 530)"
            }
            BindFailure::WorkstationRestriction => {
                "the account may not log on from this computer (AD sub-code 531)"
            }
            BindFailure::PasswordExpired => "the account's password has expired (AD sub-code 532)",
            BindFailure::Disabled => "the account is disabled (AD sub-code 533)",
            BindFailure::AccountExpired => "the account has expired (AD sub-code 701)",
            BindFailure::MustChangePassword => {
                "the account must change its password at next logon (AD sub-code 773)"
            }
            BindFailure::LockedOut => "the account is locked out (AD sub-code 775)",
            BindFailure::EncryptionRequired => {
                "the domain controller refuses a password bind over an unencrypted connection"
            }
            BindFailure::Other => "the domain controller refused the bind",
        }
    }

    pub fn fix(self) -> &'static str {
        match self {
            BindFailure::WrongPassword => {
                "Check the user name and password of the service account (type the password again; check Caps Lock)."
            }
            BindFailure::NoSuchUser => {
                "Create the service account in Active Directory Users and Computers, or correct its name."
            }
            BindFailure::LogonHoursRestriction => {
                "In the account's Properties > Account > Logon Hours, permit logon at all times."
            }
            BindFailure::WorkstationRestriction => {
                "In the account's Properties > Account > Log On To, allow all computers (or add this one)."
            }
            BindFailure::PasswordExpired | BindFailure::MustChangePassword => {
                "Set a new password for the service account, clear \"User must change password at next logon\" and set \"Password never expires\"."
            }
            BindFailure::Disabled => {
                "Enable the service account in Active Directory Users and Computers."
            }
            BindFailure::AccountExpired => {
                "In the account's Properties > Account, set \"Account expires\" to Never."
            }
            BindFailure::LockedOut => {
                "Unlock the account (Properties > Account > Unlock account) and find what is using a wrong password."
            }
            BindFailure::EncryptionRequired => {
                "Use LDAPS or StartTLS: give the DC a certificate (AD CS \"Domain Controller\" template) and trust its CA here."
            }
            BindFailure::Other => "Read the server's message below and correct the account.",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_ad_sub_code() {
        let text = |c: &str| {
            format!(
                "80090308: LdapErr: DSID-0C09030B, comment: AcceptSecurityContext error, data {c}, v1db1"
            )
        };
        let cases = [
            ("52e", BindFailure::WrongPassword),
            ("525", BindFailure::NoSuchUser),
            ("530", BindFailure::LogonHoursRestriction),
            ("531", BindFailure::WorkstationRestriction),
            ("532", BindFailure::PasswordExpired),
            ("533", BindFailure::Disabled),
            ("701", BindFailure::AccountExpired),
            ("773", BindFailure::MustChangePassword),
            ("775", BindFailure::LockedOut),
        ];
        for (code, want) in cases {
            assert_eq!(BindFailure::from_result(49, &text(code)), want, "{code}");
        }
        assert_eq!(
            BindFailure::from_result(8, "BindSimple: Transport encryption required."),
            BindFailure::EncryptionRequired
        );
        assert_eq!(
            BindFailure::from_result(53, "unwilling"),
            BindFailure::Other
        );
    }

    #[test]
    fn parses_the_three_account_forms() {
        assert_eq!(
            AccountName::parse("EXAMPLE\\svc").map(|a| a.bind_name("example.com")),
            Ok("EXAMPLE\\svc".to_string())
        );
        assert_eq!(
            AccountName::parse("svc@corp.example.com").map(|a| a.bind_name("example.com")),
            Ok("svc@corp.example.com".to_string())
        );
        assert_eq!(
            AccountName::parse("svc").map(|a| a.bind_name("example.com")),
            Ok("svc@example.com".to_string())
        );
        assert!(AccountName::parse("\\svc").is_err());
        assert!(AccountName::parse("svc@").is_err());
        assert!(AccountName::parse("").is_err());
        assert!(AccountName::parse("a*b").is_err());
    }
}
