//! Which AD objects go to the cloud when AD is a source: the scope an administrator picks
//! (containers, security groups with nested membership, an optional LDAP filter) and the rules
//! no scope can override. Pure: the DC answers the questions only it can (is the object a
//! member, however nested, of a scope group: `LDAP_MATCHING_RULE_IN_CHAIN`; does it match the
//! filter), the adapter puts the answers in a [`Candidate`], and [`decide`] says what to do, so
//! the wizard's count, the preview and the run decide alike.
//!
//! Never exported, whatever the scope: computer and trust accounts, the agent's own service
//! account, `krbtgt`, built-in accounts and groups (RID below 1000, or critical system objects).
//! Protected and privileged accounts (adminCount=1, members of a privileged group, accounts
//! with delegation or other power bits: `directory::object`'s reasons) only when the
//! administrator names them one by one (`Verdict::Named`, which Review lists).

use crate::dn::Dn;

/// What an administrator chose.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Objects strictly inside any of these (at least one).
    pub containers: Vec<Dn>,
    /// When not empty, only members of one of these security groups, directly or nested.
    pub groups: Vec<Dn>,
    /// When set, only objects the DC says match it.
    pub filter: Option<String>,
    /// Protected or privileged accounts exported all the same: sAMAccountNames, one by one.
    pub named: Vec<String>,
    /// The agent's own service account, by objectGUID: never exported.
    pub service_account: Option<Vec<u8>>,
    /// The agent's sync group (where the cloud's users are put in AD): never exported.
    pub sync_group: Option<Dn>,
}

impl Scope {
    /// Whether `dn` is strictly inside one of the scope's containers.
    pub fn holds(&self, dn: Option<&Dn>) -> bool {
        dn.is_some_and(|dn| {
            self.containers
                .iter()
                .any(|root| dn.ends_with(root) && !dn.same_as(root))
        })
    }

    /// `Err` names the setting when the scope cannot select anything sensibly.
    pub fn check(&self) -> Result<(), String> {
        if self.containers.is_empty() {
            return Err(
                "the scope has no container: name at least one to export from (--container DN; the domain's root exports the whole domain)"
                    .into(),
            );
        }
        if let Some(f) = &self.filter {
            check_filter(f).map_err(|why| format!("the scope's filter {why}"))?;
        }
        Ok(())
    }
}

/// The LDAP clause "a member of any of `groups`, however nested": `memberOf` with
/// `LDAP_MATCHING_RULE_IN_CHAIN` (`1.2.840.113556.1.4.1941`), which the DC evaluates through
/// every level of nesting on its own index; each DN escaped as a filter value (RFC 4515).
/// Empty when there are no groups. The agent's export and the `source.scope` count both ask
/// the DC with it.
pub fn in_chain_clause(groups: &[Dn]) -> String {
    if groups.is_empty() {
        return String::new();
    }
    let any: String = groups
        .iter()
        .map(|g| {
            format!(
                "(memberOf:1.2.840.113556.1.4.1941:={})",
                ldap3::ldap_escape(g.to_comma_form())
            )
        })
        .collect();
    format!("(|{any})")
}

/// Whether `filter` reads as one LDAP filter: in parentheses, balanced, and within RFC 4515's
/// grammar as far as ldap3 parses it (the DC, asked by the check, has the last word). `Err`
/// says what is wrong, after the filter itself.
pub fn check_filter(filter: &str) -> Result<(), String> {
    let t = filter.trim();
    // Balanced, and closed only at its end (one expression, not two side by side). An
    // escaped parenthesis in a value is written \28 or \29 (RFC 4515), never bare.
    let mut depth = 0i32;
    let mut balanced = true;
    let last = t.chars().count().saturating_sub(1);
    for (i, c) in t.chars().enumerate() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 || (depth == 0 && i != last) {
                    balanced = false;
                }
            }
            _ => {}
        }
    }
    if !(t.starts_with('(') && t.ends_with(')') && balanced && depth == 0) {
        return Err(format!(
            "`{filter}` is not an LDAP filter: write it in balanced parentheses, like (department=Sales) or (&(department=Sales)(l=Oslo))"
        ));
    }
    Ok(())
}

