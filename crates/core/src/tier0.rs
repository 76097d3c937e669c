//! Tier 0: the objects whose control is control of the domain, read from what AD says they can
//! do as well as from the groups they are in. The agent never takes over, sets a password on,
//! enables, or changes the memberships of any of them, whatever the cloud says.
//!
//! Pure: `directory::tier0::record` reads the descriptors and groups into a `Recorded`, and
//! `Tier0::compute` decides from it. Privileged are:
//!
//! - every trustee holding a power (`sd::Power`: replication rights, GenericAll, GenericWrite,
//!   WriteDACL, WriteOwner, reset-password, write-member, ownership...) over the domain head,
//!   AdminSDHolder, the Domain Controllers OU, the Root User container, the sync group's
//!   container or a GPO linked to one of them;
//! - every group of the forest's privileged set (`PRIVILEGED_SIDS` by well-known SID,
//!   `PRIVILEGED_NAMES` for those made by a role, without a well-known RID);
//! - every member, at any depth (primary group included), of any of those;
//! - the agent's own service account;
//! - (in `object::object`, from the entry alone) accounts ending in `$`, trust and delegation
//!   bits, `msDS-AllowedToDelegateTo`, adminCount, critical and built-in objects.
//!
//! It fails closed: a descriptor or a group in a chain that cannot be read makes every object
//! privileged (`incomplete`), and a power held by Everyone, Authenticated Users or Domain
//! Users makes every account privileged (`everyone`), each with the reason and the fix.

use crate::directory::object::Obj;
use crate::directory::sd;
use std::collections::{HashMap, HashSet, VecDeque};

/// Well-known RIDs of privileged groups in the domain: Enterprise Read-only DCs (498), Domain
/// Admins, Cert Publishers, Domain Controllers, Schema Admins, Enterprise Admins, Group Policy
/// Creator Owners, Read-only DCs, Cloneable DCs (522), Protected Users (525), Key Admins,
/// Enterprise Key Admins, Denied RODC Password Replication Group (572).
pub const PRIVILEGED_DOMAIN_RIDS: &[u32] = &[
    498, 512, 516, 517, 518, 519, 520, 521, 522, 525, 526, 527, 572,
];
/// Built-in (`S-1-5-32-`) privileged groups: Administrators, Account, Server, Print and
/// Backup Operators, Replicator, Incoming Forest Trust Builders (557), Hyper-V Administrators
/// (578), Remote Management Users (580), Storage Replica Administrators (582).
pub const PRIVILEGED_BUILTIN_RIDS: &[u32] = &[544, 548, 549, 550, 551, 552, 557, 578, 580, 582];
/// Privileged groups made by a role, without a well-known RID: DNS (DnsAdmins run code on the
/// DCs; DnsUpdateProxy members leave records anyone may take over) and Exchange's groups,
/// which hold WriteDACL on the domain in most Exchange installs.
pub const PRIVILEGED_NAMES: &[&str] = &[
    "DnsAdmins",
    "DnsUpdateProxy",
    "Exchange Windows Permissions",
    "Exchange Trusted Subsystem",
    "Organization Management",
];

/// The privileged groups' SIDs for a domain: (SID, what it is).
pub fn privileged_sids(domain_sid: Option<&str>) -> Vec<String> {
    let builtin = PRIVILEGED_BUILTIN_RIDS
        .iter()
        .map(|r| format!("S-1-5-32-{r}"));
    let domain = domain_sid.into_iter().flat_map(|d| {
        PRIVILEGED_DOMAIN_RIDS
            .iter()
            .map(move |r| format!("{d}-{r}"))
    });
    builtin.chain(domain).collect()
}

/// The objects whose descriptors are read (by their role; the DN is in `Descriptor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    DomainHead,
    AdminSdHolder,
    DomainControllers,
    RootContainer,
    SyncGroupContainer,
    /// A group policy linked to one of the others.
    Gpo,
}

/// One descriptor as read: `Err` when it could not be (why).
#[derive(Debug, Clone)]
pub struct Descriptor {
    pub target: Target,
    pub dn: String,
    pub sd: Result<Vec<u8>, String>,
}

/// An account or group met on the way.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    pub guid: Vec<u8>,
    pub sid: Option<String>,
    pub dn: String,
    pub sam: String,
    pub is_group: bool,
}

/// Everything read for the decision.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub domain_sid: Option<String>,
    pub descriptors: Vec<Descriptor>,
    /// By objectGUID.
    pub principals: HashMap<Vec<u8>, Principal>,
    /// A group's direct members (its `member`, every range, and the accounts whose primary
    /// group it is), by objectGUID; `Err` when they could not be read completely.
    pub members: HashMap<Vec<u8>, Result<Vec<Vec<u8>>, String>>,
    /// The agent's own service account.
    pub service_account: Option<Vec<u8>>,
}

impl Recorded {
    /// The trustees (SIDs) holding power over the targets, with the first reason for each.
    pub fn trustees(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for d in &self.descriptors {
            let Ok(bytes) = &d.sd else { continue };
            let Ok(parsed) = sd::parse(bytes) else {
                continue;
            };
            for (sid, power) in sd::grants(&parsed) {
                if !out.iter().any(|(s, _)| *s == sid) {
                    out.push((sid, format!("{} {}", power.words(), d.dn)));
                }
            }
        }
        out
    }

    /// The privileged groups and the trustees holding power (`trustees`): what the closure
    /// starts from (objectGUID, why).
    pub fn seeds(&self, trustees: &[(String, String)]) -> Vec<(Vec<u8>, String)> {
        let well_known = privileged_sids(self.domain_sid.as_deref());
        let mut out = Vec::new();
        for p in self.principals.values() {
            let sid = p.sid.as_deref().unwrap_or_default();
            let why = if let Some((_, how)) = trustees.iter().find(|(s, _)| s == sid) {
                Some(format!("{} {how}", p.sam))
            } else if well_known.iter().any(|s| s == sid)
                || PRIVILEGED_NAMES
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(&p.sam))
            {
                Some(format!("{} is a privileged group", p.sam))
            } else {
                None
            };
            if let Some(w) = why {
                out.push((p.guid.clone(), w));
            }
        }
        out.sort();
        out
    }
}

/// The decision: which objects the agent must never give power to, and why.
#[derive(Debug, Clone, Default)]
pub struct Tier0 {
    why: HashMap<Vec<u8>, String>,
    /// Set when a power is held by a SID standing for every account.
    everyone: Option<String>,
    /// Set when something the decision needs could not be read: nothing is proven safe.
    incomplete: Option<String>,
}

impl Tier0 {
    /// Nothing known to be privileged (a dry planner's input; tests).
    pub fn none() -> Tier0 {
        Tier0::default()
    }

    /// These objects privileged for these reasons, nothing else (recorded decisions in the
    /// planner's table tests).
    pub fn of(reasons: impl IntoIterator<Item = (Vec<u8>, String)>) -> Tier0 {
        Tier0 {
            why: reasons.into_iter().collect(),
            ..Tier0::default()
        }
    }

    /// Every object refused for `why` (the read failed before it could decide anything).
    pub fn unknown(why: String) -> Tier0 {
        Tier0 {
            incomplete: Some(why),
            ..Tier0::default()
        }
    }