/// One object as the adapter read it, with the DC's answers about it.
#[derive(Debug, Clone, Default)]
pub struct Candidate<'a> {
    pub guid: &'a [u8],
    pub dn: Option<&'a Dn>,
    pub sam: &'a str,
    /// objectClass includes computer (or the name ends in `$`: a trust account).
    pub computer: bool,
    /// The relative identifier of its objectSid (contacts have none).
    pub rid: Option<u32>,
    /// isCriticalSystemObject is TRUE.
    pub critical: bool,
    /// Why it is protected or privileged (`directory::object::Obj::protected`).
    pub protected: Option<&'a str>,
    /// Member of a scope group, however nested (`None`: the scope has no groups).
    pub in_groups: Option<bool>,
    /// Matches the scope's filter (`None`: the scope has no filter).
    pub matches_filter: Option<bool>,
}

/// What to do with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Export,
    /// A protected or privileged account exported because the administrator named it.
    Named(String),
    /// Out of the scope the administrator chose (an object that was exported before and is
    /// now out is suspended in the cloud, as a deletion is).
    Out(String),
    /// Never exported, whatever the scope.
    Never(String),
}

const KRBTGT_RID: u32 = 502;

/// What to do with `c` under `scope`.
pub fn decide(scope: &Scope, c: &Candidate) -> Verdict {
    if c.computer || c.sam.ends_with('$') {
        return Verdict::Never("a computer or trust account".into());
    }
    if scope
        .service_account
        .as_deref()
        .is_some_and(|g| g == c.guid)
    {
        return Verdict::Never("the agent's own service account".into());
    }
    if let (Some(g), Some(dn)) = (&scope.sync_group, c.dn)
        && dn.same_as(g)
    {
        return Verdict::Never(
            "the agent's sync group, which holds the cloud's users in AD".into(),
        );
    }
    if c.rid == Some(KRBTGT_RID) || c.sam.eq_ignore_ascii_case("krbtgt") {
        return Verdict::Never("krbtgt, the domain's Kerberos key account".into());
    }
    if c.rid.is_some_and(|r| r < 1000) || c.critical {
        return Verdict::Never("a built-in account or group".into());
    }
    if !scope.holds(c.dn) {
        return Verdict::Out("not in a scope container".into());
    }
    if c.in_groups == Some(false) {
        return Verdict::Out("not a member of a scope group".into());
    }
    if c.matches_filter == Some(false) {
        return Verdict::Out("the scope's filter excludes it".into());
    }
    match c.protected {
        Some(why) if scope.named.iter().any(|n| n.eq_ignore_ascii_case(c.sam)) => {
            Verdict::Named(format!("named in the scope although {why}"))
        }
        Some(why) => Verdict::Never(format!(
            "{why}; name it in the scope one by one to export it"
        )),
        None => Verdict::Export,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(t: &str) -> Dn {
        Dn::parse(t)
            .map(|p| p.dn)
            .unwrap_or_else(|e| panic!("{t}: {e:?}"))
    }

    /// Objects as a domain holds them (recorded shapes: RIDs, flags and reasons as
    /// `directory::object` reads them from Samba and Windows).
    #[test]
    fn the_scope_and_the_rules_no_scope_overrides() {
        let staff = dn("OU=Staff,DC=example,DC=com");
        let sales = dn("OU=Sales,OU=Staff,DC=example,DC=com");
        let users = dn("CN=Users,DC=example,DC=com");
        let scope = Scope {
            containers: vec![staff.clone()],
            groups: vec![],
            filter: None,
            named: vec!["ann-admin".into(), "sync-staff".into()],
            service_account: Some(vec![9; 16]),
            sync_group: Some(dn("CN=Sync Staff,OU=Staff,DC=example,DC=com")),
        };
        let ann = dn("CN=Ann,OU=Sales,OU=Staff,DC=example,DC=com");
        let svc = dn("CN=svc-sync,OU=Staff,DC=example,DC=com");
        let outside = dn("CN=Bob,CN=Users,DC=example,DC=com");
        let sync = dn("cn=sync staff,ou=staff,dc=example,dc=com");
        let base = |d: &'static Dn| Candidate {
            guid: &[1; 16],
            dn: Some(d),
            sam: "ann",
            rid: Some(1105),
            ..Candidate::default()
        };
        // Leaked for the table's 'static rows (a test's few bytes).
        let leak = |d: Dn| -> &'static Dn { Box::leak(Box::new(d)) };
        let (ann, svc, outside, sync) = (leak(ann), leak(svc), leak(outside), leak(sync));
        let cases: Vec<(&str, Candidate, Verdict)> = vec![
            ("an ordinary user inside", base(ann), Verdict::Export),
            (
                "the sync group, even named (its DN as AD spells it in another case)",
                Candidate {
                    sam: "sync-staff",
                    rid: Some(1200),
                    ..base(sync)
                },
                Verdict::Never(
                    "the agent's sync group, which holds the cloud's users in AD".into(),
                ),
            ),
            (
                "outside every container",
                base(outside),
                Verdict::Out("not in a scope container".into()),
            ),
            (
                "a computer",
                Candidate {
                    computer: true,
                    ..base(ann)
                },
                Verdict::Never("a computer or trust account".into()),
            ),
            (
                "a trust account's name",
                Candidate {
                    sam: "CHILD$",
                    ..base(ann)
                },
                Verdict::Never("a computer or trust account".into()),
            ),
            (
                "the service account",
                Candidate {
                    guid: &[9; 16],
                    sam: "svc-sync",
                    ..base(svc)
                },
                Verdict::Never("the agent's own service account".into()),
            ),
            (
                "krbtgt",
                Candidate {
                    sam: "krbtgt",
                    rid: Some(502),
                    ..base(ann)
                },
                Verdict::Never("krbtgt, the domain's Kerberos key account".into()),
            ),
            (
                "a built-in (Administrator, RID 500)",
                Candidate {
                    sam: "Administrator",
                    rid: Some(500),
                    ..base(ann)
                },
                Verdict::Never("a built-in account or group".into()),
            ),
            (
                "a critical system object",
                Candidate {
                    critical: true,
                    ..base(ann)
                },
                Verdict::Never("a built-in account or group".into()),
            ),
            (
                "a protected account not named",
                Candidate {
                    sam: "bob-admin",
                    protected: Some("it is protected (adminCount=1)"),
                    ..base(ann)
                },
                Verdict::Never(
                    "it is protected (adminCount=1); name it in the scope one by one to export it"
                        .into(),
                ),
            ),
            (
                "a protected account named (any case)",
                Candidate {
                    sam: "Ann-Admin",
                    protected: Some("it is a member of the privileged group Domain Admins"),
                    ..base(ann)
                },
                Verdict::Named(
                    "named in the scope although it is a member of the privileged group Domain Admins"
                        .into(),
                ),
            ),
            (
                "naming never exports the service account",
                Candidate {
                    guid: &[9; 16],
                    sam: "ann-admin",
                    ..base(svc)
                },
                Verdict::Never("the agent's own service account".into()),
            ),
            (
                "not a member of a scope group (nesting resolved by the DC)",
                Candidate {
                    in_groups: Some(false),
                    ..base(ann)
                },
                Verdict::Out("not a member of a scope group".into()),
            ),
            (
                "a nested member",
                Candidate {
                    in_groups: Some(true),
                    ..base(ann)
                },
                Verdict::Export,
            ),
            (
                "the filter excludes it",
                Candidate {
                    matches_filter: Some(false),
                    ..base(ann)
                },
                Verdict::Out("the scope's filter excludes it".into()),
            ),
            (
                "no DN read",
                Candidate {
                    dn: None,
                    ..base(ann)
                },
                Verdict::Out("not in a scope container".into()),
            ),
        ];
        for (what, c, want) in cases {
            assert_eq!(decide(&scope, &c), want, "{what}");
        }
        // The container itself is not inside itself; a second container widens the scope.
        let staff_ou = leak(staff.clone());
        assert!(matches!(decide(&scope, &base(staff_ou)), Verdict::Out(_)));
        let wider = Scope {
            containers: vec![sales, users],
            ..scope.clone()
        };
        assert_eq!(decide(&wider, &base(outside)), Verdict::Export);
    }

    #[test]
    fn a_scope_that_cannot_select_is_refused_by_name() {
        let e = Scope::default().check().err().unwrap_or_default();
        assert!(e.contains("the scope has no container"), "{e}");
        let s = Scope {
            containers: vec![dn("DC=example,DC=com")],
            filter: Some("department=Sales".into()),
            ..Scope::default()
        };
        let e = s.check().err().unwrap_or_default();
        assert!(e.contains("is not an LDAP filter"), "{e}");
        let ok = Scope {
            filter: Some("(department=Sales)".into()),
            ..s
        };
        assert!(ok.check().is_ok());
    }

    #[test]
    fn a_filter_is_one_balanced_parenthesised_expression() {
        for (f, ok) in [
            ("(department=Sales)", true),
            ("  (&(department=Sales)(l=Oslo))  ", true),
            ("(|(title=Eng*)(!(l=Oslo)))", true),
            ("department=Sales", false),
            ("(department=Sales", false),
            ("(department=Sales))", false),
            ("(a=1))((b=2)", false),
            ("(a=1)(b=2)", false),
            ("(cn=Sales \\28EU\\29)", true),
            ("", false),
        ] {
            assert_eq!(check_filter(f).is_ok(), ok, "{f:?}");
        }
    }
}