    pub fn compute(rec: &Recorded) -> Tier0 {
        let mut t = Tier0::default();
        let unreadable: Vec<String> = rec
            .descriptors
            .iter()
            .filter_map(|d| match &d.sd {
                Err(e) => Some(format!("the permissions of {} ({e})", d.dn)),
                Ok(b) => sd::parse(b)
                    .err()
                    .map(|e| format!("the permissions of {} (malformed: {e})", d.dn)),
            })
            .collect();
        let trustees = rec.trustees();
        if let Some((sid, how)) = trustees
            .iter()
            .find(|(s, _)| sd::is_everyone(s, rec.domain_sid.as_deref()))
        {
            t.everyone = Some(format!(
                "{sid}, which stands for every account, {how}: every account of the domain can take it over. Remove that permission"
            ));
        }
        if let Some(g) = &rec.service_account {
            t.why.insert(
                g.clone(),
                "it is the agent's own service account".to_string(),
            );
        }
        // Breadth first from the seeds: each member's reason names the group it is in.
        let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
        for (guid, why) in rec.seeds(&trustees) {
            if !t.why.contains_key(&guid) {
                t.why.insert(guid.clone(), why);
                queue.push_back(guid);
            }
        }
        let mut chain_gaps = Vec::new();
        let mut expanded = HashSet::new();
        while let Some(g) = queue.pop_front() {
            if !expanded.insert(g.clone()) {
                continue;
            }
            let Some(p) = rec.principals.get(&g) else {
                continue;
            };
            if !p.is_group {
                continue;
            }
            let parent_why = t.why.get(&g).cloned().unwrap_or_default();
            match rec.members.get(&g) {
                None => chain_gaps.push(format!("the members of {} (not read)", p.dn)),
                Some(Err(e)) => chain_gaps.push(format!("the members of {} ({e})", p.dn)),
                Some(Ok(members)) => {
                    for m in members {
                        if t.why.contains_key(m) {
                            continue;
                        }
                        t.why.insert(
                            m.clone(),
                            format!("it is a member of {} ({parent_why})", p.sam),
                        );
                        queue.push_back(m.clone());
                    }
                }
            }
        }
        let gaps: Vec<String> = unreadable.into_iter().chain(chain_gaps).collect();
        if !gaps.is_empty() {
            t.incomplete = Some(format!(
                "the agent could not read {}, so it cannot prove which accounts are privileged. Give the service account read access to them (Authenticated Users can read them in a default domain)",
                gaps.join("; ")
            ));
        }
        t
    }

    /// Why `obj` must never be given power by the agent, or `None`. Covers what the entry
    /// itself says (`obj.protected`) as well.
    pub fn why(&self, obj: &Obj) -> Option<String> {
        if let Some(p) = &obj.protected {
            return Some(p.clone());
        }
        if let Some(w) = self.why.get(&obj.guid) {
            return Some(format!("it is privileged: {w}"));
        }
        if let Some(e) = &self.everyone {
            return Some(format!("every account is privileged: {e}"));
        }
        self.incomplete.as_ref().map(|i| format!("unproven: {i}"))
    }

    /// The privileged one of an objectGUID alone (a group's member, known by its GUID only).
    pub fn why_guid(&self, guid: &[u8]) -> Option<String> {
        if let Some(w) = self.why.get(guid) {
            return Some(format!("it is privileged: {w}"));
        }
        if let Some(e) = &self.everyone {
            return Some(format!("every account is privileged: {e}"));
        }
        self.incomplete.as_ref().map(|i| format!("unproven: {i}"))
    }

    /// How many objects are privileged by name (for `check` and the log).
    pub fn len(&self) -> usize {
        self.why.len()
    }

    pub fn is_empty(&self) -> bool {
        self.why.is_empty()
    }

    /// Why nothing can be proven safe, when that is so (a gap, or a power held by everyone).
    pub fn blanket(&self) -> Option<&str> {
        self.incomplete.as_deref().or(self.everyone.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::sd::build::{ace, right, sd};
    use crate::directory::sd::{Power, mask};

    const DOM: &str = "S-1-5-21-1-2-3";

    /// A recorded domain like a default Samba or Windows one, with additions: what `record`
    /// would read.
    struct Domain {
        rec: Recorded,
        next: u8,
    }

    impl Domain {
        fn new() -> Domain {
            let mut d = Domain {
                rec: Recorded {
                    domain_sid: Some(DOM.into()),
                    ..Recorded::default()
                },
                next: 1,
            };
            let (cr, repl) = right(Power::ReplicateChanges);
            let (_, repl_all) = right(Power::ReplicateChangesAll);
            let unexpire = [7u8; 16];
            // The domain head as a default domain has it: Domain Admins own it; SYSTEM and
            // the DCs hold everything; Enterprise DCs replicate; Authenticated Users hold a
            // harmless extended right; Administrators replicate.
            d.descriptor(
                Target::DomainHead,
                "DC=example,DC=com",
                sd(
                    &format!("{DOM}-512"),
                    Some(&[
                        ace(true, 0, mask::FULL_CONTROL, None, "S-1-5-18"),
                        ace(true, 0, cr, Some(repl), "S-1-5-9"),
                        ace(true, 0, cr, Some(repl_all), "S-1-5-32-544"),
                        ace(true, 0, cr, Some(unexpire), "S-1-5-11"),
                        ace(true, 0, 0x0002_0094, None, "S-1-5-11"),
                        ace(true, 0x12, mask::FULL_CONTROL, None, &format!("{DOM}-519")),
                    ]),
                ),
            );
            d
        }

        fn descriptor(&mut self, target: Target, dn: &str, bytes: Vec<u8>) {
            self.rec.descriptors.push(Descriptor {
                target,
                dn: dn.into(),
                sd: Ok(bytes),
            });
        }

        fn principal(&mut self, sam: &str, sid: &str, is_group: bool) -> Vec<u8> {
            let guid = vec![self.next; 16];
            self.next += 1;
            self.rec.principals.insert(
                guid.clone(),
                Principal {
                    guid: guid.clone(),
                    sid: Some(sid.into()),
                    dn: format!("CN={sam},CN=Users,DC=example,DC=com"),
                    sam: sam.into(),
                    is_group,
                },
            );
            if is_group {
                self.rec.members.insert(guid.clone(), Ok(Vec::new()));
            }
            guid
        }

        fn add_member(&mut self, group: &[u8], member: &[u8]) {
            if let Some(Ok(m)) = self.rec.members.get_mut(group) {
                m.push(member.to_vec());
            }
        }
    }

    fn obj(guid: &[u8]) -> Obj {
        Obj {
            guid: guid.to_vec(),
            ..Obj::default()
        }
    }

    #[test]
    fn power_is_read_from_acls_and_nesting_at_any_depth() {
        let mut d = Domain::new();
        let da = d.principal("Domain Admins", &format!("{DOM}-512"), true);
        let it_admins = d.principal("IT-Admins", &format!("{DOM}-1201"), true);
        let nested = d.principal("nested", &format!("{DOM}-1202"), false);
        d.add_member(&da, &it_admins);
        d.add_member(&it_admins, &nested);
        let msol = d.principal("MSOL_1234", &format!("{DOM}-1203"), false);
        let exchange = d.principal("Exchange-ish", &format!("{DOM}-1204"), true);
        let ex_member = d.principal("ex-member", &format!("{DOM}-1205"), false);
        d.add_member(&exchange, &ex_member);
        let helpdesk = d.principal("Helpdesk", &format!("{DOM}-1206"), true);
        let hd_member = d.principal("hd-member", &format!("{DOM}-1207"), false);
        d.add_member(&helpdesk, &hd_member);
        let plain = d.principal("plain", &format!("{DOM}-1208"), false);
        let svc = d.principal("svc-adsync", &format!("{DOM}-1209"), false);
        d.rec.service_account = Some(svc.clone());
        let (cr, repl_all) = right(Power::ReplicateChangesAll);
        let (_, reset) = right(Power::ResetPassword);
        d.descriptor(
            Target::DomainControllers,
            "OU=Domain Controllers,DC=example,DC=com",
            sd(
                &format!("{DOM}-512"),
                Some(&[
                    ace(true, 0, cr, Some(repl_all), &format!("{DOM}-1203")),
                    ace(true, 0x02, mask::WRITE_DAC, None, &format!("{DOM}-1204")),
                ]),
            ),
        );
        d.descriptor(
            Target::AdminSdHolder,
            "CN=AdminSDHolder,CN=System,DC=example,DC=com",
            sd(
                &format!("{DOM}-512"),
                Some(&[ace(true, 0x0A, cr, Some(reset), &format!("{DOM}-1206"))]),
            ),
        );
        let t = Tier0::compute(&d.rec);
        type Case<'a> = (&'a str, &'a [u8], Option<&'a str>);
        let cases: &[Case] = &[
            ("Domain Admins", &da, Some("Domain Admins is")),
            (
                "a group in Domain Admins",
                &it_admins,
                Some("member of Domain Admins"),
            ),
            (
                "two levels down",
                &nested,
                Some("member of IT-Admins (it is a member of Domain Admins"),
            ),
            (
                "a replication account",
                &msol,
                Some("Replicating Directory Changes All"),
            ),
            ("a WriteDACL group", &exchange, Some("WriteDACL")),
            ("its member", &ex_member, Some("member of Exchange-ish")),
            (
                "reset-password on AdminSDHolder",
                &hd_member,
                Some("reset passwords"),
            ),
            ("the service account", &svc, Some("own service account")),
            ("an ordinary user", &plain, None),
        ];
        assert_eq!(t.blanket(), None, "a default domain proves everything");
        for (name, guid, want) in cases {
            let got = t.why(&obj(guid));
            match want {
                None => assert_eq!(got, None, "{name}"),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{name}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn it_fails_closed_on_what_it_cannot_read_and_on_powers_held_by_everyone() {
        let mut d = Domain::new();
        let da = d.principal("Domain Admins", &format!("{DOM}-512"), true);
        let plain = d.principal("plain", &format!("{DOM}-1300"), false);
        assert_eq!(Tier0::compute(&d.rec).why(&obj(&plain)), None);

        let mut unreadable = Domain::new();
        let da2 = unreadable.principal("Domain Admins", &format!("{DOM}-512"), true);
        let plain2 = unreadable.principal("plain", &format!("{DOM}-1300"), false);
        unreadable
            .rec
            .members
            .insert(da2, Err("insufficient access".into()));
        let why = Tier0::compute(&unreadable.rec).why(&obj(&plain2));
        assert!(
            why.as_deref().is_some_and(|w| w.contains("the members of")
                && w.contains("insufficient access")
                && w.contains("Give the service account read access")),
            "{why:?}"
        );

        let mut no_sd = Domain::new();
        let plain3 = no_sd.principal("plain", &format!("{DOM}-1300"), false);
        no_sd.rec.descriptors.push(Descriptor {
            target: Target::RootContainer,
            dn: "OU=Staff,DC=example,DC=com".into(),
            sd: Err("no nTSecurityDescriptor returned".into()),
        });
        assert!(
            Tier0::compute(&no_sd.rec)
                .why(&obj(&plain3))
                .is_some_and(|w| w.contains("permissions of OU=Staff"))
        );

        for everyone in ["S-1-5-11".to_string(), format!("{DOM}-513")] {
            let mut open = Domain::new();
            let plain4 = open.principal("plain", &format!("{DOM}-1300"), false);
            open.descriptor(
                Target::RootContainer,
                "OU=Staff,DC=example,DC=com",
                sd(
                    "S-1-5-32-544",
                    Some(&[ace(true, 0, mask::WRITE_DAC, None, &everyone)]),
                ),
            );
            let why = Tier0::compute(&open.rec).why(&obj(&plain4));
            assert!(
                why.as_deref()
                    .is_some_and(|w| w.contains(&everyone) && w.contains("Remove that permission")),
                "{everyone}: {why:?}"
            );
        }
        let _ = da;
    }
}
